"""``hsbench run``: what is stored, skipping, resuming, failures, Ctrl-C, submitit, and
(in subprocesses) SIGKILL-then-rerun and two processes on one SQLite database.

Every study here is tiny: the synthetic dataset at 64x64, an EfficientNet-Lite0
HyperSeg-S, a few iterations, a handful of timed frames, thop only.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from hsbench.cli import main
from hsbench.record import RunRecord
from hsbench.store import Store

torch.set_num_threads(1)

TINY = """
[study]
name = "{name}"

[base.model]
template = "camvid-s"
backbone = "tf_efficientnet_lite0"

[base.data]
dataset = "synthetic"
synthetic_size = [64, 64]
synthetic_length = 4
synthetic_seed = {data_seed}

[base.train]
iterations = {iters}
batch_size = 2
amp = false
checkpoint_every = {ckpt}

[base.eval]
max_images = 2

[base.speed]
min_warmup = 1
max_warmup = 2
warmup_window = 1
timed_frames = 2
repeats = 1
bootstrap_samples = 10
cpu_threads = 1

[base.measure]
counters = ["thop"]

[axes]
"model.grid_size" = {grids}
"""


def tiny(folder: Path, name: str = "tiny", *, iters: int = 2, grids: str = "[1, 2]", data_seed: int = 0,
         ckpt: int = 1) -> str:
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(TINY.format(name=name, iters=iters, grids=grids, data_seed=data_seed,
                                                ckpt=ckpt)))
    return str(path)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HSBENCH_DB", raising=False)
    db = tmp_path / "db" / "hsbench.db"
    return tmp_path, f"sqlite:///{db}", db


def dump(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def orphan_rows(db: Path) -> int:
    """Result rows (metrics, training, complexity, speed) that belong to a run that is not finished."""
    con = sqlite3.connect(db)
    try:
        n = 0
        for table in ("metrics", "training", "complexity", "speed"):
            n += con.execute(
                f"select count(*) from {table} t join runs r on r.id = t.run_id where r.status != 'finished'"
            ).fetchone()[0]
        return n
    finally:
        con.close()


# --------------------------------------------------------------------------- in-process


def test_run_stores_everything_then_rerun_does_nothing(env, capsys):
    cwd, url, db = env
    f = tiny(cwd)
    assert main(["run", f, "--db", url, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "[1/2]" in out and "[2/2]" in out and "train+eval" in out and "speed" in out
    with Store.open(url, create=False) as store:
        runs = store.list_runs(study="tiny")
        assert [r.status for r in runs] == ["finished", "finished"]
        for r in runs:
            d = store.get_run(r.id)
            assert r.budget_iters == 2 and r.max_iters is None and r.seed == 0
            assert r.resolution == "64x64" and r.dataset == "synthetic" and r.dataset_version
            assert 0.0 <= d.metrics.miou <= 1.0 and d.metrics.split == "val"
            assert d.metrics.confusion_matrix and d.metrics.protocol["ignore_index"] == 255
            assert set(d.metrics.per_class_acc) == set(d.metrics.per_class_iou)  # stored, per class
            assert d.complexity.gmacs_thop > 0 and d.complexity.params_learned > 0
            assert d.complexity.gmacs_fvcore is None  # not counted: missing, never zero
            assert d.training.iterations_done == 2 and d.training.device == "cpu"
            (sp,) = d.speed
            assert sp.device == "cpu" and sp.fps > 0 and sp.latency_median_ms > 0
            assert sp.resolution == "64x64" and sp.batch_size == 1 and sp.bn_fused is True
            assert sp.torch_version and sp.provenance["torch_version"] and sp.config["timed_frames"] == 2
            assert sp.dpwconv_backend == "torch"  # what DPWConv ran on this CPU
            assert d.config["model"]["grid_size"] in (1, 2) and "seed" not in d.config["train"]
            # the worker's record.json and the stored rows are one and the same record
            rec = Path(r.run_dir) / "record.json"
            assert RunRecord.read(rec) == d.record
            assert d.record.device == "cpu" and r.device == "cpu" and r.host and r.claimed_by is None
    before = dump(db)
    assert main(["run", f, "--db", url, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and "skip" in out
    assert dump(db) == before  # not a single write


def test_max_iters_is_recorded_and_force_reruns(env, capsys):
    cwd, url, db = env
    f = tiny(cwd, grids="[1]", iters=3)
    assert main(["run", f, "--db", url, "--device", "cpu", "--max-iters", "1"]) == 0
    with Store.open(url, create=False) as store:
        (r,) = store.list_runs()
        assert (r.budget_iters, r.max_iters) == (3, 1)
        assert store.get_run(r.id).training.iterations_done == 1
    # a smoke run does not count as the full budget
    assert main(["run", f, "--db", url, "--device", "cpu"]) == 0
    # and --force reruns a finished one from scratch
    assert main(["run", f, "--db", url, "--device", "cpu", "--max-iters", "1", "--force"]) == 0
    capsys.readouterr()
    with Store.open(url, create=False) as store:
        runs = store.list_runs()
        assert [(r.status, r.max_iters) for r in runs] == [("finished", 1), ("finished", None), ("finished", 1)]
        assert store.get_run(runs[2].id).training.start_iteration == 0


def _failing_run_variant(exc_factory):
    import hsbench.engine.run as engine_run

    real = engine_run.run_variant

    def fake(model_cfg, *args, **kwargs):
        if model_cfg.grid_size == 2:
            raise exc_factory()
        return real(model_cfg, *args, **kwargs)

    return fake


@pytest.mark.parametrize(
    "exc_factory, fragment",
    [
        (lambda: __import__("hsbench.engine.errors", fromlist=["x"]).TrainingDiverged(1, float("nan")),
         "TrainingDiverged: training diverged: loss is nan"),
        (lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
         "OutOfMemoryError: CUDA out of memory"),
        (lambda: RuntimeError("boom\nsecond line"), "RuntimeError: boom"),
    ],
    ids=["nan", "oom", "exception"],
)
def test_failing_variant_is_stored_and_the_study_goes_on(env, capsys, monkeypatch, exc_factory, fragment):
    import hsbench.engine.run as engine_run

    cwd, url, db = env
    f = tiny(cwd)
    monkeypatch.setattr(engine_run, "run_variant", _failing_run_variant(exc_factory))
    assert main(["run", f, "--db", url, "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    with Store.open(url, create=False) as store:
        r1, r2 = store.list_runs()
        assert r1.status == "finished" and r2.status == "failed"
        assert r2.error.startswith(fragment) and "\n" not in r2.error
        assert (Path(r2.checkpoint_path).parent / "error.txt").is_file()
    assert orphan_rows(db) == 0
    # the failed variant runs again next time; the finished one is skipped
    monkeypatch.undo()
    monkeypatch.chdir(cwd)
    assert main(["run", f, "--db", url, "--device", "cpu"]) == 0
    with Store.open(url, create=False) as store:
        assert [r.status for r in store.list_runs()] == ["finished", "failed", "finished"]


def test_ctrl_c_marks_the_run_and_rerun_resumes(env, capsys, monkeypatch):
    import hsbench.engine.run as engine_run

    cwd, url, db = env
    f = tiny(cwd)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_run, "run_variant", interrupted)
    assert main(["run", f, "--db", url, "--device", "cpu"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "interrupted"
    with Store.open(url, create=False) as store:
        (r,) = store.list_runs()  # the second variant never started
        assert r.status == "failed" and r.error.startswith("interrupted")
    assert orphan_rows(db) == 0 and counts(db)["metrics"] == 0
    monkeypatch.undo()
    monkeypatch.chdir(cwd)
    assert main(["run", f, "--db", url, "--device", "cpu"]) == 0
    with Store.open(url, create=False) as store:
        assert [r.status for r in store.list_runs()] == ["failed", "finished", "finished"]


def test_a_record_left_unstored_is_stored_without_recomputing(env, capsys, monkeypatch):
    import hsbench.engine.run as engine_run
    from hsbench.orchestrate import StudyRun

    cwd, url, db = env
    f = tiny(cwd, grids="[1]")

    def die(*args, **kwargs):  # the process "dies" after the worker wrote record.json
        raise KeyboardInterrupt

    monkeypatch.setattr(StudyRun, "store_record", die)
    assert main(["run", f, "--db", url, "--device", "cpu"]) == 130
    monkeypatch.undo()
    monkeypatch.chdir(cwd)

    def must_not_train(*args, **kwargs):
        raise AssertionError("the record should have been reused")

    monkeypatch.setattr(engine_run, "run_variant", must_not_train)
    capsys.readouterr()
    assert main(["run", f, "--db", url, "--device", "cpu"]) == 0
    assert "storing the finished record.json" in capsys.readouterr().out
    with Store.open(url, create=False) as store:
        assert [r.status for r in store.list_runs()] == ["failed", "finished"]


def test_submitit_debug_executor(env, capsys, monkeypatch):
    pytest.importorskip("submitit")
    cwd, url, db = env
    monkeypatch.setenv("HSBENCH_SUBMITIT_CLUSTER", "debug")
    f = tiny(cwd)
    assert main(["run", f, "--db", url, "--device", "cpu", "--executor", "submitit"]) == 0
    out = capsys.readouterr().out
    assert "submitted as job" in out
    with Store.open(url, create=False) as store:
        runs = store.list_runs()
        assert [r.status for r in runs] == ["finished", "finished"]
        assert all(r.job_id and r.executor == "submitit-debug" for r in runs)
    assert main(["run", f, "--db", url, "--device", "cpu", "--executor", "submitit"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_submitit_missing_gives_one_line(env, capsys, monkeypatch):
    cwd, url, db = env
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    f = tiny(cwd)
    assert main(["run", f, "--db", url, "--executor", "submitit"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --executor submitit needs the submitit package") and "\n" not in err
    assert not db.exists()


def test_dry_run_lists_variants_and_writes_nothing(env, capsys):
    cwd, url, db = env
    f = tiny(cwd)
    assert main(["run", f, "--db", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 variant(s)" in out and "grid_size=1" in out
    assert not db.parent.exists()


# --------------------------------------------------------------------------- subprocesses


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hsbench.cli", "run", *args, "--device", "cpu"]


def _env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("HSBENCH_DB", None)
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return e


def _query(db: Path, sql: str) -> list[tuple]:
    try:
        con = sqlite3.connect(db, timeout=30)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # not created yet
        return []


@pytest.mark.slow
def test_sigkill_mid_variant_then_rerun_finishes_without_duplicates(env):
    cwd, url, db = env
    f = tiny(cwd, name="killme", iters=40, ckpt=2)
    proc = subprocess.Popen(_cmd(f, "--db", url), cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        killed = False
        while time.time() < deadline and proc.poll() is None:
            rows = _query(db, "select id, checkpoint_path from runs where status = 'running'")
            if rows and rows[0][1] and Path(rows[0][1]).is_file():
                proc.send_signal(signal.SIGKILL)  # mid-training: a checkpoint exists, no result yet
                killed = True
                break
            time.sleep(0.1)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stdout.read()
    assert killed, f"the run finished before it could be killed:\n{log}"
    assert proc.returncode == -signal.SIGKILL
    assert _query(db, "select status from runs") == [("running",)]
    assert orphan_rows(db) == 0

    rerun = subprocess.run(_cmd(f, "--db", url), cwd=cwd, env=_env(), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "resuming run 1" in rerun.stdout
    runs = _query(db, "select id, variant_id, seed, status from runs order by id")
    assert [r[3] for r in runs] == ["finished", "finished"]  # the killed run was finished, not duplicated
    assert len({(r[1], r[2]) for r in runs}) == 2
    assert orphan_rows(db) == 0
    c = counts(db)
    assert c["metrics"] == c["training"] == c["complexity"] == c["speed"] == 2
    with Store.open(url, create=False) as store:
        first = store.get_run(1)
        assert first.training.start_iteration > 0  # resumed from its checkpoint
        assert first.training.iterations_done == 40


def _rows(url: str, sql: str) -> list[tuple]:
    """Rows of ``sql`` on the database at ``url`` (SQLite or PostgreSQL), through a plain engine."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as con:
            return [tuple(r) for r in con.execute(text(sql)).all()]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_two_processes_on_one_database(env, db_url):
    """Three `hsbench run` at once on one new database (SQLite file, then PostgreSQL)."""
    cwd, _, _ = env
    url = db_url
    a = tiny(cwd, name="conc_a", iters=3)
    b = tiny(cwd, name="conc_b", iters=3, data_seed=1)
    procs = [
        subprocess.Popen(_cmd(path, "--db", url), cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for path in (a, b, a)  # two different studies, and the first one twice at once
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n\n".join(logs)
    rows = _rows(url, "select s.name, r.variant_id, r.seed, r.status from runs r join studies s "
                      "on s.id = r.study_id order by r.id")
    assert all(r[3] == "finished" for r in rows), rows
    for study in ("conc_a", "conc_b"):
        keys = [(r[1], r[2]) for r in rows if r[0] == study]
        assert len(keys) == 2 and len(set(keys)) == 2, rows  # every variant once, none twice
    c = {t: _rows(url, f"select count(*) from {t}")[0][0]
         for t in ("runs", "metrics", "training", "complexity", "speed")}
    assert c["runs"] == c["metrics"] == c["training"] == c["complexity"] == c["speed"] == 4
    orphans = sum(
        _rows(url, f"select count(*) from {t} t join runs r on r.id = t.run_id "
                   "where r.status != 'finished'")[0][0]
        for t in ("metrics", "training", "complexity", "speed")
    )
    assert orphans == 0
