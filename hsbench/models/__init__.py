"""hsbench.models."""
