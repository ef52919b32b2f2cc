"""``hsbench run --executor submitit``: fan a study's variants out with submitit, on SLURM or locally.

submitit (``pip install hsbench[launch]``) submits to SLURM where its client
commands are installed and runs jobs as local processes otherwise; its
``debug`` executor runs them in this process (tests). Each job runs
:func:`hsbench.worker.run_job` inside a :class:`hsbench.jobs.WorkerTask`; the
worker writes ``record.json`` to the run folder atomically, returns the
:class:`~hsbench.record.RunRecord` and never touches the database. This
process claims each run (folder lock and database claim, through the public
API of :mod:`hsbench.orchestrate`), waits for the jobs and stores each record
in one transaction, as the local executor does.

On SLURM (README "Running on SLURM"):

* **resources** come from the study's ``[launch]`` table and ``hsbench run``
  options (:mod:`hsbench.resources`); :func:`plan` checks them against the
  partition with ``sinfo`` before anything is stored or submitted and fills
  the defaults from what its nodes offer. The resolved request is stored with
  each run (``runs.launch``). The study's jobs go out as one job array
  (``array_parallelism`` of them run at once).
* **queue state**: while jobs wait, each job's state and pending reason
  (``squeue``) is printed when it changes, and a summary every
  ``--queue-interval`` seconds; ``--wait-timeout`` stops waiting and leaves or
  cancels the jobs (``--on-timeout``) (:func:`hsbench.jobs.wait_for_jobs`).
  A rerun finds a left job still queued or running by the run's ``job_id``
  and waits for it instead of submitting it again.
* **multi-GPU**: ``gpus_per_node > 1`` trains one variant with DDP as one job
  of one task per GPU (``tasks_per_node > 1`` does the same on CPU, gloo).
* **preemption**: SIGUSR2 (near the time limit, or from the cluster) and
  ``scontrol requeue`` requeue the job, which resumes from its checkpoint;
  the run keeps its database row.

Settings that are not resources (environment variables):

=============================  ================================================
``HSBENCH_SUBMITIT_CLUSTER``   ``slurm``, ``local`` or ``debug``; unset = slurm where ``sbatch`` exists, else local
``HSBENCH_SUBMITIT_FOLDER``    logs and pickles (default ``<runs dir>/submitit``)
=============================  ================================================
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsbench.errors import ConfigError, StoreError
from hsbench.orchestrate import Admitted, Executor, StudyRun, result_text
from hsbench.record import RunRecord
from hsbench.resources import LaunchConfig, Resources
from hsbench.worker import RECORD_NAME

if TYPE_CHECKING:
    from hsbench.config import Variant
    from hsbench.jobs import WaitOptions, Watched

CLUSTERS = ("slurm", "local", "debug")


def require_submitit() -> Any:
    """Import submitit, or raise a ConfigError saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--executor submitit needs the submitit package; install it with "
            "pip install 'hsbench[launch]' (or pip install submitit)"
        ) from None
    return submitit


def pick_cluster(cluster: str | None = None) -> str:
    """``cluster``, else ``$HSBENCH_SUBMITIT_CLUSTER``, else ``slurm`` where SLURM's commands exist, else ``local``.

    Raises:
        ConfigError: not one of :data:`CLUSTERS`.
    """
    from hsbench import slurm

    cluster = cluster or os.environ.get("HSBENCH_SUBMITIT_CLUSTER") or None
    if cluster is None:
        return "slurm" if slurm.available() else "local"
    if cluster not in CLUSTERS:
        raise ConfigError(
            f"HSBENCH_SUBMITIT_CLUSTER={cluster!r} is not one of {', '.join(CLUSTERS)} (or unset for auto)"
        )
    return cluster


@dataclass(frozen=True)
class LaunchPlan:
    """How the study's jobs are submitted and awaited (made by :func:`plan`).

    Attributes:
        cluster: ``slurm``, ``local`` or ``debug``.
        resources: the resolved request on SLURM (None on the other clusters).
        config: the study's ``[launch]`` merged with the command line.
        wait: how to wait (:class:`hsbench.jobs.WaitOptions`).
    """

    cluster: str
    resources: Resources | None
    config: LaunchConfig
    wait: WaitOptions


