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
