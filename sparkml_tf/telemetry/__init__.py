"""What a run reports while it goes, in the driver and in the training workers alike: TensorBoard
scalars and profiler traces (:mod:`.tensorboard`), live metrics pushed to a Prometheus push gateway
(:mod:`.live`), and the process's memory and CPU time (:mod:`.resources`).

Executor-safe: these modules take plain settings (dicts, paths) and never import the config system
or the job engine; the driver turns its config into those settings (:class:`sparkml_tf.tracking.PushGateway`,
:func:`sparkml_tf.train.launch.telemetry_settings`).
"""
