"""``hsbench run STUDY.toml``: run a study's variants and store every measurement.

For each ``(variant, seed)`` of a :class:`~hsbench.studies.Study` the runner

1. **complexity**: builds the model and counts parameters and MACs at the
   variant's resolution (:func:`hsbench.measure.complexity.complexity`);
2. **train + eval**: :func:`hsbench.engine.run_variant` trains for the
   budget (paper Table 1, or ``--max-iters``) and scores the evaluation split;
   it resumes from the checkpoint in the run folder;
3. **speed**: loads the trained weights and times the model with the paper's
   FPS protocol (:func:`hsbench.measure.speed.measure_fps`, Sec. 4);
4. writes everything to ``record.json`` in the run folder (temp file +
   ``os.replace``), then stores it in the database with
   :meth:`hsbench.store.Store.finish_run`: metrics, complexity and speed rows
   and the ``finished`` status in ONE transaction.

Bookkeeping
    * The variant id is the hash of the resolved config
      (:meth:`hsbench.config.Variant.variant_id`); the run folder is
      ``<runs dir>/<variant id>/seed<seed>`` (``...-iters<N>`` with
      ``--max-iters N``). The runs dir is ``runs/`` beside a SQLite database
      file (``results/runs`` for the default database), ``--runs-dir`` else.
    * A ``(variant, seed)`` with a finished run of the same ``--max-iters``
      (None = the full budget) is skipped; ``--force`` reruns it from scratch
      (a new run row; the old one stays).
    * A run left ``running`` by a killed process is resumed: same run row,
      training continues from its checkpoint. A finished ``record.json`` that
      was never stored is stored without recomputing.
    * Two ``hsbench run`` processes may share a database and even a study:
      each run folder is claimed with an exclusive ``flock`` on its ``.lock``
      file (released by the OS when a process dies), so a variant is run by
      one process at a time and the other skips it. (``flock`` needs the run
      folders on a local or lock-aware file system.)
    * A variant that fails (exception, NaN loss, out of memory) is stored as
      ``failed`` with its error (the traceback goes to ``error.txt`` in the run
      folder) and the study goes on; the exit code is then 1.
    * Ctrl-C (or SIGTERM) marks the current run ``failed`` with "interrupted"
      in one transaction and exits with 130; running again resumes training
      from the checkpoint (in a new run row).

``--executor submitit`` hands the per-variant work (:func:`execute_job`) to
submitit (:mod:`hsbench.launch`); the submitting process keeps all database
writes and stores each worker's ``record.json``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from hsbench.errors import ConfigError, HsbenchError, StoreError
from hsbench.values import INT64_MAX

#: File a worker writes its results to, in the run folder.
RECORD_NAME = "record.json"
#: Version of the record.json layout.
RECORD_FORMAT = 1
#: Lock file that claims a run folder.
LOCK_NAME = ".lock"
#: File the traceback of a failed variant goes to.
ERROR_NAME = "error.txt"

EXECUTORS = ("local", "submitit")
DEVICES = ("auto", "cpu", "cuda")

PhaseCallback = Callable[[str], None]


# --------------------------------------------------------------------------- arguments


def check_device(device: str) -> str:
    """Validate ``--device`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``); the torch device string.

    Raises:
        ConfigError: unknown device, or CUDA asked for where there is none.
    """
    name = str(device).strip().lower()
    if name not in DEVICES and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ConfigError(f"--device {device!r} is not one of auto, cpu, cuda (or cuda:N)")
    from hsbench.engine.run import resolve_device

    return str(resolve_device(name))


def check_max_iters(max_iters: Optional[int]) -> Optional[int]:
    """Validate ``--max-iters`` (a positive number of training iterations, or None)."""
    if max_iters is None:
        return None
    if isinstance(max_iters, bool) or not isinstance(max_iters, int) or not 1 <= max_iters <= INT64_MAX:
        raise ConfigError(
            f"--max-iters must be a positive number of training iterations (at most {INT64_MAX}), got {max_iters!r}"
        )
    return max_iters


def check_executor(executor: str) -> str:
    """Validate ``--executor``; for submitit, check that it is installed."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if executor == "submitit":
        from hsbench.launch import require_submitit

        require_submitit()
    return executor


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
        raise StoreError(
            f"unknown database driver in {shown!r}; use e.g. sqlite:///results/hsbench.db"
        ) from None
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
    """Create ``path`` if needed and make sure a file can be written in it."""
    import tempfile

    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot write the {what} {str(path)!r}: {exc.strerror or exc}; pass a writable --runs-dir"
        ) from None
    return path


def run_dir_for(runs_dir: Path, variant_id: str, seed: int, max_iters: Optional[int]) -> Path:
    """``<runs_dir>/<variant_id>/seed<seed>[-iters<N>]``."""
    leaf = f"seed{seed}" + (f"-iters{max_iters}" if max_iters is not None else "")
    return Path(runs_dir) / variant_id / leaf


# --------------------------------------------------------------------------- the worker


def job_spec(variant: Any, seed: int, *, device: str, max_iters: Optional[int], run_dir: Path) -> dict[str, Any]:
    """Everything a worker needs, as plain JSON-able data (sent to submitit workers)."""
    return {
        "variant_id": variant.variant_id(),
        "name": variant.name,
        "seed": int(seed),
        "device": device,
        "max_iters": max_iters,
        "run_dir": str(run_dir),
        "sections": {
            "model": variant.model.to_dict(),
            "data": {**variant.data.to_dict(), "root": str(variant.data.data_root)},  # absolute for workers
            "train": variant.train.replace(seed=int(seed)).to_dict(),
            "eval": variant.eval.to_dict(),
            "speed": variant.speed.to_dict(),
            "measure": variant.measure.to_dict(),
        },
    }


def _configs(spec: dict[str, Any]) -> dict[str, Any]:
    from hsbench.config import SECTIONS

    return {name: SECTIONS[name].from_dict(spec["sections"][name]) for name in SECTIONS}


def execute_job(spec: dict[str, Any], on_phase: PhaseCallback | None = None) -> str | None:
    """Run one ``(variant, seed)``: complexity, train + eval, speed; write ``record.json``.

    This is the worker: it touches no database. It can run in this process
    (local executor) or in a submitit job.

    Args:
        spec: from :func:`job_spec`.
        on_phase: called with ``"complexity"``, ``"train+eval"``, ``"speed"``.

    Returns:
        The path of the ``record.json`` written (atomically) in the run folder; None on
        the ranks other than 0 of a DDP job (they train and evaluate only).

    Raises:
        Whatever the phases raise (DataError, TrainingDiverged, CUDA OOM, ...).
    """
    import torch

    from hsbench.engine.run import resolve_device, run_variant, write_json_atomic
    from hsbench.engine.train import load_checkpoint
    from hsbench.measure.complexity import complexity
    from hsbench.measure.speed import measure_fps
    from hsbench.models import build_model

    phase = on_phase or (lambda name: print(f"phase: {name}", flush=True))
    t0 = time.perf_counter()
    cfg = _configs(spec)
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(spec["device"])
    model_cfg, data_cfg, train_cfg = cfg["model"], cfg["data"], cfg["train"]
    if spec.get("max_iters") is not None:
        train_cfg = train_cfg.replace(iterations=int(spec["max_iters"]))
    w, h = cfg["speed"].resolution
    bare_cfg = model_cfg.replace(pretrained=False, backbone_weights=None)  # weights don't change counts

    from hsbench.engine.distributed import launch_rank

    # Under DDP (torchrun, or a submitit job with several tasks) every rank trains and
    # evaluates; complexity, speed and the record are rank 0's alone.
    main_rank = launch_rank() == 0
    if main_rank:
        phase("complexity")
        t = time.perf_counter()
        model = build_model(bare_cfg)
        cx = complexity(model, (w, h), counters=cfg["measure"].counters).to_dict()
        cx["counters"] = list(cfg["measure"].counters)
        cx["wall_time_s"] = time.perf_counter() - t
        del model

    phase("train+eval")
    result = run_variant(model_cfg, data_cfg, train_cfg, cfg["eval"], run_dir=run_dir, device=dev)
    if not main_rank:
        return None

    phase("speed")
    model = build_model(bare_cfg)
    weights = "random init"
    if result.checkpoint_path and Path(result.checkpoint_path).is_file():
        state = load_checkpoint(result.checkpoint_path, map_location="cpu")
        model.load_state_dict(state["model"])
        weights = "trained"
    speed_cfg = cfg["speed"]
    if speed_cfg.device == "auto":
        speed_cfg = speed_cfg.replace(device=dev.type)
    sr = measure_fps(model, speed_cfg).to_dict(samples=False)
    sr["weights"] = weights
    del model

    record = {
        "format": RECORD_FORMAT,
        "variant_id": spec["variant_id"],
        "name": spec["name"],
        "seed": spec["seed"],
        "max_iters": spec.get("max_iters"),
        "budget_iters": cfg["train"].iterations,
        "iterations": train_cfg.iterations,
        "device": str(dev),
        "host": socket.gethostname(),
        "wall_time_s": time.perf_counter() - t0,
        "result": result.to_dict(),
        "complexity": cx,
        "speed": sr,
    }
    path = write_json_atomic(run_dir / RECORD_NAME, record)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return str(path)


def read_record(path: str | os.PathLike, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The record at ``path`` if it is a complete record of ``spec``'s job, else None."""
    import json

    p = Path(path)
    if not p.is_file():
        return None
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(rec, dict)
        and rec.get("format") == RECORD_FORMAT
        and rec.get("variant_id") == spec["variant_id"]
        and rec.get("seed") == spec["seed"]
        and rec.get("max_iters") == spec.get("max_iters")
    )
    return rec if ok else None


# --------------------------------------------------------------------------- record -> store


def _first(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


def store_payload(record: dict[str, Any]) -> dict[str, Any]:
    """``finish_run`` keyword arguments (metrics, complexity, speed) from a worker record."""
    res = record["result"]
    protocol = dict(res.get("protocol") or {})
    metrics = dict(res["metrics"])
    metrics.update(
        split=protocol.get("split"),
        per_class_iou=res.get("per_class_iou"),
        confusion_matrix=res.get("confusion_matrix"),
        protocol=protocol,
        per_class_acc=res.get("per_class_acc"),
        iterations_done=res.get("iterations_done"),
        start_iteration=res.get("start_iteration"),
        final_loss=res.get("final_loss"),
        train_wall_time_s=res.get("train_wall_time_s"),
        eval_wall_time_s=res.get("eval_wall_time_s"),
        train_images_per_s=res.get("train_images_per_s"),
        eval_images_per_s=res.get("eval_images_per_s"),
        train_device_name=res.get("device_name"),
        world_size=res.get("world_size"),
        dataset_version=res.get("dataset_version"),
    )
    cx = dict(record["complexity"])
    sp = record["speed"]
    lat, mo = sp.get("latency") or {}, sp.get("model_only") or {}
    settings, prov = sp.get("settings") or {}, sp.get("provenance") or {}
    batch = settings.get("batch_size") or 1
    ci = sp.get("fps_ci95") or [None, None]
    speed = {
        "fps": sp.get("fps"),
        "latency_median_ms": lat.get("median_ms"),
        "latency_mean_ms": lat.get("mean_ms"),
        "latency_p10_ms": lat.get("p10_ms"),
        "latency_p90_ms": lat.get("p90_ms"),
        # latency CI from the FPS CI (fps = batch * 1000 / median latency)
        "ci_low_ms": 1000.0 * batch / ci[1] if ci[1] else None,
        "ci_high_ms": 1000.0 * batch / ci[0] if ci[0] else None,
        "model_only_latency_ms": mo.get("median_ms"),
        "device": sp.get("device"),
        "device_name": settings.get("device_name"),
        "driver": prov.get("driver_version"),
        "cuda": prov.get("cuda_version"),
        "cudnn": prov.get("cudnn_version"),
        "torch": prov.get("torch_version"),
        "precision": settings.get("precision"),
        "resolution": settings.get("resolution"),
        "batch": batch,
        "tta": settings.get("tta_hflip"),
        "bn_fused": sp.get("bn_fused"),
        "hsbench_version": prov.get("hsbench_version"),
        "git_commit": prov.get("git_commit"),
        "provenance": prov,
        "fps_ci95": ci,
        "warmup_frames": sp.get("warmup_frames"),
        "warmup_converged": sp.get("warmup_converged"),
        "weights": sp.get("weights"),
        "protocol": sp.get("protocol"),
        "settings": settings,
        "config": sp.get("config"),
    }
    return {"metrics": metrics, "complexity": cx, "speed": speed, "checkpoint_path": res.get("checkpoint_path")}


# --------------------------------------------------------------------------- claiming


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[bool]:
    """Exclusive, non-blocking ``flock`` on ``run_dir/.lock``; yields whether it was obtained.

    The OS drops the lock when the holder exits (even on SIGKILL), so a
    crashed run is claimable again at once.
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
    process holds it), ``failed``, ``interrupted``.
    """

    name: str
    variant_id: str
    seed: int
    status: str
    run_id: Optional[int] = None
    error: Optional[str] = None
    miou: Optional[float] = None
    gmacs: Optional[float] = None
    fps: Optional[float] = None
    fps_device: Optional[str] = None
    wall_time_s: Optional[float] = None


@dataclass
class StudyOutcome:
    """The outcomes of one ``hsbench run``."""

    study: str
    db_url: str
    runs_dir: str
    jobs: list[JobOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for j in self.jobs if j.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 otherwise."""
        return 1 if self.count("failed") else 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _outcome_from_record(o: JobOutcome, record: dict[str, Any]) -> None:
    o.miou = (record["result"].get("metrics") or {}).get("miou")
    o.gmacs = record["complexity"].get("gmacs_thop")
    o.fps = record["speed"].get("fps")
    o.fps_device = record["speed"].get("device")
    o.wall_time_s = record.get("wall_time_s")


# --------------------------------------------------------------------------- the runner


class _Printer:
    """Progress lines: ``[k/n] variant · seed s · phase``."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(highlight=False, soft_wrap=True)
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (e.g. a scheduler's preemption) like Ctrl-C while a study runs."""
    import threading

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


def _finished_runs(store: Any, study: str, max_iters: Optional[int]) -> dict[tuple[str, int], int]:
    """``(variant_id, seed)`` -> id of a finished run with the same ``--max-iters``."""
    out: dict[tuple[str, int], int] = {}
    for r in store.list_runs(study=study, status="finished"):
        if r.max_iters == max_iters:
            out.setdefault((r.variant_id, r.seed), r.id)
    return out


def run_study(
    study: Any,
    *,
    db: Optional[str] = None,
    device: str = "auto",
    max_iters: Optional[int] = None,
    executor: str = "local",
    force: bool = False,
    runs_dir: Optional[str | os.PathLike] = None,
    quiet: bool = False,
    launch: Any = None,
) -> StudyOutcome:
    """Run every ``(variant, seed)`` of ``study`` that is not finished; store the results.

    Args:
        study: a validated :class:`hsbench.studies.Study`.
        db: database URL (None = ``$HSBENCH_DB``, else ``sqlite:///results/hsbench.db``).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, for training, evaluation and FPS.
        max_iters: override of the training budget (iterations), recorded with each run.
        executor: ``local`` (this process) or ``submitit`` (:mod:`hsbench.launch`).
        force: rerun finished variants (new runs, from scratch).
        runs_dir: where run folders go (default: :func:`default_runs_dir`).
        quiet: no progress lines.
        launch: the submitit executor's :class:`hsbench.launch.LaunchPlan` (default: made
            from the study's ``[launch]`` table by :func:`hsbench.launch.plan`).

    Returns:
        A :class:`StudyOutcome` (its ``exit_code`` is 1 when a variant failed).

    Raises:
        ConfigError / StoreError: bad arguments or database, before anything is written.
        KeyboardInterrupt: after marking the current run(s) interrupted.
    """
    from hsbench.store import Store, resolve_db_url
    from hsbench.studies import check_name_reuse

    # ---- everything that can be wrong is checked before the database is touched
    max_iters = check_max_iters(max_iters)
    executor = check_executor(executor)
    dev = check_device(device)
    url = check_db_url(resolve_db_url(db))
    rdir = check_writable_dir(Path(runs_dir) if runs_dir is not None else default_runs_dir(url), "runs folder")
    rdir = rdir.resolve()  # workers (submitit) may start elsewhere
    if executor == "submitit" and launch is None:
        from hsbench.launch import plan

        launch = plan(study.launch, device=device)  # sinfo: refuse what no node can run, before any write
    out = _Printer(quiet)

    store = Store.open(url)
    outcome = StudyOutcome(study=study.name, db_url=store.url, runs_dir=str(rdir))
    with store, _sigterm_as_interrupt():
        jobs = study.jobs()
        # A rerun of an unchanged, finished study writes nothing at all.
        try:
            stored = store.get_study(study.name)
        except StoreError:
            stored = None
        if stored is not None:  # a second file reusing a stored study's name: refused without --force
            check_name_reuse(study, stored.spec_toml, stored.spec_path, force=force)
        unchanged = (
            stored is not None and stored.spec_toml == study.text and stored.description == study.description
            and stored.paper_table == study.table and stored.n_variants == len(study.variants)
        )
        done = _finished_runs(store, study.name, max_iters) if stored is not None else {}
        if not (unchanged and not force and all((v.variant_id(), s) in done for v, s in jobs)):
            store.upsert_study(
                study.name, description=study.description, paper_table=study.table,
                spec_toml=study.text, spec_path=str(study.path),
            )
            for v in study.variants:
                store.upsert_variant(v.variant_id(), v.config_dict(), study=study.name, label=v.name)
            done = _finished_runs(store, study.name, max_iters)
        budget = f"--max-iters {max_iters}" if max_iters is not None else "full budget"
        todo = []
        for v, seed in jobs:
            key = (v.variant_id(), seed)
            if key in done and not force:
                outcome.jobs.append(JobOutcome(v.name, key[0], seed, "skipped", run_id=done[key]))
            else:
                todo.append((v, seed))
        out(f"study {study.name}: {len(study.variants)} variant(s) x {len(study.seeds)} seed(s) = "
            f"{len(jobs)} run(s); {len(jobs) - len(todo)} already finished ({budget}); "
            f"device {dev}; database {store.url}")
        for j in outcome.jobs:
            out(f"  skip {j.name} (seed {j.seed}): finished in run {j.run_id}")
        if not todo:
            out(f"nothing to do: every variant of study {study.name} is finished in {store.url} "
                f"({budget}); use --force to rerun")
            return outcome

        common = dict(store=store, study=study, dev=dev, max_iters=max_iters, force=force,
                      runs_dir=rdir, out=out, outcome=outcome, total=len(jobs))
        if executor == "submitit":
            from hsbench.launch import run_submitit

            run_submitit(todo, **common, launch=launch)
        else:
            _run_local(todo, **common)

    _summary(outcome, out)
    return outcome


def _prepare(store: Any, study: Any, v: Any, seed: int, *, dev: str, max_iters: Optional[int],
             force: bool, run_dir: Path) -> tuple[Optional[int], Optional[dict[str, Any]], str, dict[str, Any]]:
    """Under the run folder's lock: (run id, stored-but-unsaved record, how, spec); run id None = finished meanwhile."""
    vid = v.variant_id()
    spec = job_spec(v, seed, device=dev, max_iters=max_iters, run_dir=run_dir)
    if not force and (vid, seed) in _finished_runs(store, study.name, max_iters):
        return None, None, "finished meanwhile", spec
    if force:
        for name in ("checkpoint.pt", RECORD_NAME, "result.json", ERROR_NAME):
            with contextlib.suppress(FileNotFoundError):
                (run_dir / name).unlink()
    old = store.unfinished_run(vid, seed=seed)
    if old is not None and old.max_iters == max_iters and force:
        store.fail_run(old.id, "superseded by a --force rerun")  # we hold its run folder's lock
        old = None
    if old is not None and old.max_iters == max_iters:
        store.update_run(old.id, status="running", device=dev)
        run_id, how = old.id, f"resuming run {old.id}"
    else:
        from hsbench.data import dataset_info

        info = dataset_info(v.data)
        run_id = store.start_run(
            vid, study=study.name, seed=seed, budget_iters=v.train.iterations, max_iters=max_iters,
            device=dev, dataset=v.data.dataset, dataset_version=info.version,
            resolution=v.resolution_text, checkpoint_path=str(run_dir / "checkpoint.pt"),
            extra={"pid": os.getpid(), "host": socket.gethostname(), "run_dir": str(run_dir),
                   "label": v.name},
        )
        how = f"run {run_id}"
    record = None if force else read_record(run_dir / RECORD_NAME, spec)
    return run_id, record, how, spec


def _job_head(k: int, todo: list, v: Any, seed: int, study: Any, index: dict[int, int]) -> str:
    """The progress prefix of one job: ``[k/n] name (variant i of N, id ..., seed s)``."""
    return (f"[{k}/{len(todo)}] {v.name} (variant {index[id(v)] + 1} of {len(study.variants)}, "
            f"id {v.variant_id()}, seed {seed})")


def _admit(store: Any, study: Any, v: Any, seed: int, o: JobOutcome, *, mine: bool, head: str, out: Any,
           outcome: StudyOutcome, dev: str, max_iters: Optional[int], force: bool, run_dir: Path,
           ) -> tuple[int, Optional[dict[str, Any]], str, dict[str, Any]] | None:
    """The step both executors share once they tried the run folder's lock.

    Returns ``(run id, stored-but-unsaved record, how, spec)`` (see
    :func:`_prepare`), or None when the job is skipped: busy in another
    process, or finished meanwhile. Records ``o`` in ``outcome`` either way.
    """
    if not mine:
        o.status = "busy"
        out(f"{head}: skipped, another process is running it (lock {run_dir / LOCK_NAME})")
        outcome.jobs.append(o)
        return None
    run_id, record, how, spec = _prepare(store, study, v, seed, dev=dev, max_iters=max_iters,
                                         force=force, run_dir=run_dir)
    outcome.jobs.append(o)
    if run_id is None:
        o.status = "skipped"
        out(f"{head}: skipped, finished by another process")
        return None
    o.run_id = run_id
    return run_id, record, how, spec


def _store_record(store: Any, run_id: int, record: dict[str, Any], o: JobOutcome) -> None:
    store.finish_run(run_id, **store_payload(record))
    o.status = "finished"
    _outcome_from_record(o, record)


def _fail(store: Any, run_id: int, exc: BaseException, run_dir: Path, o: JobOutcome) -> None:
    msg = _one_line(exc)
    try:
        (run_dir / ERROR_NAME).write_text("".join(traceback.format_exception(exc)))
        msg += f" (traceback in {run_dir / ERROR_NAME})"
    except OSError:
        pass
    store.fail_run(run_id, msg)
    o.status, o.error = "failed", msg


def _run_local(todo: list, *, store: Any, study: Any, dev: str, max_iters: Optional[int], force: bool,
               runs_dir: Path, out: _Printer, outcome: StudyOutcome, total: int) -> None:
    index = {id(v): i for i, v in enumerate(study.variants)}
    for k, (v, seed) in enumerate(todo, start=1):
        vid = v.variant_id()
        run_dir = run_dir_for(runs_dir, vid, seed, max_iters)
        head = _job_head(k, todo, v, seed, study, index)
        o = JobOutcome(v.name, vid, seed, "failed")
        with claim(run_dir) as mine:
            admitted = _admit(store, study, v, seed, o, mine=mine, head=head, out=out, outcome=outcome,
                              dev=dev, max_iters=max_iters, force=force, run_dir=run_dir)
            if admitted is None:
                continue
            run_id, record, how, spec = admitted
            phase_name = ["start"]

            def on_phase(name: str) -> None:
                phase_name[0] = name
                out(f"{head}: {name} ...")

            try:
                if record is None:
                    out(f"{head}: {how} on {dev}, {v.resolution_text}, "
                        f"{max_iters if max_iters is not None else v.train.iterations:,} iterations")
                    record = read_record(execute_job(spec, on_phase), spec)
                    if record is None:  # pragma: no cover - the worker just wrote it
                        raise HsbenchError(f"the worker wrote no readable {RECORD_NAME} in {run_dir}")
                else:
                    out(f"{head}: storing the finished {RECORD_NAME} of {how}")
                _store_record(store, run_id, record, o)
                out(f"{head}: finished: {_result_text(o)}")
            except KeyboardInterrupt:
                o.status = "interrupted"
                with contextlib.suppress(StoreError):
                    store.fail_run(run_id, f"interrupted (Ctrl-C) during {phase_name[0]}; "
                                           "run the study again to resume from the checkpoint")
                out(f"{head}: interrupted; run {run_id} marked failed, checkpoint kept in {run_dir}")
                raise
            except Exception as exc:  # noqa: BLE001 - a failing variant must not stop the study
                _fail(store, run_id, exc, run_dir, o)
                out(f"{head}: FAILED: {o.error}")


def _result_text(o: JobOutcome) -> str:
    parts = []
    if o.miou is not None:
        parts.append(f"mIoU {100 * o.miou:.2f}%")
    if o.gmacs is not None:
        parts.append(f"{o.gmacs:.3f} GMACs (thop)")
    if o.fps is not None:
        parts.append(f"{o.fps:.1f} FPS ({o.fps_device})")
    if o.wall_time_s is not None:
        parts.append(f"{o.wall_time_s:.1f} s")
    return ", ".join(parts) or "stored"


def _summary(outcome: StudyOutcome, out: _Printer) -> None:
    counts = {s: outcome.count(s) for s in ("finished", "skipped", "busy", "failed")}
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    out(f"study {outcome.study}: {text or 'nothing run'}; database {outcome.db_url}; "
        f"`hsbench runs list --study {outcome.study}` shows the runs")
    for j in outcome.jobs:
        if j.status == "failed":
            out(f"  failed: {j.name} (seed {j.seed}, run {j.run_id}): {j.error}")
        elif j.status == "busy":
            out(f"  not run here: {j.name} (seed {j.seed}) is being run by another process")


# --------------------------------------------------------------------------- CLI


def _cli_launch_config(values: dict[str, Any]) -> Any:
    """A :class:`hsbench.resources.LaunchConfig` from option values; errors name the option (``--mem-gb``)."""
    from hsbench.resources import LaunchConfig

    try:
        return LaunchConfig(**values)
    except ConfigError as exc:
        msg = str(exc)
        for key in values:
            msg = msg.replace(f"launch.{key}", "--" + key.replace("_", "-"))
        raise ConfigError(msg) from None


def register(app: Any) -> None:
    """Add ``hsbench run`` to the Typer ``app``."""
    import typer

    @app.command("run")
    def run_cmd(
        study_file: str = typer.Argument(..., metavar="STUDY.toml", help="study file, e.g. studies/quickstart.toml"),
        db: Optional[str] = typer.Option(
            None, "--db", help="results database URL (default: $HSBENCH_DB, else sqlite:///results/hsbench.db)"
        ),
        data_root: Optional[str] = typer.Option(
            None, "--data-root", help="folder holding camvid/, cityscapes/, voc/ (default: data.root, $HSBENCH_DATA, ./data)"
        ),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
        max_iters: Optional[int] = typer.Option(
            None, "--max-iters", help="train this many iterations instead of the study's budget (recorded)"
        ),
        executor: str = typer.Option("local", "--executor", help="local (this process) or submitit"),
        force: bool = typer.Option(False, "--force", help="rerun variants that are already finished"),
        runs_dir: Optional[str] = typer.Option(
            None, "--runs-dir", help="run folders (checkpoints, record.json); default: runs/ beside the database"
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="validate the study and list its variants; run nothing"),
        partition: Optional[str] = typer.Option(
            None, "--partition", help="SLURM partition (default: the study's launch table, else the cluster's default)",
            rich_help_panel="SLURM (--executor submitit)"),
        cpus_per_task: Optional[int] = typer.Option(
            None, "--cpus-per-task", help="CPUs per task (default: min(8, the partition's largest node))",
            rich_help_panel="SLURM (--executor submitit)"),
        gpus_per_node: Optional[int] = typer.Option(
            None, "--gpus-per-node", help="GPUs per job; > 1 trains one variant with DDP, one task per GPU",
            rich_help_panel="SLURM (--executor submitit)"),
        tasks_per_node: Optional[int] = typer.Option(
            None, "--tasks-per-node", help="DDP processes per job (default: one per GPU, else 1; > 1 on CPU = gloo)",
            rich_help_panel="SLURM (--executor submitit)"),
        mem_gb: Optional[float] = typer.Option(
            None, "--mem-gb", help="memory per job, GB (default: the cluster's default)",
            rich_help_panel="SLURM (--executor submitit)"),
        timeout_min: Optional[int] = typer.Option(
            None, "--timeout-min", help="job time limit, minutes (default: min(4320, the partition's limit))",
            rich_help_panel="SLURM (--executor submitit)"),
        account: Optional[str] = typer.Option(None, "--account", help="SLURM account",
                                              rich_help_panel="SLURM (--executor submitit)"),
        qos: Optional[str] = typer.Option(None, "--qos", help="SLURM quality of service",
                                          rich_help_panel="SLURM (--executor submitit)"),
        constraint: Optional[str] = typer.Option(None, "--constraint", help="SLURM node features, e.g. a100",
                                                 rich_help_panel="SLURM (--executor submitit)"),
        array_parallelism: Optional[int] = typer.Option(
            None, "--array-parallelism", help="jobs of the study running at once (default 256)",
            rich_help_panel="SLURM (--executor submitit)"),
        wait_timeout: Optional[float] = typer.Option(
            None, "--wait-timeout", metavar="SECONDS", help="stop waiting for the jobs after this long",
            rich_help_panel="SLURM (--executor submitit)"),
        on_timeout: str = typer.Option(
            "leave", "--on-timeout", help="after --wait-timeout: leave the jobs queued/running, or cancel them",
            rich_help_panel="SLURM (--executor submitit)"),
        queue_interval: float = typer.Option(
            60.0, "--queue-interval", metavar="SECONDS", help="seconds between two summaries of waiting jobs",
            rich_help_panel="SLURM (--executor submitit)"),
    ) -> None:
        """Run a study: complexity, training, evaluation and FPS of each variant, all stored."""
        from hsbench.studies import load_study

        max_iters_ = check_max_iters(max_iters)
        check_executor(executor)
        check_device(device)
        cli_launch = dict(partition=partition, cpus_per_task=cpus_per_task, gpus_per_node=gpus_per_node,
                          tasks_per_node=tasks_per_node, mem_gb=mem_gb, timeout_min=timeout_min, account=account,
                          qos=qos, constraint=constraint, array_parallelism=array_parallelism)
        launch_cfg = _cli_launch_config(cli_launch)
        study = load_study(study_file, data_root=data_root)
        if dry_run:
            typer.echo(f"study {study.name} (table {study.table or '-'}): {len(study.variants)} variant(s), "
                       f"seeds {list(study.seeds)}")
            for v in study.variants:
                iters = max_iters_ if max_iters_ is not None else v.train.iterations
                typer.echo(f"  {v.variant_id()}  {v.name}  {v.model.template}/{v.model.backbone}  "
                           f"grid {v.model.grid_size}  {v.data.dataset} {v.resolution_text}  "
                           f"{iters:,} iters x batch {v.train.batch_size}")
            return
        launch = None
        if executor == "submitit":
            from hsbench.jobs import WaitOptions
            from hsbench.launch import plan

            wait = WaitOptions(timeout_s=wait_timeout, on_timeout=on_timeout, report_s=queue_interval,
                               poll_s=min(5.0, queue_interval))
            merged = _cli_launch_config(study.launch.to_dict() | {k: v for k, v in cli_launch.items() if v is not None})
            launch = plan(merged, device=device, wait=wait)
        elif launch_cfg != type(launch_cfg)() or wait_timeout is not None or on_timeout != "leave":
            raise ConfigError("SLURM options (--partition, --cpus-per-task, ..., --wait-timeout) need "
                              "--executor submitit")
        try:
            outcome = run_study(study, db=db, device=device, max_iters=max_iters_, executor=executor,
                                force=force, runs_dir=runs_dir, launch=launch)
        except KeyboardInterrupt:
            # typer would turn this into a return value that hsbench.cli.main drops
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        if outcome.exit_code:
            # SystemExit, not typer.Exit: click swallows Exit's code outside standalone mode
            raise SystemExit(outcome.exit_code)


__all__ = [
    "JobOutcome",
    "RECORD_NAME",
    "StudyOutcome",
    "claim",
    "default_runs_dir",
    "execute_job",
    "job_spec",
    "read_record",
    "register",
    "run_dir_for",
    "run_study",
    "store_payload",
]
