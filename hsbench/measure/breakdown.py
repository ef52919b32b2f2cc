"""Where a HyperSeg forward pass spends its time, beside the same template static and the backbone alone.

The paper attributes HyperSeg's remaining cost to "the unoptimized operations of
DPWConv" (Sec. 4). :func:`profile_breakdown` makes that cost visible on one
machine, in one process, with three models timed *interleaved* (one frame of
each in turn, so that the load of a shared machine affects all alike):

* ``dynamic``: the template as built (DPWConv decoder, context head, weight mappers);
* ``static``: the same template "w/o DPWConv" (Table 4): ordinary convolutions of the same shapes;
* ``floor``: the timm backbone alone (``features_only``), what any decoder adds to.

All three are in eval mode with every BN folded (supplement Sec. E), fp32,
batch 1, denormals flushed. Their BN statistics are first calibrated on a few
random images (randomly initialised running statistics make activations tiny
and every later BN meaningless). Per-module latencies of the dynamic and static
models come from forward pre/post hooks (perf_counter, ms): backbone (timm
features), signal head, context head, each weight mapper w_i and each meta block
m_i (its own time, without its weight mapper). "other" is the rest of the
forward pass (skip reductions, resizing, concatenation, positional encoding).

The two ratios reported are dynamic / static and dynamic / floor (medians);
issue 10 asks for <= 1.10 and <= 1.25 on CPU.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hsbench.errors import ConfigError


@dataclass(frozen=True)
class Breakdown:
    """Result of :func:`profile_breakdown`.

    Attributes:
        template, resolution: what was timed; resolution is (W, H) pixels.
        device, threads, dpw_backend: where and how (``dpw_backend`` as resolved).
        repeats: interleaved frames timed per model.
        total_ms: median forward latency per model (``dynamic``, ``static``, ``floor``), ms.
        p10_ms, p90_ms: 10th / 90th percentiles of the same, ms.
        modules_ms: median per-module latency, ms, for ``dynamic`` and ``static``
            (insertion order: backbone, signal head, context head, w_i, m_i, other).
        load_avg: the 1-minute load average before and after (the machine may be shared).
    """

    template: str
    resolution: tuple[int, int]
    device: str
    threads: int
    dpw_backend: str
    repeats: int
    total_ms: dict[str, float]
    p10_ms: dict[str, float]
    p90_ms: dict[str, float]
    modules_ms: dict[str, dict[str, float]]
    load_avg: tuple[float, float]

    @property
    def dynamic_over_static(self) -> float:
        """Median dynamic latency / median static latency."""
        return self.total_ms["dynamic"] / self.total_ms["static"]

    @property
    def dynamic_over_floor(self) -> float:
        """Median dynamic latency / median backbone-alone latency."""
        return self.total_ms["dynamic"] / self.total_ms["floor"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict, ratios included."""
        d = dataclasses.asdict(self)
        d["resolution"] = list(self.resolution)
        d["dynamic_over_static"] = self.dynamic_over_static
        d["dynamic_over_floor"] = self.dynamic_over_floor
        return d


def calibrate_bn(model: nn.Module, size_hw: tuple[int, int], *, images: int = 2, seed: int = 0) -> nn.Module:
    """Set every BN's running statistics from ``images`` random images (train-mode forward, no grad).

    Returns the model in eval mode. Only for timing: it gives the activations
    realistic magnitudes so that fused BNs and denormal flushing behave as in
    a trained model.
    """
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(images):
            model(torch.rand(1, 3, *size_hw, generator=gen))
    return model.eval()


