"""hsbench.reporting: the paper's numbers, regenerated tables and trade-off plots.

* :mod:`hsbench.reporting.paper`: every number of the paper's Tables 2, 3, 4
  and the supplement's Tables S2, S3, each with its table, row and unit.
* :mod:`hsbench.reporting.measured`: finished runs as report records, and the
  rule that matches a measured variant to a paper row.
* :mod:`hsbench.reporting.tables`: ``hsbench report`` (pandas + tabulate).
* :mod:`hsbench.reporting.plots`: ``hsbench plot`` (matplotlib on an Agg canvas, adjustText labels).
* :mod:`hsbench.reporting.cli`: ``register(app)`` adds ``report``, ``plot``
  and ``runs list|show``.
"""
