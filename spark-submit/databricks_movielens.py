# Databricks notebook source
# MAGIC %md
# MAGIC # sparkml_tf on Databricks: the MovieLens retrieval pipeline
# MAGIC
# MAGIC Runs the same config as `make demo`, on the cluster's existing Spark session. Use a
# MAGIC cluster with the ML runtime (TensorFlow installed) and at least 2 workers for the barrier
# MAGIC training stage. Outputs go to a Unity Catalog volume, a path both Spark and the Python
# MAGIC file APIs (pyarrow, hnswlib) understand.

# COMMAND ----------

# MAGIC %pip install -e ..

# COMMAND ----------

import os

# The notebook sits in spark-submit/ of the repo checked out as a Databricks Git folder.

# COMMAND ----------

dbutils.widgets.text("conf_dir", os.path.abspath("../conf/movielens"))  # noqa: F821
dbutils.widgets.text("run_dir", "/Volumes/main/default/sparkml_tf/runs/movielens")  # noqa: F821
dbutils.widgets.text("dataset_path", "")  # noqa: F821
dbutils.widgets.text("dataset_format", "generated")  # noqa: F821
dbutils.widgets.text("num_workers", "2")  # noqa: F821

# COMMAND ----------

from sparkml_tf.config import resolve

conf_dir = dbutils.widgets.get("conf_dir")  # noqa: F821
overrides = [
    f"paths.run_dir={dbutils.widgets.get('run_dir')}",  # noqa: F821
    f"dataset.path={dbutils.widgets.get('dataset_path')}",  # noqa: F821
    f"dataset.format={dbutils.widgets.get('dataset_format')}",  # noqa: F821
    f"train.num_workers={dbutils.widgets.get('num_workers')}",  # noqa: F821
    "mlflow.tracking_uri=databricks",
    "mlflow.experiment=/Shared/sparkml_tf_movielens",
]
# Validation runs on the driver before any Spark job: every problem is listed with its key path.
resolved = resolve(os.path.join(conf_dir, "config.json"), os.path.join(conf_dir, "macros.json"), overrides)
pipeline = resolved.build()

# COMMAND ----------

results = pipeline.run()
display(spark.createDataFrame([{"metric": k, "value": float(v)} for k, v in results["evaluate"].items()]))  # noqa: F821
