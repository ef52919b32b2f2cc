"""Revision 0002 (one typed run record): a database holding runs as hsbench 0.1.0 stored them
(keys in ``extra`` JSON) upgrades in place, every row kept, every moved value in its column,
and reads back as :class:`hsbench.record.RunRecord` objects. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text

from hsbench.cli import main
from hsbench.store import OutdatedDatabaseError, Store, migrations

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)

# What hsbench 0.1.0's runner stored for one finished run (store_payload's keys).
RUN_EXTRA = {"pid": 4242, "host": "gpu-node-7", "run_dir": "/runs/v1/seed0", "label": "S-b1",
             "submitit_job": "12345", "executor": "slurm"}
METRICS_EXTRA = {
    "per_class_acc": {"sky": 0.95, "road": None}, "iterations_done": 200, "start_iteration": 50,
    "final_loss": 0.7, "train_wall_time_s": 10.0, "eval_wall_time_s": 2.5, "train_images_per_s": 16.0,
    "eval_images_per_s": 40.0, "train_device_name": "NVIDIA H100", "world_size": 1,
    "dataset_version": "segnet-480x360",
}
COMPLEXITY_EXTRA = {"grid": [12, 15], "gmacs_dpwconv": 0.1, "gmacs_weight_mapper": 0.2,
                    "counters": ["thop", "fvcore"], "wall_time_s": 1.5}
SPEED_EXTRA = {
    "latency": {"n": 10, "mean_ms": 190.0, "median_ms": 188.7, "std_ms": 5.0},
    "model_only": {"median_ms": 149.0}, "settings": {"device": "cuda", "timer": "time.perf_counter"},
    "ci_low_ms": 181.8, "ci_high_ms": 196.1, "fps_ci95": [5.1, 5.5], "warmup_frames": 20,
    "warmup_converged": True, "weights": "trained", "protocol": "hyperseg-sec4",
    "config": {"device": "auto", "timed_frames": 100},
}


def _json(value):
    import json

    return json.dumps(value)


def _make_0_1_0_database(url: str) -> None:
    """Tables at revision 0001 (hsbench 0.1.0's schema) holding two runs as 0.1.0 wrote them."""
    engine = create_engine(url)
    with engine.begin() as con:
        migrations.upgrade(con, to="0001")
        con.execute(text("insert into studies (id, name, paper_table, created_at, updated_at) "
                         "values (1, 'quick', '4', :t, :t)"), {"t": NOW})
        con.execute(text("insert into variants (id, config_json, created_at) values ('v1', :c, :t)"),
                    {"c": '{"model":{"template":"camvid-s"}}', "t": NOW})
        con.execute(text("insert into study_variants (study_id, variant_id, label) values (1, 'v1', 'S-b1')"))
        con.execute(text(
            "insert into runs (id, variant_id, study_id, status, created_at, started_at, finished_at, "
            "budget_iters, max_iters, seed, checkpoint_path, device, dataset, dataset_version, resolution, "
            "extra) values (1, 'v1', 1, 'finished', :t, :t, :t, 240000, 200, 0, 'c.pt', 'cuda:0', "
            "'camvid', 'segnet-480x360', '480x360', :e)"), {"t": NOW, "e": _json(RUN_EXTRA)})
        con.execute(text(
            "insert into runs (id, variant_id, study_id, status, created_at, error, seed, extra) "
            "values (2, 'v1', 1, 'failed', :t, 'RuntimeError: boom', 1, null)"), {"t": NOW})
        con.execute(text(
            "insert into metrics (run_id, split, miou, macc, pixel_acc, trimap_miou, per_class_iou, "
            "confusion_matrix, protocol, extra) values (1, 'test', 0.412, 0.5, 0.8, null, :pci, :cm, "
            ":p, :e)"), {"pci": _json({"sky": 0.9, "road": None}), "cm": _json([[5, 1], [0, 7]]),
                         "p": _json({"ignore_index": 255}), "e": _json(METRICS_EXTRA)})
        con.execute(text(
            "insert into complexity (run_id, params_learned, params_weight_mapper, generated_weights, "
            "gmacs_thop, gmacs_fvcore, gflops, resolution, extra) values (1, 9900000, 300000, 1234567, "
            "3.2, 3.1, 6.4, '480x360', :e)"), {"e": _json(COMPLEXITY_EXTRA)})
        con.execute(text(
            "insert into speed (run_id, fps, latency_median_ms, latency_mean_ms, latency_p10_ms, "
            "latency_p90_ms, fps_ci_low, fps_ci_high, model_only_latency_ms, device, device_name, driver, "
            "cuda, cudnn, torch, precision, resolution, batch, tta, bn_fused, hsbench_version, git_commit, "
            "provenance, extra) values (1, 5.3, 188.7, 190.0, 180.0, 200.0, 5.1, 5.5, 149.0, 'cuda', "
            "'NVIDIA H100', '550.1', '12.4', '90100', '2.4.0', 'fp32', '480x360', 1, :f, :t, '0.1.0', "
            "'abc1234', :p, :e)"),
            {"f": False, "t": True, "p": _json({"hostname": "box"}), "e": _json(SPEED_EXTRA)})
    engine.dispose()


def test_a_0_1_0_database_upgrades_to_0002_with_every_row_and_value(db_url, capsys):
    _make_0_1_0_database(db_url)
    with pytest.raises(OutdatedDatabaseError, match="hsbench db upgrade"):
        Store.open(db_url, create=False)
    assert main(["db", "upgrade", "--db", db_url]) == 0
    capsys.readouterr()
    with Store.open(db_url, create=False) as store:
        assert store.schema_version == int(migrations.head_revision())
        assert [(r.id, r.status) for r in store.list_runs()] == [(1, "finished"), (2, "failed")]
        d = store.get_run(1)
        r = d.run
        assert (r.host, r.run_dir, r.job_id, r.executor) == ("gpu-node-7", "/runs/v1/seed0", "12345", "slurm")
        assert (r.device, r.budget_iters, r.max_iters, r.label) == ("cuda:0", 240000, 200, "S-b1")
        m = d.metrics
        assert (m.miou, m.split, m.per_class_iou) == (0.412, "test", {"sky": 0.9, "road": None})
        assert m.per_class_acc == {"sky": 0.95, "road": None} and m.confusion_matrix == [[5, 1], [0, 7]]
        t = d.training
        assert (t.device, t.device_name, t.iterations_done, t.start_iteration) == ("cuda:0", "NVIDIA H100", 200, 50)
        assert (t.final_loss, t.train_images_per_s, t.world_size) == (0.7, 16.0, 1)
        assert (t.weights_file, t.weights_sha256) == (None, None)  # 0.1.0 runs started from scratch
        c = d.complexity
        assert (c.params_learned, c.gmacs_thop, c.grid, c.gmacs_dpwconv) == (9_900_000, 3.2, "12x15", 0.1)
        assert c.counters == ["thop", "fvcore"] and c.wall_time_s == 1.5
        (s,) = d.speed
        assert (s.fps, s.fps_ci_low, s.fps_ci_high, s.latency_std_ms) == (5.3, 5.1, 5.5, 5.0)
        assert (s.batch_size, s.tta_hflip, s.bn_fused) == (1, False, True)
        assert (s.driver_version, s.cuda_version, s.cudnn_version, s.torch_version) == (
            "550.1", "12.4", "90100", "2.4.0")
        assert (s.warmup_frames, s.warmup_converged, s.weights) == (20, True, "trained")
        assert s.config == {"device": "auto", "timed_frames": 100} and s.settings["timer"] == "time.perf_counter"
        assert s.provenance == {"hostname": "box"} and s.device_kind == "cuda"
        rec = d.record
        assert rec.status == "finished" and rec.metrics == m and rec.speed == s
        failed = store.get_run(2)
        assert failed.run.error == "RuntimeError: boom" and failed.metrics is None and failed.training is None
    # and back: 0001 again, the moved values packed into extra
    engine = create_engine(db_url)
    with engine.begin() as con:
        from alembic import command

        command.downgrade(migrations.alembic_config(con), "0001")
        row = con.execute(text("select extra from speed")).scalar()
        assert con.execute(text("select version from schema_info")).scalar() == 1
    engine.dispose()
    import json

    extra = row if isinstance(row, dict) else json.loads(row)
    assert extra["weights"] == "trained" and extra["latency"] == {"std_ms": 5.0}
