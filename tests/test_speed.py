"""The FPS protocol (paper Sec. 4) on CPU: what lies inside the timer, statistics, settings.

No test asserts a speed: timings here come from fake clocks or only check
relations that hold by construction (e.g. FPS = 1000 / median latency).
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from hsbench.errors import ConfigError
from hsbench.measure.config import SpeedConfig
from hsbench.measure.speed import (
    TIMED_STEPS,
    FrameSteps,
    latency_stats,
    measure_fps,
    warmup_stable,
)

# a fast configuration for tests: tiny image, few frames, no provenance subprocesses
FAST = dict(resolution=(16, 12), timed_frames=5, repeats=3, min_warmup=2, max_warmup=6, warmup_window=2,
            bootstrap_samples=200, cpu_threads=1)


class TinySeg(nn.Module):
    """(B, 3, H, W) -> (B, 4, H, W) logits; logs each forward call into ``log`` if given."""

    def __init__(self, log: list[str] | None = None, tag: str = "model.forward", bn: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4) if bn else nn.Identity()
        self.log = log
        self.tag = tag

    def forward(self, x):
        if self.log is not None:
            self.log.append(self.tag)
        return self.bn(self.conv(x))


class Fusable(TinySeg):
    """Has ``fuse_bn()`` returning an inference copy without BN, as hsbench's HyperSeg does."""

    def __init__(self, log=None):
        super().__init__(log)
        self.fuse_calls = 0

    def fuse_bn(self):
        self.fuse_calls += 1
        fused = TinySeg(self.log, tag="fused.forward", bn=False)
        fused.conv.load_state_dict(self.conv.state_dict())
        return fused


def recording_factory(log: list[str]):
    """A steps_factory whose steps append their names to ``log`` before running."""

    class Recording(FrameSteps):
        def upload(self, host):
            log.append("upload")
            return super().upload(host)

        def forward(self, x):
            log.append("forward")
            return super().forward(x)

        def argmax(self, logits):
            log.append("argmax")
            return super().argmax(logits)

        def download(self, pred):
            log.append("download")
            return super().download(pred)

        def sync(self):
            log.append("sync")
            return super().sync()

    return Recording


def recording_clock(log: list[str]):
    def clock() -> float:
        log.append("CLOCK")
        return time.perf_counter()

    return clock


def timed_segments(log: list[str]) -> list[list[str]]:
    """The events between consecutive pairs of clock readings."""
    marks = [i for i, e in enumerate(log) if e == "CLOCK"]
    assert len(marks) % 2 == 0
    return [log[a + 1 : b] for a, b in zip(marks[::2], marks[1::2])]


# --------------------------------------------------------------------------- protocol


def test_timer_covers_upload_forward_argmax_download_in_order_once_per_frame():
    log: list[str] = []
    model = TinySeg(log)
    cfg = SpeedConfig(**FAST, fuse_bn=False)
    res = measure_fps(model, cfg, clock=recording_clock(log), steps_factory=recording_factory(log), provenance=False)

    segments = timed_segments(log)
    e2e = [s for s in segments if s and s[0] == "upload"]
    model_only = [s for s in segments if s and s[0] == "forward"]
    assert len(e2e) + len(model_only) == len(segments)  # nothing else is timed

    # end-to-end: exactly the paper's steps, in order, once each, then the synchronisation
    expected = ["upload", "forward", "model.forward", "argmax", "download", "sync"]
    assert all(s == expected for s in e2e)
    assert [s for s in expected if s != "model.forward"] == list(TIMED_STEPS)
    assert len(e2e) == res.warmup_frames + cfg.timed_frames * cfg.repeats
    assert res.latency.n == cfg.timed_frames * cfg.repeats

    # model-only: the forward pass on a device-resident input, nothing else
    assert all(s == ["forward", "model.forward", "sync"] for s in model_only)
    assert len(model_only) == res.settings["model_only_warmup_frames"] + cfg.timed_frames * cfg.repeats
    assert res.model_only.n == cfg.timed_frames * cfg.repeats


def test_tta_runs_the_model_twice_inside_one_forward_step():
    log: list[str] = []
    cfg = SpeedConfig(**FAST, tta_hflip=True, fuse_bn=False)
    res = measure_fps(TinySeg(log), cfg, clock=recording_clock(log), steps_factory=recording_factory(log),
                      provenance=False)
    e2e = [s for s in timed_segments(log) if s and s[0] == "upload"]
    assert all(s == ["upload", "forward", "model.forward", "model.forward", "argmax", "download", "sync"] for s in e2e)
    assert res.settings["tta_hflip"] is True


