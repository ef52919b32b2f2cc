"""DPWConv op benchmark: shapes of Table S1, row arithmetic, injectable ops, CLI."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from typer.testing import CliRunner

from hsbench.errors import ConfigError
from hsbench.measure import cli as measure_cli
from hsbench.models.templates import get_template
from hsbench.measure.bench import (
    BENCH_TEMPLATES,
    LayerShape,
    bench_dpwconv,
    format_bench,
    template_layers,
)
from hsbench.models.templates import TEMPLATES


@pytest.fixture(autouse=True)
def one_thread():
    """The test machine's cores are shared: one thread avoids oversubscription stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = [
    LayerShape("tiny", "m_2", "pw1", 4, c_in=4, c_out=6, kernel=1, groups=1, height=8, width=6, grid=(3, 2)),
    LayerShape("tiny", "m_2", "dw", 4, c_in=6, c_out=6, kernel=3, groups=6, height=8, width=6, grid=(3, 2)),
]


def standin_reference(x, weight, bias=None, *, padding=0, groups=1, padding_mode="zeros"):
    """Stand-in with the op's signature: per-patch loop of F.conv2d on the padded map."""
    b, _, h, w = x.shape
    n_h, n_w = weight.shape[-2:]
    ph, pw = h // n_h, w // n_w
    xp = torch.nn.functional.pad(x, (padding,) * 4)
    out = x.new_zeros(b, weight.shape[1], h, w)
    for i in range(n_h):
        for j in range(n_w):
            patch = xp[:, :, i * ph : (i + 1) * ph + 2 * padding, j * pw : (j + 1) * pw + 2 * padding]
            out[:, :, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw] = torch.nn.functional.conv2d(
                patch, weight[0, ..., i, j], None if bias is None else bias[0, :, i, j], groups=groups
            )
    return out


class FixedClock:
    """Each timed call lasts 2 ms."""

    def __init__(self):
        self.t, self.n = 0.0, 0

    def __call__(self):
        self.n += 1
        if self.n % 2 == 0:
            self.t += 2e-3
        return self.t


def test_template_layers_are_the_models_own_convolutions():
    """The bench times exactly the DPWConvs build_model makes (no copied layer table)."""
    from hsbench.models import ModelConfig, build_model

    model = build_model(ModelConfig(template="camvid-s"))
    want = [(f"m_{lv}", s.c_in, s.c_out, s.kernel, s.groups) for lv, b in zip(model.levels, model.blocks) for s in b.specs]
    got = [(s.level, s.c_in, s.c_out, s.kernel, s.groups) for s in template_layers("camvid-s")]
    assert got == want


