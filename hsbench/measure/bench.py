"""Micro-benchmark of the dynamic patch-wise convolution (DPWConv, paper Sec. 3.3).

The paper blames its run time on "the unoptimized operations of DPWConv"
(Sec. 4, Cityscapes results). :func:`bench_dpwconv` makes that cost visible per layer: it times
the slow reference (a loop of ``F.conv2d``, one per patch), the fast version,
and an ordinary ``F.conv2d`` of the same shape (one weight set for the whole
image), which is the floor a perfect DPWConv could approach.

Layer shapes come from the model itself (:func:`template_layers` builds the
template with :func:`hsbench.models.build_model`) at the template's evaluation
resolution (supplement Table S1), on the native patch grid (one patch per
stride-32 pixel). Every full meta block is also timed whole (``conv="block"``):
the fused op :func:`hsbench.ops.meta_block_conv` against its reference and
three ordinary convolutions with their biases and ReLU6s. The generated weights
are laid out as the weight mapper lays them out in the model (channels-last:
each patch's weights contiguous).

Reported per layer and implementation: median time in ms, GB/s of tensor
traffic (bytes of input + weight + bias + output, divided by the time; the
dynamic weight grid counts in full) and the ratio of the time to the ordinary
convolution's.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hsbench.errors import ConfigError, HsbenchError

#: ``op(x, weight, bias=None, *, padding=0, groups=1, padding_mode="zeros")``,
#: x (B, C_in, H, W), weight (B, C_out, C_in // groups, K, K, N_h, N_w),
#: bias (B, C_out, N_h, N_w) -> (B, C_out, H, W); the signature of hsbench.ops.
PatchwiseOp = Callable[..., torch.Tensor]

IMPLS = ("reference", "fast", "conv2d")


@dataclass(frozen=True)
class LayerShape:
    """One DPWConv layer to time.

    Attributes:
        template: Table S1 template name (or any label).
        level: decoder level, e.g. ``"m_2"``.
        conv: ``"pw1"``, ``"dw"`` or ``"pw2"``.
        stride: the level's output stride (feature map = resolution / stride).
        c_in, c_out: channels.
        kernel: square kernel side (1 or 3); padding is ``(kernel - 1) // 2``.
        groups: channel groups (``c_in`` for depth-wise).
        height, width: feature map size in pixels.
        grid: patch grid ``(N_w, N_h)``.
        hidden: for ``conv="block"`` (a whole meta block, pw1 -> dw 3x3 ->
            pw2, BN folded), the hidden width; ``None`` for a single layer.
    """

    template: str
    level: str
    conv: str
    stride: int
    c_in: int
    c_out: int
    kernel: int
    groups: int
    height: int
    width: int
    grid: tuple[int, int]
    hidden: int | None = None

    @property
    def name(self) -> str:
        """``"camvid-s m_2.dw"``."""
        return f"{self.template} {self.level}.{self.conv}"

    @property
    def spec(self) -> str:
        """``"48->48 3x3 g48 @192x144 grid 24x18"``."""
        if self.hidden is not None:
            return (f"{self.c_in}->{self.hidden}->{self.c_out} block @{self.width}x{self.height} "
                    f"grid {self.grid[0]}x{self.grid[1]}")
        g = f" g{self.groups}" if self.groups > 1 else ""
        return (
            f"{self.c_in}->{self.c_out} {self.kernel}x{self.kernel}{g} "
            f"@{self.width}x{self.height} grid {self.grid[0]}x{self.grid[1]}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["grid"] = list(self.grid)
        return d


#: Templates :func:`template_layers` knows: every Table S1 template.
BENCH_TEMPLATES = ("voc-l", "cityscapes-s", "cityscapes-m", "camvid-s", "camvid-l")

#: What ``hsbench bench dpwconv`` times without ``--template``.
DEFAULT_TEMPLATES = ("camvid-s", "cityscapes-m")
#: Largest ``scale`` of :func:`template_layers`: 2 already times 4x the template's pixels.
MAX_SCALE = 2.0


@functools.lru_cache(maxsize=None)
def _template_blocks(template: str) -> tuple[tuple[int, bool, int, int, tuple[Any, ...]], ...]:
    """``(level, full, C_in, C_out, ConvSpecs)`` of each meta block of ``build_model(template)``, coarse to fine."""
    from hsbench.models import ModelConfig, build_model

    model = build_model(ModelConfig(template=template))
    return tuple((lv, b.full, b.c_in, b.c_out, tuple(b.specs)) for lv, b in zip(model.levels, model.blocks))


def template_layers(template: str, *, scale: float = 1.0, blocks: bool = False) -> list[LayerShape]:
    """The DPWConv layers of ``template`` as :func:`hsbench.models.build_model` builds it.

    Shapes (channels, kernels, groups, full block or single 1x1 per level)
    come from the built model's meta blocks, the feature map of level ``i``
    is the template's evaluation resolution (supplement Table S1) divided by
    ``2**i``, and the grid is the model's native grid at that resolution.

    Args:
        template: one of :data:`BENCH_TEMPLATES`.
        scale: multiplies the feature map size (the grid is kept, and capped at
            the map size); ``< 1`` gives quick runs for tests.
        blocks: also one row per full meta block (``conv="block"``: pw1 -> dw
            -> pw2, timed as the fused op :func:`hsbench.ops.meta_block_conv`).

    Raises:
        ConfigError: for an unknown template or a scale outside (0, :data:`MAX_SCALE`].
    """
    from hsbench.models.templates import get_template

    if template not in BENCH_TEMPLATES:
        raise ConfigError(f"no DPWConv layer shapes for template {template!r}; known: {', '.join(BENCH_TEMPLATES)}")
    if not 0 < scale <= MAX_SCALE:  # NaN fails too
        raise ConfigError(
            f"scale={scale!r} must be a number in (0, {MAX_SCALE:g}]: 1 is the template's resolution, "
            "< 1 a quick run"
        )
    res_w, res_h = get_template(template).resolution
    n_w, n_h = -(-res_w // 32), -(-res_h // 32)  # the native grid (HyperSeg.grid_shape)
    out = []
    for level, full, c_in, c_out, specs in _template_blocks(template):
        stride = 2**level
        h = max(1, round(res_h / stride * scale))
        w = max(1, round(res_w / stride * scale))
        names = ("pw1", "dw", "pw2") if full else ("pw1",)
        common = {"template": template, "level": f"m_{level}", "stride": stride, "height": h, "width": w,
                  "grid": (min(n_w, w), min(n_h, h))}
        for name, spec in zip(names, specs):
            out.append(LayerShape(conv=name, c_in=spec.c_in, c_out=spec.c_out, kernel=spec.kernel,
                                  groups=spec.groups, **common))
        if blocks and full:
            hidden = specs[0].c_out
            out.append(LayerShape(conv="block", c_in=c_in, c_out=c_out, kernel=3, groups=hidden,
                                  hidden=hidden, **common))
    return out


@dataclass(frozen=True)
class BenchRow:
    """The timing of one implementation on one layer.

    Attributes:
        layer: the :class:`LayerShape`.
        impl: ``"reference"``, ``"fast"`` or ``"conv2d"`` (ordinary convolution, the floor).
        ms: median time of one call in ms.
        p10_ms, p90_ms: 10th / 90th percentile in ms.
        iters: timed calls.
        traffic_bytes: bytes of input + weight + bias + output.
        gbps: ``traffic_bytes / ms`` in GB/s (1e9 bytes per second).
        ratio_to_conv: ``ms / ms(conv2d)`` on the same layer.
        max_abs_diff: max |fast out - reference out| on the fast row; ``None``
            on the other rows and when the reference is skipped.
        device: ``"cpu"`` or ``"cuda"``.
        backend: the DPWConv backend that ran (``"torch"``, ``"triton"``, ...)
            on the fast row; ``"reference"`` / ``"conv2d"`` on the others.
    """

    layer: LayerShape
    impl: str
    ms: float
    p10_ms: float
    p90_ms: float
    iters: int
    traffic_bytes: int
    gbps: float
    ratio_to_conv: float
    max_abs_diff: float | None
    device: str
    backend: str = "torch"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable flat dict."""
        d = dataclasses.asdict(self)
        d["layer"] = self.layer.to_dict()
        d["name"] = self.layer.name
        return d


