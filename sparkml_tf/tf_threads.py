"""TensorFlow's thread pools, set once per process."""

from __future__ import annotations

from typing import Optional


def configure_tf_threads(threads: Optional[int]) -> bool:
    """Use ``threads`` intra-op and inter-op threads in this process; True when it took effect.

    TensorFlow fixes its pools when its runtime starts, so this only works before the process
    runs anything in TensorFlow; later calls change nothing and return False (the earlier pools
    stay). ``None`` or 0 leaves TensorFlow's default, one thread per core.
    """
    if not threads:
        return False
    import tensorflow as tf

    if tf.config.threading.get_intra_op_parallelism_threads() == threads and tf.config.threading.get_inter_op_parallelism_threads() == threads:
        return True
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:
        return False
    return True
