"""Results database: round trip, schema version, errors, atomicity, concurrent writers."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import create_engine, event, text

import recordkit as rk

from hsbench.errors import StoreError
from hsbench.record import (
    ComplexityRecord,
    MetricsRecord,
    RecordError,
    RunRecord,
    SpeedRecord,
    TrainingRecord,
)
from hsbench.store import (
    DEFAULT_DB_URL,
    SCHEMA_VERSION,
    MissingDatabaseError,
    Store,
    normalize_resolution,
    resolve_db_url,
)
from hsbench.store.schema import SpeedRow

CONFIG = {
    "model": {"template": "camvid-s", "backbone": None, "grid_size": "native",
              "positional_encoding": True, "dynamic": True, "weight_groups": [64, 32, 32, 16, 8]},
    "data": {"dataset": "camvid", "resolution": [480, 360]},
    "train": {"iterations": 240000},
}

# One record with every field set, as the worker (hsbench.worker) fills it.
METRICS = MetricsRecord(
    split="test", miou=0.412, macc=0.5, pixel_acc=0.8, trimap_miou=None,
    per_class_iou={"sky": 0.9, "road": None}, per_class_acc={"sky": 0.95, "road": None},
    confusion_matrix=[[5, 1], [0, 7]], protocol={"split": "test", "ignore_index": 255, "absent": "exclude"},
)
TRAINING = TrainingRecord(
    device="cuda:1", device_name="NVIDIA H100", world_size=1, iterations_done=200, start_iteration=50,
    final_loss=0.7, train_wall_time_s=10.0, eval_wall_time_s=2.5, train_images_per_s=16.0,
    eval_images_per_s=40.0, weights_file="camvid_efficientnet_b1.pth", weights_sha256="ab" * 32,
)
COMPLEXITY = ComplexityRecord(
    resolution="480x360", grid="12x15", params_learned=9_900_000, params_weight_mapper=300_000,
    generated_weights=1_234_567, gmacs_thop=3.2, gmacs_fvcore=3.1, gflops=6.4, gmacs_dpwconv=0.1,
    gmacs_weight_mapper=0.2, counters=["thop", "fvcore", "flop_counter"], wall_time_s=1.5,
)
SPEED = SpeedRecord(
    device="cuda:1", device_name="NVIDIA H100", fps=5.3, fps_ci_low=5.1, fps_ci_high=5.5,
    latency_median_ms=188.7, latency_mean_ms=190.0, latency_p10_ms=180.0, latency_p90_ms=200.0,
    latency_std_ms=5.0, model_only_latency_ms=149.0, precision="fp32", resolution="480x360", batch_size=1,
    tta_hflip=False, bn_fused=True, warmup_frames=20, warmup_converged=True, weights="trained",
    dpwconv_backend="torch", protocol="hyperseg-sec4", driver_version="550.1", cuda_version="12.4",
    cudnn_version="90100", torch_version="2.4.0", hsbench_version="0.1.0", git_commit="abc1234",
    config={"device": "cuda:1", "timed_frames": 100}, settings={"timer": "time.perf_counter"},
    provenance={"gpu_name": "NVIDIA H100", "hostname": "box"},
)
RECORD = RunRecord(
    variant_id="v1", seed=3, status="finished", error=None, device="cuda:1", budget_iters=240_000,
    max_iters=200, dataset="camvid", dataset_version="segnet-480x360", resolution="480x360", host="box",
    wall_time_s=12.5, checkpoint_path="runs/x/last.pt", metrics=METRICS, training=TRAINING,
    complexity=COMPLEXITY, speed=SPEED,
)


def _url(tmp_path, name="hs.db"):
    return f"sqlite:///{tmp_path / name}"


def _count(url, table):
    """Rows in ``table``, read with a plain engine of its own (SQLite or PostgreSQL)."""
    engine = create_engine(url)
    with engine.connect() as con:
        n = con.execute(text(f"select count(*) from {table}")).scalar_one()
    engine.dispose()
    return n


def _store_with_variant(url):
    store = Store.open(url)
    store.upsert_study("quick", description="two variants", paper_table="Table 4",
                       spec_toml="[study]\nname='quick'\n")
    store.upsert_variant("v1", CONFIG, study="quick", label="S-b1")
    return store


def test_round_trip_of_a_run(db_url):
    store = _store_with_variant(db_url)
    rid = store.start_run("v1", study="quick", seed=3, budget_iters=240_000, max_iters=200,
                          device="cuda:1", dataset="camvid", dataset_version="segnet-480x360",
                          resolution=(480, 360))
    assert store.unfinished_run("v1", seed=3).id == rid
    store.update_run(rid, checkpoint_path="runs/x/early.pt")
    store.finish_run(rid, RECORD)
    store.close()

    store = Store.open(db_url, create=False)
    d = store.get_run(rid)
    assert d.record == RECORD  # every field back, same names, same units
    assert d.run.status == "finished" and d.run.seed == 3 and d.run.label == "S-b1"
    assert d.run.resolution == "480x360" and d.run.max_iters == 200 and d.run.device == "cuda:1"
    assert d.run.checkpoint_path == "runs/x/last.pt" and d.run.host == "box"
    assert d.config == json.loads(json.dumps(CONFIG))
    assert d.studies == [{"name": "quick", "paper_table": "4", "label": "S-b1"}]
    assert d.metrics.per_class_acc == {"sky": 0.95, "road": None}
    (sp,) = d.speed
    assert sp.fps_ci_low == 5.1 and sp.device == "cuda:1" and sp.device_kind == "cuda"
    assert store.finished_variant_ids("quick") == {"v1"}
    assert store.finished_keys("quick") == {("v1", 3)}
    assert store.unfinished_run("v1", seed=3) is None
    (summary,) = store.list_runs(study="quick")
    assert summary.miou == pytest.approx(0.412)
    assert store.schema_version == SCHEMA_VERSION
    assert RunRecord.from_json(RECORD.to_json()) == RECORD
    json.dumps(d.to_dict())  # plain data all the way down


def test_failed_run_and_status_rules(db_url):
    store = _store_with_variant(db_url)
    rid = store.start_run("v1", study="quick")
    store.fail_run(rid, "CUDA out of memory")
    d = store.get_run(rid)
    assert d.run.status == "failed" and "out of memory" in d.run.error
    assert store.finished_variant_ids("quick") == set()
    with pytest.raises(StoreError, match="already failed"):
        store.finish_run(rid, rk.record("v1", metrics=rk.metrics(miou=0.5)))
    rid2 = store.start_run("v1", study="quick")
    store.finish_run(rid2, rk.record("v1", metrics=rk.metrics(miou=0.5)))
    with pytest.raises(StoreError, match="already finished"):
        store.finish_run(rid2, rk.record("v1", metrics=rk.metrics(miou=0.5)))
    assert [r.status for r in store.list_runs()] == ["failed", "finished"]
    assert [r.id for r in store.list_runs(status="failed")] == [rid]


def test_bad_values_write_nothing(db_url):
    store = _store_with_variant(db_url)
    rid = store.start_run("v1", study="quick")
    with pytest.raises(RecordError, match=r"fraction in \[0, 1\].*78.4"):
        rk.metrics(miou=78.4)  # a percentage never becomes a record
    with pytest.raises(StoreError, match="must be a number"):
        store.finish_run(rid, rk.record("v1", metrics=rk.metrics(miou=0.5), speed=rk.speed(fps="fast")))
    with pytest.raises(StoreError, match="does not belong to run"):
        store.finish_run(rid, rk.record("v1", seed=7, metrics=rk.metrics(miou=0.5)))
    with pytest.raises(StoreError, match="needs a finished record"):
        store.finish_run(rid, rk.record("v1", status="failed", error="x"))
    d = store.get_run(rid)
    assert d.run.status == "running" and d.metrics is None and d.speed == []


def test_finish_run_is_one_transaction(db_url):
    """A failure while writing the speed rows rolls back the metrics and the status too."""
    store = _store_with_variant(db_url)
    rid = store.start_run("v1", study="quick")

    def boom(session, flush_context, instances):
        if any(isinstance(o, SpeedRow) for o in session.new):
            raise RuntimeError("disk on fire")

    from sqlalchemy.orm import Session

    event.listen(Session, "before_flush", boom)
    try:
        with pytest.raises(RuntimeError, match="disk on fire"):
            store.finish_run(rid, dataclasses.replace(RECORD, seed=0))
    finally:
        event.remove(Session, "before_flush", boom)
    d = store.get_run(rid)
    assert d.run.status == "running"
    assert d.metrics is None and d.training is None and d.complexity is None and d.speed == []
    assert _count(db_url, "metrics") == 0


def _execute(url, sql):
    engine = create_engine(url)
    with engine.begin() as con:
        con.execute(text(sql))
    engine.dispose()


def test_same_version_with_other_columns_is_refused(db_url):
    Store.open(db_url).close()
    _execute(db_url, "alter table speed drop column fps_ci_low")
    with pytest.raises(StoreError, match="table speed lacks column.*fps_ci_low"):
        Store.open(db_url, create=False)


def test_foreign_database_is_refused(db_url):
    _execute(db_url, "create table users (id integer)")
    with pytest.raises(StoreError, match="not an hsbench results database.*users"):
        Store.open(db_url)
    with pytest.raises(StoreError, match="not an hsbench results database"):
        Store.open(db_url, create=False)


def test_foreign_and_broken_files_are_refused(tmp_path):
    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("create table users (id integer)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not an hsbench results database"):
        Store.open(_url(tmp_path, "other.db"))
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        Store.open(_url(tmp_path, "junk.db"))


@pytest.mark.parametrize("url, msg", [
    ("not a url", "is not a database URL"),
    ("nosuchdriver://host/db", "unknown database driver"),
    ("sqlite:///runs?v2.db", r"the '\?' starts SQLite URL options, so the database file would be 'runs'"),
    ("sqlite:///runs.db?journal=wal", "write a '\\?' of the file name as %3F"),
])
def test_bad_database_urls(url, msg):
    with pytest.raises(StoreError, match=msg):
        Store.open(url)


def test_question_mark_in_a_sqlite_file_name(tmp_path, monkeypatch):
    """Bad input #9: a '?' in a SQLite path is refused (it would start URL options and
    change the file used); written as %3F it names the file, and driver options still work."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="database file would be 'a'"):
        Store.open("sqlite:///a?b.db")
    assert list(tmp_path.iterdir()) == []
    Store.open("sqlite:///a%3Fb.db").close()
    Store.open("sqlite:///a%3Fb.db?timeout=5", create=False).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a?b.db"]


