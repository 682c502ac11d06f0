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
