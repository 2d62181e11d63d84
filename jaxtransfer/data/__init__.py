"""Datasets: raw downloads of the seven targets, splits, loading."""
