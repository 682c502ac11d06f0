#!/usr/bin/env bash
# Pack this project's environment for Spark executors: the interpreter, sparkml_tf and its runtime
# dependencies in one .tar.gz, without pyspark (the cluster's Spark provides it). See docs/running-standalone.md.
# Usage: spark-submit/pack_env.sh [ARCHIVE] [--extra NAME ...] [--level N]     (default sparkml_tf_env.tar.gz)
# Then:  spark-submit --archives ARCHIVE#env --conf spark.pyspark.python=./env/bin/python ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=sparkml_tf_env.tar.gz
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUT=$1; shift; fi
exec "$PY" -m sparkml_tf.deploy.pack --output "$OUT" "$@"
