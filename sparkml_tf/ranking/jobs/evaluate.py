"""EvaluateCtr: AUC and log loss of the exported CTR model and of a logistic-regression baseline.

Both are measured on the same encoded split of the dataset (``<dataset_dir>/encoded``); the
baseline is trained in the same job on that dataset's ``train`` split. Metric definitions:
:mod:`sparkml_tf.metrics.classification` and docs/scoring.md.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Dict, List, Sequence, Tuple

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.engine.results import previous_metrics, save_metrics
from sparkml_tf.errors import ConfigError, DataError
from sparkml_tf.io.outputs import check_location

LOGGER = logging.getLogger(__name__)
# Baseline name -> the encoded id column its one-hot features come from: every field's id alone
# (the classic Criteo baseline), or every field plus the declared crosses (the wide part alone).
BASELINES = {"logistic_regression": "deep_ids", "logistic_regression_crosses": "wide_ids"}
SPLITS = ("test", "validation")
ENCODED_COLUMNS = ("split", "label", "deep_ids", "wide_ids", "dense")


class EvaluateCtr(Job):
    """Write ``output_path`` (metrics.json), a flat JSON object::

        {"auc": ..., "logloss": ..., "num_examples": ..., "positive_rate": ...,
         "logistic_regression/auc": ..., "logistic_regression/logloss": ...,
         "logistic_regression/num_examples": ..., "logistic_regression/num_train_examples": ...}

    The model is the highest version under ``export_dir``, run on executors (``batch_size`` rows
    per call). ``logistic_regression``: Spark ML's binomial LogisticRegression over the one-hot
    vector of each row's ``deep_ids`` (one id per field, numeric fields bucketized; size
    ``deep_size``); ``logistic_regression_crosses``: the same over ``wide_ids`` (the fields and
    the declared crosses, what the model's wide part sees; size ``wide_size``). L2 penalty
    ``lr_reg_param`` on the unstandardised weights, at most ``lr_max_iter`` iterations. An existing ``output_path`` is
    returned as it is unless ``--force``. Also logs the metrics and the file to the tracker.
    """

    def __init__(
        self,
        dataset_dir: str,
        export_dir: str,
        output_path: str,
        split: str = "test",
        baselines: Sequence[str] = ("logistic_regression",),
        batch_size: int = 4096,
        lr_reg_param: float = 1e-4,
        lr_max_iter: int = 100,
        name: str = "evaluate",
    ):
        if split not in SPLITS:
            raise ConfigError("CONFIG_BAD_VALUE", f"split must be one of {', '.join(SPLITS)}, got {split!r}", "split")
        unknown = sorted(set(baselines) - set(BASELINES))
        if unknown:
            raise ConfigError("CONFIG_BAD_VALUE", f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}", "baselines")
        if batch_size <= 0 or lr_max_iter <= 0 or lr_reg_param < 0:
            raise ConfigError(
                "CONFIG_BAD_VALUE", f"batch_size and lr_max_iter must be positive and lr_reg_param >= 0, got {batch_size}, {lr_max_iter}, {lr_reg_param}"
            )
        self.dataset_dir = dataset_dir
        self.export_dir = export_dir
        self.output_path = output_path
        self.split = split
        self.baselines = list(baselines)
        self.batch_size = int(batch_size)
        self.lr_reg_param = float(lr_reg_param)
        self.lr_max_iter = int(lr_max_iter)
        self.name = name
        check_location(self.output_path, "output_path")

    def inputs(self) -> List[str]:
        return [self.dataset_dir, self.export_dir]

    def outputs(self) -> List[str]:
        return [self.output_path]

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        existing = previous_metrics(self.output_path, ctx.force, self.name)
        if existing is not None:
            return existing
        from sparkml_tf.serving.export import latest_version

        spark = ctx.spark
        model_path = latest_version(self.export_dir)
        encoded, sizes = self._read_encoded(spark, model_path)
        ctx.describe(f"{self.name}: score the {self.split} split with {model_path}")
        metrics = self._model_metrics(encoded, model_path)
        for baseline in self.baselines:
            ctx.describe(f"{self.name}: {baseline} baseline")
            metrics.update({f"{baseline}/{key}": value for key, value in self._logistic_regression(encoded, BASELINES[baseline], sizes).items()})
        ctx.tracker.log_params(
            {
                f"{self.name}.split": self.split,
                f"{self.name}.model_path": model_path,
                f"{self.name}.baselines": self.baselines,
                f"{self.name}.lr_reg_param": self.lr_reg_param,
            }
        )
        save_metrics(ctx, self.output_path, metrics)
        return metrics

    def _read_encoded(self, spark, model_path: str):
        """``(encoded dataset, {"deep_ids": deep_size, "wide_ids": wide_size})``, after checking that the dataset's feature index is the
        one the model was exported with."""
        from sparkml_tf.ranking.features.feature_index import FeatureIndex
        from sparkml_tf.ranking.layout import CtrDataset, export_feature_index

        layout = CtrDataset(self.dataset_dir)
        path = layout.encoded
        try:
            df = spark.read.parquet(path)
        except Exception as e:  # AnalysisException: missing or not Parquet
            raise DataError(
                "DATA_NOT_FOUND",
                f"cannot read the encoded dataset ({type(e).__name__}: {str(e).splitlines()[0]}); run the BuildCtrDataset job first or fix dataset_dir",
                path,
            ) from e
        missing = sorted(set(ENCODED_COLUMNS) - set(df.columns))
        if missing:
            raise DataError("DATA_SCHEMA_MISMATCH", f"the encoded dataset lacks column(s) {missing} (have {df.columns}); rebuild it with BuildCtrDataset", path)
        model_index = FeatureIndex.load(export_feature_index(model_path))
        dataset_index = FeatureIndex.load(layout.feature_index)
        if model_index.version != dataset_index.version:
            raise DataError(
                "DATA_FEATURE_INDEX_MISMATCH",
                f"the model was exported with feature index {model_index.version} but the dataset is encoded with {dataset_index.version}, "
                "so ids mean different things; evaluate a model trained on this dataset, or rebuild the dataset",
                path,
            )
        return df, {"deep_ids": dataset_index.deep_size, "wide_ids": dataset_index.wide_size}

    def _split(self, encoded, split: str):
        from pyspark.sql import functions as F

        return encoded.where(F.col("split") == split)

    def _model_metrics(self, encoded, model_path: str) -> Dict[str, Any]:
        from sparkml_tf.ranking.score_remote import make_encoded_score_fn

        # Plain values only cross to executors; a fresh key keeps per-worker model caches honest.
        fn = make_encoded_score_fn(uuid.uuid4().hex, str(model_path), self.batch_size)
        rows = self._split(encoded, self.split).select("label", "deep_ids", "wide_ids", "dense")
        return self._metrics(rows.mapInArrow(fn, "label double, probability double"), "the model")

    def _logistic_regression(self, encoded, column: str, sizes: Dict[str, int]) -> Dict[str, Any]:
        from pyspark.ml.classification import LogisticRegression
        from pyspark.ml.functions import vector_to_array
        from pyspark.ml.linalg import VectorUDT
        from pyspark.sql import functions as F

        from sparkml_tf.ranking.score_remote import one_hot

        size = int(sizes[column])
        features = F.udf(lambda ids: one_hot(ids, size), VectorUDT())  # built on executors
        frame = lambda split: self._split(encoded, split).select(F.col("label").cast("double").alias("label"), features(column).alias("features"))  # noqa: E731
        train = frame("train").cache()
        try:
            num_train = train.count()
            if num_train == 0:
                raise DataError(
                    "DATA_MISSING_SPLIT",
                    "the encoded dataset has no 'train' rows to fit the logistic_regression baseline on; rebuild the dataset, or drop the baseline",
                    f"{self.dataset_dir}/encoded",
                )
            lr = LogisticRegression(family="binomial", regParam=self.lr_reg_param, elasticNetParam=0.0, maxIter=self.lr_max_iter, standardization=False)
            model = lr.fit(train)
        finally:
            train.unpersist()
        scored = model.transform(frame(self.split)).select("label", vector_to_array("probability")[1].alias("probability"))
        metrics = self._metrics(scored, "the logistic_regression baseline")
        del metrics["positive_rate"]  # the model's, same split
        metrics["num_train_examples"] = int(num_train)
        return metrics

    def _metrics(self, scored, what: str) -> Dict[str, Any]:
        """AUC and log loss of (label, probability) rows, gathered on the driver (16 bytes a row)."""
        from sparkml_tf.metrics.classification import binary_metrics
        from sparkml_tf.spark.arrow import collect_arrow

        labels, probabilities = _label_probability(collect_arrow(scored))
        metrics = binary_metrics(labels, probabilities)
        if metrics["num_examples"] == 0:
            raise DataError(
                "DATA_MISSING_SPLIT",
                f"the encoded dataset has no '{self.split}' rows to evaluate {what} on; rebuild the dataset with that split, or pick another split",
                f"{self.dataset_dir}/encoded",
            )
        if not 0 < metrics["positive_rate"] < 1:
            raise DataError(
                "DATA_ONE_CLASS",
                f"every '{self.split}' row has label {labels[0]:g}, so AUC is undefined; evaluate on a split with both clicks and non-clicks",
                f"{self.dataset_dir}/encoded",
            )
        return metrics


def _label_probability(table) -> Tuple[Any, Any]:
    import numpy as np

    return (
        table.column("label").to_numpy().astype(np.float64),
        table.column("probability").to_numpy().astype(np.float64),
    )
