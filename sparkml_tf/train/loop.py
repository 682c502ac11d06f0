"""The custom training loop every task shares: strategy, checkpoints and resume, early stopping,
best weights. A task (retrieval in :mod:`sparkml_tf.retrieval.trainer`, CTR in :mod:`sparkml_tf.ranking.trainer`)
plugs in what differs: how the net is built, the input pipeline, the validation metrics.

The strategy is MultiWorkerMirroredStrategy when TF_CONFIG names more than one worker, else the
default strategy; the code path is the same. A custom loop, not ``model.fit``: Keras 3 fit fails
under MultiWorkerMirroredStrategy (keras-team/keras#20585).

Checkpoints (model, optimizer, step, epochs done, best metric and weights, patience counter) go to
``checkpoint_dir``, which must be shared by all workers (HDFS, S3, ...): the chief writes there and
every worker restores from there; other workers write theirs to a local temp dir, as TF asks for
MultiWorkerMirroredStrategy. A rerun resumes from the latest checkpoint (the input pipeline starts
over, reshuffled). A task's validation may split its users over the workers (the retrieval task
does: each scores its share, one all-reduce sums them), so that every worker holds the same
metric and all reach the same early-stopping decision.

Per step there is one collective, the all-reduce of the gradients: each worker keeps its share of
the loss and the shares are summed once a round. ``benchmarks/bench_training.py`` measures the loop
against a plain TensorFlow process (docs/benchmarks.md, "Training throughput").

What a worker reports (:mod:`sparkml_tf.telemetry`), from plain settings: the chief writes TensorBoard
scalars to ``tensorboard_dir`` (the loss of every step; at each evaluation the validation metrics,
learning rate, steps/s and examples/s) and, with ``profile_steps``, a profiler trace of those steps
there; with ``live_metrics`` every worker pushes its memory, and the chief the same numbers as to
TensorBoard, to a Prometheus push gateway.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, Protocol

from sparkml_tf.console import format_seconds, import_tensorflow
from sparkml_tf.errors import DataError, SparkmlTfError
from sparkml_tf.spark.executor import configure_tf_threads
from sparkml_tf.telemetry.live import LiveMetrics
from sparkml_tf.telemetry.resources import rss_bytes
from sparkml_tf.telemetry.tensorboard import ProfileWindow, Scalars
from sparkml_tf.train.schedule import Schedule, keras_schedule, plan


class LoopTask(Protocol):
    """What a task plugs into :func:`run_loop`. The net it builds has ``loss(batch, training, step)``
    returning the mean loss of a per-replica batch."""

    metric: str  # the validation metric to maximise (early stopping, best weights), a key of evaluate()

    def num_train_examples(self) -> int:
        """Training examples in one epoch (sets steps per epoch)."""

    def prepare(self) -> None:
        """Load what validation needs; called after the strategy exists (it must come first)."""

    def build(self) -> Any:
        """The Keras net; called under the strategy's scope."""

    def dataset(self, input_context: Any, per_replica_batch: int, seed: int) -> Any:
        """This input pipeline's repeated, batched training dataset (``drop_remainder``)."""

    def evaluate(self, net: Any) -> Dict[str, float]:
        """Validation metrics, identical on every worker; holds ``metric``."""


@dataclasses.dataclass
class LoopResult:
    net: Any  # holds the best epoch's weights (the last ones when no epoch improved)
    history: List[Dict[str, Any]]
    best_metric: float
    epochs_run: int
    steps: int
    resumed_from_step: int
    steps_per_epoch: int
    global_batch_size: int
    rank: int
    num_workers: int
    schedule: Dict[str, Any] = dataclasses.field(default_factory=dict)
    finished: bool = True  # False when paused at ``pause_at_step`` before the schedule ended

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def summary(self) -> Dict[str, Any]:
        """The JSON-able part, for the driver."""
        return {
            "epochs_run": self.epochs_run,
            "steps": self.steps,
            "resumed_from_step": self.resumed_from_step,
            "steps_per_epoch": self.steps_per_epoch,
            "global_batch_size": self.global_batch_size,
            "num_workers": self.num_workers,
            "schedule": self.schedule,
            "finished": self.finished,
            "history": self.history,
        }


