"""A training schedule sized by the data, so one config works from a few hundred to a few
hundred thousand training examples without edits.

Everything is counted in optimizer steps, not epochs. With ``N`` training examples (users, for
retrieval) and ``W`` workers:

    batch        B = clamp(2^floor(log2(N / 16)), 32, 512), a multiple of W: at least ~16 steps an epoch
    budget       T = clamp(100 epochs of steps, 1000, 50000)
    evaluation   every K = max(T // 40, 10) steps
    warm-up      min(T // 20, 500) steps, linear from 0 to the learning rate, then cosine decay to 0 at T
    early stop   after ``patience`` evaluations without a new best (6), but never before
                 ``min_steps`` = 0.2 T have run; the best evaluation's weights are kept

Any of them can be set by hand (``batch_size``, ``max_steps``, ...). The legacy form, ``epochs``
with ``patience`` in epochs, still works: then an evaluation is one epoch and the learning rate is
constant, as before.

Pure Python: used on the driver (to log the plan) and on the training workers alike.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Mapping, Optional

from sparkml_tf.errors import SparkmlTfError

MIN_BATCH, MAX_BATCH = 32, 512
STEPS_FLOOR, STEPS_CAP = 1000, 50_000
EPOCHS_OF_STEPS = 100
EVALUATIONS = 40
PATIENCE = 6
MIN_STEPS_FRACTION = 0.2
LR_DECAYS = ("cosine", "none")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long to train and how often to evaluate, in optimizer steps."""

    batch_size: int  # global, a multiple of the number of workers
    max_steps: int
    eval_every: int
    patience: int  # evaluations without a new best before stopping
    min_steps: int  # no early stop before this many steps
    warmup_steps: int
    lr_decay: str  # "cosine" (to 0 at max_steps, after warm-up) or "none"
    steps_per_epoch: int

    @property
    def num_evaluations(self) -> int:
        return math.ceil(self.max_steps / self.eval_every)

    def learning_rate(self, base: float, step: int) -> float:
        """The learning rate at ``step`` (0-based) for a base rate ``base`` (for logs and tests; the
        loop uses the same rule through :func:`keras_schedule`)."""
        if self.warmup_steps and step < self.warmup_steps:
            return base * (step + 1) / self.warmup_steps
        if self.lr_decay == "none":
            return base
        span = max(self.max_steps - self.warmup_steps, 1)
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))

    def describe(self) -> str:
        return (
            f"batch {self.batch_size}, {self.max_steps} steps ({self.max_steps / self.steps_per_epoch:.1f} epochs of "
            f"{self.steps_per_epoch} steps), validation every {self.eval_every} steps, early stop after {self.patience} "
            f"evaluations without a new best once {self.min_steps} steps ran, warm-up {self.warmup_steps} steps, "
            f"learning rate decay {self.lr_decay}"
        )

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def auto_batch_size(num_examples: int, num_workers: int = 1) -> int:
    """A batch that keeps at least ~16 steps an epoch, between 32 and 512, a multiple of the workers."""
    batch = 2 ** int(math.floor(math.log2(max(num_examples, 1) / 16))) if num_examples >= 32 else MIN_BATCH
    batch = min(max(batch, MIN_BATCH), MAX_BATCH)
    return _multiple_of(batch, num_workers)


def _multiple_of(value: int, workers: int) -> int:
    workers = max(int(workers), 1)
    return value + (workers - value % workers) % workers


