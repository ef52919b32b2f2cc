"""Dynamic / static / backbone-floor latency of one template, interleaved in one process (issue 10's ratio table).

Usage: ``python benchmarks/dpwconv_ratios.py TEMPLATE WIDTH HEIGHT FRAMES`` (CPU,
2 threads, fp32, batch 1). The three models (the template as built, the same
template "w/o DPWConv", and the timm backbone alone) get BN statistics from two
random images, are BN-fused, and are timed one frame each in turn after two
warm-up rounds. Prints one JSON line: median and minimum ms per model, the two
ratios and the load average. It uses only APIs that hsbench had before the
DPWConv backends (build_model, fuse_bn, fuse_conv_bn_), so the same script
times older checkouts for a before/after comparison; ``hsbench profile
--breakdown`` is the same measurement with per-module hooks.
"""

import json
import os
import statistics
import sys
import time

import timm
import torch
from torch import nn

from hsbench.models import ModelConfig, build_model
from hsbench.models.fusion import fuse_conv_bn_


def calibrate(model: nn.Module, h: int, w: int) -> nn.Module:
    """BN running statistics from two random (1, 3, h, w) images; returns the model in eval mode."""
    gen = torch.Generator().manual_seed(0)
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(1, 3, h, w, generator=gen))
    return model.eval()


def main(argv: list[str]) -> None:
    tpl, w, h, frames = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    dyn = calibrate(build_model(ModelConfig(template=tpl)), h, w).fuse_bn()
    torch.manual_seed(0)
    sta = calibrate(build_model(ModelConfig(template=tpl, dynamic=False)), h, w).fuse_bn()
    torch.manual_seed(0)
    floor = timm.create_model(dyn.backbone.spec.timm_name, features_only=True, out_indices=(0, 1, 2, 3, 4))
    floor = calibrate(floor, h, w)
    fuse_conv_bn_(floor)
    models = {"dynamic": dyn, "static": sta, "floor": floor}
    x = torch.rand(1, 3, h, w)
    times: dict[str, list[float]] = {k: [] for k in models}
    load0 = os.getloadavg()[0]
    with torch.inference_mode():
        for i in range(frames + 2):
            for name, m in models.items():
                t0 = time.perf_counter()
                m(x)
                if i >= 2:
                    times[name].append((time.perf_counter() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "template": tpl, "resolution": [w, h], "frames": frames, "threads": 2,
        "median_ms": med, "min_ms": {k: min(v) for k, v in times.items()},
        "dynamic_over_static": med["dynamic"] / med["static"], "dynamic_over_floor": med["dynamic"] / med["floor"],
        "load_avg": [load0, os.getloadavg()[0]], "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
