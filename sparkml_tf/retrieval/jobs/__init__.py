"""Retrieval jobs: dataset, train, index, predict, evaluate."""