def plan(config: LaunchConfig, *, device: str, wait: WaitOptions | None = None, cluster: str | None = None,
         ) -> LaunchPlan:
    """Check a study's launch settings against the cluster; nothing is stored or submitted.

    Args:
        config: the study's ``[launch]`` table merged with the command line.
        device: the run's device as the user gave it (``auto``, ``cpu``, ``cuda``, ``cuda:1``).
        wait: :class:`hsbench.jobs.WaitOptions` (default: wait until every job ends).
        cluster: force a cluster (default: :func:`pick_cluster`).

    Raises:
        ConfigError: submitit missing; a request that no node of the partition can run
            (one line naming the request and the partition's largest node).
        hsbench.slurm.SlurmError: sinfo failed or the partition does not exist.
    """
    require_submitit()
    from hsbench import slurm
    from hsbench.jobs import WaitOptions
    from hsbench.resources import resolve

    which = pick_cluster(cluster)
    resources = None
    if which == "slurm":
        resources = resolve(config, slurm.partition(config.partition), device=device)
    return LaunchPlan(cluster=which, resources=resources, config=config, wait=wait or WaitOptions())


def make_executor(folder: Path, launch: LaunchPlan) -> Any:
    """A ``submitit.AutoExecutor`` for ``launch`` (its SLURM resources, or the local executor's tasks)."""
    submitit = require_submitit()
    executor = submitit.AutoExecutor(folder=str(folder), cluster=launch.cluster)
    r, cfg = launch.resources, launch.config
    params: dict[str, Any] = {"name": "hsbench"}
    if executor.cluster == "slurm" and r is not None:
        params.update(timeout_min=r.timeout_min, cpus_per_task=r.cpus_per_task, gpus_per_node=r.gpus_per_node,
                      tasks_per_node=r.tasks_per_node, nodes=1, slurm_partition=r.partition,
                      slurm_array_parallelism=r.array_parallelism)
        if r.mem_gb is not None:
            params["mem_gb"] = r.mem_gb
        for key in ("account", "qos", "constraint"):
            if getattr(r, key):
                params[f"slurm_{key}"] = getattr(r, key)
    elif executor.cluster == "local":
        gpus = cfg.gpus_per_node or 0
        params.update(gpus_per_node=gpus, tasks_per_node=cfg.tasks_per_node or max(1, gpus))
        if cfg.timeout_min:
            params["timeout_min"] = cfg.timeout_min
    executor.update_parameters(**params)
    return executor


def submitit_executor(launch: LaunchPlan) -> Executor:
    """The :data:`hsbench.orchestrate.Executor` that runs a study's jobs as ``launch`` says."""
    return functools.partial(run_submitit, launch=launch)


def _left_job(run: StudyRun, a: Admitted, folder: Path, launch: LaunchPlan) -> Any | None:
    """The job of a resumed run that a former ``--on-timeout leave`` left queued or running, if any."""
    from hsbench import slurm

    if launch.cluster != "slurm" or not a.how.startswith("resuming"):
        return None
    summary = run.store.get_run(a.run_id).run
    if not summary.job_id:
        return None
    q = slurm.queue([summary.job_id]).get(summary.job_id)
    if q is None or q.ended:
        return None
    import submitit

    tasks = int((summary.launch or {}).get("tasks_per_node") or 1)
    return submitit.SlurmJob(folder=folder, job_id=summary.job_id, tasks=tuple(range(tasks)))


def _ended_without_result(w: Watched) -> StoreError:
    log = str(w.job.paths.stderr).replace("%t", "0")
    return StoreError(f"SLURM ended job {w.job_id} as {w.ended_state} before it wrote a result; see its log {log}")


