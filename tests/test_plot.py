"""``hsbench plot``: files are written, paper and measured points told apart, bad paths fail."""

from __future__ import annotations

import pytest
import recordkit as rk
import typer
from typer.testing import CliRunner

from hsbench.errors import ConfigError, StoreError
from hsbench.reporting.cli import register
from hsbench.reporting.plots import (
    default_out,
    make_figure,
    measured_points,
    paper_points,
    save_plot,
)
from hsbench.store import Store


def _fill(store):
    store.upsert_study("camvid", paper_table="4")
    cfg = {"model": {"template": "camvid-s", "grid_size": "native", "dynamic": True,
                     "positional_encoding": True}}
    for vid, miou, dev, name, fps in (("s_cpu", 0.41, "cpu", "AMD EPYC", 5.3),
                                      ("s_gpu", 0.52, "cuda", "NVIDIA H100", 61.0)):
        store.upsert_variant(vid, {**cfg, "tag": vid}, study="camvid", label=vid)
        rid = store.start_run(vid, study="camvid", budget_iters=240_000, max_iters=200,
                              dataset="camvid", dataset_version="segnet", resolution="480x360")
        store.finish_run(rid, rk.record(vid, metrics=rk.metrics(miou=miou),
                                        complexity=rk.complexity(params_learned=9_900_000, gmacs_thop=3.1),
                                        speed=rk.speed(fps=fps, device=dev, device_name=name)))


@pytest.fixture()
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'hs.db'}"
    with Store.open(url) as store:
        _fill(store)
    store = Store.open(url, create=False)
    yield url, store
    store.close()


def test_points_are_labelled_by_source_and_device(db):
    _url, store = db
    p = paper_points("fps-vs-miou")
    assert set(p["table"]) == {"3", "4"}
    row = p[(p["table"] == "4") & (p["row"] == 17)].iloc[0]
    assert (row["x"], row["miou"], row["label"]) == (38.0, 78.4, "HS-S B1")
    # Table 3 points use the test mIoU; GMACs exist in Table 3 only
    assert p[(p["table"] == "3") & (p["row"] == 14)].iloc[0]["miou"] == 78.1
    assert set(paper_points("gmacs-vs-miou", ("3",))["table"]) == {"3"}
    m = measured_points(store, "fps-vs-miou")
    assert sorted(m["group"]) == ["measured (cpu: AMD EPYC)", "measured (cuda: NVIDIA H100)"]
    assert sorted(m["miou"]) == pytest.approx([41.0, 52.0])
    assert list(measured_points(store, "params-vs-miou")["x"]) == pytest.approx([9.9, 9.9])
    fig = make_figure("fps-vs-miou", store)
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "paper (GTX 1080 Ti): Table 4: CamVid test" in legend
    assert "measured (cpu: AMD EPYC)" in legend and "measured (cuda: NVIDIA H100)" in legend
    assert "GTX 1080 Ti" in ax.get_title() and "cpu: AMD EPYC" in ax.get_title()
    assert ax.get_xlabel() == "speed [frames/s], batch 1" and ax.get_ylabel() == "mIoU [%]"
    fig = make_figure("gmacs-vs-miou", store)
    assert fig.axes[0].get_xlabel() == "compute [GMACs, thop]"
    fig = make_figure("params-vs-miou", None)  # paper only
    assert "none yet" in fig.axes[0].get_title()
    assert fig.axes[0].get_xlabel() == "learned parameters [M params]"


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"),
                                           (".pdf", b"%PDF")])
def test_plot_file_is_written(db, tmp_path, suffix, magic):
    _url, store = db
    out = tmp_path / "figs" / f"p{suffix}"
    path = save_plot("fps-vs-miou", store, study="camvid", out=out)
    assert path == out and out.read_bytes().startswith(magic)


def test_bad_plot_requests_fail_clearly(db, tmp_path):
    _url, store = db
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
    with pytest.raises(StoreError, match="no study named 'nope'"):
        save_plot("fps-vs-miou", store, study="nope", out=tmp_path / "p.png")


def _invoke(*args, env=None):
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """test root"""

    register(app)
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_plot_default_location_and_errors(db, tmp_path, monkeypatch):
    url, _ = db
    monkeypatch.chdir(tmp_path)
    r = _invoke("plot", "params-vs-miou", env={"HSBENCH_DB": url})
    assert r.exit_code == 0, r.output
    assert (tmp_path / default_out("params-vs-miou")).is_file()
    assert str(default_out("params-vs-miou")) == "results/params-vs-miou.png"
    r = _invoke("plot", "gmacs-vs-miou", "--study", "camvid", "--out", "g.svg", "--db", url)
    assert r.exit_code == 0 and (tmp_path / "g.svg").is_file()
    r = _invoke("plot", "fps-vs-miou", "--out", "x.jpg", "--db", url)
    assert isinstance(r.exception, ConfigError)
    r = _invoke("plot", "fps-vs-miou", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert isinstance(r.exception, StoreError) and "no results database" in str(r.exception)
    assert not (tmp_path / "none.db").exists()
