"""submitit jobs of ``hsbench run --executor submitit``: the job callable and the wait for the jobs.

The job callable, :class:`WorkerTask`, runs in every task of a submitit job:

* **threads**: torch computes with as many threads as SLURM granted CPUs per
  task (``SLURM_CPUS_PER_TASK``), not as many as the node has;
* **DDP**: a job with ``tasks_per_node > 1`` (one task per GPU, or several CPU
  tasks on gloo) exports submitit's distributed environment (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), which is
  what ``torchrun`` sets, so the worker's training code
  (:func:`hsbench.engine.distributed.init_from_env`) is the same under both;
* **preemption and requeue**: it is a ``submitit.helpers.Checkpointable``.
  When SLURM signals the job (``SIGUSR2``: the time limit is near, or
  ``scancel --signal=USR2``), submitit calls :meth:`WorkerTask.checkpoint`
  and requeues the job with the same arguments; the worker then resumes
  training from the last checkpoint in the run folder (written every
  ``train.checkpoint_every`` iterations). A job requeued by SLURM itself
  (``scontrol requeue``, preemption with ``PreemptMode=REQUEUE``) restarts
  the same way; its SIGTERM ends the task at once (submitit alone would
  ignore it and compute until SLURM's SIGKILL, for nothing). Either way it keeps its job id, so the submitting process
  stores its record in the run's database row as if nothing happened.

:func:`wait_for_jobs` follows the submitted jobs: it yields each job as it
ends; on SLURM it prints each job's state and pending reason from ``squeue``
when they change and a summary at a modest interval (``sacct`` is not needed:
many small clusters run without accounting, and submitit's "Bypassing sacct
error" warnings are silenced by :func:`quiet_submitit`), and it stops after
``--wait-timeout`` seconds, leaving or cancelling the jobs (``--on-timeout``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import submitit

from hsbench import slurm
from hsbench.errors import ConfigError, HsbenchError

#: What ``--on-timeout`` may say.
ON_TIMEOUT = ("leave", "cancel")
#: Seconds a job may stay ended in SLURM's eyes without its result file (shared file systems lag).
RESULT_GRACE_S = 30.0

T = TypeVar("T")


# --------------------------------------------------------------------------- in the job


@dataclass(frozen=True)
class TaskResult(Generic[T]):
    """What one task of a job returns.

    Attributes:
        rank: the task's global rank (``SLURM_PROCID``; 0 for a one-task job).
        world_size: tasks of the job.
        job_id: SLURM's (or submitit's local) job id.
        host: where the task ran.
        restarts: how often SLURM restarted the job (``SLURM_RESTART_COUNT``; requeues).
        value: what the worker returned (a :class:`hsbench.record.RunRecord` on rank 0).
    """

    rank: int
    world_size: int
    job_id: str
    host: str
    restarts: int
    value: T


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    logging.getLogger("hsbench").warning("SIGTERM from SLURM: stopping; a requeued job resumes from the checkpoint")
    raise SystemExit(128 + signum)


class WorkerTask(submitit.helpers.Checkpointable, Generic[T]):
    """The callable a submitit job runs: ``worker(job)`` in every task, DDP set up when there are several.

    Args:
        worker: the function to run, e.g. :func:`hsbench.worker.run_job`; picklable.
    """

    def __init__(self, worker: Callable[[Any], T]) -> None:
        self.worker = worker

    def __call__(self, job: Any) -> TaskResult[T]:
        env = submitit.JobEnvironment()
        if os.environ.get("SLURM_JOB_ID"):
            # SIGTERM (scancel, scontrol requeue, preemption) ends the task now: all it would
            # compute before SLURM's SIGKILL is lost anyway (submitit ignores SIGTERM).
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and cpus.isdigit():
            import torch

            # as many compute threads as CPUs granted: more would compete with the node's other jobs
            torch.set_num_threads(int(cpus))
        if env.num_tasks > 1:
            # MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK: torchrun's variables. Every task keeps
            # every GPU of the job visible; init_from_env picks cuda:LOCAL_RANK.
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        value = self.worker(job)
        return TaskResult(rank=env.global_rank, world_size=env.num_tasks, job_id=str(env.job_id),
                          host=socket.gethostname(), restarts=int(os.environ.get("SLURM_RESTART_COUNT", "0")),
                          value=value)

    def checkpoint(self, job: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on SIGUSR2 (rank 0): requeue the same job; training resumes from its checkpoint."""
        run_dir = job.get("run_dir") if isinstance(job, dict) else getattr(job, "run_dir", None)
        logging.getLogger("hsbench").warning(
            "preempted or near the time limit: requeueing; training resumes from the last checkpoint in %s",
            run_dir)
        return submitit.helpers.DelayedSubmission(self, job)