def plan(num_examples: int, num_workers: int = 1, settings: Optional[Mapping[str, Any]] = None) -> Schedule:
    """The schedule for ``num_examples`` training examples on ``num_workers`` workers.

    ``settings`` may fix any of: ``batch_size``, ``max_steps``, ``min_steps``, ``eval_every_steps``,
    ``patience``, ``warmup_steps``, ``lr_decay``; or give ``epochs`` (the legacy schedule: ``epochs``
    evaluations of one epoch each, ``patience`` in epochs, constant learning rate, no warm-up).
    """
    settings = dict(settings or {})
    given = {k: v for k, v in settings.items() if v is not None}
    batch = _multiple_of(int(given["batch_size"]), num_workers) if "batch_size" in given else auto_batch_size(num_examples, num_workers)
    steps_per_epoch = int(given.get("steps_per_epoch") or max(1, math.ceil(num_examples / batch)))
    if "epochs" in given:
        epochs = int(given["epochs"])
        return Schedule(
            batch_size=batch,
            max_steps=epochs * steps_per_epoch,
            eval_every=steps_per_epoch,
            patience=int(given.get("patience", 3)),
            min_steps=int(given.get("min_steps", 0)),
            warmup_steps=int(given.get("warmup_steps", 0)),
            lr_decay=str(given.get("lr_decay", "none")),
            steps_per_epoch=steps_per_epoch,
        )
    max_steps = int(given.get("max_steps", min(max(EPOCHS_OF_STEPS * steps_per_epoch, STEPS_FLOOR), STEPS_CAP)))
    eval_every = int(given.get("eval_every_steps", max(max_steps // EVALUATIONS, 10)))
    return Schedule(
        batch_size=batch,
        max_steps=max_steps,
        eval_every=min(eval_every, max_steps),
        patience=int(given.get("patience", PATIENCE)),
        min_steps=int(given.get("min_steps", int(MIN_STEPS_FRACTION * max_steps))),
        warmup_steps=int(given.get("warmup_steps", min(max_steps // 20, 500))),
        lr_decay=str(given.get("lr_decay", "cosine")),
        steps_per_epoch=steps_per_epoch,
    )


def check_settings(**settings: Any) -> None:
    """Refuse impossible schedule settings (CONFIG_BAD_VALUE at the setting's key)."""
    for key in ("epochs", "batch_size", "max_steps", "eval_every_steps", "steps_per_epoch"):
        value = settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise SparkmlTfError("CONFIG_BAD_VALUE", f"{key} must be a whole number of at least 1, got {value!r}", key)
    for key in ("patience", "min_steps", "warmup_steps"):
        value = settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise SparkmlTfError("CONFIG_BAD_VALUE", f"{key} must be a whole number of at least 0, got {value!r}", key)
    decay = settings.get("lr_decay")
    if decay is not None and decay not in LR_DECAYS:
        raise SparkmlTfError("CONFIG_BAD_VALUE", f"lr_decay must be one of {', '.join(LR_DECAYS)}, got {decay!r}", "lr_decay")
    if settings.get("epochs") is not None and settings.get("max_steps") is not None:
        raise SparkmlTfError(
            "CONFIG_BAD_VALUE",
            "give either epochs (the fixed epoch schedule) or max_steps (the step schedule), not both; "
            "leave both unset for a schedule sized by the data",
            "epochs",
        )


def keras_schedule(keras: Any, base: float, schedule: Schedule) -> Any:
    """The learning rate as a Keras schedule (warm-up then cosine), or the float ``base``."""
    if schedule.lr_decay == "none" and not schedule.warmup_steps:
        return float(base)
    return _WarmupCosine(keras, float(base), schedule.warmup_steps, schedule.max_steps, schedule.lr_decay == "cosine")


def _WarmupCosine(keras: Any, base: float, warmup: int, total: int, cosine: bool):
    import tensorflow as tf

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = base * (step + 1.0) / float(max(warmup, 1))
            if cosine:
                progress = tf.clip_by_value((step - warmup) / float(max(total - warmup, 1)), 0.0, 1.0)
                after = base * 0.5 * (1.0 + tf.cos(math.pi * progress))
            else:
                after = tf.constant(base, tf.float32)
            return tf.where(step < warmup, warm, after) if warmup else after

        def get_config(self):
            return {"base": base, "warmup": warmup, "total": total, "cosine": cosine}

    return WarmupCosine()
