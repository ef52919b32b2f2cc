"""What a SLURM cluster offers and what it is doing with our jobs: ``sinfo``, ``squeue``, ``scancel``.

Typed answers from SLURM's client commands (run with ``$SLURM_CONF`` and the
rest of this process's environment), for :mod:`hsbench.launch`:

* :func:`partitions` / :func:`partition`: each partition with its nodes
  (CPUs, memory in MB, GPUs from the node's ``gpu`` GRES, features, state) and
  its time limit, from one ``sinfo --Node`` call;
* :func:`queue`: state and pending reason of given jobs (``squeue --states=all``,
  which also lists jobs that ended less than ``MinJobAge`` ago), so that a
  cluster without accounting (no ``sacct``) is still followed;
* :func:`cancel`: ``scancel``.

Every failure of a command becomes a :class:`SlurmError` whose one-line
message quotes the command and what it said. Only the standard output
formats are used (``-o`` format strings), so any SLURM since 20.11 answers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hsbench.errors import HsbenchError

#: Node states in which a node takes no new work (``sinfo %T``, lower case, flags stripped).
UNUSABLE_STATES = ("down", "drained", "draining", "fail", "failing", "future", "inval", "maint",
                   "not_responding", "reboot_issued", "unknown")
#: Job states after which a job will not run again by itself (``squeue %T``).
ENDED_STATES = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT")
#: Seconds a client command may take before the controller counts as unreachable.
COMMAND_TIMEOUT_S = 60.0

_SEP = "|"


class SlurmError(HsbenchError):
    """A SLURM command failed or is missing; the message quotes the command and its answer."""


def available() -> bool:
    """True when SLURM's client commands (``sbatch``, ``sinfo``, ``squeue``) are on ``PATH``."""
    return all(shutil.which(c) for c in ("sbatch", "sinfo", "squeue"))


def run_command(argv: Sequence[str], *, ok_codes: tuple[int, ...] = (0,)) -> str:
    """Run a SLURM client command; its standard output.

    Raises:
        SlurmError: the command is missing, timed out, or exited with a code outside ``ok_codes``.
    """
    shown = " ".join(argv)
    try:
        p = subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} not found: {shown!r} needs SLURM's client commands on PATH") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{shown!r} did not answer within {COMMAND_TIMEOUT_S:.0f} s; "
                         "is the SLURM controller reachable?") from None
    if p.returncode not in ok_codes:
        said = " ".join((p.stderr or p.stdout).split()) or "no message"
        raise SlurmError(f"{shown!r} failed (exit {p.returncode}): {said}")
    return p.stdout


# --------------------------------------------------------------------------- sinfo


def parse_time_limit(text: str) -> int | None:
    """SLURM's ``[days-]hours:minutes:seconds`` (or ``minutes``) as whole minutes; None = no limit.

    ``"infinite"``/``"UNLIMITED"`` -> None; ``"1-00:00:00"`` -> 1440; ``"30:00"`` -> 30;
    ``"2:00:00"`` -> 120; seconds are rounded down.

    Raises:
        SlurmError: not a SLURM time.
    """
    t = text.strip()
    if t.lower() in ("infinite", "unlimited", "n/a", ""):
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", t)
    if not m:
        raise SlurmError(f"cannot read SLURM time limit {text!r}")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # days-hours[:minutes[:seconds]]
        return days * 1440 + a * 60 + (b or 0)
    if b is None:  # minutes
        return a
    if c is None:  # minutes:seconds
        return a
    return a * 60 + b  # hours:minutes:seconds


def parse_gpus(gres: str) -> int:
    """GPUs in a node's GRES string: ``"gpu:a100:4(S:0-1),shard:8"`` -> 4; ``"(null)"`` -> 0."""
    total = 0
    for item in gres.split(","):
        item = re.sub(r"\(.*?\)", "", item.strip())
        parts = item.split(":")
        if parts[0] != "gpu":
            continue
        count = parts[-1] if len(parts) > 1 else "1"
        total += int(count) if count.isdigit() else 1
    return total


@dataclass(frozen=True)
class Node:
    """One node of one partition, as ``sinfo --Node`` lists it.

    Attributes:
        name: node name.
        cpus: CPUs (SLURM's CPU count: cores x threads).
        memory_mb: memory SLURM may give to jobs, MB (``RealMemory``).
        gpus: GPUs of its ``gpu`` GRES (0 without).
        features: its available features (``--constraint`` matches these).
        state: SLURM's state in lower case, flag characters stripped (``idle``, ``mixed``, ``down``...).
    """

    name: str
    cpus: int
    memory_mb: int
    gpus: int
    features: tuple[str, ...]
    state: str

    @property
    def usable(self) -> bool:
        """Whether the node takes work now or will by itself (not down, drained, failed...)."""
        return not any(self.state.startswith(s) for s in UNUSABLE_STATES)


@dataclass(frozen=True)
class Partition:
    """A partition and its nodes.

    Attributes:
        name: partition name (``--partition``).
        default: SLURM's default partition (used when none is named).
        up: whether the partition accepts jobs (``sinfo %a`` is ``up``).
        max_time_min: the partition's time limit in minutes (None = no limit).
        nodes: its nodes.
    """

    name: str
    default: bool
    up: bool
    max_time_min: int | None
    nodes: tuple[Node, ...]

    @property
    def usable_nodes(self) -> tuple[Node, ...]:
        """Nodes that are not down, drained or failed."""
        return tuple(n for n in self.nodes if n.usable)

    def largest(self) -> tuple[int, int, int]:
        """``(CPUs, GPUs, memory MB)``, each the largest of a usable node (zeros without one)."""
        nodes = self.usable_nodes
        if not nodes:
            return 0, 0, 0
        return max(n.cpus for n in nodes), max(n.gpus for n in nodes), max(n.memory_mb for n in nodes)


