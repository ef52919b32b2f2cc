"""The FPS protocol and the op benchmark on a CUDA device (skipped without one).

These check the GPU path's plumbing and records, never a speed.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hsbench.measure.bench import LayerShape, bench_dpwconv
from hsbench.measure.config import SpeedConfig
from hsbench.measure.speed import FrameSteps, measure_fps

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FAST = dict(device="cuda", resolution=(64, 48), timed_frames=5, repeats=2, min_warmup=2, max_warmup=8,
            warmup_window=2, bootstrap_samples=100)


class Seg(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 5, 1))

    def forward(self, x):
        return self.body(x)


def test_cuda_measurement_records_gpu_and_copies():
    res = measure_fps(Seg(), SpeedConfig(**FAST))
    d = json.loads(json.dumps(res.to_dict()))
    assert d["device"] == "cuda"
    s = d["settings"]
    assert s["host_device_copies"] is True and s["model_only_timer"] == "cuda events"
    assert s["device_name"] == torch.cuda.get_device_name()
    assert s["cudnn_benchmark"] is True
    p = d["provenance"]
    assert p["cuda_available"] and p["gpu_name"] and p["cuda_version"] and p["gpu_count"] >= 1
    assert res.fps_ci95[0] <= res.fps <= res.fps_ci95[1]
    assert res.model_only.median_ms > 0


def test_cuda_steps_upload_and_download_cross_the_bus():
    seen = {}

    class Check(FrameSteps):
        def upload(self, host):
            assert host.device.type == "cpu"
            x = super().upload(host)
            seen["up"] = x.device.type
            return x

        def download(self, pred):
            assert pred.device.type == "cuda"
            out = super().download(pred)
            seen["down"] = out.device.type
            return out

    measure_fps(Seg(), SpeedConfig(**FAST), steps_factory=Check, provenance=False)
    assert seen == {"up": "cuda", "down": "cpu"}


@pytest.mark.parametrize(
    "extra",
    [
        {"pinned_memory": True},
        {"precision": "fp16"},
        {"precision": "bf16", "channels_last": True},
        {"tta_hflip": True},
        {"cuda_graphs": True},
        {"cuda_graphs": True, "pinned_memory": True, "channels_last": True},
    ],
)
def test_cuda_options(extra):
    res = measure_fps(Seg(), SpeedConfig(**FAST, **extra), provenance=False)
    for key, value in extra.items():
        assert res.config[key] == value
    if extra.get("pinned_memory"):
        assert res.settings["pinned_memory"] is True
    assert res.settings["output_shape"] == [1, 5, 48, 64]


def test_cuda_graph_prediction_matches_eager():
    torch.manual_seed(0)
    model = Seg().cuda().eval()
    host = torch.rand(1, 3, 48, 64)
    cfg = SpeedConfig(**FAST, cuda_graphs=True)
    with torch.inference_mode():
        steps = FrameSteps(model, torch.device("cuda", torch.cuda.current_device()), cfg, host)
        graph_pred = steps.download(steps.argmax(steps.forward(steps.upload(host))))
        eager_pred = model(host.cuda()).argmax(1).to(torch.uint8).cpu()
    assert torch.equal(graph_pred, eager_pred)


def test_bench_on_cuda():
    layers = [LayerShape("tiny", "m_2", "dw", 4, c_in=8, c_out=8, kernel=3, groups=8, height=32, width=24,
                         grid=(6, 4))]
    rows = bench_dpwconv(layers, device="cuda", warmup=1, iters=3)
    assert [r.impl for r in rows] == ["reference", "fast", "conv2d"]
    assert all(r.device == "cuda" and r.ms > 0 for r in rows)
    assert rows[1].max_abs_diff < 1e-4
