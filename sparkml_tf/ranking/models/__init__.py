"""CTR model specs: light classes named in configs; build() makes the Keras parts."""
