import pytest

from sparkml_tf.config import resolve
from sparkml_tf.config.overrides import apply_overrides
from sparkml_tf.errors import ConfigErrors

CONFIG = {"jobs": [{"a": 1}, {"trainer": {"epochs": 1}}], "name": "x"}
MACROS = {"params": {"batch_size": 32, "lr": 0.1}}


def test_overrides_reach_config_and_macros_with_json_values():
    config, macros, errors = apply_overrides(CONFIG, MACROS, ["jobs[1].trainer.epochs=3", "params.batch_size=1024", "name=hello world", "params.lr=null"])
    assert errors == []
    assert config["jobs"][1]["trainer"]["epochs"] == 3
    assert config["name"] == "hello world"
    assert macros["params"] == {"batch_size": 1024, "lr": None}
    assert CONFIG["jobs"][1]["trainer"]["epochs"] == 1  # inputs untouched


@pytest.mark.parametrize(
    "override, path",
    [("jobs[1].trainer.epoch=3", "jobs[1].trainer.epoch"), ("jobs[5].a=1", "jobs[5]"), ("params.batchsize=1", "params.batchsize"), ("nothing=1", "nothing")],
)
def test_unknown_key_is_an_error(override, path):
    _, _, errors = apply_overrides(CONFIG, MACROS, [override])
    assert [(e.code, e.path) for e in errors] == [("CONFIG_OVERRIDE_UNKNOWN_KEY", path)]


def test_did_you_mean_on_override():
    _, _, errors = apply_overrides(CONFIG, MACROS, ["params.batchsize=1"])
    assert "did you mean 'batch_size'" in errors[0].message


def test_ambiguous_first_key_needs_a_prefix():
    config, macros = {"params": {"x": 1}, "tracking": {"uri": 1}}, {"params": {"x": 2}, "tracking": {"url": 2}}
    _, _, errors = apply_overrides(config, macros, ["params.x=5"])
    assert errors[0].code == "CONFIG_OVERRIDE_AMBIGUOUS"
    config, macros, errors = apply_overrides(config, macros, ["macros.params.x=5", "config.params.x=6"])
    assert errors == [] and macros["params"]["x"] == 5 and config["params"]["x"] == 6
    # A first key in both files is fine when only one has the whole path.
    config, macros, errors = apply_overrides(config, macros, ["tracking.uri=3", "tracking.url=4"])
    assert errors == [] and config["tracking"]["uri"] == 3 and macros["tracking"]["url"] == 4


def test_malformed_override():
    _, _, errors = apply_overrides(CONFIG, MACROS, ["no_equals_sign"])
    assert errors[0].code == "CONFIG_BAD_OVERRIDE"


def test_override_flows_through_macros():
    resolved = resolve({"bs": "$params:batch_size"}, MACROS, ["params.batch_size=7"], check=False)
    assert resolved.config == {"bs": 7}
    with pytest.raises(ConfigErrors):
        resolve({"bs": "$params:batch_size"}, MACROS, ["params.nope=7"], check=False)
