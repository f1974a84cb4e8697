"""Datasets, vocabularies and batching."""
