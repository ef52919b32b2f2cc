"""The study table (hsbench report --study): aggregates over seeds and paired deltas."""

import json

import numpy as np
import pytest
from scipy import stats as sps

from hsbench.errors import ConfigError
from hsbench.reporting.measured import MeasuredRecord
from hsbench.reporting.study_report import (
    build_study_report, closest_to_paper, config_differences, group_variants, render_study,
)

_RID = iter(range(1, 10_000))


def _rec(label, seed, miou, *, grid="native", fps=5.0, classes=None, backbone="efficientnet_b1"):
    cfg = {"model": {"template": "camvid-s", "grid_size": grid, "backbone": backbone},
           "train": {"seed": seed, "iterations": 50}}
    return MeasuredRecord(
        run_id=next(_RID), seed=seed, variant_id=f"id-{label}", label=label, studies=["s"],
        tables={"4"}, knobs={"template": "camvid-s", "backbone": backbone, "dynamic": True,
                             "positional_encoding": True, "grid": grid, "grid_n": grid,
                             "groups": None},
        method="HyperSeg-S", backbone=backbone, miou=miou, split="test", gmacs=2.3,
        gmacs_counter="thop", params=7.6, theta_w=0.1, fps=fps, latency_ms=1000 / fps,
        fps_device="cpu", device="cpu: AMD EPYC", train_device="cpu", budget="50 iters",
        budget_iters=50, max_iters=None, dataset="camvid CamVid 480x360", resolution="480x360",
        macc=miou + 5, pixel_acc=miou + 40, trimap_miou=miou - 10,
        class_iou=classes or {"Sky": miou + 20, "Road": miou + 30}, fps_ci=(fps - 0.1, fps + 0.1),
        config=cfg,
    )


BASE = {0: 30.0, 1: 31.0, 2: 29.5}
GRID1 = {0: 25.0, 1: 26.5, 3: 24.0}  # seed 2 missing, seed 3 has no partner


@pytest.fixture
def records():
    recs = [_rec("native", s, v) for s, v in BASE.items()]
    recs += [_rec("grid1", s, v, grid=1, fps=6.0) for s, v in GRID1.items()]
    return recs


def test_aggregates_and_paired_delta_against_numpy_and_scipy(records):
    rep = build_study_report("s", records)
    assert rep.baseline.label == "native"
    assert "closest to the paper" in rep.baseline_rule
    g1 = next(v for v in rep.variants if v.label == "grid1")
    vals = np.array(list(GRID1.values()))
    assert g1.metrics["miou"].n == 3
    assert g1.metrics["miou"].mean == pytest.approx(vals.mean())
    assert g1.metrics["miou"].sd == pytest.approx(vals.std(ddof=1))
    d = rep.deltas["grid1"]["miou"]
    deltas = np.array([GRID1[0] - BASE[0], GRID1[1] - BASE[1]])
    assert d.n == 2 and d.unpaired_variant == (3,) and d.unpaired_baseline == (2,)
    ci = sps.ttest_1samp(deltas, 0.0).confidence_interval(0.95)
    assert (d.mean, d.low, d.high) == (pytest.approx(deltas.mean()), pytest.approx(ci.low),
                                       pytest.approx(ci.high))
    # per-class IoU aggregates per class
    assert g1.class_iou["Sky"].mean == pytest.approx(vals.mean() + 20)
    assert rep.differs["grid1"] == {"model.grid_size": 1}
    assert any("2 run(s) had no partner" in n for n in rep.notes)


def test_declared_baseline_and_unknown_baseline(records):
    rep = build_study_report("s", records, baseline="grid1")
    assert rep.baseline.label == "grid1" and rep.baseline_rule == "declared in the study"
    assert rep.deltas["native"]["miou"].mean == pytest.approx(
        np.mean([BASE[0] - GRID1[0], BASE[1] - GRID1[1]]))
    with pytest.raises(ConfigError, match="baseline 'nope' is not a variant.*native, grid1"):
        build_study_report("s", records, baseline="nope")
    with pytest.raises(ConfigError, match="no finished runs"):
        build_study_report("s", [])


def test_closest_to_paper_prefers_the_table_s1_configuration():
    recs = [_rec("lite", 0, 1.0, backbone="tf_efficientnet_lite1"), _rec("b1", 0, 1.0),
            _rec("b1-grid4", 0, 1.0, grid=4)]
    assert closest_to_paper(group_variants(recs)).label == "b1"


def test_latest_run_of_a_seed_wins():
    recs = [_rec("v", 0, 10.0), _rec("v", 0, 20.0)]
    (v,) = group_variants(recs)
    assert v.metrics["miou"].values == (20.0,)


def test_json_is_recomputable_and_text_formats_say_what_they_show(records):
    rep = build_study_report("s", records)
    data = json.loads(render_study(rep, "json"))
    for v in data["variants"]:
        per_seed = list(v["metrics"]["miou"]["per_seed"].values())
        assert np.mean(per_seed) == pytest.approx(v["metrics"]["miou"]["mean"])
        assert np.std(per_seed, ddof=1) == pytest.approx(v["metrics"]["miou"]["sd"])
    g1 = next(v for v in data["variants"] if v["variant"] == "grid1")
    assert g1["deltas"]["miou"]["unpaired_variant_seeds"] == [3]
    md = render_study(rep, "markdown")
    assert "native (baseline)" in md and "model.grid_size=1" in md
    assert "(n=2, t)" in md and "Per-class IoU" in md
    assert "Student's t" in md
    csv = render_study(rep, "csv")
    assert "Δ mIoU [%] low" in csv.splitlines()[0]
    html = render_study(rep, "html", figures=['<?xml version="1.0"?><svg id="fig"></svg>'])
    assert html.startswith("<!DOCTYPE html>") and '<svg id="fig">' in html
    assert "<?xml" not in html and "http://" not in html.replace("http://www.w3.org", "")
    with pytest.raises(ConfigError, match="unknown format"):
        render_study(rep, "docx")


