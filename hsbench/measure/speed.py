"""Frames per second with the paper's protocol, every condition recorded.

The protocol (HyperSeg paper, Sec. 4): "We record FPS for the elapsed time
between data upload to GPU through to prediction download. [...] we use a
batch size of 1 to simulate real-time inference", with the batch-normalisation
layers fused into the preceding convolutions and weight-mapping layers at
inference (supplement Sec. E).

What one timed frame covers (:func:`timed_frame`)::

    t0 = perf_counter()        # the image is a host (CPU) tensor here
    upload    host -> device copy (pinned + non_blocking if configured)
    forward   the model (autocast / channels_last / TTA / CUDA graph as configured)
    argmax    per-pixel class over the logits, on the device (uint8 when <= 256 classes)
    download  device -> host copy of the label map
    sync      torch.cuda.synchronize()
    t1 = perf_counter()        # latency = t1 - t0

The argmax runs on the device and the label map, not the logits, is
downloaded: the prediction is what a real-time application receives. On CPU
the same steps run; ``upload`` and ``download`` are then no copies and the
figure is labelled ``cpu``: it never stands in for a GPU figure.

**hsbench follows the paper, not the authors' released FPS script.** That
script stops the timer before the argmax and the prediction download, deletes
the BN layers instead of fusing them (a model that computes something else),
and defaults to a batch of 16 images per timed call. Each of these inflates
FPS; hsbench times the paper's definition and records every setting instead.

Warm-up rule (:func:`warmup_stable`): at least ``min_warmup`` frames, then
frame by frame until the median latency of the last ``warmup_window`` frames
is within ``warmup_rtol`` (relative) of the median of the ``warmup_window``
frames before them (so at least ``2 * warmup_window`` frames), at most
``max_warmup`` frames; hitting the cap is recorded as ``warmup_converged=False``.
Then ``timed_frames`` (N) frames are timed, ``repeats`` (R) times; each repeat
times its N end-to-end frames and then N model-only frames (``min_warmup``
model-only frames, discarded, precede the first repeat), so that a drifting
machine shifts both figures alike.

Statistics (:func:`latency_stats`): over all N x R latencies, mean, median,
10th and 90th percentile in ms; FPS = ``batch_size / median latency`` in
frames/s; and a 95% percentile-bootstrap confidence interval of that FPS,
resampled hierarchically (repeats with replacement, then frames within each
drawn repeat), so that the interval reflects the drift between repeats and not
only the frame-to-frame noise. The bootstrap uses numpy's PCG64 seeded with
``SpeedConfig.seed``.

Model-only latency: the forward pass alone with the input already on the
device, timed with CUDA events on a GPU and ``time.perf_counter`` on CPU, for
comparison with tools that measure only that.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from hsbench.device import resolve_device
from hsbench.errors import ConfigError
from hsbench.measure.config import SpeedConfig
from hsbench.measure.provenance import collect_provenance

#: Name of the protocol stored with every figure.
PROTOCOL = "hyperseg-sec4: upload->forward->argmax->download, synchronised, batch as configured"

#: The steps inside the end-to-end timer, in order.
TIMED_STEPS = ("upload", "forward", "argmax", "download", "sync")

Clock = Callable[[], float]


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples.

    Attributes:
        n: number of samples (N x R).
        mean_ms, median_ms, p10_ms, p90_ms, std_ms, min_ms, max_ms: latency in ms.
        fps: ``batch_size * 1000 / median_ms`` in frames/s.
        fps_ci95: ``(low, high)`` 95% bootstrap confidence interval of ``fps`` in frames/s.
        repeat_median_ms: median latency of each repeat, in ms (the spread over repeats).
    """

    n: int
    mean_ms: float
    median_ms: float
    p10_ms: float
    p90_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    fps: float
    fps_ci95: tuple[float, float]
    repeat_median_ms: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        d = asdict(self)
        d["fps_ci95"] = list(self.fps_ci95)
        d["repeat_median_ms"] = list(self.repeat_median_ms)
        return d


