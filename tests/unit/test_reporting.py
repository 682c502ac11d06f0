from sparkml_tf.reporting import format_results


def test_baseline_columns_sit_beside_the_model_and_fit_their_names():
    text = format_results({"dataset": {"rows": 10}, "evaluate": {"auc": 0.8, "logistic_regression_crosses/auc": 0.7, "num_examples": 5}})
    header, auc, count = text.splitlines()[1:]
    assert header.split() == ["model", "logistic_regression_crosses"]
    assert auc.split() == ["auc", "0.8000", "0.7000"]
    assert count.split() == ["num_examples", "5"]
    assert len(header) == len(auc)  # columns line up under names longer than the default width


def test_a_job_without_baselines_is_titled_by_its_name():
    assert format_results({"stats": {"rows": 3}}).splitlines()[1].split() == ["stats"]


def test_a_summary_with_text_is_not_a_metrics_table_but_a_baseline_note_is():
    from sparkml_tf.reporting import format_results

    results = {
        "evaluate": {"auc": 0.8, "ease/skipped": "30000 items need 3.6 GB > ease_max_memory_gb=2"},
        "score": {"date": "2026-01-01", "scored": 943, "skipped": False},
    }
    text = format_results(results)
    assert text.startswith("== evaluate ==") and "ease_max_memory_gb=2" in text and "2026-01-01" not in text


def test_the_profile_table_and_the_tensorboard_line(tmp_path):
    from sparkml_tf.reporting import profile_table, run_summary, training_traces

    timings = [{"stage": "dataset", "wall_s": 20.04, "cpu_s": 1.5, "children_cpu_s": 30.0},
               {"stage": "train", "wall_s": 10.0, "cpu_s": 0.25, "children_cpu_s": 12.0, "failed": True}]
    trace_dir = tmp_path / "run" / "tensorboard" / "train" / "plugins" / "profile" / "2026_01_02_10_00_00"
    trace_dir.mkdir(parents=True)
    (trace_dir / "host.xplane.pb").write_bytes(b"x")
    results = {"train": {"steps": 3, "tensorboard_dir": str(tmp_path / "run" / "tensorboard" / "train")}}
    lines = profile_table(timings, training_traces(results)).splitlines()
    assert lines[0] == "== profile ==" and lines[1].split() == ["stage", "wall", "s", "cpu", "s", "child", "cpu", "s"]
    assert lines[2].split() == ["dataset", "20.0", "1.5", "30.0"] and lines[3].split() == ["train", "10.0", "0.2", "12.0", "(failed)"]
    assert lines[4].split() == ["total", "30.0", "1.8", "42.0"] and lines[5] == f"trace  {trace_dir / 'host.xplane.pb'}"
    summary = run_summary(None, str(tmp_path / "run"), results)
    assert f"TensorBoard    tensorboard --logdir {tmp_path / 'run' / 'tensorboard'}   (" in summary
    assert profile_table([], []) == ""
