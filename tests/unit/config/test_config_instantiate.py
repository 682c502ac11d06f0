import functools

import pytest

from sparkml_tf.config import resolve
from sparkml_tf.errors import ConfigError

T = "cfg_targets"


def build(config, macros=None):
    return resolve(config, macros, allowed_imports=[T]).build()


def test_call_with_keywords_and_positionals_nested():
    point = build({"type": f"{T}.Point", "*": [1], "label": {"type": f"{T}.add", "a": 1, "b": 2}})
    assert (point.x, point.y, point.label) == (1, 0, 3)


def test_partial_returns_a_partial():
    fn = build({"type": f"{T}.add", "eval": "partial", "b": 10})
    assert isinstance(fn, functools.partial) and fn(1) == 11


def test_eval_null_keeps_the_raw_dict_with_macros_filled():
    raw = build({"model": {"type": f"{T}.Point", "eval": None, "x": "$p:x"}}, {"p": {"x": 4}})
    assert raw == {"model": {"type": f"{T}.Point", "eval": None, "x": 4}}


def test_references():
    config = {"type": f"{T}.collect", "a": "@self", "m": "@macros", "e": "@macros_eval", "lit": "@@self", "v": "$p:y"}
    macros = {"p": {"x": 1, "y": "$p:x"}}
    _, named = build(config, macros)
    assert named["a"] == config
    assert named["m"] == macros
    assert named["e"] == {"p": {"x": 1, "y": 1}}
    assert named["lit"] == "@self"


def test_constructor_error_gets_path_and_type_and_is_chained():
    with pytest.raises(ConfigError) as info:
        build({"jobs": [{"type": f"{T}.explode", "value": 3}]})
    assert info.value.code == "CONFIG_BUILD_FAILED"
    assert info.value.path == "jobs[0]"
    assert "cfg_targets.explode raised RuntimeError: cannot take 3" in info.value.message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_parsing_has_no_side_effects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"type": "sparkml_tf.tracking.MLflowTracker", "tracking_uri": "sqlite:///x.db"}
    tracker = resolve(config).build()
    assert tracker.run_id is None
    assert list(tmp_path.iterdir()) == []


def test_value_refused_by_a_constructor_is_a_config_error_at_its_key():
    with pytest.raises(ConfigError) as info:
        build({"jobs": [{"type": f"{T}.refuse", "mode": "odd"}]})
    assert (info.value.code, info.value.path) == ("SOME_BAD_VALUE", "jobs[0].mode")
    assert info.value.message == "mode must be 'even'"
