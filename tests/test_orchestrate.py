"""Orchestration: the claim on a run lives in the database; store queries stay bounded.

Issue 8 bad input #3: two ``hsbench run`` of one study on one database with
different ``--runs-dir`` must not run one variant twice. The other process is
played by a claim written straight into the database (on another host, or by
a live or dead local process), so these tests need no second training run.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import recordkit as rk
import torch
from sqlalchemy import event

from hsbench.cli import main
from hsbench.store import STALE_AFTER_S, Store
from hsbench.studies import load_study

torch.set_num_threads(1)

TINY = """
[study]
name = "claims"

[base.model]
template = "camvid-s"
backbone = "tf_efficientnet_lite0"

[base.data]
dataset = "synthetic"
synthetic_size = [64, 64]
synthetic_length = 2

[base.train]
iterations = 1
batch_size = 2
amp = false

[base.eval]
max_images = 1

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
"model.grid_size" = [1, 2]
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HSBENCH_DB", raising=False)
    f = tmp_path / "claims.toml"
    f.write_text(textwrap.dedent(TINY))
    db = tmp_path / "db" / "hsbench.db"
    return tmp_path, str(f), f"sqlite:///{db}", db


def _claim_first_variant(f: str, url: str, owner: str, runs_dir: Path) -> tuple[int, str]:
    """Store the study as `hsbench run` would, and claim its first variant for ``owner``."""
    study = load_study(f)
    v = study.variants[0]
    with Store.open(url) as store:
        store.upsert_study(study.name, description=study.description, paper_table=study.table,
                           spec_toml=study.text, spec_path=str(study.path))
        for x in study.variants:
            store.upsert_variant(x.variant_id(), x.config_dict(), study=study.name, label=x.name)
        c = store.claim_run(v.variant_id(), owner=owner, study=study.name, seed=0, device="cpu",
                            budget_iters=1, run_dir=str(runs_dir / v.variant_id() / "seed0"))
        assert c.how == "new"
        return c.run_id, v.variant_id()


def test_a_run_claimed_by_another_host_is_not_run_again_from_another_runs_dir(env, capsys):
    cwd, f, url, db = env
    run_id, vid = _claim_first_variant(f, url, "gpu-node-7:4242:beef", cwd / "runs-a")
    assert main(["run", f, "--db", url, "--device", "cpu", "--runs-dir", str(cwd / "runs-b")]) == 0
    out = capsys.readouterr().out
    assert f"run {run_id} is being run by another process (gpu-node-7:4242:beef)" in out
    assert "1 finished, 1 busy" in out
    with Store.open(url, create=False) as store:
        held, other = store.list_runs()
        assert (held.id, held.status, held.claimed_by) == (run_id, "running", "gpu-node-7:4242:beef")
        assert held.variant_id == vid and store.get_run(run_id).metrics is None  # untouched
        assert other.status == "finished" and other.variant_id != vid and other.claimed_by is None
    assert not list((cwd / "runs-b" / vid).glob("seed0/*.json"))  # nothing of it ran here


def test_a_live_local_process_holds_its_claim_and_a_dead_one_does_not(env, capsys):
    cwd, f, url, db = env
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        owner = f"{socket.gethostname()}:{sleeper.pid}:cafe"
        run_id, vid = _claim_first_variant(f, url, owner, cwd / "runs-a")
        assert main(["run", f, "--db", url, "--device", "cpu", "--runs-dir", str(cwd / "runs-b")]) == 0
        assert "is being run by another process" in capsys.readouterr().out
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder died (SIGKILL leaves its claim behind): the next run resumes that very row
    assert main(["run", f, "--db", url, "--device", "cpu", "--runs-dir", str(cwd / "runs-b")]) == 0
    assert f"resuming run {run_id}" in capsys.readouterr().out
    with Store.open(url, create=False) as store:
        runs = store.list_runs()
        assert [r.status for r in runs] == ["finished", "finished"] and runs[0].id == run_id
        assert runs[0].run_dir == str(cwd / "runs-b" / vid / "seed0")


def test_a_claim_without_heartbeat_goes_stale(env, capsys):
    cwd, f, url, db = env
    run_id, vid = _claim_first_variant(f, url, "gpu-node-7:4242:beef", cwd / "runs-a")
    old = datetime.now(timezone.utc) - timedelta(seconds=STALE_AFTER_S + 5)
    with Store.open(url) as store:
        with store._write() as s:  # test-only: age the heartbeat
            from hsbench.store.schema import RunRow

            s.get(RunRow, run_id).heartbeat_at = old
        assert store.claim_run(vid, owner="me:1:x", study="claims", seed=0).how == "resumed"
        assert store.claim_run(vid, owner="gpu-node-7:4242:beef", study="claims", seed=0).how == "busy"
        assert store.heartbeat("me:1:x") == 1