class _ModuleTimer:
    """Forward pre/post hooks recording each named module's time per frame (ms)."""

    def __init__(self, named: dict[str, nn.Module]):
        self.times: dict[str, list[float]] = {name: [] for name in named}
        self._start: dict[str, float] = {}
        self._handles = []
        for name, mod in named.items():
            self._handles.append(mod.register_forward_pre_hook(self._pre(name)))
            self._handles.append(mod.register_forward_hook(self._post(name)))
        self.frame: dict[str, float] = {}

    def _pre(self, name):
        def hook(_mod, _inp):
            self._start[name] = time.perf_counter()

        return hook

    def _post(self, name):
        def hook(_mod, _inp, _out):
            self.frame[name] = self.frame.get(name, 0.0) + (time.perf_counter() - self._start[name]) * 1e3

        return hook

    def begin(self) -> None:
        self.frame = {}

    def end(self) -> None:
        for name in self.times:
            self.times[name].append(self.frame.get(name, 0.0))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _named_parts(model: nn.Module) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Modules to time, and for each meta block the name of its mapper (subtracted from it)."""
    parts: dict[str, nn.Module] = {"backbone": model.backbone.features}
    bb = model.backbone
    if getattr(bb, "signal_head", None) is not None:
        parts["signal head"] = bb.signal_head
    if getattr(bb, "psp", None) is not None:
        parts["pyramid pooling"] = bb.psp
    if getattr(model, "context_head", None) is not None:
        parts["context head"] = model.context_head
    inner: dict[str, str] = {}
    for level, block in zip(model.levels, model.blocks):
        if block.mapper is not None:
            parts[f"w_{level} (weight mapper)"] = block.mapper
            inner[f"m_{level}"] = f"w_{level} (weight mapper)"
        parts[f"m_{level}"] = block
    return parts, inner


def profile_breakdown(
    template: str = "camvid-s",
    resolution: tuple[int, int] | None = None,
    *,
    threads: int | None = 2,
    repeats: int = 10,
    warmup: int = 2,
    dpw_backend: str = "auto",
    seed: int = 0,
) -> Breakdown:
    """Time dynamic, static and backbone-alone models interleaved, with per-module latencies (CPU).

    Leaves denormal flushing on (``torch.set_flush_denormal(True)``).

    Args:
        template: a Table S1 template name.
        resolution: (W, H) in pixels; default the template's.
        threads: ``torch.set_num_threads`` while timing (restored after); None keeps torch's.
        repeats: frames timed per model (interleaved); warmup: untimed frames first.
        dpw_backend: the dynamic model's DPWConv backend (:mod:`hsbench.ops.backends`).
        seed: seed of the weights, the calibration images and the input.

    Returns:
        :class:`Breakdown` (latencies in ms).

    Raises:
        ConfigError: for an unknown template, a resolution below 64x64, or repeats < 1.
    """
    import os

    import timm

    from hsbench.models import ModelConfig, build_model, get_template
    from hsbench.models.fusion import fuse_conv_bn_

    try:
        tpl = get_template(template)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    w, h = resolution or tpl.resolution
    if min(w, h) < 64:
        raise ConfigError(f"resolution {w}x{h} is below the model's minimum of 64x64")
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
    before_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    load_before = os.getloadavg()[0]
    try:
        torch.manual_seed(seed)
        dyn = build_model(ModelConfig(template=template), dpw_backend=dpw_backend)
        torch.manual_seed(seed)
        sta = build_model(ModelConfig(template=template, dynamic=False))
        torch.manual_seed(seed)
        floor = timm.create_model(dyn.backbone.spec.timm_name, features_only=True, out_indices=(0, 1, 2, 3, 4))
        models = {}
        for name, m in (("dynamic", dyn), ("static", sta)):
            models[name] = calibrate_bn(m, (h, w), seed=seed).fuse_bn()
        floor = calibrate_bn(floor, (h, w), seed=seed)
        fuse_conv_bn_(floor)
        models["floor"] = floor.eval()
        timers, inner = {}, {}
        for name in ("dynamic", "static"):
            parts, inner[name] = _named_parts(models[name])
            timers[name] = _ModuleTimer(parts)
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed + 1))
        totals: dict[str, list[float]] = {k: [] for k in models}
        with torch.inference_mode():
            for i in range(warmup + repeats):
                for name, m in models.items():
                    timer = timers.get(name)
                    if timer:
                        timer.begin()
                    t0 = time.perf_counter()
                    m(x)
                    dt = (time.perf_counter() - t0) * 1e3
                    if i >= warmup:
                        totals[name].append(dt)
                        if timer:
                            timer.end()
        for t in timers.values():
            t.remove()
    finally:
        torch.set_num_threads(before_threads)
    modules_ms: dict[str, dict[str, float]] = {}
    for name, timer in timers.items():
        med = {k: statistics.median(v) for k, v in timer.times.items()}
        for block, mapper in inner[name].items():
            med[block] = max(0.0, med[block] - med[mapper])
        med["other"] = max(0.0, statistics.median(totals[name]) - sum(med.values()))
        modules_ms[name] = med

    def pct(v, q):
        s = sorted(v)
        return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]

    return Breakdown(
        template=template,
        resolution=(w, h),
        device="cpu",
        threads=torch.get_num_threads() if not threads else threads,
        dpw_backend=models["dynamic"].dpw_backend_for("cpu"),
        repeats=repeats,
        total_ms={k: statistics.median(v) for k, v in totals.items()},
        p10_ms={k: pct(v, 0.1) for k, v in totals.items()},
        p90_ms={k: pct(v, 0.9) for k, v in totals.items()},
        modules_ms=modules_ms,
        load_avg=(load_before, os.getloadavg()[0]),
    )


def format_breakdown(b: Breakdown) -> str:
    """Two tables: per-module median ms (dynamic beside static) and the three totals with the two ratios."""
    from tabulate import tabulate

    dyn, sta = b.modules_ms["dynamic"], b.modules_ms["static"]
    names = list(dict.fromkeys([*dyn, *sta]))
    names.remove("other")
    names.append("other")
    rows = [[n, f"{dyn[n]:.1f}" if n in dyn else "-", f"{sta[n]:.1f}" if n in sta else "-"] for n in names]
    head = (
        f"{b.template} @ {b.resolution[0]}x{b.resolution[1]}, {b.device}, {b.threads} threads, fp32, batch 1, "
        f"BN fused, DPWConv backend {b.dpw_backend}, {b.repeats} interleaved frames, "
        f"load average {b.load_avg[0]:.1f} -> {b.load_avg[1]:.1f}\n\n"
    )
    t1 = tabulate(rows, headers=["module", "dynamic ms", "static ms"], tablefmt="github", disable_numparse=True)
    totals = [
        [k, f"{b.total_ms[k]:.1f}", f"[{b.p10_ms[k]:.1f}, {b.p90_ms[k]:.1f}]"] for k in ("dynamic", "static", "floor")
    ]
    t2 = tabulate(totals, headers=["model", "median ms", "p10-p90 ms"], tablefmt="github", disable_numparse=True)
    ratios = f"dynamic / static = {b.dynamic_over_static:.2f}; dynamic / floor = {b.dynamic_over_floor:.2f}"
    return head + t1 + "\n\n" + t2 + "\n\n" + ratios
