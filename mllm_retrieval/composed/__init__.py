"""Composed image retrieval ("like this photo, but …"): edits, benchmarks, evaluation."""
