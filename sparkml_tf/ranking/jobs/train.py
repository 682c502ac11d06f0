"""TrainCtr job: ship the settings to N workers, train a CTR model there, log the outcome on the driver.

Light to import (no TensorFlow, no pyspark): the model stays a raw sub-config (``"eval": null``)
until :func:`sparkml_tf.train.launch.launch` builds it on the driver for the workers. The training chief writes
``<model_dir>`` (see :mod:`sparkml_tf.ranking.model_dir`); ExportCtr turns it into a serving export.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import DataError, SparkmlTfError
from sparkml_tf.io.outputs import check_location, is_complete
from sparkml_tf.train.launch import check_launcher, check_subconfigs, default_tensorboard_dir, launch, log_tensorboard, telemetry_settings, training_curves

LOGGER = logging.getLogger(__name__)


class TrainCtr(Job):
    def __init__(
        self,
        dataset_dir: str,
        model_dir: str,
        checkpoint_dir: str,
        model: dict,
        num_workers: int = 2,
        launcher: str = "spark",
        epochs: int = 10,
        batch_size: int = 1024,
        learning_rate: float = 1e-3,
        checkpoint_every_steps: int = 1000,
        patience: int = 2,
        seed: int = 0,
        name: str = "train",
        tensorboard: bool = True,
        tensorboard_dir: Optional[str] = None,
    ):
        check_subconfigs(model=model)
        check_launcher(launcher)
        if num_workers < 1 or epochs < 1 or batch_size < 1 or patience < 1:
            raise SparkmlTfError("CONFIG_BAD_VALUE", "num_workers, epochs, batch_size and patience must be at least 1")
        self.dataset_dir, self.model_dir, self.checkpoint_dir = dataset_dir, model_dir, checkpoint_dir
        self.model = dict(model)
        self.num_workers, self.launcher = int(num_workers), launcher
        self.epochs, self.batch_size, self.learning_rate = int(epochs), int(batch_size), float(learning_rate)
        self.checkpoint_every_steps, self.patience, self.seed = int(checkpoint_every_steps), int(patience), int(seed)
        self.name = name
        # Private (not settings of the output, so lineage ignores them): where the chief's TensorBoard
        # scalars (and a --profile trace) go, by default <run_dir>/tensorboard/<name> beside the checkpoints.
        self._tensorboard = bool(tensorboard)
        self._tensorboard_dir = tensorboard_dir or default_tensorboard_dir(checkpoint_dir, name)
        check_location(self.model_dir, "model_dir")
        check_location(self.checkpoint_dir, "checkpoint_dir")
        check_location(self._tensorboard_dir, "tensorboard_dir")

    objective = "best_val_auc"  # the summary key a hyper-parameter search maximizes

    def worker(self):
        """The function each training worker runs (and a search trial)."""
        from sparkml_tf.ranking.trainer import train_ctr_worker

        return train_ctr_worker

    def inputs(self) -> List[str]:
        return [self.dataset_dir]

    def outputs(self) -> List[str]:
        return [self.model_dir]

    def settings(self, force: bool = False) -> Dict[str, Any]:
        """The plain, JSON-able values the workers get."""
        return {
            "dataset_dir": self.dataset_dir,
            "model_dir": self.model_dir,
            "checkpoint_dir": self.checkpoint_dir,
            "model": self.model,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "checkpoint_every_steps": self.checkpoint_every_steps,
            "patience": self.patience,
            "seed": self.seed,
            "force": force,
        }

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        if is_complete(self.model_dir) and not ctx.force:
            LOGGER.info("%s: %s is complete, skipping (use --force to retrain)", self.name, self.model_dir)
            return {"skipped": True, "model_dir": self.model_dir}
        self._check_inputs()
        settings = {**self.settings(force=ctx.force), **telemetry_settings(ctx, self.name, self._tensorboard_dir, self._tensorboard)}
        summary = launch(ctx, self.launcher, self.num_workers, self.worker(), settings, self.name)
        if settings["tensorboard_dir"]:
            summary["tensorboard_dir"] = settings["tensorboard_dir"]
        self._track(ctx, summary)
        log_tensorboard(ctx.tracker, settings["tensorboard_dir"], self.name)
        return summary

    def _check_inputs(self) -> None:
        """Fail on the driver, before any worker starts, when the dataset job has not run."""
        from sparkml_tf.io.filesystems import exists, resolve
        from sparkml_tf.ranking.layout import CtrDataset

        layout = CtrDataset(self.dataset_dir)
        for path, code in ((layout.stats, "DATA_MISSING_STATS"), (layout.feature_index, "DATA_NOT_FOUND")):
            filesystem, local = resolve(path)
            if not exists(filesystem, local):
                relative = path[len(layout.root) + 1 :]
                raise DataError(code, f"no {relative} in the dataset directory; run {layout.job} first, or fix dataset_dir", path)

    def _track(self, ctx: RunContext, summary: Dict[str, Any]) -> None:
        tracker = ctx.tracker
        params = {k: v for k, v in self.settings().items() if k not in ("force", "model")}
        params.update({"model": self.model.get("type"), "num_workers": self.num_workers, "launcher": self.launcher})
        params.update({f"model.{k}": v for k, v in self.model.items() if k not in ("type", "eval")})
        tracker.log_params({f"{self.name}.{k}": v for k, v in params.items()})
        history = summary.get("history", [])
        for entry in history:
            metrics = {"loss": entry["loss"], "val_auc": entry["val_auc"], "val_logloss": entry["val_logloss"], "epoch_seconds": entry["seconds"]}
            tracker.log_metrics(metrics, step=entry["epoch"])
        tracker.log_metrics({"best_val_auc": summary["best_val_auc"], "train_steps": summary["steps"], "epochs_run": summary["epochs_run"]})
        if history:
            tracker.log_dict(history, "ctr/history.json")
            tracker.log_figure(training_curves(history, CURVES), "plots/training_curves.png")


CURVES = (("loss", "training loss", "tab:blue"), ("val_auc", "validation AUC", "tab:green"), ("val_logloss", "validation log loss", "tab:red"))
