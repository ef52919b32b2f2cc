"""hsbench.measure."""
