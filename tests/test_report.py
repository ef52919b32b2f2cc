"""Paper numbers, ``hsbench report`` tables and the ``runs`` commands."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
import recordkit as rk
import typer
from typer.testing import CliRunner

from hsbench.errors import ConfigError, StoreError
from hsbench.reporting import paper
from hsbench.reporting.cli import register
from hsbench.reporting.measured import variant_knobs
from hsbench.reporting.tables import build_report, render
from hsbench.store import Store

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- paper numbers


def test_paper_spot_checks():
    r = paper.TABLE_4.row(17)
    assert (r.method, r.backbone, r.section) == ("HyperSeg-S", "EfficientNet-B1", "bottom")
    assert dict(r.values) == {"miou": 78.4, "fps": 38.0, "params": 9.9}
    assert r.cite() == "Table 4, row 17 (HyperSeg-S, EfficientNet-B1)"
    assert r.cell("fps").unit == "frames/s, GTX 1080 Ti"
    r = paper.TABLE_S3.row(3)
    assert r.values["groups"] == "4, 8, 16, 16, 32"
    assert [r.values[k] for k in ("miou", "gmacs", "theta_w", "params")] == [78.0, 16.9, 0.3, 10.1]
    assert paper.TABLE_S3.column("gmacs").unit == "GMACs, thop"
    assert paper.TABLE_2.row(6).values == {"miou": 80.6, "gmacs": 8.21, "params": 39.6}
    r = paper.TABLE_3.row(11)
    assert r.values["miou_val"] == 75.8 and r.flags["miou_val"] == "¹"
    assert paper.TABLE_3.row(1).flags == {"gmacs": "*", "params": "*"}
    assert paper.TABLE_4.row(3).cell("fps").flag == "*"
    assert paper.TABLE_S2.row(1).values == {"grid": "1x1", "positional_encoding": False,
                                            "miou": 77.56, "fps": 46.8}
    assert [len(t.rows) for t in paper.TABLES.values()] == [6, 14, 18, 5, 5]
    with pytest.raises(ConfigError, match="unknown table '7'"):
        paper.get_table("7")
    assert paper.get_table("table s2") is paper.TABLE_S2


def _paper_dir() -> Path | None:
    for cand in (os.environ.get("HSBENCH_PAPER_DIR"), REPO / "shared" / "paper",
                 REPO.parent / "shared" / "paper"):
        if cand and (Path(cand) / "hyperseg_paper.txt").is_file():
            return Path(cand)
    return None


def _body(text: str, header_start: str, caption_start: str, skip: int = 0) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(header_start))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(caption_start))
    return [ln for ln in lines[start + 1 + skip:end] if ln.strip()]


def _cell(text: str):
    """A printed cell -> (value as printed, flag)."""
    text = text.strip()
    if text == "-":
        return None, None
    if text in ("×", "$\\checkmark$"):
        return text != "×", None
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([*¹])?", text)
    if m:
        return m.group(1), m.group(2)
    label = text.replace("$", "").replace("\\times", "x").replace("×", "x").replace(" ", "")
    return label, None


TABLE_SOURCES = {
    "2": ("hyperseg_paper.txt", "Method\tBackbone\tmIoU\tGFLOPs", "Table 2.", 0),
    "3": ("hyperseg_paper.txt", "Method\tBackbone\tResolution", "Table 3.", 1),
    "4": ("hyperseg_paper.txt", "Method\tBackbone\tmIoU (%)\tFPS", "Table 4.", 0),
    "S2": ("hyperseg_supplement.txt", "Grid size\tPositional", "Table S2:", 0),
    "S3": ("hyperseg_supplement.txt", "Groups\tmIoU", "Table S3:", 1),
}


@pytest.mark.parametrize("table_id", list(TABLE_SOURCES))
def test_every_paper_number_matches_the_text(table_id):
    d = _paper_dir()
    if d is None:
        pytest.skip("paper text (shared/paper) not found; set HSBENCH_PAPER_DIR")
    fname, header, caption, skip = TABLE_SOURCES[table_id]
    body = _body((d / fname).read_text(encoding="utf-8"), header, caption, skip)
    table = paper.TABLES[table_id]
    assert len(body) == len(table.rows)
    keys = [c.key for c in table.columns]
    for line, row in zip(body, table.rows):
        cells = line.split("\t")
        printed = cells[-len(keys):]
        for key, text in zip(keys, printed):
            value, flag = _cell(text)
            mine = row.values[key]
            if isinstance(mine, bool) or mine is None:
                assert mine == value, (row.cite(), key, text)
            elif key == "groups":
                assert mine == text.strip(), (row.cite(), key)
            else:
                assert str(mine) == str(value), (row.cite(), key, text)
            assert row.flags.get(key) == flag, (row.cite(), key, text)
        if table_id in ("2", "3", "4"):
            assert cells[0].startswith(row.method), (row.cite(), cells[0])
            assert (row.backbone or "-") == cells[1].strip(), (row.cite(), cells[1])


# --------------------------------------------------------------------------- fixtures


def _cfg(template, **model):
    return {"model": {"template": template, "backbone": None, "grid_size": "native",
                      "positional_encoding": True, "dynamic": True, "weight_groups": None,
                      **model},
            "data": {"dataset": "x"}}


def _add(store, study, vid, cfg, *, miou, fps, device, device_name, params=9.9e6, gmacs=3.0,
         theta_w=None, res="480x360", dataset="camvid", version="segnet-480x360",
         budget=240_000, max_iters=None, split="test"):
    store.upsert_variant(vid, cfg, study=study, label=vid)
    rid = store.start_run(vid, study=study, budget_iters=budget, max_iters=max_iters,
                          device=device, dataset=dataset, dataset_version=version,
                          resolution=res)
    store.finish_run(rid, rk.record(
        vid,
        metrics=rk.metrics(miou=miou, split=split),
        complexity=rk.complexity(params_learned=int(params),
                                 params_weight_mapper=None if theta_w is None else int(theta_w),
                                 gmacs_thop=gmacs, resolution=res),
        speed=rk.speed(fps=fps, device=device, device_name=device_name, resolution=res),
    ))
    return rid


@pytest.fixture()
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'hs.db'}"
    store = Store.open(url)
    store.upsert_study("camvid", paper_table="4", spec_toml="[study]")
    store.upsert_study("groups", paper_table="S3")
    store.upsert_study("grid_size", paper_table="S2")
    # Table 4 row 17 (HyperSeg-S, B1) on CPU with --max-iters; row 16 (L w/o DPWConv) on GPU
    _add(store, "camvid", "s_b1", _cfg("camvid-s"), miou=0.412, fps=5.3, device="cpu",
         device_name="AMD EPYC 7B13", max_iters=200)
    _add(store, "camvid", "l_nodpw", _cfg("camvid-l", dynamic=False), miou=0.70, fps=50.0,
         device="cuda", device_name="NVIDIA H100 80GB HBM3", params=10.3e6)
    _add(store, "camvid", "odd", _cfg("camvid-s", backbone="tf_efficientnet_lite0"),
         miou=0.3, fps=7.0, device="cpu", device_name="AMD EPYC 7B13")
    # Table S3 row 3: groups g_w1..g_w5 = 4, 8, 16, 16, 32 (weight_groups coarse to fine)
    _add(store, "groups", "g3", _cfg("cityscapes-m", weight_groups=[32, 16, 16, 8, 4]),
         miou=0.75, fps=2.0, device="cpu", device_name="AMD EPYC 7B13", params=10.0e6,
         gmacs=16.0, theta_w=0.25e6, res="1536x768", dataset="cityscapes", version="v1",
         budget=1_400_000, split="val")
    # Table S2 rows 5 (native grid at 512x512 = 16x16, PE) and 2 (4x4, no PE)
    _add(store, "grid_size", "g16pe", _cfg("voc-l"), miou=0.80, fps=20.0, device="cuda",
         device_name="NVIDIA H100", res="512x512", dataset="voc", version="2012+sbd",
         split="val")
    _add(store, "grid_size", "g4", _cfg("voc-l", grid_size=4, positional_encoding=False),
         miou=0.78, fps=21.0, device="cuda", device_name="NVIDIA H100", res="512x512",
         dataset="voc", version="2012+sbd", split="val")
    yield url, store
    store.close()


# --------------------------------------------------------------------------- reports


@pytest.mark.parametrize("table_id, study_file", [
    ("2", "studies/voc.toml"), ("3", "studies/cityscapes.toml"), ("4", "studies/camvid.toml"),
    ("S2", "studies/grid_size.toml"), ("S3", "studies/groups.toml"),
])
def test_empty_database_prints_paper_rows_and_hint(tmp_path, table_id, study_file):
    with Store.open(f"sqlite:///{tmp_path / 'empty.db'}") as store:
        rep = build_report(table_id, store)
    table = paper.TABLES[table_id]
    assert rep.n_measured == 0
    assert len(rep.frame) == len(table.rows)
    assert set(rep.frame["source"]) == {"paper"}
    assert list(rep.frame["cite"]) == [f"Table {table_id}, row {r.row}" for r in table.rows]
    text = render(rep, "markdown")
    assert study_file in text and "No measured rows" in text
    if table_id == "4":
        assert "studies/backbones.toml" in text and "studies/dpwconv.toml" in text


def test_measured_rows_sit_under_their_paper_row_with_deltas_and_device(db):
    _url, store = db
    rep = build_report("4", store)
    f = rep.frame
    assert rep.n_measured == 3
    i17 = f.index[f["cite"] == "Table 4, row 17"][0]
    m = f.loc[i17 + 1]
    assert m["source"] == "measured" and m["cite"].startswith("run ")
    assert m["mIoU [%]"] == pytest.approx(41.2)
    assert m["Δ mIoU [pp]"] == pytest.approx(41.2 - 78.4)
    assert m["Δ Params [M]"] == pytest.approx(0.0)
    assert m["device"] == "cpu: AMD EPYC 7B13"
    assert m["budget"] == "200 of 240,000 iters (--max-iters)"
    assert m["dataset"] == "camvid segnet-480x360"
    assert m["resolution [WxH]"] == "480x360"
    # a CPU FPS never lands in the paper's GPU column, and gets no delta
    assert m["FPS measured [frames/s]"] == 5.3
    assert m["FPS [frames/s, GTX 1080 Ti]"] is None
    assert m["Δ FPS [vs GTX 1080 Ti, GPU only]"] is None
    assert "not comparable" in m["notes"] and "paper 768x576" in m["notes"]
    # the paper row keeps its own numbers
    p = f.loc[i17]
    assert (p["mIoU [%]"], p["FPS [frames/s, GTX 1080 Ti]"], p["Params [M]"]) == (78.4, 38.0, 9.9)
    # GPU FPS gets a delta against the paper's GTX 1080 Ti (different GPUs, said in notes)
    i16 = f.index[f["cite"] == "Table 4, row 16"][0]
    g = f.loc[i16 + 1]
    assert g["method"].startswith("HyperSeg-L w/o DPWConv")
    assert g["Δ FPS [vs GTX 1080 Ti, GPU only]"] == pytest.approx(50.0 - 21.6)
    assert g["device"].startswith("cuda: NVIDIA H100")
    # an unmatched variant comes last, without deltas
    last = f.iloc[-1]
    assert last["source"] == "measured" and "matches no paper row" in last["notes"]
    assert last["Δ mIoU [pp]"] is None
    assert any("match no paper row" in n for n in rep.notes)
    md = render(rep, "markdown")
    assert "-37.20" in md and "cpu: AMD EPYC 7B13" in md


def test_s3_and_s2_matching(db):
    _url, store = db
    f = build_report("S3", store).frame
    i = f.index[f["cite"] == "Table S3, row 3"][0]
    m = f.loc[i + 1]
    assert m["source"] == "measured" and m["Groups g_w1..g_w5"] == "4, 8, 16, 16, 32"
    assert m["Δ mIoU [pp]"] == pytest.approx(75.0 - 78.0)
    assert m["Δ GFLOPs [GMACs, thop]"] == pytest.approx(16.0 - 16.9)
    assert m["Δ |theta^w| [M]"] == pytest.approx(0.25 - 0.3)
    assert m["Δ Params [M]"] == pytest.approx(10.0 - 10.1)
    assert m["budget"] == "1,400,000 iters" and m["dataset"] == "cityscapes v1"
    f = build_report("S2", store).frame
    after = {f.loc[i - 1, "cite"]: f.loc[i, "method"] for i in f.index[f["source"] == "measured"]}
    assert after == {"Table S2, row 5": "HyperSeg-L [g16pe]", "Table S2, row 2": "HyperSeg-L [g4]"}
    assert variant_knobs(_cfg("voc-l"), None)["grid_n"] == 16


def test_study_filter_and_errors(db):
    _url, store = db
    rep = build_report("4", store, study="groups")  # a study's runs whatever its table
    assert rep.n_measured == 1
    assert build_report("2", store).n_measured == 0
    with pytest.raises(StoreError, match="no study named 'nope'"):
        build_report("4", store, study="nope")
    with pytest.raises(ConfigError, match="unknown table"):
        build_report("5", store)
    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        render(build_report("4", store), "xml")


@pytest.mark.parametrize("table_id", list(paper.TABLES))
def test_every_format_renders(db, table_id):
    _url, store = db
    rep = build_report(table_id, store)
    md = render(rep, "markdown")
    assert md.startswith("## HyperSeg") and "| source" in md and "- Paper rows" in md
    tex = render(rep, "latex")
    assert "\\begin{tabular}" in tex and "\\bottomrule" in tex and tex.startswith("% ")
    csv = pd.read_csv(io.StringIO(render(rep, "csv")))
    assert len(csv) == len(rep.frame) and list(csv.columns) == list(rep.frame.columns)
    js = json.loads(render(rep, "json"))
    assert js["table"] == table_id and len(js["rows"]) == len(rep.frame) and js["notes"]
    assert all(r["source"] in ("paper", "measured") for r in js["rows"])


# --------------------------------------------------------------------------- CLI


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """test root"""

    register(app)
    return app


def _invoke(*args):
    return CliRunner().invoke(_app(), list(args))


def test_cli_report_and_runs(db, tmp_path):
    url, store = db
    r = _invoke("report", "--table", "4", "--db", url)
    assert r.exit_code == 0, r.output
    assert "Table 4, row 17" in r.stdout and "cpu: AMD EPYC 7B13" in r.stdout
    r = _invoke("report", "--table", "S3", "--format", "json", "--db", url, "--study", "groups")
    assert r.exit_code == 0 and json.loads(r.stdout)["table"] == "S3"
    r = _invoke("report", "-t", "2", "-f", "csv", "--db", url)
    assert r.exit_code == 0 and pd.read_csv(io.StringIO(r.stdout)).shape[0] == 6
    assert "studies/voc.toml" in r.stderr
    out = tmp_path / "t4.tex"
    r = _invoke("report", "-t", "4", "-f", "latex", "--db", url, "--out", str(out))
    assert r.exit_code == 0 and "\\begin{tabular}" in out.read_text()

    r = _invoke("runs", "list", "--db", url)
    assert r.exit_code == 0 and "s_b1" in r.stdout and "finished" in r.stdout
    r = _invoke("runs", "list", "--db", url, "--study", "groups", "--json")
    assert r.exit_code == 0 and [x["label"] for x in json.loads(r.stdout)] == ["g3"]
    rid = store.list_runs(study="groups")[0].id
    r = _invoke("runs", "show", str(rid), "--db", url)
    assert r.exit_code == 0
    assert "cityscapes-m" in r.stdout and "miou: 0.75" in r.stdout and "device_name" in r.stdout
    r = _invoke("runs", "show", str(rid), "--db", url, "--json")
    assert json.loads(r.stdout)["metrics"]["miou"] == 0.75
    bad = store.start_run("g3", study="groups")
    store.fail_run(bad, "RuntimeError: NaN loss at iteration 17")
    r = _invoke("runs", "show", str(bad), "--db", url)
    assert "status: failed" in r.stdout and "NaN loss at iteration 17" in r.stdout


@pytest.mark.parametrize("args, exc, msg", [
    (["report", "--table", "7"], ConfigError, "unknown table '7'"),
    (["report", "--table", "4", "--format", "xml"], ConfigError, "unknown format"),
    (["report", "--table", "4", "--study", "nope"], StoreError, "no study named 'nope'"),
    (["runs", "show", "999"], StoreError, "no run with id 999"),
    (["runs", "show", "abc"], ConfigError, "run id must be a whole number"),
    (["runs", "list", "--study", "nope"], StoreError, "no study named"),
    (["report", "-t", "4", "--out", "/dev/null/x/t.md"], ConfigError, "cannot write"),
])
def test_cli_user_errors(db, args, exc, msg):
    url, _ = db
    r = _invoke(*args, "--db", url)
    assert isinstance(r.exception, exc), r.output
    assert msg in str(r.exception) and "\n" not in str(r.exception)


def test_cli_missing_or_bad_database_is_an_error_and_creates_nothing(tmp_path):
    missing = tmp_path / "nope" / "hs.db"
    r = _invoke("report", "--table", "4", "--db", f"sqlite:///{missing}", "--study", "camvid")
    assert isinstance(r.exception, StoreError)
    assert "no results database" in str(r.exception)
    assert "studies/camvid.toml" in str(r.exception)
    assert not missing.parent.exists()
    # without --study: the paper's rows and the study to run, still no file
    r = _invoke("report", "--table", "4", "--db", f"sqlite:///{missing}")
    assert r.exception is None and "Table 4, row 17" in r.output and "hsbench run studies/camvid.toml" in r.output
    assert not missing.parent.exists()
    r = _invoke("runs", "list", "--db", "definitely not a url")
    assert isinstance(r.exception, StoreError) and "not a database URL" in str(r.exception)
    r = _invoke("report", "--table", "4", "--db", "nosuchdriver://x/y")
    assert isinstance(r.exception, StoreError) and "unknown database driver" in str(r.exception)


def test_main_prints_one_line_errors_and_exits_2(db, tmp_path, capsys):
    from hsbench.cli import main

    url, _ = db
    assert main(["report", "--table", "4", "--db", url]) == 0
    assert "Table 4, row 17" in capsys.readouterr().out
    for args in (["report", "--table", "7", "--db", url],
                 ["report", "--table", "4", "--study", "x", "--db", f"sqlite:///{tmp_path / 'none.db'}"],
                 ["runs", "show", "999", "--db", url],
                 ["plot", "fps-vs-miou", "--out", str(tmp_path / "x.gif"), "--db", url]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "none.db").exists()


def test_a_fusion_variant_names_its_fusion_and_matches_no_paper_row(db):
    _url, store = db
    store.upsert_study("fusion", paper_table="4")
    _add(store, "fusion", "pred", _cfg("camvid-s", fusion="pred_op"), miou=0.2, fps=6.0,
         device="cpu", device_name="AMD EPYC 7B13")
    f = build_report("4", store, study="fusion").frame
    row = f[f["source"] == "measured"].iloc[0]
    assert row["method"] == "HyperSeg-S, fusion=pred_op [pred]"
    assert "matches no paper row" in row["notes"] and row["Δ mIoU [pp]"] is None
    assert variant_knobs(_cfg("camvid-s"), None)["fusion"] == "concat"
