"""`validate` builds every job the way `run` does: each mis-setting is refused before anything
runs (exit 2, no Spark, no TensorFlow), all at once, at the key the user wrote."""

import os
import time

import pytest

from tests.unit.cli.test_cli import REPO, cli

MOVIELENS = [os.path.join(REPO, "conf/movielens/config.json"), os.path.join(REPO, "conf/movielens/macros.json")]
CTR = [os.path.join(REPO, "conf/ctr/config.json"), os.path.join(REPO, "conf/ctr/macros.json")]

CASES = {
    "unknown format": (MOVIELENS, "dataset.format=movielens-csvv", "[DATA_UNKNOWN_FORMAT] dataset.format (as jobs[0].format)"),
    "format without a path": (MOVIELENS, "dataset.format=movielens-csv", "[CONFIG_BAD_VALUE] dataset.path (as jobs[0].path)"),
    "held-out users": (MOVIELENS, "dataset.heldout_users=1.5", "[CONFIG_BAD_VALUE] dataset.heldout_users (as jobs[0].heldout_users)"),
    "batch size": (MOVIELENS, "train.batch_size=0", "[CONFIG_BAD_VALUE] train.batch_size (as jobs[1].batch_size)"),
    "epochs": (MOVIELENS, "train.epochs=-1", "[CONFIG_BAD_VALUE] train.epochs (as jobs[1].epochs)"),
    "workers": (MOVIELENS, "train.num_workers=0", "[CONFIG_BAD_VALUE] train.num_workers (as jobs[1].num_workers)"),
    "baselines": (MOVIELENS, 'evaluate.baselines=["popular","eas"]', "[EVALUATE_UNKNOWN_BASELINE] evaluate.baselines (as jobs[4].baselines)"),
    "unparsable JSON": (MOVIELENS, "evaluate.baselines=[popular]", "[CONFIG_BAD_OVERRIDE] --set evaluate.baselines: '[popular]' looks like JSON"),
    "a model setting": (MOVIELENS, "model.embedding_dim=0", "[CONFIG_BAD_VALUE] model.embedding_dim (as jobs[1].model.embedding_dim)"),
    "inside a macro's dict": (
        MOVIELENS, "dataset.generator.num_items=0", "[CONFIG_BAD_VALUE] dataset.generator.num_items (as jobs[0].generator.num_items)"
    ),
    "CTR date": (CTR, "run.date=2024-02-30", "[CONFIG_BAD_VALUE] run.date (as jobs[5].date)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_refuses_each_mis_setting_at_its_key(case, tmp_path):
    files, override, expected = CASES[case]
    start = time.perf_counter()
    rc, out, err, _ = cli("validate", *files, "--set", override, cwd=tmp_path)
    assert rc == 2 and expected in err, err
    assert "OK" not in out and time.perf_counter() - start < 10


def test_validate_reports_every_problem_at_once(tmp_path):
    overrides = [CASES[c][1] for c in ("held-out users", "batch size", "epochs", "workers", "baselines", "a model setting")]
    args = [a for o in overrides for a in ("--set", o)]
    rc, _, err, _ = cli("validate", *MOVIELENS, *args, cwd=tmp_path)
    assert rc == 2
    for case in ("held-out users", "batch size", "epochs", "workers", "baselines", "a model setting"):
        assert CASES[case][2] in err, (case, err)
    assert "train.num_workers (as jobs[0].num_shards)" in err  # the one macro feeds two jobs: both are named
    # what validate checked, run checks the same way, before any Spark job
    rc, _, run_err, _ = cli("run", *MOVIELENS, *args, cwd=tmp_path)
    assert rc == 2 and run_err.splitlines()[0] == err.splitlines()[0]
    assert not os.path.exists(tmp_path / "runs")
