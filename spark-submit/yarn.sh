#!/usr/bin/env bash
# Run a pipeline on YARN, one spark-submit per stage, each with its own resources.
#
# The executors need the same Python environment as the driver. Pack the venv once with
# venv-pack (pip install venv-pack; venv-pack -o sparkml_tf_env.tar.gz) and ship it with
# --archives; YARN unpacks it as ./env in every container.
#
# Paths in the macros (paths.run_dir, dataset.path) must be on shared storage (hdfs://, s3://):
#   spark-submit/yarn.sh conf/movielens/config.json conf/movielens/macros.json \
#     --set paths.run_dir=hdfs:///user/me/runs/ml --set dataset.path=hdfs:///data/ml-20m/ratings.csv \
#     --set dataset.format=movielens-csv --set spark.master=null
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=$1; MACROS=$2; shift 2
ENV_ARCHIVE=${ENV_ARCHIVE:-sparkml_tf_env.tar.gz}
QUEUE=${QUEUE:-default}
WORKERS=${WORKERS:-4}
export PYSPARK_PYTHON=./env/bin/python
common=(--master yarn --deploy-mode cluster --queue "$QUEUE" --archives "$ENV_ARCHIVE#env"
        --conf spark.yarn.appMasterEnv.PYSPARK_PYTHON=./env/bin/python
        --files "$CONFIG,$MACROS")
cfg=$(basename "$CONFIG"); mac=$(basename "$MACROS")
spark-submit "${common[@]}" --num-executors 8 --executor-cores 4 --executor-memory 8g \
  jobs/dataset.py "$cfg" "$mac" "$@"
# Barrier stage: exactly one task per executor, all running at once.
spark-submit "${common[@]}" --num-executors "$WORKERS" --executor-cores 4 --executor-memory 16g \
  --conf spark.task.cpus=4 --conf spark.dynamicAllocation.enabled=false \
  jobs/train.py "$cfg" "$mac" --set train.num_workers="$WORKERS" "$@"
spark-submit "${common[@]}" --num-executors 1 --executor-memory 8g jobs/index.py "$cfg" "$mac" "$@"
spark-submit "${common[@]}" --num-executors 8 --executor-cores 4 jobs/predict.py "$cfg" "$mac" "$@"
spark-submit "${common[@]}" --num-executors 8 --executor-cores 4 jobs/evaluate.py "$cfg" "$mac" "$@"
