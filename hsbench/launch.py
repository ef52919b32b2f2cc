"""``hsbench run --executor submitit``: fan a study's variants out with submitit.

submitit (``pip install hsbench[launch]``) picks SLURM where ``sbatch`` is
available and runs jobs as local processes otherwise; its ``debug``
executor runs them in this process (used by the tests). The workers run
:func:`hsbench.worker.run_job`, which writes ``record.json`` to the run
folder atomically (temp file + ``os.replace``), returns the
:class:`~hsbench.record.RunRecord` and never touches the database; this
process claims each run (folder lock and database claim, through the public
API of :mod:`hsbench.orchestrate`), waits for the jobs and stores each record
in one transaction, as the local executor does.

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
from typing import TYPE_CHECKING, Any, Optional

from hsbench.errors import ConfigError, StoreError
from hsbench.orchestrate import Admitted, StudyRun, result_text
from hsbench.record import RunRecord
from hsbench.worker import RECORD_NAME

if TYPE_CHECKING:
    from hsbench.config import Variant

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


def run_submitit(todo: list[tuple[Variant, int]], run: StudyRun) -> None:
    """Executor: submit every ``(variant, seed)`` in ``todo``, then store each record as its job ends.

    Each job is admitted first (:meth:`hsbench.orchestrate.StudyRun.admit`: run
    folder locked, run claimed in the database, both held until the job's
    record is stored); a finished ``record.json`` already in the run folder is
    stored without submitting. The workers run :func:`hsbench.worker.run_job`
    and return a :class:`hsbench.record.RunRecord`.
    """
    from hsbench.worker import run_job

    folder = Path(os.environ.get("HSBENCH_SUBMITIT_FOLDER") or Path(run.options.runs_dir) / "submitit")
    executor = make_executor(folder, device=run.options.device)
    run.out(f"submitit: {executor.cluster} executor, logs in {folder}")
    pending: list[tuple[Any, Admitted]] = []
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
                job = executor.submit(run_job, a.job)
                run.store.update_run(a.run_id, job_id=str(job.job_id), executor=f"submitit-{executor.cluster}")
                run.out(f"{a.head}: submitted as job {job.job_id} ({a.how})")
                pending.append((job, a))

            for job, a in pending:
                try:
                    record = job.result()
                    if not isinstance(record, RunRecord):
                        raise StoreError(f"job {job.job_id} returned {type(record).__name__}, not a RunRecord")
                    run.store_record(a, record)
                    run.out(f"{a.head}: finished: {result_text(record)}")
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - one failing job must not stop the study
                    run.fail(a, exc)
                    run.out(f"{a.head}: FAILED: {a.outcome.error}")
        except KeyboardInterrupt:
            for job, a in pending:
                if a.outcome.status == "failed" and a.outcome.error is None:
                    with contextlib.suppress(Exception):
                        job.cancel(check=False)
                    run.interrupted(a, "the submitit job")
            run.out("interrupted; unfinished jobs cancelled and their runs marked failed")
            raise


__all__ = ["CLUSTERS", "make_executor", "require_submitit", "run_submitit"]
