"""Executor-side training. ``loop.train_worker(settings)`` runs on each barrier worker (or in the
driver for ``local``); it imports TensorFlow, never the config validation or a SparkSession."""