def test_read_only_open_never_creates(tmp_path):
    url = _url(tmp_path, "sub/none.db")
    with pytest.raises(MissingDatabaseError, match="no results database"):
        Store.open(url, create=False)
    assert not (tmp_path / "sub").exists()
    sqlite3.connect(tmp_path / "empty.db").close()  # a 0-table file
    with pytest.raises(MissingDatabaseError, match="is empty"):
        Store.open(_url(tmp_path, "empty.db"), create=False)
    assert (tmp_path / "empty.db").read_bytes() == b""  # not switched to WAL, nothing written


def test_url_resolution_and_default_location(tmp_path, monkeypatch):
    monkeypatch.delenv("HSBENCH_DB", raising=False)
    assert resolve_db_url(None) == DEFAULT_DB_URL == "sqlite:///results/hsbench.db"
    monkeypatch.setenv("HSBENCH_DB", "sqlite:///env.db")
    assert resolve_db_url(None) == "sqlite:///env.db"
    assert resolve_db_url("sqlite:///cli.db") == "sqlite:///cli.db"
    monkeypatch.delenv("HSBENCH_DB")
    monkeypatch.chdir(tmp_path)
    with Store.open() as store:
        assert store.list_runs() == []
    assert (tmp_path / "results" / "hsbench.db").is_file()
    con = sqlite3.connect(tmp_path / "results" / "hsbench.db")
    assert con.execute("pragma journal_mode").fetchone() == ("wal",)
    con.close()


