"""Retrieval evaluation: metrics, datasets, reports."""