# --------------------------------------------------------------------------- in the submitting process


class _NoSacctNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Bypassing sacct error" not in record.getMessage()


_FILTER = _NoSacctNoise()


def quiet_submitit() -> None:
    """Drop submitit's "Bypassing sacct error ... accounting storage is disabled" warnings.

    They repeat at every status check on clusters without accounting; job
    states come from ``squeue`` instead (:func:`wait_for_jobs`). Idempotent.
    """
    log = logging.getLogger("submitit")
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)


@dataclass(frozen=True)
class WaitOptions:
    """How :func:`wait_for_jobs` waits.

    Attributes:
        timeout_s: stop waiting after this many seconds (``--wait-timeout``; None = until every job ends).
        on_timeout: ``leave`` the jobs queued/running, or ``cancel`` them (scancel).
        report_s: seconds between two summaries of the waiting jobs (state changes print at once).
        poll_s: seconds between two looks at the queue.
        result_grace_s: seconds a job may be ended in SLURM's eyes before its missing result
            file counts as "ended without a result" (shared file systems lag).
    """

    timeout_s: float | None = None
    on_timeout: Literal["leave", "cancel"] = "leave"
    report_s: float = 60.0
    poll_s: float = 5.0
    result_grace_s: float = RESULT_GRACE_S

    def __post_init__(self) -> None:
        if self.timeout_s is not None and not (self.timeout_s > 0 and self.timeout_s < float("inf")):
            raise ConfigError(f"--wait-timeout must be a positive number of seconds, got {self.timeout_s!r}")
        if self.on_timeout not in ON_TIMEOUT:
            raise ConfigError(f"--on-timeout {self.on_timeout!r} is not one of {', '.join(ON_TIMEOUT)}")
        if not (self.report_s > 0 and self.report_s < float("inf")):
            raise ConfigError(f"--queue-interval must be a positive number of seconds, got {self.report_s!r}")


class WaitTimeout(HsbenchError):
    """``--wait-timeout`` passed with jobs still queued or running.

    Attributes:
        jobs: the jobs not finished, as :class:`Watched`.
        cancelled: whether they were cancelled (``--on-timeout cancel``) or left.
    """

    def __init__(self, message: str, jobs: list[Watched], cancelled: bool) -> None:
        super().__init__(message)
        self.jobs, self.cancelled = jobs, cancelled


@dataclass
class Watched:
    """A submitted job and how progress lines name it.

    Attributes:
        job: the ``submitit.Job``.
        head: the progress prefix of its ``(variant, seed)``.
        tag: anything the caller wants back with it (e.g. the admitted run).
        ended_state: SLURM's final state when the job ended without a result file (TIMEOUT, ...).
    """

    job: Any
    head: str
    tag: Any = None
    ended_state: str | None = None
    _shown: str | None = field(default=None, repr=False)
    _key: tuple[str, str | None] | None = field(default=None, repr=False)
    _ended_since: float | None = field(default=None, repr=False)

    @property
    def job_id(self) -> str:
        """The job's id as SLURM knows it."""
        return str(self.job.job_id)


