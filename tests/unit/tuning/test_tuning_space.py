"""The search space: bad entries refused at their key, and the first trial built from the config's
own values (numbers outside a range at the nearer bound) so a search starts from what the user has."""

import os

import pytest

from sparkml_tf.errors import ConfigError
from sparkml_tf.tuning.search import Tune
from sparkml_tf.tuning.space import load_space


@pytest.mark.parametrize(
    "space, key",
    [
        ({}, "space"),
        ({"model.dropout": {"low": 0.1, "high": 0.5}}, "space.model.dropout"),
        ({"model.dropout": {"type": "float", "low": 0.5, "high": 0.1}}, "space.model.dropout"),
        ({"model.l2": {"type": "float", "low": 0.0, "high": 1e-3, "log": True}}, "space.model.l2"),
        ({"model.embedding_dim": {"type": "categorical", "choices": []}}, "space.model.embedding_dim"),
        ({"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "logg": True}}, "space.train.learning_rate"),
    ],
)
def test_bad_space_entries_are_refused_at_their_key(space, key):
    with pytest.raises(ConfigError) as caught:
        load_space(space)
    assert caught.value.code == "TUNE_BAD_SPACE" and caught.value.path == key


def tune(repo_root, tmp_path, space, overrides=()):
    config = os.path.join(repo_root, "conf/movielens/config.json")
    macros = os.path.join(repo_root, "conf/movielens/macros.json")
    return Tune(config, space, str(tmp_path / "tune"), macros=macros, overrides=[f"paths.run_dir={tmp_path}", *overrides])


def test_the_configs_own_values_come_first_moved_into_the_space(repo_root, tmp_path):
    space = {
        "model.l2": {"type": "float", "low": 1e-8, "high": 1e-3, "log": True},  # the shipped config's l2 is 0.0
        "model.dropout": {"type": "float", "low": 0.2, "high": 0.7},
        "model.embedding_dim": {"type": "categorical", "choices": [256, 512, 1024]},
        "train.learning_rate": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True},
    }
    assert tune(repo_root, tmp_path, space)._first_trials() == [
        {"model.l2": 1e-8, "model.dropout": 0.5, "model.embedding_dim": 512, "train.learning_rate": 0.001}
    ]
    high = tune(repo_root, tmp_path, space, ["train.learning_rate=0.01"])._first_trials()
    assert high[0]["train.learning_rate"] == 3e-3  # above the range: its high end


def test_no_first_trial_when_a_choice_is_missing(repo_root, tmp_path):
    space = {"model.embedding_dim": {"type": "categorical", "choices": [64, 128]}, "model.dropout": {"type": "float", "low": 0.2, "high": 0.7}}
    assert tune(repo_root, tmp_path, space)._first_trials() == []
    whole = {"model.embedding_dim": {"type": "int", "low": 64, "high": 256}}
    assert tune(repo_root, tmp_path, whole, ["model.embedding_dim=512"])._first_trials() == [{"model.embedding_dim": 256}]