def run_submitit(todo: list[tuple[Variant, int]], run: StudyRun, launch: LaunchPlan | None = None) -> None:
    """Executor: submit every ``(variant, seed)`` in ``todo`` (one job array), then store each record as its job ends.

    Each job is admitted first (:meth:`hsbench.orchestrate.StudyRun.admit`: run
    folder locked, run claimed in the database, both held until the job's
    record is stored); a finished ``record.json`` already in the run folder is
    stored without submitting. The workers run :func:`hsbench.worker.run_job`
    in a :class:`hsbench.jobs.WorkerTask`.

    Args:
        todo: the ``(variant, seed)`` pairs to run.
        run: the study run (claims, store, printer).
        launch: resources and waiting (default: :func:`plan` of the study's ``[launch]`` table).

    Raises:
        hsbench.jobs.WaitTimeout: ``--wait-timeout`` passed (jobs left or cancelled as ``--on-timeout`` says).
        KeyboardInterrupt: after cancelling the unfinished jobs and marking their runs interrupted.
    """
    from hsbench.jobs import WaitTimeout, Watched, WorkerTask, quiet_submitit, wait_for_jobs
    from hsbench.worker import run_job

    launch = launch or plan(run.study.launch, device=run.options.device)
    folder = Path(os.environ.get("HSBENCH_SUBMITIT_FOLDER") or Path(run.options.runs_dir) / "submitit")
    executor = make_executor(folder, launch)
    quiet_submitit()
    r = launch.resources
    asked = f"; asking {r.request_text()} on partition {r.partition}" if r is not None else ""
    run.out(f"submitit: {executor.cluster} executor, logs in {folder}{asked}")
    to_submit: list[Admitted] = []
    watched: list[Watched] = []
    with contextlib.ExitStack() as held:
        try:
            for k, (v, seed) in enumerate(todo, start=1):
                a = held.enter_context(run.admit(k, v, seed))
                if a is None:
                    continue
                if a.record is not None:
                    run.store_record(a, a.record)
                    run.out(f"{a.head}: stored the finished {RECORD_NAME} of {a.how}")
                    continue
                left = _left_job(run, a, folder, launch)
                if left is not None:
                    run.store.update_run(a.run_id, executor=f"submitit-{executor.cluster}")
                    run.out(f"{a.head}: job {left.job_id} of {a.how} is still in the queue; waiting for it")
                    watched.append(Watched(left, a.head, a))
                    continue
                to_submit.append(a)

            jobs = []
            if to_submit:
                task = WorkerTask(run_job)
                with executor.batch():
                    jobs = [executor.submit(task, a.job) for a in to_submit]
            for job, a in zip(jobs, to_submit):
                run.store.update_run(a.run_id, job_id=str(job.job_id), executor=f"submitit-{executor.cluster}",
                                     launch=r.to_dict() if r is not None else None)
                run.out(f"{a.head}: submitted as job {job.job_id} ({a.how})")
                watched.append(Watched(job, a.head, a))

            for w in wait_for_jobs(watched, launch.wait, run.out, cluster=executor.cluster):
                a = w.tag
                try:
                    if w.ended_state is not None:
                        raise _ended_without_result(w)
                    tasks = w.job.results()
                    record = tasks[0].value
                    if not isinstance(record, RunRecord):
                        raise StoreError(f"job {w.job_id} returned {type(record).__name__}, not a RunRecord")
                    run.store_record(a, record)
                    more = f", {len(tasks)} DDP ranks" if len(tasks) > 1 else ""
                    more += f", restarted {tasks[0].restarts}x by SLURM" if tasks[0].restarts else ""
                    run.out(f"{a.head}: finished: {result_text(record)}{more}")
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - one failing job must not stop the study
                    run.fail(a, exc)
                    run.out(f"{a.head}: FAILED: {a.outcome.error}")
        except WaitTimeout as exc:
            for w in exc.jobs:
                a = w.tag
                a.outcome.status = "interrupted"
                with contextlib.suppress(StoreError):
                    if exc.cancelled:
                        run.store.fail_run(a.run_id, f"job {w.job_id} cancelled after --wait-timeout; "
                                                     "run the study again to resume from the checkpoint")
                    else:  # the job goes on: the next `hsbench run` waits for it (_left_job)
                        run.store.release_run(a.run_id)
            raise
        except KeyboardInterrupt:
            for w in watched:
                a = w.tag
                if a.outcome.status == "failed" and a.outcome.error is None:
                    with contextlib.suppress(Exception):
                        w.job.cancel(check=False)
                    run.interrupted(a, "the submitit job")
            run.out("interrupted; unfinished jobs cancelled and their runs marked failed")
            raise


__all__ = ["CLUSTERS", "LaunchPlan", "make_executor", "pick_cluster", "plan", "require_submitit", "run_submitit",
           "submitit_executor"]
