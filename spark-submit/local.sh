#!/usr/bin/env bash
# Run a pipeline through spark-submit on this machine, one spark-submit per stage, as a
# scheduler would: the commands come from `sparkml-tf submit --target conf/targets/local.json`
# (master local[2], this venv's Python). See docs/running-local.md.
# Usage: spark-submit/local.sh [CONFIG] [MACROS] [--set KEY=VALUE ...] [--job NAME ...] [--force] [--dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-conf/movielens/config.json}; MACROS=${2:-conf/movielens/macros.json}; shift $(( $# < 2 ? $# : 2 ))
PY=${PYTHON:-$(pwd)/.venv/bin/python}
export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}
exec "$PY" -m sparkml_tf.cli submit "$CONFIG" "$MACROS" --target conf/targets/local.json "$@"
