"""hsbench.engine."""
