"""Ranking jobs: dataset, train, export, evaluate, candidates, score."""