def _done(w: Watched, cluster: str) -> bool:
    """Whether every task of the job wrote its result file.

    On SLURM only the files are looked at: ``job.done()`` would also call ``sacct``,
    which prints "Slurm accounting storage is disabled" on clusters without accounting.
    """
    job = w.job
    if cluster != "slurm":
        try:
            return bool(job.done())
        except Exception:  # noqa: BLE001 - a status call that fails is a job still running
            return False
    tasks = [job] if job.num_tasks == 1 else [job.task(i) for i in range(job.num_tasks)]
    return all(t.paths.result_pickle.exists() for t in tasks)


def wait_for_jobs(watched: Sequence[Watched], opts: WaitOptions, out: Callable[[str], None], *,
                  cluster: str, clock: Callable[[], float] = time.monotonic) -> Iterator[Watched]:
    """Yield each job of ``watched`` as it ends (its result can then be read without waiting).

    On ``cluster == "slurm"`` each job's SLURM state and pending reason are
    printed when they change and, for every job still waiting, every
    ``opts.report_s`` seconds; a job that SLURM ended (TIMEOUT, NODE_FAIL,
    CANCELLED, ...) without writing its result is yielded with
    ``ended_state`` set after ``opts.result_grace_s``. The debug executor's
    jobs run when their result is read: they are yielded in order.

    Raises:
        WaitTimeout: ``opts.timeout_s`` passed; the jobs not finished were left
            or cancelled as ``opts.on_timeout`` says (the message says which and
            how to go on).
    """
    if cluster == "debug":
        yield from watched
        return
    if cluster == "slurm":
        quiet_submitit()
    t0 = clock()
    last_report = t0
    left = list(watched)
    while left:
        now = clock()
        queue = {}
        if cluster == "slurm":
            try:
                queue = slurm.queue(w.job_id for w in left)
            except slurm.SlurmError as exc:
                out(f"squeue failed, job states unknown for now: {exc}")
                queue = None
        for w in list(left):
            if _done(w, cluster):
                left.remove(w)
                yield w
                continue
            if queue is None or cluster != "slurm":
                continue
            q = queue.get(w.job_id)
            text = q.describe() if q is not None else "no longer listed by squeue"
            key = (q.state, q.reason) if q is not None else ("", None)
            if key != w._key:  # state or pending reason changed: say so now
                out(f"{w.head}: job {w.job_id} {text}")
                w._key = key
            w._shown = text
            if q is None or q.ended:
                w._ended_since = w._ended_since if w._ended_since is not None else now
                if now - w._ended_since >= opts.result_grace_s and not _done(w, cluster):
                    w.ended_state = q.state if q is not None else "UNKNOWN"
                    left.remove(w)
                    yield w
            else:
                w._ended_since = None
        if not left:
            return
        now = clock()
        if cluster == "slurm" and now - last_report >= opts.report_s:
            last_report = now
            out(f"waiting for {len(left)} job(s) after {now - t0:.0f} s: "
                + ", ".join(f"{w.job_id} {w._shown or '?'}" for w in left))
        if opts.timeout_s is not None and now - t0 >= opts.timeout_s:
            ids = [w.job_id for w in left]
            cancel = opts.on_timeout == "cancel"
            if cancel:
                for w in left:
                    with contextlib.suppress(Exception):  # scancel of a job that just ended
                        w.job.cancel(check=False)
                how = f"cancelled job(s) {' '.join(ids)}"
                then = "run the same command again to resubmit them (training resumes from their checkpoints)"
            else:
                how = f"left job(s) {' '.join(ids)} in the queue"
                then = (f"run the same command again once they end to store their results, or cancel them "
                        f"with: scancel {' '.join(ids)}")
            raise WaitTimeout(f"--wait-timeout {opts.timeout_s:g} s reached with {len(left)} job(s) not finished; "
                              f"{how}; {then}", left, cancelled=cancel)
        time.sleep(opts.poll_s)


__all__ = ["ON_TIMEOUT", "TaskResult", "WaitOptions", "WaitTimeout", "Watched", "WorkerTask", "quiet_submitit",
           "wait_for_jobs"]
