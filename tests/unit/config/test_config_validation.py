"""Every config error code, with the key path where it sits."""

import json

import pytest

from sparkml_tf.config import resolve
from sparkml_tf.errors import ConfigErrors

T = "cfg_targets"


def problems(config, macros=None, overrides=()):
    with pytest.raises(ConfigErrors) as info:
        resolve(config, macros, overrides, allowed_imports=[T])
    return [(e.code, e.path) for e in info.value.errors], info.value


def test_valid_config_passes():
    resolved = resolve({"type": f"{T}.Point", "x": 1, "label": None}, allowed_imports=[T])
    assert resolved.config["x"] == 1


@pytest.mark.parametrize(
    "config, code, path",
    [
        ({"jobs": [{"type": f"{T}.Nope"}]}, "CONFIG_UNKNOWN_TYPE", "jobs[0]"),
        ({"a": {"type": "sparkml_tf.nosuchmodule.Thing"}}, "CONFIG_UNKNOWN_TYPE", "a"),
        ({"a": {"type": f"{T}.Point", "x": 1, "lable": "p"}}, "CONFIG_UNKNOWN_ARGUMENT", "a.lable"),
        ({"a": {"type": f"{T}.Point", "y": 2}}, "CONFIG_MISSING_ARGUMENT", "a"),
        ({"a": {"type": "os.system", "*": ["echo hi"]}}, "CONFIG_IMPORT_NOT_ALLOWED", "a"),
        ({"a": {"type": f"{T}.NOT_CALLABLE"}}, "CONFIG_NOT_CALLABLE", "a"),
        ({"a": {"type": f"{T}.Point", "x": 1, "eval": "later"}}, "CONFIG_BAD_EVAL", "a.eval"),
        ({"a": {"type": f"{T}.Point", "*": 1, "x": 1}}, "CONFIG_BAD_POSITIONAL", "a.*"),
        ({"a": {"type": f"{T}.Point", "*": [1, 2, 3, 4]}}, "CONFIG_TOO_MANY_POSITIONAL", "a.*"),
        ({"a": {"type": f"{T}.Point", "*": [1], "x": 2}}, "CONFIG_DUPLICATE_ARGUMENT", "a.x"),
        ({"a": {"type": f"{T}.Point", "x": "one"}}, "CONFIG_WRONG_VALUE_TYPE", "a.x"),
        ({"a": {"type": f"{T}.Point", "x": True}}, "CONFIG_WRONG_VALUE_TYPE", "a.x"),
        ({"log": "@selff"}, "CONFIG_BAD_REFERENCE", "log"),
        ({"a": {"type": 3}}, "CONFIG_UNKNOWN_TYPE", "a"),
    ],
)
def test_error_code_and_path(config, code, path):
    found, _ = problems(config)
    assert found == [(code, path)]


def test_messages_say_what_why_and_fix():
    _, error = problems({"jobs": [{"type": f"{T}.Point", "x": 1, "lable": "p"}]})
    text = error.format()
    assert "[CONFIG_UNKNOWN_ARGUMENT] jobs[0].lable: cfg_targets.Point has no parameter 'lable'; did you mean 'label'?" in text
    _, error = problems({"a": {"type": "os.system"}})
    assert "--allow-import os" in error.format()


def test_every_problem_is_reported_at_once():
    config = {
        "jobs": [
            {"type": f"{T}.Point", "y": "$params:y"},
            {"type": f"{T}.Pointt"},
            {"type": "subprocess.run"},
            {"type": f"{T}.add", "a": 1, "c": 2},
        ]
    }
    found, error = problems(config, {"params": {"z": 1}})
    codes = {code for code, _ in found}
    assert codes == {"CONFIG_MACRO_MISSING", "CONFIG_MISSING_ARGUMENT", "CONFIG_UNKNOWN_TYPE", "CONFIG_IMPORT_NOT_ALLOWED", "CONFIG_UNKNOWN_ARGUMENT"}
    assert error.format().startswith(f"{len(found)} problem(s) in the config:")


def test_partial_skips_missing_arguments_but_not_unknown_ones():
    resolve({"f": {"type": f"{T}.add", "eval": "partial"}}, allowed_imports=[T])
    found, _ = problems({"f": {"type": f"{T}.add", "eval": "partial", "z": 1}})
    assert found == [("CONFIG_UNKNOWN_ARGUMENT", "f.z")]


def test_raw_subconfig_is_still_checked():
    found, _ = problems({"model": {"type": f"{T}.Point", "eval": None, "q": 1}})
    assert ("CONFIG_UNKNOWN_ARGUMENT", "model.q") in found


def test_var_keywords_accept_anything():
    resolve({"c": {"type": f"{T}.collect", "*": [1, 2], "anything": 3}}, allowed_imports=[T])


def test_heavy_roots_are_checked_like_any_other():
    # A keras name is imported and checked at validate time (a few seconds, only when a config
    # names one); refused names are refused from their text (test_config_import_escapes).
    resolve({"opt": {"type": "keras.optimizers.Adam", "learning_rate": 0.1}})
    with pytest.raises(ConfigErrors) as info:
        resolve({"opt": {"type": "tf_keras.optimizers.Adam"}}, allowed_imports=["tf_keras"])
    assert [(e.code, e.path) for e in info.value.errors] == [("CONFIG_UNKNOWN_TYPE", "opt")]
    assert "'tf_keras' is not installed" in info.value.errors[0].message


def test_env_var_adds_allowed_roots(monkeypatch):
    monkeypatch.setenv("SPARKML_TF_ALLOWED_IMPORTS", "json")
    resolve({"d": {"type": "json.dumps", "*": [1]}})


def test_malformed_json_reports_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": [1, 2,,]\n}\n')
    found, error = problems(str(path))
    assert found == [("CONFIG_JSON_INVALID", f"{path}:3:14")]
    assert "line 3, column 14" in error.message


def test_inline_json_and_missing_file(tmp_path):
    resolve(json.dumps({"type": f"{T}.Point", "x": 2}), allowed_imports=[T])
    found, _ = problems(str(tmp_path / "nope.json"))
    assert found == [("CONFIG_FILE_NOT_FOUND", str(tmp_path / "nope.json"))]
