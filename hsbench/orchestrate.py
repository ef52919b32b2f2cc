"""Orchestration: run a study's variants through workers and store every record.

Public API (used by ``hsbench run`` in :mod:`hsbench.runner` and by the
submitit launcher :mod:`hsbench.launch`):

* :func:`check_options` validates the settings of one run of a study and
  writes nothing (:class:`RunOptions`);
* :func:`run_study` stores the study and its variants, skips finished
  ``(variant, seed)`` pairs and hands the rest to an :data:`Executor`
  (:func:`run_local` by default; :func:`hsbench.launch.run_submitit`);
* an executor works through a :class:`StudyRun`: :meth:`StudyRun.admit`
  claims one ``(variant, seed)`` (a ``flock`` on its run folder AND a claim
  in the database) and gives an :class:`Admitted` job;
  :meth:`StudyRun.store_record`, :meth:`StudyRun.fail` and
  :meth:`StudyRun.interrupted` end it.

Bookkeeping
    * The variant id is the hash of the resolved config
      (:meth:`hsbench.config.Variant.variant_id`); the run folder is
      ``<runs dir>/<variant id>/seed<seed>`` (``...-iters<N>`` with
      ``--max-iters N``). The runs dir is ``runs/`` beside a SQLite database
      file (``results/runs`` for other databases), ``--runs-dir`` else.
    * A ``(variant, seed)`` with a finished run of the same ``--max-iters``
      (None = the full budget) is skipped; ``--force`` reruns it from scratch
      (a new run row; the old one stays).
    * The claim on a run lives in the database (``runs.claimed_by`` and a
      heartbeat, :mod:`hsbench.store.runs`), so two ``hsbench run`` processes
      on one database never run the same ``(variant, seed)``, whatever their
      ``--runs-dir`` or working directory; the second reports it ``busy`` and
      goes on with the other variants. The run folder is also ``flock``-ed,
      so two databases sharing a runs dir do not write one folder at once.
    * A run left unfinished by a killed process (its claim dead: process gone
      on this host, or no heartbeat for :data:`hsbench.store.STALE_AFTER_S`)
      is resumed: same run row, training continues from its checkpoint. A
      finished ``record.json`` that was never stored is stored without
      recomputing.
    * A variant that fails (exception, NaN loss, out of memory) is stored as
      ``failed`` with its error (the traceback goes to ``error.txt`` in the run
      folder) and the study goes on; the exit code is then 1.
    * Ctrl-C (or SIGTERM) marks the current run ``failed`` with "interrupted"
      in one transaction and re-raises; running again resumes training from
      the checkpoint (in a new run row).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsbench.device import check_device
from hsbench.errors import ConfigError, StoreError
from hsbench.record import RunRecord
from hsbench.values import INT64_MAX
from hsbench.worker import (
    ERROR_NAME,
    RECORD_NAME,
    Job,
    clear_run_dir,
    read_record,
    run_job,
)

if TYPE_CHECKING:
    from hsbench.config import Variant
    from hsbench.store import Store
    from hsbench.studies import Study

#: Lock file that claims a run folder.
LOCK_NAME = ".lock"

#: Progress output: called with one line of text.
Printer = Callable[[str], None]


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class RunOptions:
    """The validated settings of one ``hsbench run`` (see :func:`check_options`).

    Attributes:
        db_url: the database URL.
        device: the device as the user gave it (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        max_iters: ``--max-iters`` override of the budget (iterations), None = full budget.
        force: rerun finished variants from scratch.
        runs_dir: absolute folder of the run folders.
        executor: name recorded with each run (``local``, ``submitit``, ...).
        quiet: no progress lines.
    """

    db_url: str
    device: str = "auto"
    max_iters: int | None = None
    force: bool = False
    runs_dir: Path = Path("results/runs")
    executor: str = "local"
    quiet: bool = False


def check_max_iters(max_iters: int | None) -> int | None:
    """Validate ``--max-iters`` (a positive number of training iterations, or None).

    Raises:
        ConfigError: not a positive integer.
    """
    if max_iters is None:
        return None
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or not 1 <= max_iters <= INT64_MAX:
        raise ConfigError(
            f"--max-iters must be a positive number of training iterations (at most {INT64_MAX}), got {max_iters!r}"
        )
    return max_iters


def check_db_url(db_url: str) -> str:
    """Parse ``db_url`` and load its dialect, so that a bad URL fails before anything is written.

    Raises:
        StoreError: not a URL, or an unknown database driver.
    """
    from sqlalchemy.engine import make_url

    from hsbench.store.engine import parse_db_url

    parse_db_url(db_url)  # refuses a '?' in a SQLite file name, which would open another file
    try:
        url = make_url(db_url)
    except Exception:  # noqa: BLE001 - ArgumentError, ValueError, ...
        raise StoreError(f"{db_url!r} is not a database URL; use e.g. sqlite:///results/hsbench.db") from None
    try:
        url.get_dialect()
    except Exception:  # noqa: BLE001 - NoSuchModuleError and friends
        shown = url.render_as_string(hide_password=True)
        raise StoreError(f"unknown database driver in {shown!r}; use e.g. sqlite:///results/hsbench.db") from None
    return db_url


def default_runs_dir(db_url: str) -> Path:
    """``runs/`` beside a SQLite database file, else ``results/runs`` (relative to the cwd)."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(db_url)
    except Exception:  # noqa: BLE001 - Store.open reports a bad URL in its own words
        return Path("results/runs")
    if url.get_backend_name() == "sqlite":
        db = url.database or ""
        if db and db != ":memory:" and not db.startswith("file::memory:"):
            if db.startswith("file:"):
                db = db[5:].split("?")[0]
            return Path(db).parent / "runs"
    return Path("results/runs")


def check_writable_dir(path: Path, what: str) -> Path:
    """Create ``path`` if needed and make sure a file can be written in it.

    Raises:
        ConfigError: the folder cannot be created or written.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write the {what} {str(path)!r}: {exc.strerror or exc}; pass a writable --runs-dir"
        ) from None
    return path


def check_options(
    *,
    db: str | None = None,
    device: str = "auto",
    max_iters: int | None = None,
    force: bool = False,
    runs_dir: str | os.PathLike[str] | None = None,
    executor: str = "local",
    resolve_here: bool = True,
    quiet: bool = False,
) -> RunOptions:
    """Validate the settings of one run of a study; nothing is written to the database.

    Args:
        db: database URL (None = ``$HSBENCH_DB``, else ``sqlite:///results/hsbench.db``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, for training, evaluation and FPS.
        max_iters: override of the training budget (iterations), recorded with each run.
        force: rerun finished variants (new runs, from scratch).
        runs_dir: where run folders go (default: :func:`default_runs_dir`); created.
        executor: the executor's name, recorded with each run.
        resolve_here: also resolve ``device`` on this machine (False when the
            workers run elsewhere, e.g. on SLURM GPU nodes).
        quiet: no progress lines.

    Raises:
        ConfigError: bad ``--max-iters`` or ``--device`` (CUDA asked for where there is
            none, with ``resolve_here``), unwritable runs folder.
        StoreError: a bad database URL.
    """
    from hsbench.store import resolve_db_url

    max_iters = check_max_iters(max_iters)
    device = check_device(device)
    if resolve_here:
        from hsbench.device import resolve_device

        resolve_device(device)
    url = check_db_url(resolve_db_url(db))
    rdir = check_writable_dir(Path(runs_dir) if runs_dir is not None else default_runs_dir(url), "runs folder")
    return RunOptions(db_url=url, device=device, max_iters=max_iters, force=force,
                      runs_dir=rdir.resolve(),  # workers (submitit) may start elsewhere
                      executor=executor, quiet=quiet)


def run_dir_for(runs_dir: Path, variant_id: str, seed: int, max_iters: int | None) -> Path:
    """``<runs_dir>/<variant_id>/seed<seed>[-iters<N>]``."""
    leaf = f"seed{seed}" + (f"-iters{max_iters}" if max_iters is not None else "")
    return Path(runs_dir) / variant_id / leaf


@contextlib.contextmanager
def lock_run_dir(run_dir: Path) -> Iterator[bool]:
    """Exclusive, non-blocking ``flock`` on ``run_dir/.lock``; yields whether it was obtained.

    The OS drops the lock when the holder exits (even on SIGKILL). It guards
    the folder; the run itself is claimed in the database (:meth:`StudyRun.admit`).
    """
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- outcome


@dataclass
class JobOutcome:
    """What happened to one ``(variant, seed)``.

    ``status``: ``finished``, ``skipped`` (already finished), ``busy`` (another
    process holds it), ``failed``, ``interrupted``. ``record`` is the stored
    record of a finished job.
    """

    name: str
    variant_id: str
    seed: int
    status: str
    run_id: int | None = None
    error: str | None = None
    record: RunRecord | None = None


@dataclass
class StudyOutcome:
    """The outcomes of one run of a study."""

    study: str
    db_url: str
    runs_dir: str
    jobs: list[JobOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Jobs with ``status``."""
        return sum(1 for j in self.jobs if j.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 otherwise."""
        return 1 if self.count("failed") else 0


def one_line(exc: BaseException) -> str:
    """``"TypeName: first line of the message"``."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def result_text(record: RunRecord | None) -> str:
    """``"mIoU 41.20%, 3.200 GMACs (thop), 5.3 FPS (cuda:1), 12.0 s"`` of a finished record."""
    if record is None:
        return "stored"
    parts = []
    if record.metrics is not None and record.metrics.miou is not None:
        parts.append(f"mIoU {100 * record.metrics.miou:.2f}%")
    if record.complexity is not None and record.complexity.gmacs_thop is not None:
        parts.append(f"{record.complexity.gmacs_thop:.3f} GMACs (thop)")
    if record.speed is not None and record.speed.fps is not None:
        parts.append(f"{record.speed.fps:.1f} FPS ({record.speed.device})")
    if record.wall_time_s is not None:
        parts.append(f"{record.wall_time_s:.1f} s")
    return ", ".join(parts) or "stored"


def console_printer(quiet: bool = False) -> Printer:
    """Progress lines on stdout (rich, no markup); nothing when ``quiet``."""
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)

    def out(text: str) -> None:
        if not quiet:
            console.print(text, markup=False)

    return out


# --------------------------------------------------------------------------- one study run


@dataclass
class Admitted:
    """One ``(variant, seed)`` this process holds (its folder locked, its run claimed).

    Attributes:
        job: what the worker runs.
        run_id: the claimed run.
        how: ``"run N"`` (new) or ``"resuming run N"``.
        record: a finished record of this job already in the run folder (store it, do not recompute).
        head: the progress prefix ``[k/n] name (variant i of N, id ..., seed s)``.
        outcome: this job's entry in the study's outcome.
    """

    job: Job
    run_id: int
    how: str
    record: RunRecord | None
    head: str
    outcome: JobOutcome


class StudyRun:
    """One run of one study against one open store: claims, stores, prints.

    Made by :func:`run_study`; executors (:func:`run_local`,
    :func:`hsbench.launch.run_submitit`) call :meth:`admit` for each
    ``(variant, seed)``, run the worker, then :meth:`store_record`,
    :meth:`fail` or :meth:`interrupted`.

    Attributes:
        store: the open store.
        study: the validated study.
        options: the validated options.
        out: progress printer.
        outcome: every job's outcome so far.
        owner: this process's claim token (:func:`hsbench.store.owner_token`).
    """

    def __init__(self, store: Store, study: Study, options: RunOptions, out: Printer, outcome: StudyOutcome,
                 todo: list[tuple[Variant, int]]) -> None:
        from hsbench.store import owner_token

        self.store = store
        self.study = study
        self.options = options
        self.out = out
        self.outcome = outcome
        self.todo = todo
        self.owner = owner_token()
        self._index = {id(v): i for i, v in enumerate(study.variants)}

    def job_for(self, variant: Variant, seed: int) -> Job:
        """The worker's :class:`Job` for ``(variant, seed)`` (data root made absolute)."""
        v = variant.with_data_root(str(variant.data.data_root))
        rdir = run_dir_for(self.options.runs_dir, variant.variant_id(), seed, self.options.max_iters)
        return Job(variant=v, seed=int(seed), device=self.options.device, max_iters=self.options.max_iters,
                   run_dir=str(rdir))

    def head(self, k: int, variant: Variant, seed: int) -> str:
        """The progress prefix of the ``k``-th job."""
        return (f"[{k}/{len(self.todo)}] {variant.name} (variant {self._index[id(variant)] + 1} of "
                f"{len(self.study.variants)}, id {variant.variant_id()}, seed {seed})")

    @contextlib.contextmanager
    def admit(self, k: int, variant: Variant, seed: int) -> Iterator[Admitted | None]:
        """Claim the ``k``-th ``(variant, seed)``: lock its folder, claim its run in the database.

        Yields an :class:`Admitted` while the folder stays locked, or None when
        the job is not this process's to run: another process holds it
        (``busy``) or it was finished meanwhile (``skipped``). The outcome is
        recorded either way.

        Raises:
            StoreError: the database refused the claim.
        """
        job = self.job_for(variant, seed)
        head = self.head(k, variant, seed)
        o = JobOutcome(variant.name, job.variant_id, int(seed), "failed")
        run_dir = Path(job.run_dir)
        with lock_run_dir(run_dir) as mine:
            if not mine:
                o.status = "busy"
                self.out(f"{head}: skipped, another process is running it (lock {run_dir / LOCK_NAME})")
                self.outcome.jobs.append(o)
                yield None
                return
            from hsbench.data import dataset_info

            c = self.store.claim_run(
                job.variant_id, owner=self.owner, study=self.study.name, seed=seed,
                max_iters=self.options.max_iters, force=self.options.force,
                budget_iters=variant.train.iterations, device=self.options.device, dataset=variant.data.dataset,
                dataset_version=dataset_info(variant.data).version, resolution=variant.resolution_text,
                checkpoint_path=str(run_dir / "checkpoint.pt"), run_dir=str(run_dir),
                executor=self.options.executor,
            )
            self.outcome.jobs.append(o)
            o.run_id = c.run_id
            if c.how == "finished":
                o.status = "skipped"
                self.out(f"{head}: skipped, finished by another process (run {c.run_id})")
                yield None
                return
            if c.how == "busy":
                o.status = "busy"
                self.out(f"{head}: skipped, run {c.run_id} is being run by another process ({c.holder})")
                yield None
                return
            if self.options.force and c.how == "new":
                clear_run_dir(run_dir)
            record = None if self.options.force else read_record(job)
            how = f"resuming run {c.run_id}" if c.how == "resumed" else f"run {c.run_id}"
            yield Admitted(job=job, run_id=c.run_id, how=how, record=record, head=head, outcome=o)

    def store_record(self, a: Admitted, record: RunRecord) -> None:
        """Store the finished ``record`` of ``a`` (one transaction) and mark its outcome finished."""
        self.store.finish_run(a.run_id, record)
        a.outcome.status, a.outcome.record = "finished", record

    def fail(self, a: Admitted, exc: BaseException) -> None:
        """Store ``a`` as failed with ``exc``'s first line; the traceback goes to ``error.txt``."""
        msg = one_line(exc)
        path = Path(a.job.run_dir) / ERROR_NAME
        try:
            path.write_text("".join(traceback.format_exception(exc)))
            msg += f" (traceback in {path})"
        except OSError:
            pass
        self.store.fail_run(a.run_id, msg)
        a.outcome.status, a.outcome.error = "failed", msg

    def interrupted(self, a: Admitted, during: str) -> None:
        """Mark ``a``'s run failed as interrupted (Ctrl-C, SIGTERM) during phase ``during``."""
        a.outcome.status = "interrupted"
        with contextlib.suppress(StoreError):
            self.store.fail_run(a.run_id, f"interrupted (Ctrl-C) during {during}; "
                                          "run the study again to resume from the checkpoint")

    @contextlib.contextmanager
    def heartbeat(self, every_s: float | None = None) -> Iterator[None]:
        """Beat this process's claims every ``every_s`` seconds (default
        :data:`hsbench.store.HEARTBEAT_S`) in a background thread while the block runs."""
        from hsbench.store import HEARTBEAT_S

        stop = threading.Event()
        period = HEARTBEAT_S if every_s is None else every_s

        def beat() -> None:
            while not stop.wait(period):
                with contextlib.suppress(StoreError):
                    self.store.heartbeat(self.owner)

        t = threading.Thread(target=beat, name="hsbench-heartbeat", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=5)


#: An executor runs the given ``(variant, seed)`` pairs of a :class:`StudyRun`.
Executor = Callable[[list[tuple["Variant", int]], StudyRun], None]


def run_local(todo: list[tuple[Variant, int]], run: StudyRun) -> None:
    """The local executor: each ``(variant, seed)`` in this process, one after the other."""
    for k, (v, seed) in enumerate(todo, start=1):
        with run.admit(k, v, seed) as a:
            if a is None:
                continue
            phase_name = ["start"]

            def on_phase(name: str, head: str = a.head, current: list[str] = phase_name) -> None:
                current[0] = name
                run.out(f"{head}: {name} ...")

            try:
                record = a.record
                if record is None:
                    iters = run.options.max_iters if run.options.max_iters is not None else v.train.iterations
                    run.out(f"{a.head}: {a.how} on {run.options.device}, {v.resolution_text}, {iters:,} iterations")
                    record = run_job(a.job, on_phase)
                else:
                    run.out(f"{a.head}: storing the finished {RECORD_NAME} of {a.how}")
                run.store_record(a, record)
                run.out(f"{a.head}: finished: {result_text(record)}")
            except KeyboardInterrupt:
                run.interrupted(a, phase_name[0])
                run.out(f"{a.head}: interrupted; run {a.run_id} marked failed, checkpoint kept in {a.job.run_dir}")
                raise
            except Exception as exc:  # noqa: BLE001 - a failing variant must not stop the study
                run.fail(a, exc)
                run.out(f"{a.head}: FAILED: {a.outcome.error}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (e.g. a scheduler's preemption) like Ctrl-C while a study runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_study(study: Study, options: RunOptions, *, execute: Executor | None = None,
              out: Printer | None = None) -> StudyOutcome:
    """Run every ``(variant, seed)`` of ``study`` that is not finished; store the results.

    Args:
        study: a validated :class:`hsbench.studies.Study`.
        options: from :func:`check_options`.
        execute: the executor (default :func:`run_local`; :func:`hsbench.launch.run_submitit`).
        out: progress printer (default: :func:`console_printer`).

    Returns:
        A :class:`StudyOutcome` (its ``exit_code`` is 1 when a variant failed).

    Raises:
        StoreError: the database cannot be opened or written.
        KeyboardInterrupt: after marking the current run(s) interrupted.
    """
    from hsbench.store import Store
    from hsbench.studies import check_name_reuse

    out = out or console_printer(options.quiet)
    execute = execute or run_local
    store = Store.open(options.db_url)
    outcome = StudyOutcome(study=study.name, db_url=store.url, runs_dir=str(options.runs_dir))
    max_iters = options.max_iters
    with store, sigterm_as_interrupt():
        jobs = study.jobs()
        # A rerun of an unchanged, finished study writes nothing at all.
        try:
            stored = store.get_study(study.name)
        except StoreError:
            stored = None
        if stored is not None:  # a second file reusing a stored study's name: refused without --force
            check_name_reuse(study, stored.spec_toml, stored.spec_path, force=options.force)
        unchanged = (
            stored is not None and stored.spec_toml == study.text and stored.description == study.description
            and stored.paper_table == study.table and stored.n_variants == len(study.variants)
        )
        done = store.finished_run_ids(study.name, max_iters) if stored is not None else {}
        if not (unchanged and not options.force and all((v.variant_id(), s) in done for v, s in jobs)):
            store.upsert_study(study.name, description=study.description, paper_table=study.table,
                               spec_toml=study.text, spec_path=str(study.path))
            for v in study.variants:
                store.upsert_variant(v.variant_id(), v.config_dict(), study=study.name, label=v.name)
            done = store.finished_run_ids(study.name, max_iters)
        budget = f"--max-iters {max_iters}" if max_iters is not None else "full budget"
        todo = []
        for v, seed in jobs:
            key = (v.variant_id(), seed)
            if key in done and not options.force:
                outcome.jobs.append(JobOutcome(v.name, key[0], seed, "skipped", run_id=done[key]))
            else:
                todo.append((v, seed))
        out(f"study {study.name}: {len(study.variants)} variant(s) x {len(study.seeds)} seed(s) = "
            f"{len(jobs)} run(s); {len(jobs) - len(todo)} already finished ({budget}); "
            f"device {options.device}; database {store.url}")
        for j in outcome.jobs:
            out(f"  skip {j.name} (seed {j.seed}): finished in run {j.run_id}")
        if not todo:
            out(f"nothing to do: every variant of study {study.name} is finished in {store.url} "
                f"({budget}); use --force to rerun")
            return outcome
        run = StudyRun(store, study, options, out, outcome, todo)
        with run.heartbeat():
            execute(todo, run)
    summarize(outcome, out)
    return outcome


def summarize(outcome: StudyOutcome, out: Printer) -> None:
    """Print the closing lines: counts per status, failures and busy jobs."""
    counts = {s: outcome.count(s) for s in ("finished", "skipped", "busy", "failed")}
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    out(f"study {outcome.study}: {text or 'nothing run'}; database {outcome.db_url}; "
        f"`hsbench runs list --study {outcome.study}` shows the runs")
    for j in outcome.jobs:
        if j.status == "failed":
            out(f"  failed: {j.name} (seed {j.seed}, run {j.run_id}): {j.error}")
        elif j.status == "busy":
            out(f"  not run here: {j.name} (seed {j.seed}) is being run by another process")


__all__ = [
    "Admitted",
    "Executor",
    "JobOutcome",
    "LOCK_NAME",
    "Printer",
    "RunOptions",
    "StudyOutcome",
    "StudyRun",
    "check_db_url",
    "check_max_iters",
    "check_options",
    "check_writable_dir",
    "console_printer",
    "default_runs_dir",
    "lock_run_dir",
    "one_line",
    "result_text",
    "run_dir_for",
    "run_local",
    "run_study",
    "sigterm_as_interrupt",
    "summarize",
]
