"""hsbench.reporting."""
