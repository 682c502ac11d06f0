"""Retrieval model and loss specs: light classes named in configs; build() makes the Keras parts."""
