"""Reproducible benchmarks with their targets; run them as ``python -m benchmarks.<name>``."""
