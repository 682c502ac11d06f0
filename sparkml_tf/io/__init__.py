"""Storage: file systems behind one resolver, the atomic output protocol, TFRecord shards.

Usable on executors: nothing here imports the config system, the job engine or pyspark at import
time (``rows``, the row validation of the readers, builds Spark plans on the driver and imports
pyspark inside its functions).
"""