_SINFO_FORMAT = _SEP.join(("%R", "%P", "%a", "%l", "%N", "%c", "%m", "%G", "%f", "%T"))


def parse_sinfo(text: str) -> list[Partition]:
    """Partitions from ``sinfo --noheader --Node -o`` with :data:`_SINFO_FORMAT` (file order)."""
    parts: dict[str, dict] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        f = line.split(_SEP)
        if len(f) != 10:
            raise SlurmError(f"cannot read sinfo line {line!r}")
        name, shown, avail, limit, node, cpus, mem, gres, feats, state = (x.strip() for x in f)
        p = parts.setdefault(name, {"default": shown.endswith("*"), "up": avail.lower() == "up",
                                    "limit": parse_time_limit(limit), "nodes": {}})
        features = tuple(x for x in feats.split(",") if x and x != "(null)")
        try:
            p["nodes"][node] = Node(node, int(cpus), int(re.sub(r"\D.*", "", mem) or 0), parse_gpus(gres),
                                    features, state.lower().rstrip("*~#!%$@^-+"))
        except ValueError:
            raise SlurmError(f"cannot read sinfo line {line!r}") from None
    return [Partition(n, p["default"], p["up"], p["limit"], tuple(p["nodes"].values())) for n, p in parts.items()]


def partitions() -> list[Partition]:
    """Every partition this user can see, with its nodes (one ``sinfo`` call).

    Raises:
        SlurmError: ``sinfo`` is missing or failed (controller unreachable, ...).
    """
    return parse_sinfo(run_command(["sinfo", "--noheader", "--Node", "-o", _SINFO_FORMAT]))


def partition(name: str | None = None, *, known: Iterable[Partition] | None = None) -> Partition:
    """The partition called ``name``, or SLURM's default one when ``name`` is None.

    Args:
        name: a partition name, or None for the default partition.
        known: partitions already read (default: :func:`partitions`).

    Raises:
        SlurmError: no such partition (the message lists them), no default partition, or sinfo failed.
    """
    parts = list(known) if known is not None else partitions()
    names = ", ".join(p.name for p in parts) or "none"
    if name is None:
        for p in parts:
            if p.default:
                return p
        raise SlurmError(f"this SLURM cluster has no default partition; pass --partition (one of {names})")
    for p in parts:
        if p.name == name:
            return p
    raise SlurmError(f"SLURM has no partition {name!r}; partitions: {names}")


# --------------------------------------------------------------------------- squeue / scancel


@dataclass(frozen=True)
class QueuedJob:
    """A job as ``squeue`` shows it.

    Attributes:
        job_id: SLURM job id (``123`` or ``123_4`` for an array task).
        state: SLURM's job state (``PENDING``, ``RUNNING``, ``COMPLETED``, ``TIMEOUT``, ...).
        reason: why it waits or ended (``Resources``, ``Priority``, ``BeginTime``, ...); None for ``None``.
        elapsed: run time so far as SLURM prints it (``0:42``).
        nodes: the nodes it runs on, or "" while pending.
    """

    job_id: str
    state: str
    reason: str | None
    elapsed: str
    nodes: str

    @property
    def ended(self) -> bool:
        """Whether SLURM will not run it again by itself (completed, failed, cancelled, timed out...)."""
        return self.state in ENDED_STATES

    def describe(self) -> str:
        """``PENDING (Resources)``, ``RUNNING 1:02 on node1``, ``TIMEOUT``."""
        text = self.state
        if self.reason:
            text += f" ({self.reason})"
        if self.state == "RUNNING":
            text += f" {self.elapsed}" + (f" on {self.nodes}" if self.nodes else "")
        return text


_SQUEUE_FORMAT = _SEP.join(("%i", "%T", "%r", "%M", "%N"))


def queue(job_ids: Iterable[str]) -> dict[str, QueuedJob]:
    """State of the given jobs; jobs SLURM no longer knows are absent from the answer.

    Raises:
        SlurmError: ``squeue`` is missing or failed for another reason than unknown job ids.
    """
    ids = sorted({str(j) for j in job_ids})
    if not ids:
        return {}
    try:
        out = run_command(["squeue", "--noheader", "--states=all", f"--jobs={','.join(ids)}",
                           "-o", _SQUEUE_FORMAT])
    except SlurmError as exc:
        if "Invalid job id" in str(exc):  # every id has left SLURM's memory
            return {}
        raise
    jobs: dict[str, QueuedJob] = {}
    for line in out.splitlines():
        f = [x.strip() for x in line.split(_SEP)]
        if len(f) != 5:
            continue
        reason = None if f[2] in ("None", "(null)", "") else f[2]
        jobs[f[0]] = QueuedJob(f[0], f[1], reason, f[3], f[4])
    return jobs


def cancel(job_ids: Iterable[str]) -> None:
    """``scancel`` the given jobs (unknown or finished ones are ignored by SLURM).

    Raises:
        SlurmError: ``scancel`` is missing or failed.
    """
    ids = sorted({str(j) for j in job_ids})
    if ids:
        run_command(["scancel", *ids])


__all__ = [
    "ENDED_STATES", "Node", "Partition", "QueuedJob", "SlurmError", "available", "cancel",
    "parse_gpus", "parse_sinfo", "parse_time_limit", "partition", "partitions", "queue", "run_command",
]
