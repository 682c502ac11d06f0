"""Storage: file systems behind one resolver, the atomic output protocol, TFRecord shards.

Usable on executors: nothing here imports the config system, the job engine or pyspark.
"""