SCHEDULE_KEYS = ("batch_size", "epochs", "max_steps", "min_steps", "eval_every_steps", "patience", "warmup_steps", "lr_decay", "steps_per_epoch")


def log(rank: int, message: str) -> None:
    # print, not logging: a barrier task's stdout is what the launcher keeps for error reports.
    print(f"[sparkml_tf.train rank {rank}] {message}", flush=True)


def progress_line(
    evaluation: int, step: int, schedule: Schedule, loss: float, metrics: Dict[str, float], seconds: float,
    examples_per_s: Optional[float], elapsed: float, steps_done: int,
) -> str:
    """``evaluation 3/40 (step 75/1000): loss 0.41, val_ndcg@100 0.3, 5,120 examples/s, 2.1s, ~1m 3s left``.

    Time left: the remaining steps of the budget at this run's pace so far (evaluations included);
    early stopping may end training sooner."""
    shown = "".join(f", {k} {v:.4f}" for k, v in metrics.items())
    speed = f", {examples_per_s:,.0f} examples/s" if examples_per_s else ""
    remaining = max(schedule.max_steps - step, 0)
    if remaining == 0 or evaluation + 1 >= schedule.num_evaluations:
        left = ", last evaluation"
    elif steps_done > 0:
        left = f", ~{format_seconds(elapsed / steps_done * remaining)} left at most"
    else:
        left = ""
    return f"evaluation {evaluation + 1}/{schedule.num_evaluations} (step {step}/{schedule.max_steps}): loss {loss:.4f}{shown}{speed}, {seconds:.1f}s{left}"


def spec_of(value: Any, key: str = "model") -> Any:
    """A model or loss spec as the driver built it (see :func:`sparkml_tf.train.launch.build_specs`).

    Workers never build configs: a raw ``{"type": ...}`` dict here means the settings skipped the
    driver's build step."""
    if isinstance(value, dict):
        raise SparkmlTfError(
            "CONFIG_BAD_SUBCONFIG",
            f"{key} reached the training worker unbuilt ({value.get('type')!r}); start training through "
            "sparkml_tf.train.launch.launch, or pass settings through sparkml_tf.train.launch.build_specs first",
            key,
        )
    return value


def cluster_info() -> Dict[str, Any]:
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = tf_config.get("cluster", {}).get("worker", [])
    num_workers = max(len(workers), 1)
    rank = int(tf_config.get("task", {}).get("index", 0)) if num_workers > 1 else 0
    return {"num_workers": num_workers, "rank": rank}


def check_shards(files: List[str], num_workers: int, where: str) -> None:
    if len(files) < num_workers:
        raise DataError(
            "DATA_TOO_FEW_SHARDS",
            f"{len(files)} training shard(s) for {num_workers} workers, so some worker would get no data; "
            "write at least one shard per worker (the dataset job's num_shards) or use fewer workers",
            where,
        )


def copy_weights(dst, src) -> None:
    """Assign ``src``'s weights to ``dst`` (same architecture, e.g. a plain copy of a distributed net)."""
    import tensorflow as tf

    for d, s in zip(dst.weights, src.weights):
        d.assign(tf.convert_to_tensor(s))


def make_optimizers(keras, net, learning_rate: float, schedule: Optional[Schedule] = None) -> List[Any]:
    """``[(variables, Adam)]``: one optimizer per learning-rate group the net declares
    (``net.learning_rate_groups(learning_rate)`` -> ``[(variables, rate)]``), else one for all;
    each rate follows ``schedule``'s warm-up and decay."""
    if hasattr(net, "learning_rate_groups"):
        rates = net.learning_rate_groups(learning_rate)
    else:
        rates = [(list(net.trainable_variables), learning_rate)]
    grouped = [id(v) for variables, _ in rates for v in variables]
    if sorted(grouped) != sorted(id(v) for v in net.trainable_variables):
        raise ValueError("learning_rate_groups must hold every trainable variable exactly once")
    groups = []
    for variables, rate in rates:
        optimizer = keras.optimizers.Adam(learning_rate=keras_schedule(keras, float(rate), schedule) if schedule else float(rate))
        optimizer.build(variables)
        groups.append((list(variables), optimizer))
    return groups


