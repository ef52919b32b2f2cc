"""``hsbench run --executor submitit``: fan a study's variants out with submitit.

submitit (``pip install hsbench[launch]``) picks SLURM where ``sbatch`` is
available and runs jobs as local processes otherwise; its ``debug``
executor runs them in this process (used by the tests). The workers run
:func:`hsbench.runner.execute_job`, which writes ``record.json`` to the run
folder atomically (temp file + ``os.replace``) and never touches the
database; this process claims each run folder, records the runs, waits for
the jobs and stores each record in one transaction, as the local executor does.

Settings (environment variables, so that ``hsbench run`` keeps one set of options):

=============================  ================================================
``HSBENCH_SUBMITIT_CLUSTER``   ``slurm``, ``local`` or ``debug``; unset = auto
``HSBENCH_SUBMITIT_FOLDER``    logs and pickles (default ``<runs dir>/submitit``)
``HSBENCH_SLURM_PARTITION``    SLURM partition (default: the cluster's)
``HSBENCH_SLURM_TIMEOUT_MIN``  job time limit, minutes (default 4320 = 72 h)
``HSBENCH_SLURM_CPUS``         CPUs per job (default 8)
=============================  ================================================

A job asks for one GPU unless ``--device cpu``. Training of one variant on
several GPUs (DDP) is ``torchrun``'s business, not this module's.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Optional

from hsbench.errors import ConfigError, StoreError

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


def make_executor(folder: Path, *, device: str, cluster: Optional[str] = None) -> Any:
    """A configured ``submitit.AutoExecutor`` (see the module docstring for the settings)."""
    submitit = require_submitit()
    cluster = cluster or os.environ.get("HSBENCH_SUBMITIT_CLUSTER") or None
    if cluster is not None and cluster not in CLUSTERS:
        raise ConfigError(
            f"HSBENCH_SUBMITIT_CLUSTER={cluster!r} is not one of {', '.join(CLUSTERS)} (or unset for auto)"
        )
    try:
        timeout = int(os.environ.get("HSBENCH_SLURM_TIMEOUT_MIN", "4320"))
        cpus = int(os.environ.get("HSBENCH_SLURM_CPUS", "8"))
    except ValueError:
        raise ConfigError("HSBENCH_SLURM_TIMEOUT_MIN and HSBENCH_SLURM_CPUS must be integers") from None
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"timeout_min": timeout, "name": "hsbench"}
    if executor.cluster == "slurm":
        params["cpus_per_task"] = cpus
        params["gpus_per_node"] = 0 if device == "cpu" else 1
        partition = os.environ.get("HSBENCH_SLURM_PARTITION")
        if partition:
            params["slurm_partition"] = partition
    elif executor.cluster == "local":
        params["gpus_per_node"] = 0 if device == "cpu" else 1
    executor.update_parameters(**params)
    return executor


def run_submitit(todo: list, *, store: Any, study: Any, dev: str, max_iters: Optional[int], force: bool,
                 runs_dir: Path, out: Any, outcome: Any, total: int) -> None:
    """Submit every ``(variant, seed)`` in ``todo``, then store each result as its job ends."""
    from hsbench import runner as R

    folder = Path(os.environ.get("HSBENCH_SUBMITIT_FOLDER") or Path(runs_dir) / "submitit")
    executor = make_executor(folder, device=dev)
    out(f"submitit: {executor.cluster} executor, logs in {folder}")
    index = {id(v): i for i, v in enumerate(study.variants)}
    pending: list[tuple[Any, Any, Any, Path, Any, int]] = []  # (job, outcome, spec, run_dir, head, run_id)
    with contextlib.ExitStack() as locks:
        try:
            for k, (v, seed) in enumerate(todo, start=1):
                vid = v.variant_id()
                run_dir = R.run_dir_for(runs_dir, vid, seed, max_iters)
                head = R._job_head(k, todo, v, seed, study, index)
                o = R.JobOutcome(v.name, vid, seed, "failed")
                mine = locks.enter_context(R.claim(run_dir))
                admitted = R._admit(store, study, v, seed, o, mine=mine, head=head, out=out, outcome=outcome,
                                    dev=dev, max_iters=max_iters, force=force, run_dir=run_dir)
                if admitted is None:
                    continue
                run_id, record, how, spec = admitted
                if record is not None:
                    R._store_record(store, run_id, record, o)
                    out(f"{head}: stored the finished {R.RECORD_NAME} of {how}")
                    continue
                job = executor.submit(R.execute_job, spec)
                store.update_run(run_id, extra={"submitit_job": str(job.job_id), "executor": executor.cluster})
                out(f"{head}: submitted as job {job.job_id} ({how})")
                pending.append((job, o, spec, run_dir, head, run_id))

            for job, o, spec, run_dir, head, run_id in pending:
                try:
                    path = job.result()
                    record = R.read_record(path, spec)
                    if record is None:
                        raise StoreError(f"job {job.job_id} wrote no readable {R.RECORD_NAME} in {run_dir}")
                    R._store_record(store, run_id, record, o)
                    out(f"{head}: finished: {R._result_text(o)}")
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - one failing job must not stop the study
                    R._fail(store, run_id, exc, run_dir, o)
                    out(f"{head}: FAILED: {o.error}")
        except KeyboardInterrupt:
            for job, o, _spec, run_dir, _head, run_id in pending:
                if o.status == "failed" and o.error is None:
                    with contextlib.suppress(Exception):
                        job.cancel(check=False)
                    o.status = "interrupted"
                    with contextlib.suppress(StoreError):
                        store.fail_run(run_id, "interrupted (Ctrl-C) while waiting for the submitit job; "
                                               "run the study again to resume from the checkpoint")
            out("interrupted; unfinished jobs cancelled and their runs marked failed")
            raise


__all__ = ["CLUSTERS", "make_executor", "require_submitit", "run_submitit"]
