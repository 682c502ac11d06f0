"""The loss the loop reports with several workers: every worker's share, summed once a round."""

import pytest


class RankTask:
    """Worker r's examples are all r + 1 and the loss is their mean: the whole batch's loss is the mean
    over the workers' shares, which only the loop's sum over workers can report."""

    metric = "score"

    def num_train_examples(self):
        return 64

    def prepare(self):
        pass

    def build(self):
        import keras
        import tensorflow as tf

        class Net(keras.layers.Layer):
            def __init__(self):
                super().__init__()
                self.w = self.add_weight(shape=(1,), initializer="ones", name="w")

            def loss(self, batch, training=True, step=None):
                return tf.reduce_mean(batch["x"]) * self.w[0]

        return Net()

    def dataset(self, input_context, per_replica_batch, seed):
        import tensorflow as tf

        value = float(input_context.input_pipeline_id + 1)
        return tf.data.Dataset.from_tensors({"x": tf.fill([per_replica_batch], value)}).repeat()

    def evaluate(self, net):
        return {"score": 0.0}


def rank_task_worker(settings):
    from sparkml_tf.train.loop import run_loop

    return run_loop(RankTask(), settings).summary()


def rank_task_settings(tmp_path):
    return {"checkpoint_dir": str(tmp_path / "ckpt"), "batch_size": 8, "max_steps": 4, "eval_every_steps": 2, "patience": 10, "learning_rate": 1e-9}


def test_one_worker_loss(tmp_path):
    from sparkml_tf.spark.barrier import LocalLauncher

    summary = LocalLauncher().run(rank_task_worker, rank_task_settings(tmp_path))
    assert [h["loss"] for h in summary["history"]] == pytest.approx([1.0, 1.0])


@pytest.mark.spark
def test_two_workers_report_the_whole_batch_loss(spark, tmp_path):
    """Each step's loss is summed over the workers (once a round): 1.5, the mean of 1 and 2, not rank 0's share."""
    import sys

    from pyspark import cloudpickle

    from sparkml_tf.spark.barrier import SparkBarrierLauncher

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # test modules are not importable on the workers
    summary = SparkBarrierLauncher(2, spark=spark).run(rank_task_worker, rank_task_settings(tmp_path))
    assert summary["num_workers"] == 2 and summary["steps"] == 4
    assert [h["loss"] for h in summary["history"]] == pytest.approx([1.5, 1.5])
