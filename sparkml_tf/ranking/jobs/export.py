"""ExportCtr job: turn TrainCtr's ``<model_dir>`` into the next serving version under ``export_dir``.

Runs on the driver (TensorFlow is imported in ``run``). The net is rebuilt from the model's
spec.json and restored from its best checkpoint; the export holds the feature index as an asset
and TF Serving warm-up requests made of validation rows (when ``dataset_dir`` is given) or random
valid ids. Skips when ``export_dir`` already holds a version exported from the same weights (the
model's checkpoint_id is in each version's metadata.json), unless forced.

The tracker gets the version as files (``serving_model``, TF Serving's layout) and as an MLflow model
(``ctr_model``: a ``pyfunc`` with the signature's inputs ``deep_ids``, ``wide_ids``, ``dense`` and an
input example of five warm-up rows), registered as ``registered_model_name`` when one is given.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import SparkmlTfError
from sparkml_tf.io.outputs import check_location

LOGGER = logging.getLogger(__name__)
MODEL_EXAMPLE_ROWS = 5  # the MLflow model's input example


class ExportCtr(Job):
    def __init__(
        self,
        model_dir: str,
        export_dir: str,
        dataset_dir: Optional[str] = None,
        warmup_records: int = 100,
        seed: int = 0,
        name: str = "export",
        registered_model_name: Optional[str] = None,
    ):
        if not 0 <= warmup_records <= 1000:
            raise SparkmlTfError(
                "CONFIG_BAD_VALUE", f"warmup_records must be in [0, 1000] (TF Serving reads at most 1000), got {warmup_records}", "warmup_records"
            )
        self.model_dir, self.export_dir, self.dataset_dir = model_dir, export_dir, dataset_dir
        self.warmup_records, self.seed = int(warmup_records), int(seed)
        self.name = name
        self.registered_model_name = registered_model_name or None
        check_location(self.export_dir, "export_dir")

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        from sparkml_tf.ranking.export import export_ctr_model
        from sparkml_tf.ranking.model_dir import load_model_dir, read_json
        from sparkml_tf.serving.export import find_export
        from sparkml_tf.train.launch import build_specs

        checkpoint_id = read_json(self.model_dir, "model.json")["checkpoint_id"]
        existing = find_export(self.export_dir, checkpoint_id)
        if existing and not ctx.force:
            LOGGER.info("%s: %s was exported from checkpoint %s already, skipping (use --force to export again)", self.name, existing, checkpoint_id)
            return {"skipped": True, "export_path": existing, "checkpoint_id": checkpoint_id}
        spec = build_specs({"model": read_json(self.model_dir, "spec.json")})["model"]
        loaded = load_model_dir(self.model_dir, spec)
        features = self._warmup_features(loaded.feature_index) if self.warmup_records else None
        path = export_ctr_model(
            loaded.spec,
            loaded.net,
            loaded.feature_index,
            self.export_dir,
            warmup_records=self.warmup_records,
            history=loaded.history,
            warmup_features=features,
            metadata={"checkpoint_id": checkpoint_id, "model_dir": self.model_dir, "best_val_auc": loaded.info.get("best_val_auc")},
        )
        version = int(path.rstrip("/").rsplit("/", 1)[-1])
        ctx.tracker.log_params({f"{self.name}.export_dir": self.export_dir, f"{self.name}.warmup_records": self.warmup_records})
        ctx.tracker.log_metrics({"model_version": version})
        ctx.tracker.log_artifact(path, "serving_model")
        from sparkml_tf.ranking.export import random_features

        example = features if features is not None else random_features(loaded.feature_index, MODEL_EXAMPLE_ROWS, self.seed)
        ctx.tracker.log_model(path, "ctr_model", {k: v[:MODEL_EXAMPLE_ROWS] for k, v in example.items()}, self.registered_model_name)
        return {"skipped": False, "export_path": path, "model_version": version, "checkpoint_id": checkpoint_id}

    def _warmup_features(self, feature_index) -> Dict[str, Any]:
        """Validation rows (a shuffled sample) when a dataset is given, else random valid ids."""
        from sparkml_tf.ranking.export import random_features

        if not self.dataset_dir:
            return random_features(feature_index, self.warmup_records, self.seed)
        from sparkml_tf.ranking.trainer import sample_examples

        return sample_examples(self.dataset_dir, "validation", feature_index.sizes(), self.warmup_records, self.seed)
