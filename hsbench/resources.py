"""What a study asks of a SLURM cluster: the ``[launch]`` table, ``hsbench run`` options, defaults, fit check.

A study may carry a ``[launch]`` table (every key optional)::

    [launch]
    partition = "gpu"          # default: SLURM's default partition
    cpus_per_task = 8          # default: min(8, CPUs of the partition's largest node / tasks)
    gpus_per_node = 4          # default: 0 with --device cpu, 1 with cuda, auto: 1 where nodes have GPUs
                               # > 1 = DDP, one task per GPU
    tasks_per_node = 4         # default: max(1, gpus_per_node); > 1 on CPU = DDP over gloo
    mem_gb = 64                # default: not asked (the cluster's DefMemPerCPU applies)
    timeout_min = 1440         # default: min(4320, the partition's time limit)
    account = "vision"         # sbatch --account
    qos = "normal"             # sbatch --qos
    constraint = "a100"        # sbatch --constraint (node features)
    array_parallelism = 16     # at most this many of the study's jobs run at once (default 256)

and ``hsbench run --cpus-per-task 4 --partition gpu ...`` overrides it key by
key (:meth:`LaunchConfig.merged`). :func:`resolve` fills the defaults from
what the partition offers (:class:`hsbench.slurm.Partition`) and refuses,
before anything is submitted, a request that no usable node of the partition
can satisfy: one line naming the request and the partition's largest node.
The resolved :class:`Resources` are recorded with each run.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hsbench.errors import ConfigError, check_fields

#: CPUs per task asked for when neither the study nor the command line says (if a node has them).
DEFAULT_CPUS_PER_TASK = 8
#: Job time limit in minutes when nobody says (72 h), capped by the partition's limit.
DEFAULT_TIMEOUT_MIN = 4320
#: submitit's default: jobs of one array running at once.
DEFAULT_ARRAY_PARALLELISM = 256
#: Upper bounds that catch typos (and integers beyond what SLURM stores).
MAX_COUNT = 1_000_000
MAX_TIMEOUT_MIN = 365 * 24 * 60
MAX_MEM_GB = 1_000_000.0
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_CONSTRAINT = re.compile(r"[A-Za-z0-9_.\-&|\[\]*()!:,]+")


@dataclass(frozen=True)
class LaunchConfig:
    """The ``[launch]`` table of a study, or ``hsbench run`` options; None = the default (module docstring)."""

    partition: str | None = None
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    tasks_per_node: int | None = None
    mem_gb: float | None = None
    timeout_min: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int | None = None

    def __post_init__(self) -> None:
        for name in ("cpus_per_task", "tasks_per_node", "array_parallelism"):
            _check_int(name, getattr(self, name), low=1, high=MAX_COUNT)
        _check_int("gpus_per_node", self.gpus_per_node, low=0, high=MAX_COUNT)
        _check_int("timeout_min", self.timeout_min, low=1, high=MAX_TIMEOUT_MIN)
        if self.mem_gb is not None:
            v = self.mem_gb
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not 0 < v <= MAX_MEM_GB:
                raise ConfigError(f"launch.mem_gb must be a number of GB in (0, {MAX_MEM_GB:.0f}], got {v!r}")
        for name, pattern in (("partition", _NAME), ("account", _NAME), ("qos", _NAME),
                              ("constraint", _CONSTRAINT)):
            v = getattr(self, name)
            if v is None:
                continue
            if not isinstance(v, str) or not pattern.fullmatch(v):
                raise ConfigError(f"launch.{name} must be a SLURM {name} name "
                                  f"({'letters, digits, _ . -' if pattern is _NAME else 'features with & | [ ]'}), "
                                  f"got {v!r}")
        gpus, tasks = self.gpus_per_node, self.tasks_per_node
        if gpus is not None and gpus > 1 and tasks is not None and tasks != gpus:
            raise ConfigError(f"launch.tasks_per_node = {tasks} with gpus_per_node = {gpus}: a multi-GPU job "
                              "runs one task per GPU; leave tasks_per_node out or make it equal")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LaunchConfig:
        """From a TOML table.

        Raises:
            ConfigError: unknown key (the message lists the allowed ones), wrong type or range.
        """
        check_fields(cls, d, "launch")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """Every field, None included."""
        return dataclasses.asdict(self)

    def merged(self, **overrides: Any) -> LaunchConfig:
        """This config with each override that is not None (command-line options win over the study)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _check_int(name: str, v: Any, *, low: int, high: int) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise ConfigError(f"launch.{name} must be an integer in [{low}, {high}], got {v!r}")