def _default_ops() -> tuple[PatchwiseOp, PatchwiseOp]:
    try:
        from hsbench.ops import patchwise_conv2d, patchwise_conv2d_reference
    except ImportError as exc:  # pragma: no cover - the op ships with hsbench
        raise HsbenchError(f"hsbench.ops does not provide the patch-wise convolution ({exc})") from exc
    return patchwise_conv2d, patchwise_conv2d_reference


def _time_ms(fn: Callable[[], Any], device: torch.device, warmup: int, iters: int,
             clock: Callable[[], float]) -> list[float]:
    """Per-call times in ms: CUDA events on a GPU, ``clock`` (perf_counter) on CPU."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        times = []
        for _ in range(iters):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(float(start.elapsed_time(end)))
        return times
    times = []
    for _ in range(iters):
        t0 = clock()
        fn()
        t1 = clock()
        times.append((t1 - t0) * 1e3)
    return times


def _nbytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def bench_dpwconv(
    layers: Sequence[LayerShape] | None = None,
    *,
    device: str | torch.device = "cpu",
    fast: PatchwiseOp | None = None,
    reference: PatchwiseOp | None = None,
    backend: str = "auto",
    include_reference: bool = True,
    warmup: int = 3,
    iters: int = 10,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> list[BenchRow]:
    """Time reference DPWConv, fast DPWConv and an ordinary conv on each layer.

    Args:
        layers: shapes to time; default the camvid-s and cityscapes-m layers
            (:func:`template_layers`).
        device: ``"cpu"`` or ``"cuda"`` (``"auto"`` = CUDA if available).
        fast, reference: the ops (signature of ``hsbench.ops.patchwise_conv2d``);
            default ``hsbench.ops.patchwise_conv2d`` (with ``backend``) /
            ``patchwise_conv2d_reference``. Block rows always time
            :func:`hsbench.ops.meta_block_conv` (with ``backend``) against
            :func:`hsbench.ops.meta_block_reference`.
        backend: DPWConv backend of the fast rows (:mod:`hsbench.ops.backends`).
        include_reference: run and time the (slow) reference and report
            ``max_abs_diff`` of the fast op against it; ``False`` skips both.
        warmup, iters: untimed and timed calls per implementation and layer.
        batch: images per call (the paper's protocol uses 1).
        dtype: tensor dtype.
        seed: seed of the random tensors.
        clock: CPU timer in seconds (tests may inject one).

    Returns:
        One :class:`BenchRow` per layer and implementation, in the order
        reference, fast, conv2d.

    Raises:
        ConfigError: ``"cuda"`` without a CUDA device, or an unknown device.
    """
    from hsbench.device import resolve_device

    dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    if warmup < 0 or iters < 1:
        raise ConfigError(f"warmup={warmup} must be >= 0 and iters={iters} >= 1")
    from hsbench.ops import resolve_backend

    ran = resolve_backend(backend, device_type=dev.type)
    if fast is None or reference is None:
        default_fast, default_ref = _default_ops()
        fast = fast or functools.partial(default_fast, backend=backend)
        reference = reference or default_ref
    if layers is None:
        layers = [s for t in DEFAULT_TEMPLATES for s in template_layers(t, blocks=True)]
    gen = torch.Generator().manual_seed(seed)
    rows: list[BenchRow] = []
    with torch.inference_mode():
        for layer in layers:
            if layer.hidden is not None:
                calls, out_bytes, diff = _block_calls(layer, batch, dtype, dev, gen, backend, include_reference)
                _time_rows(rows, layer, calls, dev, warmup, iters, clock, ran)
                continue
            k, g = layer.kernel, layer.groups
            pad = (k - 1) // 2
            n_w, n_h = layer.grid
            x = torch.rand(batch, layer.c_in, layer.height, layer.width, generator=gen, dtype=dtype).to(dev)
            w_dyn = _weight_grid(batch, layer.c_out, layer.c_in // g, k, (n_h, n_w), gen, dtype, dev)
            b_dyn = torch.randn(batch, layer.c_out, n_h, n_w, generator=gen, dtype=dtype).to(dev)
            w_conv = w_dyn[0, ..., 0, 0].contiguous()
            b_conv = b_dyn[0, :, 0, 0].contiguous()

            kw = {"padding": pad, "groups": g}
            out_fast = fast(x, w_dyn, b_dyn, **kw)
            expected = (batch, layer.c_out, layer.height, layer.width)
            if tuple(out_fast.shape) != expected:
                raise HsbenchError(f"{layer.name}: fast op returned {tuple(out_fast.shape)}, expected {expected}")
            diff = None
            if include_reference:
                diff = float((out_fast - reference(x, w_dyn, b_dyn, **kw)).abs().max())
            out_bytes = _nbytes(out_fast)

            calls: list[tuple[str, Callable[[], Any], int, float | None]] = []
            if include_reference:
                calls.append(("reference", functools.partial(reference, x, w_dyn, b_dyn, **kw),
                              _nbytes(x, w_dyn, b_dyn) + out_bytes, None))
            calls.append(("fast", functools.partial(fast, x, w_dyn, b_dyn, **kw),
                          _nbytes(x, w_dyn, b_dyn) + out_bytes, diff))
            calls.append(("conv2d", functools.partial(F.conv2d, x, w_conv, b_conv, **kw),
                          _nbytes(x, w_conv, b_conv) + out_bytes, None))
            _time_rows(rows, layer, calls, dev, warmup, iters, clock, ran)
    return rows


def _weight_grid(b, c_out, c_in_g, k, grid, gen, dtype, dev) -> torch.Tensor:
    """A (B, C_out, C_in/G, K, K, N_h, N_w) weight grid laid out as the weight mapper's output (channels-last)."""
    n_h, n_w = grid
    fan_in = c_in_g * k * k
    flat = torch.randn(b, n_h, n_w, c_out * c_in_g * k * k, generator=gen, dtype=dtype) / fan_in**0.5
    return flat.to(dev).permute(0, 3, 1, 2).reshape(b, c_out, c_in_g, k, k, n_h, n_w)


def _block_calls(layer: LayerShape, batch, dtype, dev, gen, backend, include_reference):
    """The reference / fused / three-static-convs calls of one full meta block (BN folded into biases)."""
    from hsbench.ops import channel_affine, meta_block_conv, meta_block_reference

    c_in, hid, c_out = layer.c_in, layer.hidden, layer.c_out
    n_w, n_h = layer.grid
    x = torch.rand(batch, c_in, layer.height, layer.width, generator=gen, dtype=dtype).to(dev)
    w1 = _weight_grid(batch, hid, c_in, 1, (n_h, n_w), gen, dtype, dev)
    w2 = _weight_grid(batch, hid, 1, 3, (n_h, n_w), gen, dtype, dev)
    w3 = _weight_grid(batch, c_out, hid, 1, (n_h, n_w), gen, dtype, dev)
    biases = [torch.randn(c, generator=gen, dtype=dtype).to(dev) for c in (hid, hid, c_out)]
    norms = [functools.partial(channel_affine, shift=b) for b in biases]
    static = [w[0, ..., 0, 0].contiguous() for w in (w1, w2, w3)]

    def fused():
        return meta_block_conv(x, w1, w2, w3, biases, backend=backend)

    def conv2d():
        h = F.conv2d(x, static[0], biases[0]).clamp_(0.0, 6.0)
        h = F.conv2d(h, static[1], biases[1], padding=1, groups=hid).clamp_(0.0, 6.0)
        return F.conv2d(h, static[2], biases[2])

    out = fused()
    nbytes = _nbytes(x, w1, w2, w3, *biases, out)
    diff = None
    calls = []
    if include_reference:
        diff = float((out - meta_block_reference(x, w1, w2, w3, norms)).abs().max())
        calls.append(("reference", lambda: meta_block_reference(x, w1, w2, w3, norms), nbytes, None))
    calls.append(("fast", fused, nbytes, diff))
    calls.append(("conv2d", conv2d, _nbytes(x, *static, *biases, out), None))
    return calls, _nbytes(out), diff


def _time_rows(rows, layer, calls, dev, warmup, iters, clock, ran) -> None:
    """Time each (impl, fn, traffic bytes, max diff) call interleaved with the others; append BenchRows."""
    times: dict[str, list[float]] = {impl: [] for impl, *_ in calls}
    for _impl, fn, *_ in calls:
        for _ in range(warmup):
            fn()
    for _ in range(iters):  # interleaved: a shared machine's load hits every implementation alike
        for impl, fn, *_ in calls:
            times[impl].extend(_time_ms(fn, dev, 0, 1, clock))
    info = {impl: (nbytes, d) for impl, _, nbytes, d in calls}
    conv_ms = float(np.median(times["conv2d"]))
    for impl in IMPLS:
        if impl not in times:
            continue
        t = np.asarray(times[impl])
        nbytes, d = info[impl]
        ms = float(np.median(t))
        p10, p90 = (float(v) for v in np.percentile(t, [10, 90]))
        rows.append(
            BenchRow(
                layer=layer,
                impl=impl,
                ms=ms,
                p10_ms=p10,
                p90_ms=p90,
                iters=iters,
                traffic_bytes=int(nbytes),
                gbps=nbytes / (ms * 1e-3) / 1e9 if ms > 0 else float("inf"),
                ratio_to_conv=ms / conv_ms if conv_ms > 0 else float("inf"),
                max_abs_diff=d,
                device=dev.type,
                backend=ran if impl == "fast" else ("reference" if impl == "reference" else "conv2d"),
            )
        )


def format_bench(rows: Sequence[BenchRow], fmt: str = "table", *, provenance: dict[str, Any] | None = None) -> str:
    """Render :func:`bench_dpwconv` rows.

    Args:
        fmt: ``"table"`` (tabulate) or ``"json"`` (``{"device", "provenance", "rows"}``).
        provenance: optional :func:`~hsbench.measure.provenance.collect_provenance` dict.

    Raises:
        ConfigError: on another format.
    """
    import json

    if fmt == "json":
        return json.dumps(
            {
                "device": rows[0].device if rows else None,
                "provenance": provenance or {},
                "rows": [r.to_dict() for r in rows],
            },
            indent=2,
        )
    if fmt != "table":
        raise ConfigError(f"format={fmt!r}; allowed: table, json")
    from tabulate import tabulate

    table = [
        [
            r.layer.name,
            r.layer.spec,
            r.impl if r.impl != "fast" else f"fast ({r.backend})",
            f"{r.ms:.3f}",
            f"{r.gbps:.2f}",
            f"{r.ratio_to_conv:.2f}",
            "" if r.max_abs_diff is None else f"{r.max_abs_diff:.1e}",
        ]
        for r in rows
    ]
    head = ""
    if provenance:
        dev = rows[0].device if rows else "?"
        name = provenance.get("gpu_name") if dev == "cuda" else provenance.get("cpu_model")
        head = (
            f"device: {dev} ({name}); torch {provenance.get('torch_version')}; "
            f"threads {torch.get_num_threads()}\n"
        )
    return head + tabulate(
        table,
        headers=["layer", "shape", "impl", "ms", "GB/s", "x conv", "max|fast-ref|"],
        tablefmt="github",
        disable_numparse=True,
    )
