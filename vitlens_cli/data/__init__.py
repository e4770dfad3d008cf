"""Datasets, their caches and preparation."""