@dataclass(frozen=True)
class Resources:
    """A resolved request: what each job of the study asks SLURM for (recorded with each run).

    Attributes:
        partition: the partition the jobs go to.
        cpus_per_task: CPUs per task.
        gpus_per_node: GPUs of the job (one node per job).
        tasks_per_node: tasks of the job; > 1 trains one variant with DDP, one rank per task.
        mem_gb: memory per job in GB (None = the cluster's default).
        timeout_min: the job's time limit, minutes.
        account / qos / constraint: passed to sbatch when set.
        array_parallelism: jobs of the study running at once.
    """

    partition: str
    cpus_per_task: int
    gpus_per_node: int
    tasks_per_node: int
    mem_gb: float | None
    timeout_min: int
    account: str | None
    qos: str | None
    constraint: str | None
    array_parallelism: int

    def to_dict(self) -> dict[str, Any]:
        """Every field (for the run's record)."""
        return dataclasses.asdict(self)

    def request_text(self) -> str:
        """The request as ``hsbench run`` options, e.g. ``--cpus-per-task 8 --gpus-per-node 0 ...``."""
        parts = [f"--cpus-per-task {self.cpus_per_task}"]
        if self.tasks_per_node > 1:
            parts.append(f"--tasks-per-node {self.tasks_per_node}")
        parts.append(f"--gpus-per-node {self.gpus_per_node}")
        if self.mem_gb is not None:
            parts.append(f"--mem-gb {self.mem_gb:g}")
        parts.append(f"--timeout-min {self.timeout_min}")
        if self.constraint:
            parts.append(f"--constraint {self.constraint}")
        return " ".join(parts)


def _simple_features(constraint: str | None) -> tuple[str, ...] | None:
    """The features an ``a&b`` constraint needs; None for expressions this check does not judge."""
    if not constraint:
        return ()
    if re.fullmatch(r"[A-Za-z0-9_.\-]+(&[A-Za-z0-9_.\-]+)*", constraint):
        return tuple(constraint.split("&"))
    return None


def resolve(cfg: LaunchConfig, part: Any, *, device: str) -> Resources:
    """Fill ``cfg``'s defaults from the partition and check that one of its nodes can run a job.

    Args:
        cfg: the study's ``[launch]`` merged with the command line.
        part: the target :class:`hsbench.slurm.Partition` (``cfg.partition`` or the default one).
        device: the run's device as the user gave it (``auto``, ``cpu``, ``cuda``, ``cuda:1``);
            ``auto`` asks for a GPU where the partition's nodes have them.

    Returns:
        The :class:`Resources` every job of the study asks for.

    Raises:
        ConfigError: GPUs asked for a CPU run; the partition is down or has no usable node;
            no usable node has the CPUs x tasks, GPUs, memory and features asked for; or the
            time limit exceeds the partition's. One line naming the request and the offer.
    """
    cpu_run = device == "cpu"
    max_cpus, max_gpus, max_mem = part.largest()
    if cfg.gpus_per_node is not None:
        gpus = cfg.gpus_per_node
    elif device == "auto":  # a GPU where the partition has them
        gpus = 1 if max_gpus > 0 else 0
    else:
        gpus = 0 if cpu_run else 1
    if cpu_run and gpus > 0:
        raise ConfigError(f"gpus_per_node {gpus} asked for with --device cpu; drop gpus_per_node (--gpus-per-node) "
                          "or run on cuda")
    tasks = cfg.tasks_per_node if cfg.tasks_per_node is not None else max(1, gpus)
    if gpus > 1 and tasks != gpus:
        raise ConfigError(f"tasks_per_node = {tasks} with gpus_per_node = {gpus}: a multi-GPU job runs one task "
                          "per GPU; leave tasks_per_node out or make it equal")
    if not part.up:
        raise ConfigError(f"SLURM partition {part.name} is not up; choose another with --partition")
    nodes = part.usable_nodes
    if not nodes:
        raise ConfigError(f"SLURM partition {part.name} has no usable node (all down, drained or failed); "
                          "choose another with --partition")
    cpus = cfg.cpus_per_task if cfg.cpus_per_task is not None else \
        max(1, min(DEFAULT_CPUS_PER_TASK, max_cpus // tasks))
    limit = part.max_time_min
    timeout = cfg.timeout_min if cfg.timeout_min is not None else \
        (DEFAULT_TIMEOUT_MIN if limit is None else min(DEFAULT_TIMEOUT_MIN, limit))
    res = Resources(
        partition=part.name, cpus_per_task=cpus, gpus_per_node=gpus, tasks_per_node=tasks, mem_gb=cfg.mem_gb,
        timeout_min=timeout, account=cfg.account, qos=cfg.qos, constraint=cfg.constraint,
        array_parallelism=cfg.array_parallelism or DEFAULT_ARRAY_PARALLELISM,
    )
    wanted = _simple_features(cfg.constraint)

    def fits(n: Any) -> bool:
        return (n.cpus >= cpus * tasks and n.gpus >= gpus
                and (cfg.mem_gb is None or n.memory_mb >= cfg.mem_gb * 1024)
                and (wanted is None or all(f in n.features for f in wanted)))

    if not any(fits(n) for n in nodes):
        feats = sorted({f for n in nodes for f in n.features})
        offer = (f"its largest nodes offer {max_cpus} CPUs, {max_gpus} GPUs, {max_mem / 1024:.1f} GB memory"
                 + (f", features {','.join(feats)}" if cfg.constraint else ""))
        raise ConfigError(f"no node of SLURM partition {part.name} can run the request {res.request_text()}"
                          f"{f' ({tasks} tasks x {cpus} CPUs)' if tasks > 1 else ''}: {offer}; lower the "
                          "request (hsbench run options or the study's [launch] table) or choose another "
                          "--partition")
    if limit is not None and timeout > limit:
        raise ConfigError(f"--timeout-min {timeout} exceeds SLURM partition {part.name}'s time limit of "
                          f"{limit} min; lower it or choose another --partition")
    return res


__all__ = ["DEFAULT_CPUS_PER_TASK", "DEFAULT_TIMEOUT_MIN", "LaunchConfig", "Resources", "resolve"]