def test_unknown_ids_and_studies(db_url):
    store = _store_with_variant(db_url)
    with pytest.raises(StoreError, match="no run with id 42"):
        store.get_run(42)
    with pytest.raises(StoreError, match="no study named 'nope'.*known studies: quick"):
        store.list_runs(study="nope")
    with pytest.raises(StoreError, match="no variant with id 'zz'"):
        store.start_run("zz")
    with pytest.raises(StoreError, match="different config"):
        store.upsert_variant("v1", {"model": {"template": "camvid-l"}}, study="quick")
    with pytest.raises(StoreError, match="unknown run status"):
        store.list_runs(status="done")


def test_variant_shared_by_two_studies_and_upserts(db_url):
    store = _store_with_variant(db_url)
    store.upsert_study("quick", description="changed", paper_table="4")
    store.upsert_study("other", paper_table="s2")
    store.upsert_variant("v1", CONFIG, study="other", label="same config")
    assert store.get_study("quick").description == "changed"
    assert store.get_study("other").paper_table == "S2"
    rid = store.start_run("v1", study="quick")
    store.finish_run(rid, rk.record("v1", metrics=rk.metrics(miou=0.3)))
    assert store.finished_variant_ids("other") == {"v1"}
    assert {s.name for s in store.list_studies()} == {"quick", "other"}
    assert store.list_runs(study="other")[0].label == "same config"


