"""``hsbench run --executor submitit``: fan a study's variants out with submitit, on SLURM or locally.

submitit (``pip install hsbench[launch]``) submits to SLURM where its client
commands are installed and runs jobs as local processes otherwise; its
``debug`` executor runs them in this process (tests). Each job runs the
worker (:func:`hsbench.runner.execute_job`) inside a
:class:`hsbench.jobs.WorkerTask`; the worker writes ``record.json`` to the run
folder and never touches the database. This process claims each run folder,
records the runs, waits for the jobs and stores each record in one
transaction, as the local executor does.

On SLURM (see README "Running on SLURM"):

* **resources** come from the study's ``[launch]`` table and ``hsbench run``
  options (:mod:`hsbench.resources`); :func:`plan` checks them against the
  partition with ``sinfo`` before anything is stored or submitted, and fills
  the defaults from what its nodes offer. The resolved request is recorded
  with each run (``extra.launch``). The study's jobs go out as one job array
  (``array_parallelism`` of them run at once).
* **queue state**: while jobs wait, each job's state and pending reason
  (``squeue``) is printed when it changes, and a summary every
  ``--queue-interval`` seconds; ``--wait-timeout`` stops waiting and leaves or
  cancels the jobs (``--on-timeout``) (:func:`hsbench.jobs.wait_for_jobs`).
* **multi-GPU**: ``gpus_per_node > 1`` trains one variant with DDP as one job
  of one task per GPU (``tasks_per_node > 1`` does the same on CPU, gloo).
* **preemption**: SIGUSR2 (near the time limit, or sent by the cluster) and
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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsbench.errors import ConfigError, StoreError
from hsbench.resources import LaunchConfig, Resources

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
    wait: Any


def plan(config: LaunchConfig, *, device: str, wait: Any = None, cluster: str | None = None) -> LaunchPlan:
    """Check a study's launch settings against the cluster before anything is stored or submitted.

    Args:
        config: the study's ``[launch]`` table merged with the command line.
        device: the run's torch device string (``cpu``, ``cuda``, ``cuda:1``).
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


def _ended_without_result(w: Any) -> str:
    log = w.job.paths.stderr
    return (f"SLURM ended job {w.job_id} as {w.ended_state} before it wrote a result; "
            f"see its log {str(log).replace('%t', '0')}")


def run_submitit(todo: list, *, store: Any, study: Any, dev: str, max_iters: int | None, force: bool,
                 runs_dir: Path, out: Any, outcome: Any, total: int, launch: LaunchPlan | None = None) -> None:
    """Submit every ``(variant, seed)`` in ``todo`` (one job array), then store each result as its job ends.

    Raises:
        hsbench.jobs.WaitTimeout: ``--wait-timeout`` passed (jobs left or cancelled as ``--on-timeout`` says).
        KeyboardInterrupt: after cancelling the unfinished jobs and marking their runs interrupted.
    """
    from hsbench import runner as R
    from hsbench.jobs import (
        WaitTimeout,
        Watched,
        WorkerTask,
        quiet_submitit,
        wait_for_jobs,
    )

    launch = launch or plan(LaunchConfig(), device=dev)
    folder = Path(os.environ.get("HSBENCH_SUBMITIT_FOLDER") or Path(runs_dir) / "submitit")
    executor = make_executor(folder, launch)
    quiet_submitit()
    r = launch.resources
    asked = f"; asking {r.request_text()} on partition {r.partition}" if r is not None else ""
    out(f"submitit: {executor.cluster} executor, logs in {folder}{asked}")
    index = {id(v): i for i, v in enumerate(study.variants)}
    admitted: list[tuple[Any, Any, Path, str, int, str]] = []  # (outcome, spec, run_dir, head, run_id, how)
    watched: list[Any] = []
    with contextlib.ExitStack() as locks:
        try:
            for k, (v, seed) in enumerate(todo, start=1):
                vid = v.variant_id()
                run_dir = R.run_dir_for(runs_dir, vid, seed, max_iters)
                head = R._job_head(k, todo, v, seed, study, index)
                o = R.JobOutcome(v.name, vid, seed, "failed")
                mine = locks.enter_context(R.claim(run_dir))
                got = R._admit(store, study, v, seed, o, mine=mine, head=head, out=out, outcome=outcome,
                               dev=dev, max_iters=max_iters, force=force, run_dir=run_dir)
                if got is None:
                    continue
                run_id, record, how, spec = got
                if record is not None:
                    R._store_record(store, run_id, record, o)
                    out(f"{head}: stored the finished {R.RECORD_NAME} of {how}")
                    continue
                admitted.append((o, spec, run_dir, head, run_id, how))

            task = WorkerTask(R.execute_job)
            with executor.batch():
                jobs = [executor.submit(task, spec) for _o, spec, *_ in admitted]
            for job, (o, spec, run_dir, head, run_id, how) in zip(jobs, admitted):
                extra = {"submitit_job": str(job.job_id), "executor": executor.cluster}
                if r is not None:
                    extra["launch"] = r.to_dict()
                store.update_run(run_id, extra=extra)
                out(f"{head}: submitted as job {job.job_id} ({how})")
                watched.append(Watched(job, head, (o, spec, run_dir, run_id)))

            for w in wait_for_jobs(watched, launch.wait, out, cluster=executor.cluster):
                o, spec, run_dir, run_id = w.tag
                try:
                    if w.ended_state is not None:
                        raise StoreError(_ended_without_result(w))
                    tasks = w.job.results()
                    path = tasks[0].value
                    record = R.read_record(path, spec) if path else None
                    if record is None:
                        raise StoreError(f"job {w.job_id} wrote no readable {R.RECORD_NAME} in {run_dir}")
                    R._store_record(store, run_id, record, o)
                    more = f", {len(tasks)} DDP ranks" if len(tasks) > 1 else ""
                    more += f", restarted {tasks[0].restarts}x by SLURM" if tasks[0].restarts else ""
                    out(f"{w.head}: finished: {R._result_text(o)}{more}")
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - one failing job must not stop the study
                    R._fail(store, run_id, exc, run_dir, o)
                    out(f"{w.head}: FAILED: {o.error}")
        except WaitTimeout as exc:
            for w in exc.jobs:
                o, _spec, _run_dir, run_id = w.tag
                o.status = "interrupted"
                if exc.cancelled:
                    with contextlib.suppress(StoreError):
                        store.fail_run(run_id, f"job {w.job_id} cancelled after --wait-timeout; "
                                               "run the study again to resume from the checkpoint")
            raise
        except KeyboardInterrupt:
            for w in watched:
                o, _spec, _run_dir, run_id = w.tag
                if o.status == "failed" and o.error is None:
                    with contextlib.suppress(Exception):
                        w.job.cancel(check=False)
                    o.status = "interrupted"
                    with contextlib.suppress(StoreError):
                        store.fail_run(run_id, "interrupted (Ctrl-C) while waiting for the submitit job; "
                                               "run the study again to resume from the checkpoint")
            out("interrupted; unfinished jobs cancelled and their runs marked failed")
            raise


__all__ = ["CLUSTERS", "LaunchPlan", "make_executor", "pick_cluster", "plan", "require_submitit", "run_submitit"]
