"""The data-sized schedule: batch, step budget, evaluation cadence and patience follow the data."""

import pytest

from sparkml_tf.console import format_seconds
from sparkml_tf.errors import SparkmlTfError
from sparkml_tf.train.schedule import check_settings, plan


@pytest.mark.parametrize(
    "users, batch, max_steps, eval_every",
    [
        (300, 32, 1000, 25),  # a few hundred users: the floor of 1000 steps, ~10 steps an epoch
        (483, 32, 1600, 40),  # ml-latest-small's training users: 16 steps an epoch, 100 epochs
        (4792, 256, 1900, 47),  # the demo's generated data
        (116_000, 512, 22_700, 567),  # an ML-20M-sized one: batch capped at 512, 100 epochs
        (5_000_000, 512, 50_000, 1250),  # capped
    ],
)
def test_sizes_follow_the_data(users, batch, max_steps, eval_every):
    schedule = plan(users, 1)
    assert (schedule.batch_size, schedule.max_steps, schedule.eval_every) == (batch, max_steps, eval_every)
    assert schedule.steps_per_epoch == -(-users // batch)
    assert schedule.min_steps == int(0.2 * max_steps) and schedule.patience == 6
    assert schedule.warmup_steps == min(max_steps // 20, 500)
    assert schedule.num_evaluations * schedule.eval_every >= schedule.max_steps


def test_at_least_sixteen_steps_an_epoch_from_small_to_large():
    for users in (600, 1000, 5000, 8192, 30_000):
        schedule = plan(users, 1)
        assert schedule.steps_per_epoch >= 16 and schedule.max_steps >= 1000
        if users <= 16 * 512:  # below the batch cap, the batch grows with the data
            assert schedule.steps_per_epoch <= 33


def test_the_batch_is_a_multiple_of_the_workers_and_settings_win():
    assert plan(4792, 3).batch_size == 258
    schedule = plan(4792, 2, {"batch_size": 100, "max_steps": 300, "patience": 2, "lr_decay": "none"})
    assert (schedule.batch_size, schedule.max_steps, schedule.patience, schedule.lr_decay) == (100, 300, 2, "none")
    assert schedule.eval_every == 10 and schedule.steps_per_epoch == 48


def test_the_epoch_schedule_of_earlier_versions():
    schedule = plan(1000, 2, {"epochs": 5, "batch_size": 256, "patience": 3})
    assert (schedule.max_steps, schedule.eval_every, schedule.patience, schedule.min_steps) == (20, 4, 3, 0)
    assert schedule.lr_decay == "none" and schedule.warmup_steps == 0
    assert schedule.learning_rate(0.01, 0) == schedule.learning_rate(0.01, 19) == 0.01


def test_warm_up_then_cosine_to_zero():
    schedule = plan(4792, 1)
    assert schedule.learning_rate(1.0, 0) == pytest.approx(1 / 95)
    assert schedule.learning_rate(1.0, 94) == pytest.approx(1.0)
    assert schedule.learning_rate(1.0, 95 + (1900 - 95) // 2) == pytest.approx(0.5, abs=1e-3)
    assert schedule.learning_rate(1.0, 1900) == pytest.approx(0.0, abs=1e-9)


def test_the_keras_schedule_matches():
    import keras

    from sparkml_tf.train.schedule import keras_schedule

    schedule = plan(4792, 1)
    lr = keras_schedule(keras, 0.002, schedule)
    for step in (0, 50, 94, 95, 600, 1899):
        assert float(lr(step)) == pytest.approx(schedule.learning_rate(0.002, step), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"patience": -1}, "patience"),
        ({"lr_decay": "step"}, "lr_decay"),
        ({"epochs": 3, "max_steps": 10}, "epochs"),
    ],
)
def test_bad_settings_are_refused_at_their_key(settings, key):
    with pytest.raises(SparkmlTfError) as info:
        check_settings(**settings)
    assert info.value.code == "CONFIG_BAD_VALUE" and info.value.path == key


def test_progress_line_shows_the_evaluation_of_all_the_speed_and_the_time_left():
    from sparkml_tf.train.loop import progress_line

    schedule = plan(4000, 2, {})
    line = progress_line(2, 3 * schedule.eval_every, schedule, 0.41, {"val_ndcg@100": 0.3}, 2.0, 5120.4, 30.0, 3 * schedule.eval_every)
    left = 30.0 / (3 * schedule.eval_every) * (schedule.max_steps - 3 * schedule.eval_every)
    assert line == (
        f"evaluation 3/{schedule.num_evaluations} (step {3 * schedule.eval_every}/{schedule.max_steps}): loss 0.4100, val_ndcg@100 0.3000, "
        f"5,120 examples/s, 2.0s, ~{format_seconds(left)} left at most"
    )
    last = progress_line(schedule.num_evaluations - 1, schedule.max_steps, schedule, 0.4, {}, 1.0, None, 60.0, schedule.max_steps)
    assert last.endswith(": loss 0.4000, 1.0s, last evaluation")
