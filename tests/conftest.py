"""Shared fixtures: ``slurm_cluster`` (a throwaway single-node SLURM cluster, tests/slurm_cluster.py)."""

from slurm_cluster import slurm_cluster  # noqa: F401 - a fixture, used by name
