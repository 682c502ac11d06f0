"""Driver side of training, shared by the task jobs: sub-config checks, building the model specs,
starting N barrier workers (or one local run), what the workers report (TensorBoard, the profiler,
live metrics: :func:`telemetry_settings`), and the training-curves figure.

The specs are built here, on the driver, with the config system's allow-list; the workers get the
light spec objects (plain Python, pickled with the settings) and never import the config system.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from sparkml_tf.errors import SparkmlTfError

LOGGER = logging.getLogger(__name__)
LAUNCHERS = ("local", "spark", "distributor")
SPEC_KEYS = ("model", "loss")
PROFILE_STEPS = (10, 20)  # --profile traces these training steps of the run (earlier ones when the run is shorter)


def check_subconfigs(**subconfigs: Any) -> None:
    """Model and loss specs stay raw sub-configs (a ``"type"`` dict) until training starts; each is
    built once here, so a refused setting is reported when the config is validated."""
    for key, value in subconfigs.items():
        if value is not None and not (isinstance(value, dict) and "type" in value):
            raise SparkmlTfError(
                "CONFIG_BAD_SUBCONFIG",
                f"{key} must be a raw sub-config with a \"type\" and \"eval\": null (built for the workers by the launcher), got {type(value).__name__}",
                key,
            )
    build_specs({k: v for k, v in subconfigs.items() if v is not None}, keys=list(subconfigs))


def check_launcher(launcher: str) -> None:
    if launcher not in LAUNCHERS:
        raise SparkmlTfError("CONFIG_BAD_VALUE", f"launcher must be one of {', '.join(LAUNCHERS)}, got '{launcher}'", "launcher")


def prepare_checkpoints(checkpoint_dir: str, force: bool, fingerprint: Optional[str] = None) -> Optional[str]:
    """Start training afresh or let it resume: with ``force``, or when the checkpoints were written for
    another fingerprint (other settings or inputs), move ``checkpoint_dir`` aside (not deleted) and
    return where it went; then record ``fingerprint`` there, so the next interrupted run can resume."""
    import time

    from sparkml_tf.io.filesystems import exists, resolve
    from sparkml_tf.io.outputs import read_lineage, write_lineage

    filesystem, local = resolve(checkpoint_dir)
    moved = None
    if exists(filesystem, local):
        previous = (read_lineage(checkpoint_dir) or {}).get("fingerprint")
        why = "--force" if force else None
        if not force and fingerprint and previous and previous != fingerprint:
            why = f"they were written for other settings or inputs ({previous} != {fingerprint})"
        if why:
            moved = f"{local.rstrip('/')}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
            filesystem.move(local, moved)
            LOGGER.warning("training starts afresh (%s): moved the old checkpoints %s to %s (not deleted)", why, checkpoint_dir, moved)
    if fingerprint:
        write_lineage(checkpoint_dir, {"fingerprint": fingerprint})
    return moved


def default_tensorboard_dir(checkpoint_dir: str, name: str) -> str:
    """``<run_dir>/tensorboard/<job name>``: beside the checkpoints' folder (``<run_dir>/checkpoints``)."""
    parent = checkpoint_dir.rstrip("/").rpartition("/")[0]
    return f"{parent}/tensorboard/{name}" if parent else f"tensorboard/{name}"


def telemetry_settings(ctx: Any, name: str, tensorboard_dir: Optional[str], scalars: bool = True) -> Dict[str, Any]:
    """What the training workers report, as plain settings: the TensorBoard log dir the chief writes
    its scalars to (``tensorboard_scalars``), the steps the profiler traces there under ``--profile``,
    and where live metrics go (the pipeline's ``live_metrics``)."""
    live = getattr(ctx, "live_settings", None)
    if live:
        live = {**live, "source": name}
        if getattr(getattr(ctx, "live", None), "failures", 0):
            live["quiet"] = True  # the driver has reported the gateway unreachable: one warning per run, not one per worker
    profile = bool(getattr(ctx, "profile", False))
    return {
        "tensorboard_dir": tensorboard_dir if (scalars or profile) else None,
        "tensorboard_scalars": bool(scalars),
        "profile_steps": list(PROFILE_STEPS) if profile and tensorboard_dir else None,
        "live_metrics": live or None,
    }