def test_resolution_normalisation():
    assert normalize_resolution("768 × 576") == "768x576"
    assert normalize_resolution([1024, 512]) == "1024x512"
    assert normalize_resolution({"width": 2, "height": 3}) == "2x3"
    with pytest.raises(StoreError, match="resolution"):
        normalize_resolution("big")


_WRITER = textwrap.dedent("""
    import pathlib, sys, time
    import dataclasses
    from hsbench.record import MetricsRecord, RunRecord, SpeedRecord
    from hsbench.store import Store

    def part(cls, **values):
        return cls(**{f.name: values.get(f.name) for f in dataclasses.fields(cls)})

    url, tag, sync = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    (sync / f"ready-{tag}").touch()
    deadline = time.time() + 60
    while len(list(sync.glob("ready-*"))) < 2 and time.time() < deadline:
        time.sleep(0.01)  # start writing together: the writes must contend
    store = Store.open(url)
    store.upsert_study("conc", paper_table="4")
    for i in range(50):
        vid = f"{tag}-{i}"
        store.upsert_variant(vid, {"model": {"template": "camvid-s"}, "i": i, "tag": tag},
                             study="conc", label=vid)
        rid = store.start_run(vid, study="conc", device="cpu")
        store.finish_run(rid, part(RunRecord, variant_id=vid, seed=0, status="finished",
                                   metrics=part(MetricsRecord, miou=0.5),
                                   speed=part(SpeedRecord, fps=1.0 + i, device="cpu")))
    print("done", tag)
""")


def test_two_processes_write_one_database(db_url, tmp_path):
    """Two processes open one new database together (both create its tables) and write."""
    url = db_url
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, str(script), url, tag, str(tmp_path)],
                         stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
        for tag in ("a", "b")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.startswith("done")
    with Store.open(url, create=False) as store:
        runs = store.list_runs(study="conc")
        assert len(runs) == 100
        assert all(r.status == "finished" for r in runs)
        assert len(store.finished_variant_ids("conc")) == 100
    assert _count(url, "metrics") == 100
    assert _count(url, "speed") == 100
    assert _count(url, "study_variants") == 100
    # (The start barrier makes the writers contend: their runs interleave in the
    # ids, e.g. "aab...bbaa...a". Not asserted: a loaded machine may serialise them.)
