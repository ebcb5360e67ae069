"""digest: weekly per-subscriber email digests of newly published research summaries."""

__version__ = "0.1.0"
