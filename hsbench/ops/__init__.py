"""hsbench.ops."""