def test_bn_fusion_times_the_fused_copy_and_records_it():
    log: list[str] = []
    model = Fusable(log)
    res = measure_fps(model, SpeedConfig(**FAST), clock=recording_clock(log), steps_factory=recording_factory(log),
                      provenance=False)
    assert model.fuse_calls == 1
    assert res.bn_fused is True and res.settings["bn_layers_timed"] == 0
    timed_models = {e for seg in timed_segments(log) for e in seg if e.endswith(".forward")}
    assert timed_models == {"fused.forward"}

    model2 = Fusable()
    res2 = measure_fps(model2, SpeedConfig(**FAST, fuse_bn=False), provenance=False)
    assert model2.fuse_calls == 0 and res2.bn_fused is False and res2.settings["bn_layers_timed"] == 1

    res3 = measure_fps(TinySeg(), SpeedConfig(**FAST), provenance=False)  # no fuse_bn(): recorded, not faked
    assert res3.bn_fused is False and "no fuse_bn" in res3.settings["bn_fusion"]


def test_model_mode_is_restored():
    model = TinySeg()
    model.train()
    measure_fps(model, SpeedConfig(**FAST, fuse_bn=False), provenance=False)
    assert model.training


# --------------------------------------------------------------------------- statistics


class ScriptedClock:
    """A fake perf_counter: frame k (counting start/stop pairs) lasts ``latency_ms(k)`` ms."""

    def __init__(self, latency_ms):
        self.latency_ms = latency_ms
        self.t = 0.0
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls % 2 == 0:  # a stop reading
            self.t += self.latency_ms(self.calls // 2 - 1) / 1e3
        return self.t


def test_statistics_follow_the_samples_exactly():
    rng = np.random.default_rng(1)
    n, r = 20, 4
    e2e = rng.uniform(5.0, 9.0, size=(r, n))
    mo = rng.uniform(2.0, 4.0, size=(r, n))
    seq = np.concatenate([np.concatenate([e2e[i], mo[i]]) for i in range(r)])  # repeats interleave the two
    cfg = SpeedConfig(resolution=(8, 8), cpu_threads=1, timed_frames=n, repeats=r, min_warmup=0, max_warmup=0,
                      bootstrap_samples=500)
    res = measure_fps(TinySeg(), cfg, clock=ScriptedClock(lambda k: seq[k]), provenance=False)

    assert res.warmup_frames == 0 and res.warmup_converged is False
    np.testing.assert_allclose(np.asarray(res.samples_ms), e2e, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(res.model_only_samples_ms), mo, rtol=1e-9)
    lat = res.latency
    assert lat.median_ms == pytest.approx(np.median(e2e))
    assert lat.mean_ms == pytest.approx(e2e.mean())
    assert lat.p10_ms == pytest.approx(np.percentile(e2e, 10))
    assert lat.p90_ms == pytest.approx(np.percentile(e2e, 90))
    assert res.fps == pytest.approx(1000.0 / np.median(e2e))
    assert res.model_only.median_ms == pytest.approx(np.median(mo))
    assert list(lat.repeat_median_ms) == pytest.approx(list(np.median(e2e, axis=1)))
    lo, hi = res.fps_ci95
    assert lo <= res.fps <= hi and lo < hi


def test_sleeping_model_statistics_are_consistent():
    class Sleeper(nn.Module):
        def forward(self, x):
            time.sleep(0.002)
            return torch.zeros(x.shape[0], 3, x.shape[2], x.shape[3])

    cfg = SpeedConfig(resolution=(8, 8), cpu_threads=1, timed_frames=6, repeats=3, min_warmup=1, max_warmup=4, warmup_window=2,
                      bootstrap_samples=300)
    res = measure_fps(Sleeper(), cfg, provenance=False)
    lat = res.latency
    assert lat.median_ms >= 2.0 and res.model_only.median_ms >= 2.0  # sleep is a lower bound, not a target
    assert res.fps == pytest.approx(1000.0 / lat.median_ms)
    assert lat.min_ms <= lat.p10_ms <= lat.median_ms <= lat.p90_ms <= lat.max_ms
    assert res.fps_ci95[0] <= res.fps <= res.fps_ci95[1]
    assert res.model_only.fps_ci95[0] <= res.model_only.fps <= res.model_only.fps_ci95[1]


def test_latency_stats_batch_bootstrap_and_errors():
    data = [[10.0, 12.0, 11.0], [9.0, 13.0, 11.0]]
    s = latency_stats(data, batch_size=4, n_boot=300, seed=3)
    assert s.median_ms == 11.0 and s.fps == pytest.approx(4 * 1000 / 11.0)
    assert s.fps_ci95 == latency_stats(data, batch_size=4, n_boot=300, seed=3).fps_ci95  # seeded
    assert s.fps_ci95[0] <= s.fps <= s.fps_ci95[1]
    one = latency_stats([[5.0, 6.0, 7.0, 8.0]], n_boot=100)  # R = 1: frames resampled only
    assert one.repeat_median_ms == (6.5,)
    with pytest.raises(ValueError):
        latency_stats([[1.0, 2.0], [1.0]])
    with pytest.raises(ValueError):
        latency_stats([])
    with pytest.raises(ValueError):
        latency_stats([[0.0, 1.0]])


def test_hierarchical_bootstrap_widens_with_drift_between_repeats():
    rng = np.random.default_rng(0)
    steady = rng.normal(10.0, 0.1, size=(5, 50))
    drifting = steady + np.array([0.0, 1.0, 2.0, -1.0, 0.5])[:, None]
    w_steady = np.diff(latency_stats(steady, n_boot=400).fps_ci95)[0]
    w_drift = np.diff(latency_stats(drifting, n_boot=400).fps_ci95)[0]
    assert w_drift > 3 * w_steady


# --------------------------------------------------------------------------- warm-up


def test_warmup_rule():
    assert not warmup_stable([1.0] * 7, window=4, rtol=0.05)  # needs 2 windows
    assert warmup_stable([1.0] * 8, window=4, rtol=0.05)
    assert not warmup_stable([2.0] * 4 + [1.0] * 4, window=4, rtol=0.05)
    assert warmup_stable([1.0] * 4 + [1.04] * 4, window=4, rtol=0.05)


def test_warmup_stops_when_the_running_median_settles():
    # 20, 19, ..., 1, 1, 1, ... ms: with window 5 the medians of the last two
    # windows first agree (both 1 ms) after 27 frames (see warmup_stable)
    cfg = SpeedConfig(resolution=(8, 8), cpu_threads=1, timed_frames=3, repeats=2, min_warmup=3, max_warmup=100,
                      warmup_window=5, warmup_rtol=0.05, bootstrap_samples=50)
    res = measure_fps(TinySeg(), cfg, clock=ScriptedClock(lambda k: max(20 - k, 1)), provenance=False)
    assert res.warmup_converged and res.warmup_frames == 27
    assert res.latency.median_ms == pytest.approx(1.0)


def test_warmup_is_capped():
    cfg = SpeedConfig(resolution=(8, 8), cpu_threads=1, timed_frames=3, repeats=2, min_warmup=3, max_warmup=15,
                      warmup_window=3, bootstrap_samples=50)
    res = measure_fps(TinySeg(), cfg, clock=ScriptedClock(lambda k: 1.0 + k), provenance=False)
    assert not res.warmup_converged and res.warmup_frames == 15


# --------------------------------------------------------------------------- settings and result


def test_every_setting_is_recorded_and_the_result_is_json():
    cfg = SpeedConfig(**FAST, channels_last=True, precision="bf16", seed=7)
    res = measure_fps(Fusable(), cfg)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["device"] == "cpu" and d["settings"]["device"] == "cpu"
    assert d["config"] == cfg.to_dict()
    assert SpeedConfig.from_dict(d["config"]) == cfg
    s = d["settings"]
    for key in ("input_shape", "output_shape", "precision", "autocast", "channels_last", "cudnn_benchmark",
                "pinned_memory", "tta_hflip", "compile", "cuda_graphs", "flush_denormal", "denormals",
                "cpu_threads", "bn_fusion", "timer", "timer_covers", "model_only_timer", "prediction_dtype"):
        assert key in s, key
    assert s["input_shape"] == [1, 3, 12, 16] and s["output_shape"] == [1, 4, 12, 16]
    assert s["autocast"] == "bf16" and s["channels_last"] is True and s["prediction_dtype"] == "uint8"
    assert s["host_device_copies"] is False and s["pinned_memory"] is False and s["cudnn_benchmark"] is None
    assert s["model_only_timer"] == "time.perf_counter"
    assert d["provenance"]["torch_version"] == torch.__version__
    assert len(d["samples_ms"]) == cfg.repeats and len(d["samples_ms"][0]) == cfg.timed_frames
    assert "samples_ms" not in res.to_dict(samples=False)
    assert math.isfinite(d["fps"]) and d["fps"] > 0


def test_denormals_are_flushed_while_timing_and_restored():
    res = measure_fps(TinySeg(), SpeedConfig(**FAST), provenance=False)
    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(False)
    assert res.settings["flush_denormal"] is supported
    assert torch.tensor([1e-40], dtype=torch.float32).item() != 0.0  # restored to torch's default
    kept = measure_fps(TinySeg(), SpeedConfig(**FAST, denormals="keep"), provenance=False)
    assert kept.settings["flush_denormal"] is False


def test_cpu_threads_are_set_and_restored():
    before = torch.get_num_threads()
    res = measure_fps(TinySeg(), SpeedConfig(**{**FAST, "cpu_threads": 1}), provenance=False)
    assert res.settings["cpu_threads"] == 1 and torch.get_num_threads() == before


def test_given_image_and_model_outputs():
    img = torch.rand(3, 10, 14)
    res = measure_fps(TinySeg(), SpeedConfig(**{**FAST, "resolution": None}), image=img, provenance=False)
    assert res.settings["resolution"] == [14, 10]

    class TupleOut(TinySeg):
        def forward(self, x):
            return (super().forward(x), "aux")

    class DictOut(TinySeg):
        def forward(self, x):
            return {"out": super().forward(x), "aux": x}

    for m in (TupleOut(), DictOut()):
        assert measure_fps(m, SpeedConfig(**FAST), provenance=False).settings["output_shape"] == [1, 4, 12, 16]

    res_b = measure_fps(TinySeg(), SpeedConfig(**{**FAST, "batch_size": 2}), provenance=False)
    assert res_b.settings["input_shape"][0] == 2
    assert res_b.fps == pytest.approx(2 * 1000.0 / res_b.latency.median_ms)


def test_bad_input_raises_config_error():
    with pytest.raises(ConfigError, match="resolution"):
        measure_fps(TinySeg(), SpeedConfig(), provenance=False)
    with pytest.raises(ConfigError, match="resolution"):
        measure_fps(TinySeg(), SpeedConfig(**FAST), image=torch.rand(3, 5, 5), provenance=False)
    with pytest.raises(ConfigError, match="floating"):
        measure_fps(TinySeg(), SpeedConfig(), image=torch.zeros(3, 5, 5, dtype=torch.uint8), provenance=False)

    class Bad(nn.Module):
        def forward(self, x):
            return "nope"

    with pytest.raises(ConfigError, match="logits"):
        measure_fps(Bad(), SpeedConfig(**FAST), provenance=False)

    class Flat(nn.Module):
        def forward(self, x):
            return x.flatten(1)

    with pytest.raises(ConfigError, match="logits"):
        measure_fps(Flat(), SpeedConfig(**FAST), provenance=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA"):
        measure_fps(TinySeg(), SpeedConfig(**FAST, device="cuda"), provenance=False)
    with pytest.raises(ConfigError, match="cuda_graphs"):
        measure_fps(TinySeg(), SpeedConfig(**FAST, cuda_graphs=True), provenance=False)


def test_dpwconv_backend_is_set_on_the_timed_copy_and_recorded():
    """A real (tiny-input) HyperSeg: the backend asked for runs and is recorded; the caller's model is untouched."""
    from hsbench.models import ModelConfig, build_model

    model = build_model(ModelConfig(template="camvid-s"), dpw_backend="torch")
    cfg = SpeedConfig(**{**FAST, "resolution": (64, 64)}, dpw_backend="reference")
    res = measure_fps(model, cfg, provenance=False)
    assert res.settings["dpwconv_backend"] == "reference"
    assert model.dpw_backend == "torch"
    res = measure_fps(model, cfg.replace(fuse_bn=False), provenance=False)
    assert res.settings["dpwconv_backend"] == "reference" and model.dpw_backend == "torch"
    static = build_model(ModelConfig(template="camvid-s", dynamic=False))
    assert measure_fps(static, cfg, provenance=False).settings["dpwconv_backend"] == "none"
    assert measure_fps(TinySeg(), cfg, provenance=False).settings["dpwconv_backend"] is None
    with pytest.raises(ConfigError, match="dpw_backend"):
        SpeedConfig(dpw_backend="cudnn")
