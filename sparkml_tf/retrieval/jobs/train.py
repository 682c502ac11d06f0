"""Train job: ship the settings to N workers, train there, log the outcome to MLflow on the driver.

Light to import (no TensorFlow, no pyspark): the model and loss stay raw sub-configs
(``"eval": null``) in the config; :func:`sparkml_tf.train.launch.launch` builds them on the driver
(under the config's import allow-list) and ships the light spec objects to the workers.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from sparkml_tf.engine.base import Job, RunContext
from sparkml_tf.errors import Checks
from sparkml_tf.io.outputs import check_location, is_complete
from sparkml_tf.train.launch import (
    CURVES,
    check_launcher,
    check_subconfigs,
    default_tensorboard_dir,
    launch,
    log_tensorboard,
    telemetry_settings,
    training_curves,
)
from sparkml_tf.train.schedule import check_settings

LOGGER = logging.getLogger(__name__)


class Train(Job):
    """Train a retrieval model on N barrier workers; export it and its item embeddings.

    The schedule is sized by the data unless set (:mod:`sparkml_tf.train.schedule`): leave
    ``epochs``, ``batch_size``, ``max_steps``, ... unset and training runs a step budget with a floor,
    validation every K steps, early stopping counted in evaluations, warm-up and cosine decay.
    ``epochs`` (with ``patience`` in epochs) gives the fixed epoch schedule of earlier versions.
    """

    def __init__(
        self,
        dataset_dir: str,
        export_dir: str,
        embeddings_dir: str,
        checkpoint_dir: str,
        model: dict,
        loss: Optional[dict] = None,
        num_workers: int = 2,
        launcher: str = "spark",
        epochs: Optional[int] = None,
        batch_size: Optional[int] = None,
        learning_rate: float = 1e-3,
        checkpoint_every_steps: int = 200,
        patience: Optional[int] = None,
        max_steps: Optional[int] = None,
        min_steps: Optional[int] = None,
        eval_every_steps: Optional[int] = None,
        warmup_steps: Optional[int] = None,
        lr_decay: Optional[str] = None,
        seed: int = 0,
        name: str = "train",
        registered_model_name: Optional[str] = None,
        tensorboard: bool = True,
        tensorboard_dir: Optional[str] = None,
    ):
        checks = Checks()
        with checks.at("model"):
            check_subconfigs(model=model, loss=loss)
        with checks.at("launcher"):
            check_launcher(launcher)
        checks.require(
            not isinstance(num_workers, bool) and isinstance(num_workers, int) and num_workers >= 1,
            "num_workers", f"num_workers must be a whole number of at least 1, got {num_workers!r}",
        )
        self.schedule = {
            "epochs": epochs, "batch_size": batch_size, "patience": patience, "max_steps": max_steps, "min_steps": min_steps,
            "eval_every_steps": eval_every_steps, "warmup_steps": warmup_steps, "lr_decay": lr_decay,
        }
        for key, value in self.schedule.items():
            with checks.at(key):
                check_settings(**{key: value})
        if epochs is not None and max_steps is not None:
            with checks.at("epochs"):
                check_settings(epochs=epochs, max_steps=max_steps)
        checks.require(isinstance(learning_rate, (int, float)) and learning_rate > 0, "learning_rate", f"learning_rate must be positive, got {learning_rate!r}")
        checks.done()
        self.dataset_dir, self.export_dir, self.embeddings_dir, self.checkpoint_dir = dataset_dir, export_dir, embeddings_dir, checkpoint_dir
        self.model, self.loss = dict(model), (dict(loss) if loss else None)
        self.num_workers, self.launcher = int(num_workers), launcher
        self.learning_rate = float(learning_rate)
        self.checkpoint_every_steps, self.seed = int(checkpoint_every_steps), int(seed)
        self.name = name
        self._registered_model_name = registered_model_name or None  # private: not a setting of the output (lineage)
        # Private (not settings of the output, so lineage ignores them): where the chief's TensorBoard
        # scalars (and a --profile trace) go, by default <run_dir>/tensorboard/<name> beside the checkpoints.
        self._tensorboard = bool(tensorboard)
        self._tensorboard_dir = tensorboard_dir or default_tensorboard_dir(checkpoint_dir, name)
        check_location(self.export_dir, "export_dir")
        check_location(self.embeddings_dir, "embeddings_dir")
        check_location(self.checkpoint_dir, "checkpoint_dir")
        check_location(self._tensorboard_dir, "tensorboard_dir")

    objective = "best_ndcg"  # the summary key a hyper-parameter search maximizes (validation NDCG@100)

    def _items_example(self, rows: int = 5, length: int = 8):
        """An input example for the logged model: ``items`` int64 [rows, length] of valid ids, padded with -1."""
        import numpy as np

        from sparkml_tf.retrieval.layout import RetrievalDataset

        num_items = max(int(RetrievalDataset(self.dataset_dir).read_stats().get("num_items") or 1), 1)
        items = np.random.default_rng(self.seed).integers(0, num_items, size=(rows, length)).astype(np.int64)
        items[1:, length // 2 :] = -1  # users with fewer items than the longest
        return items

    def worker(self):
        """The function each training worker runs (and a search trial)."""
        from sparkml_tf.retrieval.trainer import train_worker

        return train_worker

    def inputs(self) -> List[str]:
        return [self.dataset_dir]

    def outputs(self) -> List[str]:
        return [self.embeddings_dir]

    def settings(self, force: bool = False) -> Dict[str, Any]:
        """The plain, JSON-able values the workers get."""
        return {
            "dataset_dir": self.dataset_dir,
            "export_dir": self.export_dir,
            "embeddings_dir": self.embeddings_dir,
            "checkpoint_dir": self.checkpoint_dir,
            "model": self.model,
            "loss": self.loss,
            **self.schedule,
            "learning_rate": self.learning_rate,
            "checkpoint_every_steps": self.checkpoint_every_steps,
            "seed": self.seed,
            "force": force,
        }

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        if is_complete(self.embeddings_dir) and not ctx.force:
            LOGGER.info("%s: %s is complete, skipping (use --force to retrain)", self.name, self.embeddings_dir)
            return {"skipped": True, "embeddings_dir": self.embeddings_dir}
        settings = {**self.settings(force=ctx.force), **telemetry_settings(ctx, self.name, self._tensorboard_dir, self._tensorboard)}
        summary = launch(ctx, self.launcher, self.num_workers, self.worker(), settings, self.name)
        if settings["tensorboard_dir"]:
            summary["tensorboard_dir"] = settings["tensorboard_dir"]
        self._track(ctx, summary)
        log_tensorboard(ctx.tracker, settings["tensorboard_dir"], self.name)
        return summary

    def _track(self, ctx: RunContext, summary: Dict[str, Any]) -> None:
        tracker = ctx.tracker
        params = {k: v for k, v in self.settings().items() if k not in ("force",)}
        params.update({"model": self.model.get("type"), "loss": (self.loss or {}).get("type"), "num_workers": self.num_workers, "launcher": self.launcher})
        params.update({f"schedule.{k}": v for k, v in summary.get("schedule", {}).items()})  # what the data-sized schedule chose
        tracker.log_params({f"{self.name}.{k}": v for k, v in params.items()})
        history = summary.get("history", [])
        for entry in history:  # a closed-form fit (Ease) has no loss: one entry per L2 value tried
            metrics = {"loss": entry.get("loss"), "val_ndcg@100": entry["val_ndcg@100"], "epoch_seconds": entry["seconds"], "l2": entry.get("l2")}
            tracker.log_metrics({k: v for k, v in metrics.items() if v is not None}, step=entry["epoch"])
        tracker.log_metrics({"best_val_ndcg@100": summary["best_ndcg"], "train_steps": summary["steps"], "epochs_run": summary["epochs_run"],
                             "resumed_from_step": summary.get("resumed_from_step", 0)})
        if summary.get("export_path"):
            tracker.log_artifact(summary["export_path"], "model")
            tracker.log_model(summary["export_path"], "retrieval_model", {"items": self._items_example()}, self._registered_model_name)
        if history:
            panels = CURVES if "loss" in history[0] else CURVES[1:]
            tracker.log_figure(training_curves(history, panels), "plots/training_curves.png")