def test_device_beyond_the_gpus_is_one_error_line_and_writes_nothing(env, capsys, monkeypatch):
    cwd, f, url, db = env
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert main(["run", f, "--db", url, "--device", "cuda:2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: device 'cuda:2' was asked for") and "cuda:0 .. cuda:1" in err
    assert "\n" not in err and not db.exists()


# --------------------------------------------------------------------------- bounded queries


def _statements(store: Store, fn) -> list[str]:
    seen: list[str] = []

    def log(conn, cursor, statement, *args):
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA", "COMMIT", "ROLLBACK")):
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", log)
    try:
        fn()
    finally:
        event.remove(store.engine, "before_cursor_execute", log)
    return seen


def _fill(store: Store, n: int) -> None:
    store.upsert_study("q", paper_table="4")
    store.upsert_study("other", paper_table="S2")
    for i in range(n):
        vid = hashlib.sha256(str(i).encode()).hexdigest()[:16]
        store.upsert_variant(vid, {"model": {"template": "camvid-s"}, "i": i}, study="q", label=f"v{i}")
        store.upsert_variant(vid, {"model": {"template": "camvid-s"}, "i": i}, study="other")
        rid = store.start_run(vid, study="q", device="cpu")
        store.finish_run(rid, rk.record(vid, metrics=rk.metrics(miou=0.5), training=rk.training(world_size=1),
                                        complexity=rk.complexity(params_learned=i),
                                        speed=rk.speed(fps=1.0 + i, device="cpu")))


@pytest.mark.parametrize("query", ["finished_runs", "finished_runs_of_study", "list_runs"])
def test_reading_runs_takes_the_same_number_of_queries_for_2_and_12_runs(tmp_path, query):
    counts = []
    for n in (2, 12):
        with Store.open(f"sqlite:///{tmp_path / f'{n}.db'}") as store:
            _fill(store, n)
            fn = {
                "finished_runs": lambda s=store: s.finished_runs(),
                "finished_runs_of_study": lambda s=store: s.finished_runs("q"),
                "list_runs": lambda s=store: s.list_runs(study="q"),
            }[query]
            result: list = []
            counts.append(len(_statements(store, lambda fn=fn, result=result: result.extend(fn()))))
            assert len(result) == n
    assert counts[0] == counts[1] and counts[0] <= 12, counts


def test_count_runs_is_one_count(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'c.db'}") as store:
        _fill(store, 3)
        n = []
        stmts = _statements(store, lambda: n.append(store.count_runs()))
        assert n == [3]
        assert len(stmts) == 1 and "count(" in stmts[0].lower()


# --------------------------------------------------------------------------- module boundaries

SEAM = ("hsbench.runner", "hsbench.launch", "hsbench.orchestrate", "hsbench.worker", "hsbench.record",
        "hsbench.device", "hsbench.store.runs", "hsbench.store.db")


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported hsbench module, names taken from it) for every import in ``module``, lazy ones too."""
    import ast
    import importlib.util

    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hsbench"):
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names if a.name.startswith("hsbench"))
    return out


def test_run_modules_import_no_private_names_and_form_no_cycle():
    graph = {m: {imp for imp, _ in _imports(m) if imp in SEAM and imp != m} for m in SEAM}
    for m in SEAM:
        private = [(imp, n) for imp, names in _imports(m) for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{m} imports private names {private}"

    def reach(start: str, seen: set[str]) -> set[str]:
        for nxt in graph[start] - seen:
            seen.add(nxt)
            reach(nxt, seen)
        return seen

    for m in SEAM:
        assert m not in reach(m, set()), f"import cycle through {m}"
    assert "hsbench.launch" not in graph["hsbench.orchestrate"]  # launch builds on orchestrate, not back


def test_the_run_command_module_imports_no_heavy_library():
    code = ("import sys, hsbench.runner; "
            "print(sorted(m for m in ('torch', 'timm', 'pandas', 'seaborn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_released_claim_is_taken_over_at_once(env, capsys):
    """``--on-timeout leave`` releases the claims: a live holder's run is resumed without waiting."""
    cwd, f, url, db = env
    run_id, vid = _claim_first_variant(f, url, "gpu-node-7:4242:beef", cwd / "runs-a")
    with Store.open(url) as store:
        assert store.claim_run(vid, owner="me:1:x", study="claims", seed=0).how == "busy"
        store.release_run(run_id)
        (r,) = [r for r in store.list_runs() if r.id == run_id]
        assert r.status == "running" and r.claimed_by is None
        c = store.claim_run(vid, owner="me:1:x", study="claims", seed=0)
        assert (c.how, c.run_id) == ("resumed", run_id)
        store.release_run(run_id)
        store.fail_run(run_id, "test")
        store.release_run(run_id)  # a failed run stays as it is
        (r,) = [r for r in store.list_runs() if r.id == run_id]
        assert r.status == "failed"