def bootstrap_median_ci(
    samples_by_repeat: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the pooled median latency, resampled hierarchically.

    Each bootstrap sample draws R repeats with replacement, then N frames with
    replacement inside each drawn repeat, and takes the median of the pooled
    R x N values.

    Args:
        samples_by_repeat: ``(R, N)`` latencies (any unit; the CI has the same unit).
        n_boot: bootstrap resamples.
        seed: seed of ``numpy.random.default_rng``.
        level: coverage, e.g. 0.95.

    Returns:
        ``(low, high)`` of the median.
    """
    arr = np.asarray(samples_by_repeat, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"samples must be a non-empty (repeats, frames) array, got shape {arr.shape}")
    r, n = arr.shape
    rng = np.random.default_rng(seed)
    medians = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(1, r * n))  # bound memory to ~16 MB per chunk
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        reps = rng.integers(0, r, size=(b, r))
        frames = rng.integers(0, n, size=(b, r, n))
        drawn = arr[reps[:, :, None], frames].reshape(b, r * n)
        medians[start : start + b] = np.median(drawn, axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(medians, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def latency_stats(
    samples_by_repeat: Sequence[Sequence[float]],
    *,
    batch_size: int = 1,
    n_boot: int = 2000,
    seed: int = 0,
) -> LatencyStats:
    """Summarise latencies in ms measured as R repeats of N frames.

    Args:
        samples_by_repeat: R sequences of N latencies each, in ms (N equal across repeats).
        batch_size: images per timed frame; FPS counts images.
        n_boot, seed: see :func:`bootstrap_median_ci`.

    Returns:
        :class:`LatencyStats`; ``fps_ci95`` is the bootstrap CI of the median
        mapped to frames/s (``batch_size * 1000 / ms``, so the bounds swap).

    Raises:
        ValueError: on no samples, ragged repeats or non-positive latencies.
    """
    lengths = {len(s) for s in samples_by_repeat}
    if len(samples_by_repeat) == 0 or len(lengths) != 1 or 0 in lengths:
        raise ValueError("latency samples must be R >= 1 repeats of the same number N >= 1 of frames")
    arr = np.asarray(samples_by_repeat, dtype=np.float64)
    if not np.all(arr > 0):
        raise ValueError("latencies must be positive")
    flat = arr.ravel()
    median = float(np.median(flat))
    p10, p90 = (float(v) for v in np.percentile(flat, [10, 90]))
    lo_ms, hi_ms = bootstrap_median_ci(arr, n_boot=n_boot, seed=seed)
    to_fps = lambda ms: batch_size * 1000.0 / ms  # noqa: E731
    return LatencyStats(
        n=int(flat.size),
        mean_ms=float(flat.mean()),
        median_ms=median,
        p10_ms=p10,
        p90_ms=p90,
        std_ms=float(flat.std(ddof=1)) if flat.size > 1 else 0.0,
        min_ms=float(flat.min()),
        max_ms=float(flat.max()),
        fps=to_fps(median),
        fps_ci95=(to_fps(hi_ms), to_fps(lo_ms)),
        repeat_median_ms=tuple(float(np.median(row)) for row in arr),
    )


def warmup_stable(history_ms: Sequence[float], window: int, rtol: float) -> bool:
    """The warm-up stopping rule: has the running median settled?

    True when at least ``2 * window`` latencies exist and the median of the last
    ``window`` is within ``rtol`` (relative) of the median of the ``window``
    before them.
    """
    if len(history_ms) < 2 * window:
        return False
    cur = float(np.median(history_ms[-window:]))
    prev = float(np.median(history_ms[-2 * window : -window]))
    return abs(cur - prev) <= rtol * prev


# --------------------------------------------------------------------------- the frame


def _as_logits(out: Any) -> torch.Tensor:
    """The logits tensor of a model's output (a tensor, the first of a tuple, or dict['out'])."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        if isinstance(out.get("out"), torch.Tensor):
            return out["out"]
        if len(out) == 1:
            (v,) = out.values()
            if isinstance(v, torch.Tensor):
                return v
    raise ConfigError(
        f"the model returned {type(out).__name__}; speed measurement needs logits (B, classes, H, W) "
        "as a tensor, the first element of a tuple, or dict['out']"
    )


class FrameSteps:
    """The steps of one frame of the paper's protocol (Sec. 4), each a method.

    :func:`timed_frame` calls ``upload``, ``forward``, ``argmax``,
    ``download`` and ``sync`` between its two clock readings and nothing else.
    Tests subclass this to record the calls (tests/test_speed.py).

    Args:
        model: the prepared model (eval mode, on ``device``, BN fused as configured).
        device: where the model runs.
        cfg: the measurement settings.
        host_image: ``(B, C, H, W)`` float tensor on the host; with
            ``cfg.cuda_graphs`` it shapes the graph's static input.
    """

    def __init__(self, model: nn.Module, device: torch.device, cfg: SpeedConfig, host_image: torch.Tensor):
        self.model = model
        self.device = device
        self.cfg = cfg
        self.is_cuda = device.type == "cuda"
        self.non_blocking = bool(cfg.pinned_memory and self.is_cuda)
        self.autocast_dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[cfg.precision]
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_in: torch.Tensor | None = None
        self._static_out: torch.Tensor | None = None
        if cfg.cuda_graphs:
            if not self.is_cuda:
                raise ConfigError("cuda_graphs needs a CUDA device")
            self._capture(host_image)

    # -- helpers (not timed on their own) --
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            logits = _as_logits(self.model(x))
            if self.cfg.tta_hflip:
                # sum of the two passes: the same argmax as their mean
                logits = logits + _as_logits(self.model(x.flip(-1))).flip(-1)
        return logits

    def _capture(self, host_image: torch.Tensor) -> None:
        """Capture the forward pass in a CUDA graph on a static input buffer."""
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        self._static_in = host_image.to(self.device).contiguous(memory_format=fmt)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # allocator and cuDNN warm-up before capture
                self._eager_forward(self._static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_out = self._eager_forward(self._static_in)
        torch.cuda.synchronize(self.device)

    # -- the timed steps --
    def upload(self, host: torch.Tensor) -> torch.Tensor:
        """Host -> device copy of the ``(B, C, H, W)`` image (no copy on CPU)."""
        if self._static_in is not None:
            self._static_in.copy_(host, non_blocking=self.non_blocking)
            return self._static_in
        x = host.to(self.device, non_blocking=self.non_blocking) if self.is_cuda else host
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model on the device-resident image; returns logits ``(B, classes, H', W')``."""
        if self._graph is not None:
            if x is not self._static_in:
                self._static_in.copy_(x)
            self._graph.replay()
            return self._static_out
        return self._eager_forward(x)

    def argmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-pixel class ``(B, H', W')`` on the device; uint8 when there are <= 256 classes."""
        pred = logits.argmax(dim=1)
        if logits.shape[1] <= 256:
            pred = pred.to(torch.uint8)
        return pred

    def download(self, pred: torch.Tensor) -> torch.Tensor:
        """Device -> host copy of the label map (no copy on CPU)."""
        return pred.cpu() if self.is_cuda else pred

    def sync(self) -> None:
        """Wait for all queued device work (no-op on CPU)."""
        if self.is_cuda:
            torch.cuda.synchronize(self.device)


def timed_frame(steps: FrameSteps, host_image: torch.Tensor, clock: Clock = time.perf_counter) -> float:
    """One end-to-end frame of the paper's protocol; returns its latency in ms.

    Between the two clock readings: ``upload``, ``forward``, ``argmax``,
    ``download``, ``sync``, in that order, once each (see module docstring).
    """
    t0 = clock()
    x = steps.upload(host_image)
    logits = steps.forward(x)
    pred = steps.argmax(logits)
    steps.download(pred)
    steps.sync()
    t1 = clock()
    return (t1 - t0) * 1e3


def model_only_frame(steps: FrameSteps, x_device: torch.Tensor, clock: Clock = time.perf_counter) -> float:
    """The forward pass alone on a device-resident input; latency in ms.

    CUDA: elapsed time between two CUDA events around ``forward``. CPU:
    ``clock`` around ``forward`` and ``sync``.
    """
    if steps.is_cuda:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        steps.sync()
        start.record()
        steps.forward(x_device)
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t0 = clock()
    steps.forward(x_device)
    steps.sync()
    t1 = clock()
    return (t1 - t0) * 1e3


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class SpeedResult:
    """One speed measurement with everything needed to interpret it.

    Attributes:
        device: ``"cuda"`` or ``"cpu"``: the column the figure belongs in.
        fps: end-to-end frames/s from the median latency (paper Sec. 4 protocol).
        fps_ci95: 95% bootstrap CI of ``fps`` in frames/s.
        latency: end-to-end :class:`LatencyStats` (ms).
        model_only: forward-only :class:`LatencyStats` (ms; CUDA events on a GPU).
        warmup_frames: end-to-end warm-up frames run before timing.
        warmup_converged: whether the warm-up rule was met before ``max_warmup``.
        bn_fused: whether ``fuse_bn()`` (supplement Sec. E) was applied.
        settings: effective settings (device name, input/output shapes,
            precision, BN fusion, denormal flushing, threads, timers, ...).
        config: the :class:`SpeedConfig` as a dict.
        provenance: :func:`~hsbench.measure.provenance.collect_provenance` (or ``{}``).
        samples_ms: the raw end-to-end latencies, R tuples of N, in ms.
        model_only_samples_ms: the raw model-only latencies, R tuples of N, in ms.
        protocol: name of the protocol (:data:`PROTOCOL`).
    """

    device: str
    fps: float
    fps_ci95: tuple[float, float]
    latency: LatencyStats
    model_only: LatencyStats
    warmup_frames: int
    warmup_converged: bool
    bn_fused: bool
    settings: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    samples_ms: tuple[tuple[float, ...], ...] = ()
    model_only_samples_ms: tuple[tuple[float, ...], ...] = ()
    protocol: str = PROTOCOL

    def to_dict(self, *, samples: bool = True) -> dict[str, Any]:
        """JSON-serialisable dict of everything, provenance included.

        Args:
            samples: include the raw latencies (``samples_ms``, ``model_only_samples_ms``).
        """
        d = {
            "protocol": self.protocol,
            "device": self.device,
            "fps": self.fps,
            "fps_ci95": list(self.fps_ci95),
            "latency": self.latency.to_dict(),
            "model_only": self.model_only.to_dict(),
            "warmup_frames": self.warmup_frames,
            "warmup_converged": self.warmup_converged,
            "bn_fused": self.bn_fused,
            "settings": dict(self.settings),
            "config": dict(self.config),
            "provenance": dict(self.provenance),
        }
        if samples:
            d["samples_ms"] = [list(r) for r in self.samples_ms]
            d["model_only_samples_ms"] = [list(r) for r in self.model_only_samples_ms]
        return d

    def to_json(self, *, samples: bool = False, indent: int | None = 2) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(samples=samples), indent=indent)


def format_speed_result(result: SpeedResult, fmt: str = "table") -> str:
    """Render a :class:`SpeedResult` for the terminal.

    Args:
        fmt: ``"table"`` (tabulate, plain text) or ``"json"`` (without raw samples).

    Raises:
        ConfigError: on another format.
    """
    if fmt == "json":
        return result.to_json(samples=False)
    if fmt != "table":
        raise ConfigError(f"format={fmt!r}; allowed: table, json")
    from tabulate import tabulate

    lat, mo = result.latency, result.model_only
    s = result.settings
    rows = [
        ["device", f"{result.device} ({s.get('device_name')})"],
        ["protocol", "paper Sec. 4: upload -> forward -> argmax -> download, synchronised"],
        ["input", f"{s.get('input_shape')} {s.get('precision')}"],
        [
            "FPS (end-to-end)",
            f"{result.fps:.2f} frames/s  [95% CI {result.fps_ci95[0]:.2f}-{result.fps_ci95[1]:.2f}]",
        ],
        [
            "latency ms",
            f"median {lat.median_ms:.3f}  mean {lat.mean_ms:.3f}  p10 {lat.p10_ms:.3f}  p90 {lat.p90_ms:.3f}",
        ],
        ["repeat medians ms", " ".join(f"{v:.3f}" for v in lat.repeat_median_ms)],
        ["model-only ms", f"median {mo.median_ms:.3f}  p10 {mo.p10_ms:.3f}  p90 {mo.p90_ms:.3f} ({s.get('model_only_timer')})"],
        ["model-only FPS", f"{mo.fps:.2f} frames/s  [95% CI {mo.fps_ci95[0]:.2f}-{mo.fps_ci95[1]:.2f}]"],
        ["frames", f"{result.warmup_frames} warm-up (converged: {result.warmup_converged}) + "
                   f"{result.config.get('repeats')} x {result.config.get('timed_frames')} timed"],
        ["BN fusion", s.get("bn_fusion")],
        ["DPWConv backend", s.get("dpwconv_backend")],
        ["denormals flushed", s.get("flush_denormal")],
        ["channels_last / cudnn.benchmark", f"{s.get('channels_last')} / {s.get('cudnn_benchmark')}"],
        ["TTA hflip / compile / CUDA graphs", f"{s.get('tta_hflip')} / {s.get('compile')} / {s.get('cuda_graphs')}"],
        ["threads", s.get("cpu_threads")],
    ]
    p = result.provenance
    if p:
        rows += [
            ["GPU / driver", f"{p.get('gpu_name')} / {p.get('driver_version')}"],
            ["CUDA / cuDNN", f"{p.get('cuda_version')} / {p.get('cudnn_version')}"],
            ["CPU", p.get("cpu_model")],
            ["torch / timm / hsbench", f"{p.get('torch_version')} / {p.get('timm_version')} / "
                                       f"{p.get('hsbench_version')} ({(p.get('git_commit') or 'no git')[:12]})"],
            ["host / date", f"{p.get('hostname')} / {p.get('date_utc')}"],
        ]
    return tabulate(rows, tablefmt="plain")


# --------------------------------------------------------------------------- measurement


def _host_image(cfg: SpeedConfig, image: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """The ``(B, C, H, W)`` float host image: ``image`` checked, or a seeded uniform one."""
    b = cfg.batch_size
    if image is None:
        if cfg.resolution is None:
            raise ConfigError("set SpeedConfig.resolution (W, H) or pass an image to time the model on")
        w, h = cfg.resolution
        gen = torch.Generator().manual_seed(cfg.seed)
        host = torch.rand(b, 3, h, w, generator=gen)
    else:
        if not isinstance(image, torch.Tensor) or image.dim() not in (3, 4):
            raise ConfigError("image must be a (C, H, W) or (B, C, H, W) tensor")
        if not image.is_floating_point():
            raise ConfigError(f"image must be a floating-point tensor (normalised), got {image.dtype}")
        host = image.detach().to("cpu")
        if host.dim() == 3:
            host = host.unsqueeze(0)
        if host.shape[0] == 1 and b > 1:
            host = host.expand(b, -1, -1, -1)
        if host.shape[0] != b:
            raise ConfigError(f"image batch {host.shape[0]} does not match batch_size={b}")
        if cfg.resolution is not None and tuple(cfg.resolution) != (host.shape[3], host.shape[2]):
            raise ConfigError(
                f"image is {host.shape[3]}x{host.shape[2]} (WxH) but resolution is "
                f"{cfg.resolution[0]}x{cfg.resolution[1]}; give one or make them agree"
            )
        host = host.contiguous()
    if cfg.pinned_memory and device.type == "cuda":
        host = host.pin_memory()
    return host


def _prepare_model(model: nn.Module, cfg: SpeedConfig, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Eval mode, BN fusion (supplement Sec. E) if requested and offered, device, memory format, compile."""
    info: dict[str, Any] = {}
    model.eval()
    fuse = getattr(model, "fuse_bn", None)
    if not cfg.fuse_bn:
        info["bn_fused"], info["bn_fusion"] = False, "off (fuse_bn=False)"
    elif callable(fuse):
        model = fuse()
        if not isinstance(model, nn.Module):
            raise ConfigError("the model's fuse_bn() must return an nn.Module (the fused inference copy)")
        model.eval()
        info["bn_fused"], info["bn_fusion"] = True, "fused by model.fuse_bn() (supplement Sec. E)"
    else:
        info["bn_fused"], info["bn_fusion"] = False, "requested, but the model has no fuse_bn(); BN left as is"
    info["bn_layers_timed"] = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    info["dpwconv_backend"] = None  # the model does not say (not a HyperSeg)
    if callable(getattr(model, "set_dpw_backend", None)):
        if not info["bn_fused"]:
            model = copy.deepcopy(model)  # the backend is set on the timed copy, never on the caller's model
        model.set_dpw_backend(cfg.dpw_backend)
        try:
            info["dpwconv_backend"] = model.dpw_backend_for(device.type)
        except ValueError as exc:
            raise ConfigError(f"dpw_backend={cfg.dpw_backend!r}: {exc}") from None
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.compile:
        model = torch.compile(model)
    return model, info


@contextlib.contextmanager
def _timing_environment(cfg: SpeedConfig, device: torch.device) -> Iterator[dict[str, Any]]:
    """Apply denormal flushing, thread count and cudnn.benchmark; restore them afterwards."""
    env: dict[str, Any] = {}
    old_threads = torch.get_num_threads()
    old_bench = torch.backends.cudnn.benchmark
    flushed = False
    try:
        if cfg.cpu_threads is not None:
            torch.set_num_threads(cfg.cpu_threads)
        if cfg.denormals == "flush":
            flushed = bool(torch.set_flush_denormal(True))
        env["flush_denormal"] = flushed
        env["cpu_threads"] = torch.get_num_threads()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
            env["cudnn_benchmark"] = cfg.cudnn_benchmark
        else:
            env["cudnn_benchmark"] = None
        yield env
    finally:
        if flushed:
            torch.set_flush_denormal(False)  # torch's default
        if cfg.cpu_threads is not None:
            torch.set_num_threads(old_threads)
        torch.backends.cudnn.benchmark = old_bench


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from hsbench.measure.provenance import cpu_model

    return cpu_model() or "cpu"


def measure_fps(
    model: nn.Module,
    cfg: SpeedConfig,
    *,
    image: torch.Tensor | None = None,
    clock: Clock = time.perf_counter,
    steps_factory: Callable[..., FrameSteps] = FrameSteps,
    provenance: bool = True,
) -> SpeedResult:
    """Time ``model`` with the paper's FPS protocol (Sec. 4), BN fused (supplement Sec. E).

    See the module docstring for what the timer covers, the warm-up rule and
    the statistics. hsbench follows the paper; the authors' released script
    differs (timer stops before argmax/download, BN deleted, batch 16).

    Args:
        model: maps a ``(B, 3, H, W)`` float image to logits ``(B, classes, H', W')``
            (a tensor, a tuple whose first element is it, or ``dict['out']``). If it
            has ``fuse_bn()`` (returning a fused inference copy) and
            ``cfg.fuse_bn``, the copy is timed. The model is put in eval mode
            and moved to the device.
        cfg: the settings; all are recorded in the result.
        image: optional host image ``(C, H, W)`` or ``(B, C, H, W)``, float;
            default a seeded uniform image at ``cfg.resolution``.
        clock: the timer, seconds (tests inject a fake one).
        steps_factory: builds the :class:`FrameSteps` (tests inject a recorder).
        provenance: attach :func:`collect_provenance` to the result.

    Returns:
        :class:`SpeedResult` (FPS in frames/s, latencies in ms).

    Raises:
        ConfigError: device ``cuda`` without CUDA, no resolution and no image,
            an image that disagrees with the settings, a model whose output is
            not logits, ``cuda_graphs`` on CPU.
    """
    device = resolve_device(cfg.device)
    if cfg.cuda_graphs and device.type != "cuda":
        raise ConfigError("cuda_graphs needs a CUDA device; the measurement would run on cpu")
    host = _host_image(cfg, image, device)
    was_training = model.training
    prepared, model_info = _prepare_model(model, cfg, device)
    n, r = cfg.timed_frames, cfg.repeats
    try:
        with _timing_environment(cfg, device) as env, torch.inference_mode():
            steps = steps_factory(prepared, device, cfg, host)

            # probe (untimed): checks the output and records its shape
            logits = steps.forward(steps.upload(host))
            if logits.dim() != 4:
                raise ConfigError(
                    f"the model's output has shape {tuple(logits.shape)}; expected logits (B, classes, H, W)"
                )
            out_shape = list(logits.shape)
            pred_dtype = str(steps.argmax(logits).dtype).replace("torch.", "")
            steps.sync()
            del logits

            # warm-up until the running median settles (see warmup_stable)
            history: list[float] = []
            converged = False
            while len(history) < cfg.max_warmup:
                history.append(timed_frame(steps, host, clock))
                if len(history) >= cfg.min_warmup and warmup_stable(history, cfg.warmup_window, cfg.warmup_rtol):
                    converged = True
                    break

            # model-only needs the image resident on the device; its own short warm-up
            x_dev = steps.upload(host)
            steps.sync()
            mo_warm = [model_only_frame(steps, x_dev, clock) for _ in range(cfg.min_warmup)]

            # R repeats; each times N end-to-end frames, then N model-only frames, so
            # that drift of the machine affects both figures alike
            gc.collect()  # a full collection now rather than inside a timed frame
            e2e: list[list[float]] = []
            mo: list[list[float]] = []
            for _ in range(r):
                e2e.append([timed_frame(steps, host, clock) for _ in range(n)])
                mo.append([model_only_frame(steps, x_dev, clock) for _ in range(n)])
    finally:
        model.train(was_training)  # the caller's module keeps its mode (fuse_bn() made a copy or not)

    lat = latency_stats(e2e, batch_size=cfg.batch_size, n_boot=cfg.bootstrap_samples, seed=cfg.seed)
    mo_lat = latency_stats(mo, batch_size=cfg.batch_size, n_boot=cfg.bootstrap_samples, seed=cfg.seed + 1)
    b, c, h, w = host.shape
    settings = {
        "device": str(device),
        "device_name": _device_name(device),
        "input_shape": [b, c, h, w],
        "resolution": [w, h],
        "batch_size": cfg.batch_size,
        "output_shape": out_shape,
        "prediction_dtype": pred_dtype,
        "precision": cfg.precision,
        "autocast": None if cfg.precision == "fp32" else cfg.precision,
        "channels_last": cfg.channels_last,
        "cudnn_benchmark": env["cudnn_benchmark"],
        "pinned_memory": bool(cfg.pinned_memory and device.type == "cuda"),
        "tta_hflip": cfg.tta_hflip,
        "compile": cfg.compile,
        "cuda_graphs": cfg.cuda_graphs,
        "denormals": cfg.denormals,
        "flush_denormal": env["flush_denormal"],
        "cpu_threads": env["cpu_threads"],
        **model_info,
        "timer": "time.perf_counter" if clock is time.perf_counter else getattr(clock, "__name__", repr(clock)),
        "timer_covers": list(TIMED_STEPS),
        "host_device_copies": device.type == "cuda",
        "model_only_timer": "cuda events" if device.type == "cuda" else "time.perf_counter",
        "model_only_warmup_frames": len(mo_warm),
    }
    return SpeedResult(
        device=device.type,
        fps=lat.fps,
        fps_ci95=lat.fps_ci95,
        latency=lat,
        model_only=mo_lat,
        warmup_frames=len(history),
        warmup_converged=converged,
        bn_fused=model_info["bn_fused"],
        settings=settings,
        config=cfg.to_dict(),
        provenance=collect_provenance(device.index if device.type == "cuda" else None) if provenance else {},
        samples_ms=tuple(tuple(row) for row in e2e),
        model_only_samples_ms=tuple(tuple(row) for row in mo),
    )