@pytest.mark.parametrize("template", ["camvid-s", "cityscapes-m", "camvid-l"])
def test_template_layers_follow_table_s1(template):
    """Shapes come from build_model; checked here against the Table S1 facts in hsbench.models.templates."""
    tpl = get_template(template)
    res_w, res_h = tpl.resolution
    layers = template_layers(template, blocks=True)
    levels = list(range(5, 5 - tpl.num_levels, -1))
    assert list(dict.fromkeys(s.level for s in layers)) == [f"m_{lv}" for lv in levels]
    prev_out = 0
    for level, out in zip(levels, tpl.level_channels):
        mine = [s for s in layers if s.level == f"m_{level}"]
        out = tpl.num_classes if out is None else out
        assert all((s.width, s.height, s.grid) == (res_w >> level, res_h >> level, (res_w // 32, res_h // 32))
                   for s in mine)
        convs = [s.conv for s in mine]
        if tpl.full_block(level):
            assert convs == ["pw1", "dw", "pw2", "block"]
            pw1, dw, pw2, block = mine
            assert pw1.c_out == dw.c_in == dw.c_out == dw.groups == pw2.c_in == block.hidden == 2 * pw1.c_in
            assert (dw.kernel, pw1.kernel, pw2.c_out, block.c_out, block.c_in) == (3, 1, out, out, pw1.c_in)
        else:
            assert convs == ["pw1"] and (mine[0].kernel, mine[0].groups, mine[0].c_out) == (1, 1, out)
        assert mine[0].c_in > prev_out  # reduced skip + coarser output + 2 positional channels
        prev_out = out
    small = template_layers(template, scale=0.1)
    assert all(s.grid[0] <= s.width and s.grid[1] <= s.height for s in small)
    assert set(BENCH_TEMPLATES) == set(TEMPLATES)
    with pytest.raises(ConfigError, match="known"):
        template_layers("voc-xl")


def test_rows_use_injected_ops_and_compute_traffic():
    calls = {"fast": 0, "ref": 0}

    def fast(*a, **k):
        calls["fast"] += 1
        return standin_reference(*a, **k)

    def ref(*a, **k):
        calls["ref"] += 1
        return standin_reference(*a, **k)

    rows = bench_dpwconv(TINY, device="cpu", fast=fast, reference=ref, warmup=1, iters=3, clock=FixedClock())
    assert [r.impl for r in rows] == ["reference", "fast", "conv2d"] * 2
    assert calls == {"fast": 2 * (1 + 1 + 3), "ref": 2 * (1 + 1 + 3)}  # check call + warm-up + timed
    for r in rows:
        assert r.ms == pytest.approx(2.0) and r.device == "cpu"
        assert r.gbps == pytest.approx(r.traffic_bytes / 2e-3 / 1e9)
        assert r.ratio_to_conv == pytest.approx(1.0)
    fast_pw1, conv_pw1 = rows[1], rows[2]
    # x (1,4,8,6) + dynamic weight (1,6,4,1,1,2,3) + bias (1,6,2,3) + out (1,6,8,6), fp32
    assert fast_pw1.traffic_bytes == 4 * (4 * 48 + 6 * 4 * 6 + 6 * 6 + 6 * 48)
    assert conv_pw1.traffic_bytes == 4 * (4 * 48 + 6 * 4 + 6 + 6 * 48)
    assert fast_pw1.max_abs_diff == 0.0 and rows[0].max_abs_diff is None
    assert json.loads(format_bench(rows, "json"))["rows"][1]["name"] == "tiny m_2.pw1"
    table = format_bench(rows, "table", provenance={"cpu_model": "X", "torch_version": "t"})
    assert "GB/s" in table and "x conv" in table and "tiny m_2.dw" in table
    with pytest.raises(ConfigError):
        format_bench(rows, "xml")


def test_without_reference_timing_and_with_the_real_ops():
    rows = bench_dpwconv(TINY, device="cpu", include_reference=False, warmup=0, iters=2)
    assert [r.impl for r in rows] == ["fast", "conv2d"] * 2
    assert all(r.ms > 0 for r in rows)
    assert all(r.max_abs_diff is None for r in rows)
    checked = bench_dpwconv(TINY, device="cpu", warmup=0, iters=1)
    assert all(r.max_abs_diff < 1e-5 for r in checked if r.impl == "fast")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda():
    with pytest.raises(ConfigError, match="CUDA"):
        bench_dpwconv(TINY, device="cuda", fast=standin_reference, reference=standin_reference)


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command()
    def version() -> None:  # a second command, as in the real app
        """placeholder"""

    measure_cli.register(app)
    return app


def test_cli_json_on_cpu():
    args = ["bench", "dpwconv", "--device", "cpu", "--format", "json", "--template", "camvid-s",
            "--scale", "0.04", "--iters", "1", "--warmup", "0", "--skip-reference"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["device"] == "cpu" and out["provenance"]["torch_version"] == torch.__version__
    assert {r["impl"] for r in out["rows"]} == {"fast", "conv2d"}
    assert len(out["rows"]) == 2 * len(template_layers("camvid-s", scale=0.04, blocks=True))
    assert {r["backend"] for r in out["rows"] if r["impl"] == "fast"} == {"torch"}


@pytest.mark.parametrize(
    "args, match",
    [
        (["--device", "tpu"], "--device"),
        (["--format", "xml"], "--format"),
        (["--template", "voc-xl"], "voc-xl"),
        (["--backend", "fast"], "--backend"),
    ]
    + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "no CUDA device")]),
)
def test_cli_bad_input_is_a_config_error(args, match):
    res = CliRunner().invoke(_app(), ["bench", "dpwconv", *args])
    assert isinstance(res.exception, ConfigError)
    assert match in str(res.exception)
