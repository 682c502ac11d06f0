"""Datasets: raw MovieLens readers, the generator, the Mult-VAE split, vocabularies, and the
training inputs (TFRecord shards written by executors; Parquet for Petastorm)."""
