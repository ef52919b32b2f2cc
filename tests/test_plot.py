"""``hsbench plot``: panels per dataset and device, points and their sources, files, errors."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import typer
from plot_fixtures import CAMVID_SEGNET, fill_quickstart, fill_two_datasets
from typer.testing import CliRunner

from hsbench.errors import ConfigError, StoreError
from hsbench.reporting.cli import register
from hsbench.reporting.paper import PAPER_GPU, TABLES
from hsbench.reporting.plots import (
    HYPERSEG_COLOUR,
    OTHER_COLOUR,
    TABLE_MARKERS,
    Estimate,
    MeasuredPoint,
    ablation_series,
    default_out,
    make_figure,
    measured_points,
    paper_points,
    pareto_front,
    plot_style,
    resolve_out,
    save_plot,
)
from hsbench.store import Store


@pytest.fixture(scope="module")
def two_db(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('plot') / 'two.db'}"
    with Store.open(url) as store:
        fill_two_datasets(store)
    store = Store.open(url, create=False)
    yield url, store
    store.close()


@pytest.fixture()
def qs_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'qs.db'}"
    with Store.open(url) as store:
        fill_quickstart(store)
    store = Store.open(url, create=False)
    yield url, store
    store.close()


# --------------------------------------------------------------------------- pure parts


def _dominated(p, q, higher):
    """q dominates p (independent statement of the definition)."""
    better_x = q[0] > p[0] if higher else q[0] < p[0]
    as_good_x = q[0] >= p[0] if higher else q[0] <= p[0]
    return as_good_x and q[1] >= p[1] and (better_x or q[1] > p[1])


def test_pareto_front_by_hand():
    pts = [(10.0, 70.0), (20.0, 72.0), (30.0, 71.0), (40.0, 60.0), (15.0, 65.0)]
    # higher x better: (20, 72) dominates (10, 70) and (15, 65)
    assert pareto_front(pts, x_higher_is_better=True) == [1, 2, 3]
    # lower x better (GMACs): (10, 70) beats (15, 65); (20, 72) is the only better mIoU
    assert pareto_front(pts, x_higher_is_better=False) == [0, 1]
    assert pareto_front([], x_higher_is_better=True) == []
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)], x_higher_is_better=True) == [0, 1]


def test_pareto_front_matches_the_definition_on_random_points():
    rng = random.Random(3)
    for _ in range(50):
        pts = [(rng.choice([1.0, 2.0, 3.0, 4.0]), rng.choice([50.0, 60.0, 70.0]))
               for _ in range(rng.randint(1, 9))]
        for higher in (True, False):
            want = {i for i, p in enumerate(pts)
                    if not any(_dominated(p, q, higher) for j, q in enumerate(pts) if j != i)}
            got = pareto_front(pts, x_higher_is_better=higher)
            assert set(got) == want
            assert [pts[i][0] for i in got] == sorted(pts[i][0] for i in got)


def _pt(study, **knobs):
    base = {"template": "cityscapes-m", "backbone": "efficientnet_b1", "dynamic": True,
            "positional_encoding": True, "grid_n": 16, "groups": None}
    return MeasuredPoint(label=str(knobs), x=Estimate(1.0), miou=Estimate(50.0),
                         dataset="cityscapes", dataset_version=None, split="val",
                         device="cuda", study=study, budget="1 iters",
                         knobs={**base, **knobs})


def test_ablation_series_orders_the_axis_and_labels_values():
    grid = [_pt("g", grid_n=n) for n in (8, 1, "native", 16, 4)]
    (s,) = ablation_series(grid)
    assert [p.knobs["grid_n"] for p in s.points] == [1, 4, 8, 16, "native"]
    assert s.labels == ("grid 1", "4", "8", "16", "native")
    # a second knob varying too (PE): one line per PE setting along grid
    both = [_pt("g", grid_n=n, positional_encoding=pe) for n in (1, 4, 16) for pe in (True, False)]
    assert sorted(len(s.points) for s in ablation_series(both)) == [3, 3]
    groups = [_pt("w", groups=(g, 2 * g, 4 * g, 4 * g, 8 * g)) for g in (4, 1, 16)]
    (s,) = ablation_series(groups)
    assert s.labels == ("g_w1=1", "4", "16")
    # no ordered axis (backbones), or points of different studies: nothing joined
    assert ablation_series([_pt("b", backbone="resnet18"), _pt("b", backbone="pspnet18")]) == []
    assert ablation_series([_pt("a", grid_n=1), _pt("b", grid_n=4)]) == []


def test_estimate_is_mean_sample_sd_and_n():
    e = Estimate.of({0: 1.0, 1: 2.0, 2: 4.0, 3: None})
    assert (e.mean, e.sd, e.n) == (pytest.approx(7 / 3), pytest.approx(np.std([1, 2, 4], ddof=1)), 3)
    assert Estimate.of({7: 5.0}) == Estimate(5.0, None, 1)
    with pytest.raises(ValueError):
        Estimate.of({})


# --------------------------------------------------------------------------- points


def test_paper_points_cite_their_table_row_and_split():
    pts = paper_points("fps-vs-miou")
    assert {(p.table, p.dataset, p.split) for p in pts} == {
        ("3", "cityscapes", "test"), ("4", "camvid", "test"), ("S2", "voc", "val")}
    t4 = {p.row: p for p in pts if p.table == "4"}
    row = TABLES["4"].row(17)
    assert (t4[17].x, t4[17].miou, t4[17].label) == (row.values["fps"], row.values["miou"], "S B1")
    assert t4[17].hyperseg and not t4[1].hyperseg
    t3 = {p.row: p for p in pts if p.table == "3"}
    assert t3[14].miou == TABLES["3"].row(14).values["miou_test"]
    # every paper row with both numbers is drawn, and nothing else
    want = sum(1 for r in TABLES["4"].rows if r.values.get("fps") and r.values.get("miou"))
    assert len(t4) == want
    assert {p.table for p in paper_points("gmacs-vs-miou")} == {"2", "3", "S3"}
    assert {p.table for p in paper_points("params-vs-miou", ["camvid"])} == {"4"}
    s3 = sorted((p for p in paper_points("gmacs-vs-miou") if p.table == "S3"), key=lambda p: p.order)
    assert [p.label for p in s3] == ["g_w1=1", "2", "4", "8", "16"]


def test_measured_points_aggregate_seeds_per_variant(two_db):
    _url, store = two_db
    pts = {p.variant_id: p for p in measured_points(store, "fps-vs-miou")}
    g4 = pts["cs-grid4"]
    mious = [100 * (0.725 + d) for d in (-0.006, 0.0, 0.007)]
    assert g4.miou.n == 3 and g4.miou.mean == pytest.approx(np.mean(mious))
    assert g4.miou.sd == pytest.approx(np.std(mious, ddof=1))
    assert g4.x.mean == pytest.approx(np.mean([44.0 * (1 + d) for d in (-0.006, 0.0, 0.007)]))
    assert g4.device == "cuda: NVIDIA H200" and not g4.on_paper_gpu
    assert g4.dataset == "cityscapes" and g4.paper_version and g4.study == "grid_cs"
    qs = pts["qs-native"]
    assert qs.miou.n == 1 and qs.miou.sd is None and qs.device == "cpu: AMD EPYC 7B13"
    assert qs.dataset_version == CAMVID_SEGNET and not qs.paper_version
    assert pts["cv-full"].paper_version
    # GMACs and params carry no device: one point per variant whatever measured the FPS
    assert {p.device for p in measured_points(store, "gmacs-vs-miou")} == {None}
    assert measured_points(store, "params-vs-miou", study="quickstart")[0].x.mean == \
        pytest.approx(7.57)


# --------------------------------------------------------------------------- figures


def _panels(fig):
    """title -> axes (the drawn panels; empty grid cells are not axes)."""
    return {ax.get_title(loc="left"): ax for ax in fig.axes if ax.get_title(loc="left")}


def _scatter_colours(ax):
    cols = set()
    for coll in ax.collections:
        for c in itertools.chain(coll.get_facecolors(), coll.get_edgecolors()):
            cols.add(tuple(np.round(c[:3], 3)))
    return cols


def _rgb(hex_colour):
    from matplotlib.colors import to_rgb

    return tuple(np.round(to_rgb(hex_colour), 3))


def test_fps_has_a_panel_per_dataset_and_a_speed_axis_per_device(two_db):
    _url, store = two_db
    with plot_style("page"):
        fig = make_figure("fps-vs-miou", store, label_iterations=5)
    panels = _panels(fig)
    assert set(panels) == {
        "Cityscapes (paper GPU)", "CamVid (paper GPU)", "VOC 2012 (paper GPU)",
        "CamVid - cpu", "Cityscapes - cuda", "CamVid - cuda"}
    assert panels["CamVid - cpu"].get_xlabel() == "frames/s on cpu: AMD EPYC 7B13"
    assert panels["Cityscapes - cuda"].get_xlabel() == "frames/s on cuda: NVIDIA H200"
    assert panels["CamVid (paper GPU)"].get_xlabel() == f"frames/s on {PAPER_GPU}"
    # the paper panels hold paper points only; the device panels measured points only
    paper_cols = {_rgb(HYPERSEG_COLOUR), _rgb(OTHER_COLOUR)}
    for title, ax in panels.items():
        cols = _scatter_colours(ax) - {(1.0, 1.0, 1.0)}
        if "paper GPU" in title:
            assert cols <= paper_cols, title
        else:
            assert cols and not cols & paper_cols, title
    # a device row shares its x axis, datasets never share mIoU
    assert panels["Cityscapes - cuda"].get_shared_x_axes().joined(
        panels["Cityscapes - cuda"], panels["CamVid - cuda"])
    assert not panels["CamVid - cpu"].get_shared_x_axes().joined(
        panels["CamVid - cpu"], panels["CamVid (paper GPU)"])
    assert not panels["CamVid - cpu"].get_shared_y_axes().joined(
        panels["CamVid - cpu"], panels["CamVid (paper GPU)"])
    # 3 seeds -> sd error bars on both axes; one CPU run -> its FPS interval only
    bars = {t: [c for c in ax.collections if type(c).__name__ == "LineCollection"]
            for t, ax in panels.items()}
    assert len(bars["Cityscapes - cuda"]) == 2 * 4  # x and y bars of the 4 grid variants (3 seeds)
    assert len(bars["CamVid - cpu"]) == 2  # x bars of 2 variants
    (seg,) = bars["CamVid - cpu"][0].get_segments()
    assert sorted(seg[:, 0]) == pytest.approx([8.16 * 0.97, 8.16 * 1.02]) or \
        sorted(seg[:, 0]) == pytest.approx([8.81 * 0.97, 8.81 * 1.02])
    assert not bars["CamVid - cuda"]
    texts = [t.get_text() for t in panels["Cityscapes - cuda"].texts]
    assert {"grid 1", "4", "8", "16", "g_w1=1"} <= set(texts)
    notes = "\n".join(t.get_text() for t in fig.texts)
    assert "Hollow: measured on CamVid 480x360 (SegNet layout)" in notes
    assert "960x720" in notes and "mIoU error bars: +-1 sd over 3 seeds." in notes
    assert "FPS error bars: +-1 sd over 3 seeds; one run's 95% bootstrap interval" in notes


def test_quickstart_other_dataset_version_is_hollow_on_its_own_cpu_axis(qs_db):
    _url, store = qs_db
    with plot_style("column"):
        fig = make_figure("fps-vs-miou", store, study="quickstart", width="column",
                          label_iterations=5)
    panels = _panels(fig)
    assert set(panels) == {"CamVid (paper GPU)", "CamVid - cpu"}
    cpu = panels["CamVid - cpu"]
    faces = {tuple(np.round(c, 3)) for coll in cpu.collections for c in coll.get_facecolors()}
    assert faces == {(1.0, 1.0, 1.0, 1.0)}  # hollow: not the paper's CamVid
    assert {t.get_text() for t in cpu.texts} >= {"grid 1", "native"}
    assert fig.get_figwidth() == pytest.approx(3.3)
    # a Pareto step line over the two measured points
    assert any(line.get_linestyle() == "--" for line in cpu.get_lines())


def test_same_colours_and_markers_in_all_kinds(two_db):
    _url, store = two_db
    legends = {}
    for kind in ("fps-vs-miou", "gmacs-vs-miou", "params-vs-miou"):
        with plot_style("page"):
            fig = make_figure(kind, store, label_iterations=1)
        (legend,) = fig.legends
        legends[kind] = {t.get_text(): (h.get_color(), h.get_marker(), h.get_markerfacecolor())
                         for t, h in zip(legend.get_texts(), legend.legend_handles)}
    common = set.intersection(*(set(v) for v in legends.values()))
    assert {"HyperSeg (paper)", "other methods (paper)", "Table 3 (test mIoU)",
            "measured: grid_cs", "measured: quickstart",
            "measured, other dataset version"} <= common
    for name in common:
        assert len({legends[k][name] for k in legends}) == 1, name
    assert legends["gmacs-vs-miou"]["Table S3 (val mIoU)"][1] == TABLE_MARKERS["S3"]
    assert legends["fps-vs-miou"]["HyperSeg (paper)"][0] == HYPERSEG_COLOUR


def test_paper_only_figure_without_a_store():
    with plot_style("page"):
        fig = make_figure("params-vs-miou", None, label_iterations=1)
    assert set(_panels(fig)) == {"Cityscapes", "CamVid", "VOC 2012"}
    assert all(ax.get_xlabel() == "learned parameters [M]" for ax in _panels(fig).values())


# --------------------------------------------------------------------------- files and CLI


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_plot_file_is_written_reproducibly(qs_db, tmp_path, fmt, magic):
    _url, store = qs_db
    out = tmp_path / "figs" / f"p.{fmt}"
    path = save_plot("gmacs-vs-miou", store, study="quickstart", out=out, width="column", dpi=72)
    data = out.read_bytes()
    assert path == out and data.startswith(magic)
    again = save_plot("gmacs-vs-miou", store, study="quickstart", out=tmp_path / f"q.{fmt}",
                      width="column", dpi=72)
    assert again.read_bytes() == data  # no dates, fixed label layout
    if fmt == "pdf":
        assert b"/FontFile2" in data and b"/Type3" not in data  # TrueType embedded


def test_out_and_format_resolution():
    assert resolve_out("fps-vs-miou", None, None, "svg").as_posix() == "results/fps-vs-miou.svg"
    assert default_out("fps-vs-miou", "a b").as_posix() == "results/fps-vs-miou-a_b.png"
    assert resolve_out("fps-vs-miou", None, "x/p.PDF", "pdf").name == "p.PDF"
    with pytest.raises(ConfigError, match="--format svg disagrees with --out"):
        resolve_out("fps-vs-miou", None, "p.png", "svg")
    with pytest.raises(ConfigError, match="unknown plot format 'gif'"):
        resolve_out("fps-vs-miou", None, None, "gif")


def test_bad_plot_requests_fail_clearly(qs_db, tmp_path):
    _url, store = qs_db
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write plot .*cannot create folder"):
        save_plot("fps-vs-miou", store, out=blocker / "sub" / "p.png")
    with pytest.raises(ConfigError, match=r"must end in \.png, \.svg, \.pdf"):
        save_plot("fps-vs-miou", store, out=tmp_path / "p.gif")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ConfigError, match="it is a folder"):
        save_plot("fps-vs-miou", store, out=tmp_path / "dir.png")
    with pytest.raises(ConfigError, match="unknown plot 'speed'"):
        save_plot("speed", store, out=tmp_path / "p.png")
    with pytest.raises(ConfigError, match="unknown plot width 'wide'"):
        save_plot("fps-vs-miou", store, out=tmp_path / "p.png", width="wide")
    with pytest.raises(ConfigError, match="--dpi must be"):
        save_plot("fps-vs-miou", store, out=tmp_path / "p.png", dpi=5)
    with pytest.raises(StoreError, match="no study named 'nope'"):
        save_plot("fps-vs-miou", store, study="nope", out=tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def _invoke(*args, env=None):
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """test root"""

    register(app)
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_plot_formats_widths_and_errors(qs_db, tmp_path, monkeypatch):
    url, _ = qs_db
    monkeypatch.chdir(tmp_path)
    r = _invoke("plot", "fps-vs-miou", "--format", "svg", "--width", "column",
                env={"HSBENCH_DB": url})
    assert r.exit_code == 0, r.output
    svg = (tmp_path / "results" / "fps-vs-miou.svg").read_text()
    assert svg.count('<g id="axes_') == 4  # Cityscapes, CamVid, VOC (paper GPU) + CamVid cpu
    r = _invoke("plot", "params-vs-miou", "--study", "quickstart", "--out", "g.pdf",
                "--dpi", "100", "--db", url)
    assert r.exit_code == 0 and (tmp_path / "g.pdf").read_bytes().startswith(b"%PDF")
    r = _invoke("plot", "fps-vs-miou", "--out", "x.jpg", "--db", url)
    assert isinstance(r.exception, ConfigError)
    r = _invoke("plot", "fps-vs-miou", "--format", "pdf", "--out", "x.png", "--db", url)
    assert isinstance(r.exception, ConfigError) and not (tmp_path / "x.png").exists()
    r = _invoke("plot", "fps-vs-miou", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert isinstance(r.exception, StoreError) and "no results database" in str(r.exception)
    assert not (tmp_path / "none.db").exists()


def test_points_passed_in_measured_on_the_papers_gpu_share_its_axis():
    """Aggregated points can be passed in (``measured=``); a GTX 1080 Ti FPS sits with the paper's."""
    on_1080 = MeasuredPoint(
        label="mine", x=Estimate(30.0, 1.0, 3), miou=Estimate(76.0, 0.5, 3), dataset="camvid",
        dataset_version="CamVid 960x720 (full-resolution release)", split="test",
        device="cuda: NVIDIA GeForce GTX 1080 Ti", study="s", budget="240,000 iters",
        knobs={"grid_n": 16})
    with plot_style("page"):
        fig = make_figure("fps-vs-miou", None, measured=[on_1080], label_iterations=1)
    panels = _panels(fig)
    assert set(panels) == {"Cityscapes (paper GPU)", "CamVid (paper GPU)", "VOC 2012 (paper GPU)"}
    camvid = panels["CamVid (paper GPU)"]
    assert "mine" in {t.get_text() for t in camvid.texts}
    faces = {tuple(np.round(c[:3], 3)) for coll in camvid.collections for c in coll.get_facecolors()}
    assert _rgb("#D55E00") in faces  # filled: the paper's CamVid version
    # n = 3 -> error bars on both axes
    assert sum(type(c).__name__ == "LineCollection" for c in camvid.collections) == 2
