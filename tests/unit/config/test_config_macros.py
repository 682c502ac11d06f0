import pytest

from sparkml_tf.config import resolve
from sparkml_tf.config.macros import evaluate_macros, fill, unused
from sparkml_tf.errors import ConfigErrors


def test_whole_string_keeps_type_and_embedded_is_formatted():
    config = {"epochs": "$params:epochs", "path": "$paths:root/dataset", "flag": "$params:flag"}
    macros = {"params": {"epochs": 3, "flag": False}, "paths": {"root": "runs/x"}}
    filled, errors, used = fill(config, evaluate_macros(macros)[0])
    assert errors == []
    assert filled == {"epochs": 3, "path": "runs/x/dataset", "flag": False}
    assert used == {("params", "epochs"), ("params", "flag"), ("paths", "root")}


def test_macros_resolve_in_dependency_order():
    macros = {"a": {"x": "$b:y/x"}, "b": {"y": "$c:z/y"}, "c": {"z": "root"}}
    evaluated, errors = evaluate_macros(macros)
    assert errors == []
    assert evaluated["a"]["x"] == "root/y/x"


def test_cycle_is_reported_with_its_chain():
    macros = {"a": {"x": "$b:y"}, "b": {"y": "$a:x"}}
    _, errors = evaluate_macros(macros)
    assert [e.code for e in errors] == ["CONFIG_MACRO_CYCLE"]
    assert "$a:x -> $b:y -> $a:x" in errors[0].message
    assert errors[0].path == "a.x"


def test_missing_macro_names_the_path_and_suggests():
    with pytest.raises(ConfigErrors) as info:
        resolve({"jobs": [{"p": "$dataset:pth"}]}, {"dataset": {"path": "x"}}, check=False)
    (error,) = info.value.errors
    assert error.code == "CONFIG_MACRO_MISSING"
    assert error.path == "jobs[0].p"
    assert "did you mean 'path'" in error.message


def test_unused_macro_values_are_warned():
    macros = {"params": {"used": 1, "spare": 2}, "other": {"x": "$params:used"}}
    assert unused(macros, {("other", "x")}) == ["$params:spare"]
    resolved = resolve({"v": "$other:x"}, macros, check=False)
    assert resolved.warnings == ["macro $params:spare is not used by the config"]


def test_macros_must_be_objects_of_objects():
    with pytest.raises(ConfigErrors) as info:
        resolve({}, {"params": 3}, check=False)
    assert info.value.errors[0].code == "CONFIG_MACROS_INVALID"
