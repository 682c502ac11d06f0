#!/usr/bin/env bash
# Run a pipeline on YARN, one spark-submit per stage, each with its own resources: the commands
# come from `sparkml-tf submit --target conf/targets/yarn-cluster.json` (DEPLOY_MODE=client:
# conf/targets/yarn-client.json, the driver on this machine). See docs/running-yarn.md.
#
# The executors need the same Python environment as the driver. Pack it once
# (python -m sparkml_tf.deploy.pack -o sparkml_tf_env.tar.gz); it is shipped with --archives and
# YARN unpacks it as ./env in every container. ENV_ARCHIVE=PATH (or hdfs://...) ships another one.
#
# Paths in the macros (paths.run_dir, dataset.path) must be on shared storage (hdfs://, s3a://),
# and MLflow on a server (a sqlite file in a container is gone with the container):
#   spark-submit/yarn.sh conf/movielens/config.json conf/movielens/macros.json \
#     --set paths.run_dir=hdfs:///user/me/runs/ml --set dataset.path=hdfs:///data/ml-20m/ratings.csv \
#     --set dataset.format=movielens-csv --set mlflow.tracking_uri=http://mlflow.example.com:5000
# Other variables: WORKERS=N (train.num_workers: training executors), QUEUE=name (YARN queue),
# DRY_RUN=1 (print the commands, run nothing). Other arguments go to sparkml-tf submit
# (--set KEY=VALUE, --job NAME, --force, --conf KEY=VALUE).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=$1; MACROS=$2; shift 2
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=$(pwd)/.venv/bin/python; else PY=python3; fi
args=(submit "$CONFIG" "$MACROS" --target "conf/targets/yarn-${DEPLOY_MODE:-cluster}.json")
if [ -n "${ENV_ARCHIVE:-}" ]; then args+=(--env-archive "$ENV_ARCHIVE"); fi
if [ -n "${WORKERS:-}" ]; then args+=(--set "train.num_workers=$WORKERS"); fi
if [ -n "${QUEUE:-}" ]; then args+=(--conf "spark.yarn.queue=$QUEUE"); fi
if [ -n "${DRY_RUN:-}" ]; then args+=(--dry-run); fi
exec "$PY" -m sparkml_tf.cli "${args[@]}" "$@"
