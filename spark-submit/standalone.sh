#!/usr/bin/env bash
# Start a Spark standalone cluster on this machine from the pyspark wheel (a master and two
# 1-core workers), run the pipeline on it stage by stage, and stop the cluster.
# The barrier training stage then runs one task per worker, as on a real cluster.
# Usage: spark-submit/standalone.sh [CONFIG] [MACROS] [--set KEY=VALUE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-conf/movielens/config.json}; MACROS=${2:-conf/movielens/macros.json}; shift $(( $# < 2 ? $# : 2 ))
PY=${PYTHON:-$(pwd)/.venv/bin/python}
SPARK_HOME=${SPARK_HOME:-$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}
export PYSPARK_PYTHON=$PY PYSPARK_DRIVER_PYTHON=$PY SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1} SPARK_HOME
PORT=${SPARK_MASTER_PORT:-7177}; WORK=$(mktemp -d); PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$PORT" --webui-port 0 >"$WORK/master.log" 2>&1 & PIDS+=($!)
sleep 3
for i in 1 2; do
  "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker --cores 1 --memory 2g --webui-port 0 \
    --work-dir "$WORK/worker$i" "spark://127.0.0.1:$PORT" >"$WORK/worker$i.log" 2>&1 & PIDS+=($!)
done
sleep 5
MASTER="spark://127.0.0.1:$PORT"
submit() { "$SPARK_HOME/bin/spark-submit" --master "$MASTER" --executor-memory 1g "$@"; }
for stage in dataset train index predict evaluate; do
  submit jobs/$stage.py "$CONFIG" "$MACROS" "$@"
done
