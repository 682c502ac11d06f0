"""TensorBoard: the training chief's scalars (``tf.summary``) and a profiler trace of a window of
training steps, both in one log dir (``tensorboard --logdir <run_dir>/tensorboard``).

Scalars are written with TensorFlow's own summary ops and the scalar plugin's metadata, so writing
needs no ``tensorboard`` package (only viewing does). Writing is a courtesy: a failure is reported
once and training goes on.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Optional, Sequence

PROFILE_SUBDIR = "plugins/profile"  # where TensorFlow's profiler puts a trace, and TensorBoard's profile tab reads it


def _scalar_metadata():
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"), data_class=summary_pb2.DATA_CLASS_SCALAR)


class Scalars:
    """Scalars written to ``logdir`` (None: off, every call does nothing)."""

    def __init__(self, logdir: Optional[str], report: Optional[Callable[[str], None]] = None):
        self.logdir = logdir
        self.report = report or print
        self._writer, self._metadata, self._failed = None, None, False
        if logdir:
            try:
                import tensorflow as tf

                tf.io.gfile.makedirs(logdir)
                self._writer = tf.summary.create_file_writer(logdir)
                self._metadata = _scalar_metadata()
            except Exception as e:
                self._fail(e)

    def _fail(self, error: Exception) -> None:
        if not self._failed:
            self._failed = True
            self.report(f"TensorBoard: cannot write to {self.logdir} ({type(error).__name__}: {error}); training goes on without it")
        self._writer = None

    def write(self, step: int, values: Dict[str, Any]) -> None:
        """``{"train/loss": 0.4, "validation/val_ndcg@100": 0.3}`` at ``step``; non-numbers are skipped."""
        if self._writer is None:
            return
        try:
            import tensorflow as tf

            with self._writer.as_default():
                for tag, value in values.items():
                    if isinstance(value, numbers.Real) and not isinstance(value, bool):
                        tf.summary.write(tag, tf.constant(float(value), tf.float32), step=int(step), metadata=self._metadata)
        except Exception as e:
            self._fail(e)

    def write_series(self, tag: str, first_step: int, values: Sequence[Any]) -> None:
        """One value per step from ``first_step`` on (a round's per-step losses)."""
        for offset, value in enumerate(values):
            self.write(first_step + offset, {tag: float(value)})

    def flush(self) -> None:
        if self._writer is not None:
            try:
                self._writer.flush()
            except Exception as e:
                self._fail(e)

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as e:
                self._fail(e)
            self._writer = None


def read_scalars(logdir: str) -> Dict[str, list]:
    """``{tag: [(step, value), ...]}`` of the scalars in ``logdir``'s event files (not its subfolders),
    in the order written: what a test or a notebook checks without TensorBoard."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    scalars: Dict[str, list] = {}
    for path in sorted(tf.io.gfile.glob(f"{logdir.rstrip('/')}/events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else float(value.simple_value)
                scalars.setdefault(value.tag, []).append((int(event.step), number))
    return scalars


class ProfileWindow:
    """A TensorFlow profiler trace of training steps ``[start, stop)`` of this run (counted from the
    step it began at), saved under ``logdir/plugins/profile/`` for TensorBoard's profile tab. A run
    with fewer steps left than ``stop`` profiles its last ``stop - start`` steps (all, when fewer).

    Call :meth:`tick` with the steps done so far before and after each step, :meth:`close` at the end."""

    def __init__(self, logdir: Optional[str], steps: Optional[Sequence[int]], steps_left: int, report: Optional[Callable[[str], None]] = None):
        self.logdir = logdir
        self.report = report or print
        self.active = False
        self.done = not (logdir and steps and steps_left > 0)
        self.begin = self.end = 0
        self.trace_dir = f"{logdir.rstrip('/')}/{PROFILE_SUBDIR}" if logdir else None
        if not self.done:
            start, stop = int(steps[0]), int(steps[1])
            length = max(stop - start, 1)
            self.begin = max(0, min(start, steps_left - length))
            self.end = min(self.begin + length, steps_left)

    def tick(self, done: int) -> None:
        if self.done:
            return
        if not self.active and done >= self.begin:
            self._start()
        elif self.active and done >= self.end:
            self._stop()

    def close(self) -> None:
        if self.active:
            self._stop()
        self.done = True

    def _start(self) -> None:
        try:
            import tensorflow as tf

            tf.profiler.experimental.start(self.logdir)
            self.active = True
        except Exception as e:
            self.done = True
            self.report(f"profiler: cannot start a trace in {self.logdir} ({type(e).__name__}: {e}); training goes on unprofiled")

    def _stop(self) -> None:
        self.active, self.done = False, True
        try:
            import tensorflow as tf

            tf.profiler.experimental.stop()
            self.report(f"profiler: traced steps {self.begin}-{self.end} of this run to {self.trace_dir}")
        except Exception as e:
            self.report(f"profiler: the trace could not be saved ({type(e).__name__}: {e})")
