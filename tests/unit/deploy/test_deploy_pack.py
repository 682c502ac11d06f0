"""What the packed environment holds (the plan of the archive, without writing 1 GB): the interpreter,
sparkml_tf as a regular package, the runtime dependencies; no pyspark, headers, tests or dev tools."""

import os
import subprocess
import sys

import pytest

from sparkml_tf.deploy import pack as packing
from sparkml_tf.errors import SparkmlTfError

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
SITE = f"lib/python{VERSION}/site-packages/"


@pytest.fixture(scope="module")
def members():
    return packing.plan()


def test_interpreter_and_standard_library(members):
    assert f"bin/python{VERSION}" in members and "bin/python" in members
    assert f"lib/python{VERSION}/os.py" in members
    assert any(name.startswith(f"lib/python{VERSION}/lib-dynload/") for name in members)
    assert not any(name.startswith((f"lib/python{VERSION}/test/", f"lib/python{VERSION}/idlelib/")) for name in members)
    wrapper = members["bin/python"].decode()
    assert wrapper.startswith("#!/bin/sh") and f'exec "$here/python{VERSION}"' in wrapper


def test_project_is_a_regular_package(members):
    assert SITE + "sparkml_tf/__init__.py" in members
    assert SITE + "sparkml_tf/spark/barrier.py" in members
    assert not any("__editable__" in name for name in members)  # an editable finder would point at this checkout
    info = [name for name in members if name.startswith(SITE + "sparkml_tf-") and name.endswith(".dist-info/METADATA")]
    assert len(info) == 1 and b"Name: sparkml-tf" in members[info[0]]
    assert not any(name.endswith("direct_url.json") and "sparkml_tf-" in name for name in members)


def test_runtime_dependencies_in_the_rest_out(members):
    names = {name[len(SITE):].split("/")[0] for name in members if name.startswith(SITE)}
    for needed in ("tensorflow", "numpy", "pandas", "pyarrow", "mlflow", "hnswlib.cpython-{}{}".format(*sys.version_info[:2])):
        assert any(n == needed or n.startswith(needed) for n in names), needed
    for provided_or_dev in ("pyspark", "py4j", "pytest", "_pytest", "ipykernel", "venv_pack"):
        assert provided_or_dev not in names, provided_or_dev
    assert not any(name.startswith(SITE + "tensorflow/include/") for name in members)
    assert not any("/tests/" in name[len(SITE):] for name in members if name.startswith(SITE))
    assert any(name.endswith(".pyc") for name in members if name.startswith(SITE + "tensorflow/"))  # bytecode kept


def test_closure_and_key():
    closure = packing.dependency_closure()
    assert "sparkml-tf" in closure and "tensorflow" in closure and "pyspark" not in closure
    assert packing.environment_key() == packing.environment_key()
    assert packing.environment_key(compresslevel=1) != packing.environment_key(compresslevel=6)


def test_bad_output_name(tmp_path):
    with pytest.raises(SparkmlTfError) as info:
        packing.pack(str(tmp_path / "env.zip"))
    assert info.value.code == "PACK_BAD_OUTPUT"
    assert not os.listdir(tmp_path)


def test_unknown_extra_is_refused():
    # An extra whose packages are not installed here: packing would ship an environment without them.
    with pytest.raises(SparkmlTfError) as info:
        packing.dependency_closure(["petastorm"])
    assert info.value.code == "PACK_MISSING_DEPENDENCY" and "petastorm" in info.value.message


def test_cli_lists_the_distributions():
    out = subprocess.run([sys.executable, "-m", "sparkml_tf.deploy.pack", "--list"], capture_output=True, text=True, check=True).stdout
    assert "tensorflow==" in out and "sparkml-tf==" in out and "pyspark==" not in out
