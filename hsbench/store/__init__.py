"""hsbench.store."""