class Telemetry:
    """One worker's reporting: TensorBoard scalars and the profiler window (the chief's), live metrics
    (every worker's; the chief's hold the training numbers). Never stops training: failures are
    reported once on the worker's output."""

    def __init__(self, settings: Dict[str, Any], rank: int, steps_left: int):
        def warn(message: str) -> None:
            log(rank, f"warning: {message}")

        chief = rank == 0
        logdir = settings.get("tensorboard_dir") if chief else None
        live = settings.get("live_metrics")
        self.chief = chief
        self.scalars = Scalars(logdir if settings.get("tensorboard_scalars", True) else None, report=warn)
        self.profiler = ProfileWindow(logdir, settings.get("profile_steps"), steps_left, report=lambda m: log(rank, m))
        self.live = LiveMetrics.from_settings(live, f"{(live or {}).get('source', 'train')}-worker-{rank}", report=warn)

    def evaluation(self, step: int, first_step: int, losses: List[Any], loss: float, metrics: Dict[str, float], speed: Dict[str, Any]) -> None:
        """After an evaluation at ``step``: the round's per-step ``losses`` (the first at ``first_step``),
        its mean ``loss``, the validation ``metrics`` and ``speed`` (``train/...`` values: learning
        rate, steps/s, examples/s, evaluation seconds)."""
        self.live.set({"train_worker_rss_bytes": rss_bytes()})
        if self.chief:
            self.scalars.write_series("train/loss", first_step, [float(v) for v in losses])
            self.scalars.write(step, {"train/epoch_loss": loss, **{f"validation/{k}": v for k, v in metrics.items()}, **speed})
            self.scalars.flush()
            self.live.set({"train_loss": loss, "train_step": step, **{f"train_{k}": v for k, v in metrics.items()}})
            self.live.set({k.replace("/", "_"): v for k, v in speed.items()})
        self.live.push()

    def close(self) -> None:
        self.profiler.close()
        self.scalars.close()
        self.live.close()


def learning_rates(groups: List[Any]) -> Dict[str, float]:
    """``train/learning_rate`` (``_<i>`` for further groups): each optimizer's rate at its current step."""
    import tensorflow as tf

    rates = {}
    for i, (_, optimizer) in enumerate(groups):
        try:  # through a tensor: under a distribution strategy the rate is a mirrored variable, which float() refuses
            rates["train/learning_rate" + (f"_{i}" if i else "")] = float(tf.convert_to_tensor(optimizer.learning_rate))
        except (TypeError, ValueError, AttributeError, tf.errors.OpError):
            pass
    return rates


