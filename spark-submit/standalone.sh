#!/usr/bin/env bash
# Start a Spark standalone cluster on this machine from the pyspark wheel (a master and two
# 1-core workers), run the pipeline on it stage by stage with the packed environment, stop the cluster.
# The executors run ./env/bin/python from the archive shipped with --archives (not this venv), and
# the barrier training stage runs one task per worker, as on a real cluster. docs/running-standalone.md.
# Usage: spark-submit/standalone.sh [CONFIG] [MACROS] [--set KEY=VALUE ...]
#   ENV_ARCHIVE=path.tar.gz  use this archive (default: packed into .cache/pack, reused while the environment is unchanged)
#   SPARK_MASTER_PORT=7177   the master's port
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-conf/movielens/config.json}; MACROS=${2:-conf/movielens/macros.json}; shift $(( $# < 2 ? $# : 2 ))
PY=${PYTHON:-$(pwd)/.venv/bin/python}
SPARK_HOME=${SPARK_HOME:-$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}
export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1} SPARK_HOME
unset PYSPARK_PYTHON PYSPARK_DRIVER_PYTHON  # the --conf settings below say which Python runs where
ENV_ARCHIVE=${ENV_ARCHIVE:-$("$PY" -m sparkml_tf.deploy.pack --cache-dir .cache/pack)}
PORT=${SPARK_MASTER_PORT:-7177}; WORK=$(mktemp -d); PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$PORT" --webui-port 0 >"$WORK/master.log" 2>&1 & PIDS+=($!)
MASTER="spark://127.0.0.1:$PORT"
for i in 1 2; do
  "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --cores 1 --memory 2g --webui-port 0 \
    --work-dir "$WORK/worker$i" "$MASTER" >"$WORK/worker$i.log" 2>&1 & PIDS+=($!)
done
for _ in $(seq 120); do  # until both workers have registered with the master
  [ "$(cat "$WORK"/worker*.log | grep -c 'Successfully registered with master')" -ge 2 ] && break
  sleep 1
done
submit() {
  "$SPARK_HOME/bin/spark-submit" --master "$MASTER" --executor-memory 1g \
    --archives "$ENV_ARCHIVE#env" \
    --conf spark.pyspark.python=./env/bin/python \
    --conf spark.pyspark.driver.python="$PY" \
    "$@"
}
for stage in dataset train index predict evaluate; do
  submit jobs/$stage.py "$CONFIG" "$MACROS" --set macros.spark.master=null "$@"
done
