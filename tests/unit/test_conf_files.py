"""Every config shipped in conf/ validates with its macros (imports every type, checks every key)."""

import glob
import os

import pytest

from sparkml_tf.config import resolve

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "conf", "*", "*config*.json")))


def macros_for(config_path):
    folder = os.path.dirname(config_path)
    specific = os.path.basename(config_path).replace("config", "macros")
    for name in (specific, "macros.json"):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def test_there_are_configs():
    assert len(CONFIGS) >= 1


@pytest.mark.parametrize("config", CONFIGS, ids=[os.path.relpath(c, REPO) for c in CONFIGS])
def test_config_validates(config):
    resolved = resolve(config, macros_for(config))
    assert resolved.warnings == []
    assert resolved.config["type"] == "sparkml_tf.engine.Pipeline"
