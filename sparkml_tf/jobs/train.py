"""Train job: ship the settings to N workers, train there, log the outcome to MLflow on the driver.

Light to import (no TensorFlow, no pyspark): the model and loss stay raw sub-configs
(``"eval": null``) until ``sparkml_tf.train.loop`` builds them on each worker.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from sparkml_tf.errors import SparkmlTfError
from sparkml_tf.jobs.base import Job, RunContext
from sparkml_tf.jobs.outputs import is_complete

LOGGER = logging.getLogger(__name__)
LAUNCHERS = ("local", "spark", "distributor")


class Train(Job):
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
        epochs: int = 10,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        checkpoint_every_steps: int = 200,
        patience: int = 3,
        seed: int = 0,
        name: str = "train",
    ):
        check_subconfigs(model=model, loss=loss)
        check_launcher(launcher)
        if num_workers < 1 or epochs < 1 or batch_size < 1:
            raise SparkmlTfError("CONFIG_BAD_VALUE", "num_workers, epochs and batch_size must be at least 1")
        self.dataset_dir, self.export_dir, self.embeddings_dir, self.checkpoint_dir = dataset_dir, export_dir, embeddings_dir, checkpoint_dir
        self.model, self.loss = dict(model), (dict(loss) if loss else None)
        self.num_workers, self.launcher = int(num_workers), launcher
        self.epochs, self.batch_size, self.learning_rate = int(epochs), int(batch_size), float(learning_rate)
        self.checkpoint_every_steps, self.patience, self.seed = int(checkpoint_every_steps), int(patience), int(seed)
        self.name = name

    def settings(self, force: bool = False) -> Dict[str, Any]:
        """The plain, JSON-able values the workers get."""
        return {
            "dataset_dir": self.dataset_dir,
            "export_dir": self.export_dir,
            "embeddings_dir": self.embeddings_dir,
            "checkpoint_dir": self.checkpoint_dir,
            "model": self.model,
            "loss": self.loss,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "checkpoint_every_steps": self.checkpoint_every_steps,
            "patience": self.patience,
            "seed": self.seed,
            "force": force,
        }

    def run(self, ctx: RunContext) -> Dict[str, Any]:
        if is_complete(self.embeddings_dir) and not ctx.force:
            LOGGER.info("%s: %s is complete, skipping (use --force to retrain)", self.name, self.embeddings_dir)
            return {"skipped": True, "embeddings_dir": self.embeddings_dir}
        from sparkml_tf.train.loop import train_worker

        summary = launch(ctx, self.launcher, self.num_workers, train_worker, self.settings(force=ctx.force), self.name)
        self._track(ctx, summary)
        return summary

    def _track(self, ctx: RunContext, summary: Dict[str, Any]) -> None:
        tracker = ctx.tracker
        params = {k: v for k, v in self.settings().items() if k not in ("force",)}
        params.update({"model": self.model.get("type"), "loss": (self.loss or {}).get("type"), "num_workers": self.num_workers, "launcher": self.launcher})
        tracker.log_params({f"{self.name}.{k}": v for k, v in params.items()})
        history = summary.get("history", [])
        for entry in history:
            tracker.log_metrics({"loss": entry["loss"], "val_ndcg@100": entry["val_ndcg@100"], "epoch_seconds": entry["seconds"]}, step=entry["epoch"])
        tracker.log_metrics({"best_val_ndcg@100": summary["best_ndcg"], "train_steps": summary["steps"], "epochs_run": summary["epochs_run"],
                             "resumed_from_step": summary.get("resumed_from_step", 0)})
        if summary.get("export_path"):
            tracker.log_artifact(summary["export_path"], "model")
        if history:
            tracker.log_figure(training_curves(history), "plots/training_curves.png")


def check_subconfigs(**subconfigs: Any) -> None:
    """Model and loss specs travel to the workers unbuilt: each must be a raw ``"type"`` dict."""
    for key, value in subconfigs.items():
        if value is not None and not (isinstance(value, dict) and "type" in value):
            raise SparkmlTfError(
                "CONFIG_BAD_SUBCONFIG",
                f"{key} must be a raw sub-config with a \"type\" and \"eval\": null (it is built on the workers), got {type(value).__name__}",
                key,
            )


def check_launcher(launcher: str) -> None:
    if launcher not in LAUNCHERS:
        raise SparkmlTfError("CONFIG_BAD_VALUE", f"launcher must be one of {', '.join(LAUNCHERS)}, got '{launcher}'", "launcher")


def launch(ctx: RunContext, launcher_name: str, num_workers: int, worker: Callable[[Dict[str, Any]], Any], settings: Dict[str, Any], name: str) -> Any:
    """Run ``worker(settings)`` on ``num_workers`` barrier tasks (or here, for ``local``); rank 0's summary."""
    from sparkml_tf.spark.barrier import LocalLauncher, make_launcher

    if launcher_name == "local":
        launcher = LocalLauncher()
    else:
        ctx.spark  # start the session on the driver before the launcher looks for it
        launcher = make_launcher(launcher_name, num_workers)
    ctx.describe(f"{name}: {num_workers if launcher_name != 'local' else 1} worker(s)")
    return launcher.run(worker, settings)


def training_curves(history: List[Dict[str, Any]], panels: Sequence[Tuple[str, str, str]] = (("loss", "training loss", "tab:blue"), ("val_ndcg@100", "validation NDCG@100", "tab:green"))):
    """One plot per ``(history key, title, color)`` of ``panels`` against the epoch, side by side."""
    # A bare Figure (Agg canvas), not pyplot: no global backend or figure state in a library.
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(4.5 * len(panels), 3.5))
    axes = fig.subplots(1, len(panels))
    for axis, (key, title, color) in zip(axes, panels):
        axis.plot(epochs, [h[key] for h in history], marker="o", color=color)
        axis.set(title=title, xlabel="epoch")
    fig.tight_layout()
    return fig
