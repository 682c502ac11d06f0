from sparkml_tf.telemetry.tensorboard import ProfileWindow


def test_the_profile_window_moves_earlier_in_a_short_run():
    def window(steps_left):
        w = ProfileWindow("/logs", (10, 20), steps_left)
        return None if w.done else (w.begin, w.end)

    assert window(1000) == (10, 20) and window(25) == (10, 20) and window(15) == (5, 15) and window(6) == (0, 6)
    assert window(0) is None and ProfileWindow(None, (10, 20), 100).done and ProfileWindow("/logs", None, 100).done