def test_config_differences_ignores_seed_and_data_root():
    a = {"train": {"seed": 1, "lr": 1e-3}, "data": {"root": "/a"}}
    b = {"train": {"seed": 2, "lr": 2e-3}, "data": {"root": "/b"}}
    assert config_differences(a, b) == {"train.lr": 1e-3}


def _write_study(tmp_path, baseline_line):
    text = f'''[study]
name = "b"
seeds = [0, 1]
{baseline_line}

[base.model]
template = "camvid-s"

[base.data]
dataset = "synthetic"

[[variants]]
name = "native"

[[variants]]
name = "grid1"
model.grid_size = 1
'''
    p = tmp_path / "b.toml"
    p.write_text(text)
    return p


def test_study_declares_its_baseline(tmp_path):
    from hsbench.studies import load_study

    assert load_study(_write_study(tmp_path, 'baseline = "grid1"')).baseline == "grid1"
    assert load_study(_write_study(tmp_path, "")).baseline is None


def test_study_baseline_must_name_a_variant(tmp_path):
    from hsbench.studies import StudyError
    from hsbench.studies import load_study

    with pytest.raises(StudyError, match=r"baseline \"grid2\" is not a variant.*did you mean "
                                         r"'grid1'.*study.baseline|study.baseline.*grid2"):
        load_study(_write_study(tmp_path, 'baseline = "grid2"'))


def _stored_study(url, seeds_native, seeds_grid1, *, baseline=None):
    import recordkit as rk
    from hsbench.store import Store

    spec = '[study]\nname = "abl"\n' + (f'baseline = "{baseline}"\n' if baseline else "")
    with Store.open(url) as store:
        store.upsert_study("abl", paper_table="4", spec_toml=spec)
        for label, grid, values in (("native", "native", seeds_native), ("grid1", 1, seeds_grid1)):
            cfg = {"model": {"template": "camvid-s", "grid_size": grid}, "data": {"dataset": "camvid"}}
            store.upsert_variant(f"vid-{label}", cfg, study="abl", label=label)
            for seed, miou in values.items():
                rid = store.start_run(f"vid-{label}", study="abl", seed=seed, budget_iters=50,
                                      device="cpu", dataset="camvid", resolution="480x360")
                store.finish_run(rid, rk.record(
                    f"vid-{label}", seed,
                    metrics=rk.metrics(miou=miou / 100, macc=0.5, split="test",
                                       per_class_iou={"Sky": 0.8, "Road": None}),
                    complexity=rk.complexity(params_learned=7_600_000, gmacs_thop=2.3),
                    speed=rk.speed(fps=5.0 + seed, device="cpu", device_name="AMD EPYC",
                                   fps_ci_low=4.9, fps_ci_high=5.1)))


def test_cli_study_report_json_recomputable_from_runs_list(tmp_path):
    from typer.testing import CliRunner

    from hsbench.cli import app

    url = f"sqlite:///{tmp_path / 'hs.db'}"
    _stored_study(url, BASE, GRID1, baseline="grid1")
    before = (tmp_path / "hs.db").read_bytes()
    r = CliRunner().invoke(app, ["report", "--study", "abl", "--format", "json", "--db", url])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["baseline"] == "grid1" and data["baseline_rule"] == "declared in the study"
    runs = CliRunner().invoke(app, ["runs", "list", "--study", "abl", "--format", "json", "--db", url])
    listed = json.loads(runs.output)
    stored = {(row["label"], row["seed"]): 100 * row["metrics"]["miou"] for row in listed}
    assert all(row["speed"][0]["fps"] == 5.0 + row["seed"] for row in listed)
    for v in data["variants"]:
        per_seed = {int(s): x for s, x in v["metrics"]["miou"]["per_seed"].items()}
        assert per_seed == pytest.approx({s: stored[(v["variant"], s)] for s in per_seed})
        assert v["metrics"]["miou"]["mean"] == pytest.approx(np.mean(list(per_seed.values())))
    html_path = tmp_path / "abl.html"
    r = CliRunner().invoke(app, ["report", "--study", "abl", "--format", "html", "--db", url,
                                 "--out", str(html_path)])
    assert r.exit_code == 0, r.output
    page = html_path.read_text()
    assert page.count("<svg") == 3 and "<script" not in page and "src=" not in page
    assert (tmp_path / "hs.db").read_bytes() == before  # reading wrote nothing


def test_cli_report_needs_table_or_study(tmp_path):
    from hsbench.cli import main

    assert main(["report", "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 2


def test_paper_table_rows_aggregate_seeds(tmp_path):
    from hsbench.reporting.tables import build_report, render
    from hsbench.store import Store

    url = f"sqlite:///{tmp_path / 'hs.db'}"
    _stored_study(url, BASE, GRID1)
    with Store.open(url, create=False) as store:
        rep = build_report("4", store, study="abl")
    measured = rep.frame[rep.frame["source"] == "measured"]
    assert len(measured) == 2 == rep.n_measured  # one row per variant, not per seed
    native = measured[measured["method"].str.contains(r"\[native\]")].iloc[0]
    vals = np.array(list(BASE.values()))
    assert native["mIoU [%]"] == pytest.approx(vals.mean())
    assert native["mIoU sd [pp]"] == pytest.approx(vals.std(ddof=1))
    assert native["n seeds"] == "3" and native["cite"].endswith("(seeds 0, 1, 2)")
    assert "mean over its seeds" in render(rep, "markdown")
