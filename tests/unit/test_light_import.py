"""``import sparkml_tf`` and ``sparkml-tf validate`` must not pay for TensorFlow or pyspark."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAVY = ("tensorflow", "keras", "pyspark", "mlflow", "hnswlib")


def heavy_modules_after(code: str):
    probe = code + f"\nimport sys, json; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_is_light():
    assert heavy_modules_after(
        "import sparkml_tf, sparkml_tf.engine, sparkml_tf.retrieval, sparkml_tf.ranking, sparkml_tf.config, sparkml_tf.spark, sparkml_tf.tracking"
    ) == []


def test_validating_every_shipped_config_is_light():
    code = "\n".join(
        [
            "import glob",
            "from sparkml_tf.config import resolve",
            "for c in sorted(glob.glob('conf/*/*config*.json')):",
            "    resolve(c, c.replace('config', 'macros'))",
        ]
    )
    assert heavy_modules_after(code) == []