def run_loop(task: LoopTask, settings: Dict[str, Any]) -> LoopResult:
    """Train ``task`` with ``settings`` (learning_rate, checkpoint_dir, checkpoint_every_steps, seed, and
    the schedule's keys: :func:`sparkml_tf.train.schedule.plan`); every worker returns, the chief exports.

    The loop runs rounds of ``schedule.eval_every`` steps, each ending with a validation (the
    history's ``epoch`` is the round: one epoch in the legacy epoch schedule)."""
    cluster = cluster_info()
    rank, num_workers = cluster["rank"], cluster["num_workers"]
    tf = import_tensorflow()
    configure_tf_threads(settings.get("tf_threads"))
    import keras

    seed = int(settings.get("seed", 0))
    keras.utils.set_random_seed(seed)
    # Before any other TF op: the collective runtime is configured when the strategy is made.
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if num_workers > 1 else tf.distribute.get_strategy()
    schedule = plan(task.num_train_examples(), num_workers, {k: settings.get(k) for k in SCHEDULE_KEYS})
    global_batch, steps_per_epoch = schedule.batch_size, schedule.steps_per_epoch  # equal per-worker batches
    patience = schedule.patience
    checkpoint_every = max(1, int(settings.get("checkpoint_every_steps", 200)))
    if rank == 0:
        log(rank, f"schedule: {schedule.describe()}")
    if hasattr(task, "configure"):
        task.configure(schedule)  # e.g. a KL annealing sized by the step budget
    task.prepare()

    with strategy.scope():
        net = task.build()
        groups = make_optimizers(keras, net, float(settings.get("learning_rate", 1e-3)), schedule)

    def dataset_fn(input_context):
        batch = input_context.get_per_replica_batch_size(global_batch)
        return task.dataset(input_context, batch, seed + input_context.input_pipeline_id)

    # Training state outside the strategy: plain variables, identical on every worker.
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    best_metric = tf.Variable(-math.inf, dtype=tf.float64, trainable=False, name="best_metric")
    bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs")
    best_weights = [tf.Variable(tf.convert_to_tensor(v), trainable=False, name=f"best_{i}") for i, v in enumerate(net.weights)]
    # model_weights as well as model: tf.train.Checkpoint does not see layers a Keras 3 layer keeps
    # in a list (MultVAE's encoder), so only the flat list is sure to hold every weight.
    checkpoint = tf.train.Checkpoint(
        model=net, model_weights=list(net.weights), step=step, epochs_done=epochs_done,
        best_metric=best_metric, bad_epochs=bad_epochs, best_weights=best_weights,
        **{("optimizer" if i == 0 else f"optimizer_{i}"): optimizer for i, (_, optimizer) in enumerate(groups)},
    )
    checkpoint_dir = settings["checkpoint_dir"]
    is_chief = rank == 0
    if is_chief:
        tf.io.gfile.makedirs(checkpoint_dir)
    own_dir = checkpoint_dir if is_chief else tempfile.mkdtemp(prefix=f"sparkml-tf-ckpt-worker{rank}-")
    manager = tf.train.CheckpointManager(checkpoint, own_dir, max_to_keep=2)
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    history: List[Dict[str, Any]] = []
    history_path = f"{checkpoint_dir}/history.json"
    if latest:
        try:
            checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise DataError(
                "TRAIN_CHECKPOINT_MISMATCH",
                f"the checkpoint {latest} cannot be restored into the configured model ({type(e).__name__}: {str(e).splitlines()[0][:300]}); "
                "it was written by a model of another shape or another dataset: rerun with --force (it moves the old "
                "checkpoints aside) or point checkpoint_dir elsewhere",
                checkpoint_dir,
            ) from e
        if tf.io.gfile.exists(history_path):
            with tf.io.gfile.GFile(history_path) as f:
                history = [h for h in json.load(f) if h["epoch"] < int(epochs_done)]
        log(rank, f"resumed from {latest} at step {int(step)} (epoch {int(epochs_done)})")
    resumed_from = int(step)

    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))

    @tf.function
    def train_step(iterator):
        def step_fn(batch):
            with tf.GradientTape() as tape:
                # The optimizer sums gradients over replicas, so each replica contributes 1/N of the mean.
                value = net.loss(batch, training=True, step=step) / strategy.num_replicas_in_sync
            grads = tape.gradient(value, [v for variables, _ in groups for v in variables])
            start = 0
            for variables, optimizer in groups:
                optimizer.apply_gradients(zip(grads[start : start + len(variables)], variables))
                start += len(variables)
            return value

        # This worker's share of the loss: summed over the workers once a round (sum_losses), not in a
        # collective of its own every step.
        loss = strategy.experimental_local_results(strategy.run(step_fn, args=(next(iterator),)))[0]
        step.assign_add(1)  # in the graph: no eager op, no read back, between steps
        return loss

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def sum_over_workers(values):
        def fn(v):
            # tf.identity places the value on this replica's device: a function input has no device,
            # and all_reduce would find no destination for it ("destinations can not be empty").
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(v))

        return strategy.experimental_local_results(strategy.run(fn, args=(values,)))[0]

    def sum_losses(losses):
        """The round's per-step losses of the whole batch: every worker's shares summed (a collective
        with several workers: each calls it once a round, after the same steps)."""
        stacked = tf.cast(tf.stack(losses), tf.float32)
        return sum_over_workers(stacked) if num_workers > 1 else stacked

    def save_history():
        if is_chief:
            with tf.io.gfile.GFile(history_path, "w") as f:
                json.dump(history, f, indent=1)

    stopped = int(bad_epochs) >= patience and int(step) >= schedule.min_steps
    # A pause point (hyper-parameter search runs a trial in rungs): stop after the evaluation that
    # reaches this step, checkpointed, so the next rung resumes on the same schedule.
    pause_at = int(settings.get("pause_at_step") or 0)
    loop_start, first_step = time.perf_counter(), int(step)
    telemetry = Telemetry(settings, rank, schedule.max_steps - first_step)
    profiler = telemetry.profiler
    try:
        for epoch in range(int(epochs_done), schedule.num_evaluations):
            if stopped or (pause_at and int(step) >= pause_at):
                break
            start, cpu_start, losses, round_start = time.perf_counter(), time.process_time(), [], int(step)
            current, round_end = round_start, min((epoch + 1) * schedule.eval_every, schedule.max_steps)
            while current < round_end:  # per step: the step function and a few Python lines, nothing read back
                if not profiler.done:
                    profiler.tick(current - first_step)
                losses.append(train_step(iterator))
                current += 1
                if not profiler.done:
                    profiler.tick(current - first_step)
                if current % checkpoint_every == 0:
                    manager.save(checkpoint_number=current)
            train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start  # CPU: every thread of this process
            steps_run = len(losses)
            losses = [float(v) for v in sum_losses(losses).numpy()] if losses else []
            metrics = task.evaluate(net)
            value = float(metrics[task.metric])
            epoch_loss = float(sum(losses) / len(losses)) if losses else float("nan")
            if value > float(best_metric):  # NaN never improves
                best_metric.assign(value)
                bad_epochs.assign(0)
                for b, v in zip(best_weights, net.weights):
                    b.assign(tf.convert_to_tensor(v))
            else:
                bad_epochs.assign_add(1)
            epochs_done.assign(epoch + 1)
            seconds = time.perf_counter() - start
            examples_per_s = steps_run * global_batch / train_seconds if train_seconds > 0 else None
            history.append(
                {"epoch": epoch, "step": int(step), "loss": epoch_loss, **metrics, "seconds": seconds, "train_seconds": train_seconds,
                 "train_cpu_seconds": train_cpu_seconds, "steps": steps_run, "examples_per_s": examples_per_s}
            )
            if is_chief:  # every rank computes the same numbers; one copy is enough
                elapsed = time.perf_counter() - loop_start
                log(rank, progress_line(epoch, int(step), schedule, epoch_loss, metrics, seconds, examples_per_s, elapsed, int(step) - first_step))
            telemetry.evaluation(int(step), round_start + 1, losses, epoch_loss, metrics, {
                **learning_rates(groups), "train/examples_per_second": examples_per_s,
                "train/steps_per_second": steps_run / train_seconds if train_seconds > 0 else None, "train/evaluation_seconds": seconds - train_seconds,
            })
            save_history()  # before the checkpoint: a resume drops epochs the checkpoint has not seen
            manager.save(checkpoint_number=int(step))
            stopped = int(bad_epochs) >= patience and int(step) >= schedule.min_steps
    finally:
        telemetry.close()

    if math.isfinite(float(best_metric)):  # keep the best epoch's weights, not the last one's
        for v, b in zip(net.weights, best_weights):
            v.assign(tf.convert_to_tensor(b))
    if not is_chief:
        shutil.rmtree(own_dir, ignore_errors=True)
    return LoopResult(
        finished=stopped or int(step) >= schedule.max_steps,
        net=net,
        history=history,
        best_metric=float(best_metric),
        epochs_run=int(epochs_done),
        steps=int(step),
        resumed_from_step=resumed_from,
        steps_per_epoch=steps_per_epoch,
        global_batch_size=global_batch,
        schedule=schedule.to_dict(),
        rank=rank,
        num_workers=num_workers,
    )