def local_path(path: Optional[str]) -> Optional[str]:
    """``path`` as a local path (``file://`` stripped), None for a remote one (hdfs://, dbfs:/...)."""
    if not path:
        return None
    if path.startswith("file://"):
        return path[len("file://") :]
    return None if "://" in path or path.startswith("dbfs:") else path


def log_tensorboard(tracker: Any, tensorboard_dir: Optional[str], name: str) -> None:
    """A training job's TensorBoard logs (a ``--profile`` trace included) as the run's artifacts
    ``tensorboard/<name>``; logs on a remote file system stay where they are."""
    import os

    local = local_path(tensorboard_dir)
    if local and os.path.isdir(local):
        tracker.log_artifact(local, f"tensorboard/{name}")


def _fresh_tensorboard(tensorboard_dir: str, checkpoint_dir: str) -> None:
    """Training starts from step 0 (no checkpoint to resume): move the old TensorBoard logs of this
    job aside (``<dir>.replaced-<time>``, beside it, so TensorBoard shows both), not mixed with the new ones."""
    import time

    from sparkml_tf.io.filesystems import exists, resolve

    filesystem, local = resolve(tensorboard_dir)
    if not exists(filesystem, local):
        return
    ckpt_fs, ckpt_local = resolve(checkpoint_dir)
    if exists(ckpt_fs, f"{ckpt_local.rstrip('/')}/checkpoint"):
        return  # resuming: the new steps continue the old curves
    moved = f"{local.rstrip('/')}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    filesystem.move(local, moved)
    LOGGER.info("training starts from step 0: moved the old TensorBoard logs %s to %s", tensorboard_dir, moved)


def build_specs(settings: Dict[str, Any], keys: Sequence[str] = SPEC_KEYS) -> Dict[str, Any]:
    """``settings`` with each raw sub-config under ``keys`` built into its spec object; the raw
    sub-configs stay under ``raw_specs`` (what a model directory records, to be rebuilt later)."""
    from sparkml_tf.config import build

    built = dict(settings)
    raw_specs = dict(built.get("raw_specs") or {})
    for key in keys:
        raw = built.get(key)
        if isinstance(raw, dict) and "type" in raw:
            raw_specs[key] = raw
            built[key] = build({k: v for k, v in raw.items() if k != "eval"}, keys=[key])
    built["raw_specs"] = raw_specs
    return built


def launch(ctx: Any, launcher_name: str, num_workers: int, worker: Callable[[Dict[str, Any]], Any], settings: Dict[str, Any], name: str) -> Any:
    """Run ``worker(settings)`` on ``num_workers`` barrier tasks (or here, for ``local``); rank 0's summary."""
    from sparkml_tf.spark.barrier import LocalLauncher, make_launcher

    if launcher_name == "local":
        launcher = LocalLauncher()
    else:
        ctx.spark  # start the session on the driver before the launcher looks for it
        launcher = make_launcher(launcher_name, num_workers)
    if settings.get("checkpoint_dir"):
        lineage = getattr(ctx, "lineage", None)
        prepare_checkpoints(settings["checkpoint_dir"], bool(getattr(ctx, "force", False)), lineage.fingerprint if lineage else None)
        if settings.get("tensorboard_dir"):
            _fresh_tensorboard(settings["tensorboard_dir"], settings["checkpoint_dir"])
    ctx.describe(f"{name}: {num_workers if launcher_name != 'local' else 1} worker(s)")
    return launcher.run(worker, build_specs(settings))


CURVES = (("loss", "training loss", "tab:blue"), ("val_ndcg@100", "validation NDCG@100", "tab:green"))


def training_curves(history: List[Dict[str, Any]], panels: Sequence[Tuple[str, str, str]] = CURVES):
    """One plot per ``(history key, title, color)`` of ``panels`` against the epoch, side by side."""
    # A bare Figure (Agg canvas), not pyplot: no global backend or figure state in a library.
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(4.5 * len(panels), 3.5))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for axis, (key, title, color) in zip(axes, panels):
        axis.plot(epochs, [h[key] for h in history], marker="o", color=color)
        axis.set(title=title, xlabel="epoch")
    fig.tight_layout()
    return fig
