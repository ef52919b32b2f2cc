"""hsbench profile --breakdown: per-module latency, static and backbone floor interleaved, two ratios."""

import json

import pytest
import typer
from typer.testing import CliRunner

from hsbench.errors import ConfigError
from hsbench.measure import cli as measure_cli
from hsbench.measure.breakdown import format_breakdown, profile_breakdown


@pytest.fixture(scope="module")
def small():
    return profile_breakdown("camvid-s", (128, 96), threads=1, repeats=2, warmup=0)


def test_breakdown_times_every_module_and_the_three_models(small):
    dyn, sta = small.modules_ms["dynamic"], small.modules_ms["static"]
    levels = [f"m_{lv}" for lv in (5, 4, 3, 2, 1)]
    assert set(levels) <= set(dyn) and set(levels) <= set(sta)
    assert {f"w_{lv} (weight mapper)" for lv in (5, 4, 3, 2, 1)} <= set(dyn)
    assert {"backbone", "signal head", "context head", "other"} <= set(dyn)
    assert "context head" not in sta and not any(k.startswith("w_") for k in sta)
    for name in ("dynamic", "static"):  # the parts add up to the total (other = the rest, never negative)
        assert sum(small.modules_ms[name].values()) == pytest.approx(small.total_ms[name], rel=0.05)
    assert all(v > 0 for v in small.total_ms.values())
    assert small.dynamic_over_static == pytest.approx(small.total_ms["dynamic"] / small.total_ms["static"])
    assert small.dpw_backend == "torch" and small.threads == 1 and small.resolution == (128, 96)
    text = format_breakdown(small)
    assert "dynamic / static" in text and "w_1 (weight mapper)" in text and "floor" in text
    assert json.loads(json.dumps(small.to_dict()))["dynamic_over_floor"] == pytest.approx(small.dynamic_over_floor)


def test_bad_input():
    with pytest.raises(ConfigError, match="template"):
        profile_breakdown("voc-xl")
    with pytest.raises(ConfigError, match="64x64"):
        profile_breakdown("camvid-s", (32, 32))


def test_cli_rejects_unknown_backend():
    app = typer.Typer(pretty_exceptions_enable=False)
    measure_cli.register(app)
    res = CliRunner().invoke(app, ["profile", "--breakdown", "--dpw-backend", "fast"])
    assert isinstance(res.exception, ConfigError) and "--dpw-backend" in str(res.exception)
