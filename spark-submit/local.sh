#!/usr/bin/env bash
# Run a pipeline through spark-submit on this machine, one spark-submit per stage, as a
# scheduler would. Usage: spark-submit/local.sh [CONFIG] [MACROS] [--set KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-conf/movielens/config.json}; MACROS=${2:-conf/movielens/macros.json}; shift $(( $# < 2 ? $# : 2 ))
PY=${PYTHON:-$(pwd)/.venv/bin/python}
SPARK_HOME=${SPARK_HOME:-$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}
export PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}
submit() { "$SPARK_HOME/bin/spark-submit" --master "local[2]" "$@"; }
submit --driver-memory 2g jobs/dataset.py "$CONFIG" "$MACROS" "$@"
submit --driver-memory 2g jobs/train.py "$CONFIG" "$MACROS" "$@"
submit jobs/index.py "$CONFIG" "$MACROS" "$@"
submit jobs/predict.py "$CONFIG" "$MACROS" "$@"
submit jobs/evaluate.py "$CONFIG" "$MACROS" "$@"
