"""Complexity figures: parameters, MACs and FLOPs of a HyperSeg variant (paper Sec. 4, Table S3).

Counters and what they count (a multiply-accumulate, MAC, is one multiply and
one add):

* ``gmacs_thop``: thop (pytorch-OpCounter, the paper's counter [60]); its
  figures are MACs although the paper's column says "GFLOPs". thop counts
  modules by exact type, so hsbench registers rules for its DPWConv layer
  (output pixels x C_in/G x K^2 MACs per output channel), for timm's
  ``Conv2dSame`` (a Conv2d subclass thop would skip) and for timm's
  ``BatchNormAct2d``. The weight mapper heads are ordinary grouped 1x1
  convolutions (Eq. 7) and thop counts them itself. The decoder fusions'
  parameter-free leaves (:data:`hsbench.models.aggregation.COUNTED_LEAVES`:
  PredOP's per-pixel kernel application, the affine resampling, ParamSum,
  dense attention) are counted by their own ``macs(output)``.
* ``gmacs_fvcore``: fvcore's ``FlopCountAnalysis``, which traces the aten ops
  that run (the DPWConv appears as its batched matmul / grouped convolution);
  also MACs. PredOP's im2col + matmul is fvcore's matmul rule, bilinear
  sampling its grid_sampler rule (4 per output value); hsbench adds the affine
  grid (3 MACs per grid coordinate) and marks im2col as a copy. By fvcore's
  convention element-wise products (ParamSum, dense attention, as the SE
  gates of EfficientNet) count 0.
* ``gflops``: ``torch.utils.flop_counter.FlopCounterMode``, 2 FLOPs per MAC,
  matrix products and convolutions only.

Under ``semantics="release"`` a full meta block of the v1_0 templates runs as
one :class:`~hsbench.models.meta_block.HaloMetaBlockOp`; its MACs (pw1 on every
patch's halo'd window: the halo recompute, dw and pw2 on the map) come from
:meth:`~hsbench.models.meta_block.HaloMetaBlockOp.macs` in both thop and the
DPWConv count, and fvcore sees its matrix products. The release backbone's
:class:`~hsbench.models.backbones.StaticSameConv2d` is counted as a convolution.

No counter may report the dynamic convolutions as zero:
:func:`complexity` also returns the DPWConv and weight mapper MACs by
themselves (``gmacs_dpwconv``, ``gmacs_weight_mapper``) and the tests compare
them with Eq. 7 and a hand count.

The paper's Cityscapes GFLOPs leave the DPWConv MACs out (the authors' counter
had no rule for them), so hsbench reads about 5-8 % higher there.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass

import torch
from torch import nn

from hsbench.models.aggregation import COUNTED_LEAVES
from hsbench.models.backbones import StaticSameConv2d
from hsbench.models.hyperseg import HyperSeg
from hsbench.models.meta_block import DynamicConv2d, HaloMetaBlockOp


@dataclass(frozen=True)
class Complexity:
    """Complexity of one model at one resolution.

    Attributes:
        resolution: (W, H) in pixels of the input counted.
        grid: (N_h, N_w) weight grid at that resolution, None for static models.
        params_learned: trainable parameters (the paper's "Params").
        params_weight_mapper: |theta^w|, parameters of the weight mapper heads (Table S3).
        generated_weights: dynamic weights generated per image, sum_i |theta^{m_i}| N_h N_w.
        gmacs_thop: 1e9 MACs, thop with hsbench's rules.
        gmacs_fvcore: 1e9 MACs, fvcore.
        gflops: 1e9 FLOPs (2 per MAC), torch.utils.flop_counter.
        gmacs_dpwconv: 1e9 MACs of the DPWConv layers alone.
        gmacs_weight_mapper: 1e9 MACs of the weight mapper heads alone (Eq. 7).
    """

    resolution: tuple[int, int]
    grid: tuple[int, int] | None
    params_learned: int
    params_weight_mapper: int
    generated_weights: int
    gmacs_thop: float
    gmacs_fvcore: float
    gflops: float
    gmacs_dpwconv: float
    gmacs_weight_mapper: float

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples become lists)."""
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        d["grid"] = list(self.grid) if self.grid else None
        return d


def dpwconv_macs(module: DynamicConv2d, output: torch.Tensor) -> int:
    """MACs of one DPWConv call: every output value costs C_in / G x K_h x K_w MACs."""
    s = module.spec
    return output.numel() * (s.c_in // s.groups) * s.kernel * s.kernel


def _thop_rules() -> dict:
    from thop.vision.basic_hooks import count_convNd, count_normalization
    from timm.layers import BatchNormAct2d
    from timm.layers.conv2d_same import Conv2dSame

    def count_dpwconv(m, inputs, output):
        m.total_ops += torch.DoubleTensor([dpwconv_macs(m, output)])

    def count_halo_block(m, inputs, output):
        m.total_ops += torch.DoubleTensor([halo_block_macs(m, inputs)])

    def count_leaf(m, inputs, output):
        m.total_ops += torch.DoubleTensor([m.macs(output)])

    rules = {
        DynamicConv2d: count_dpwconv,
        HaloMetaBlockOp: count_halo_block,
        Conv2dSame: count_convNd,
        StaticSameConv2d: count_convNd,
        BatchNormAct2d: count_normalization,
    }
    rules.update({cls: count_leaf for cls in COUNTED_LEAVES})
    return rules


def halo_block_macs(module: HaloMetaBlockOp, inputs: tuple) -> int:
    """MACs of one release-rule meta block call from its inputs (x, w1, w2, w3, norms)."""
    x, w1 = inputs[0], inputs[1]
    return module.macs(tuple(x.shape), tuple(w1.shape[-2:]))


def _gmacs_thop(model: nn.Module, x: torch.Tensor) -> float:
    import thop

    macs, _ = thop.profile(copy.deepcopy(model), inputs=(x,), custom_ops=_thop_rules(), verbose=False)
    return float(macs) / 1e9


def _numel(value) -> int:
    from fvcore.nn.jit_handles import get_shape

    n = 1
    for d in get_shape(value):
        n *= d
    return n


def _gmacs_fvcore(model: nn.Module, x: torch.Tensor) -> float:
    from fvcore.nn import FlopCountAnalysis

    logging.getLogger("fvcore").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(model, (x,))
    analysis.set_op_handle(
        "aten::affine_grid_generator", lambda inputs, outputs: 3 * _numel(outputs[0]),
        "aten::im2col", None,
    )
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return float(analysis.total()) / 1e9


def _gflops(model: nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


def _own_counts(model: HyperSeg, x: torch.Tensor) -> tuple[int, int]:
    dpw, mapper = [0], [0]
    hooks = []
    for m in model.modules():
        if isinstance(m, DynamicConv2d):
            hooks.append(m.register_forward_hook(lambda mod, i, o: dpw.__setitem__(0, dpw[0] + dpwconv_macs(mod, o))))
        elif isinstance(m, HaloMetaBlockOp):
            hooks.append(m.register_forward_hook(lambda mod, i, o: dpw.__setitem__(0, dpw[0] + halo_block_macs(mod, i))))
    for head in model.weight_mapper_heads():

        def count(mod, inputs, output):
            mapper[0] += output.numel() * mod.in_channels // mod.groups

        hooks.append(head.conv.register_forward_hook(count))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return dpw[0], mapper[0]


@torch.no_grad()
def complexity(model: HyperSeg, resolution: tuple[int, int], *, counters: tuple[str, ...] = ("thop", "fvcore", "flop_counter")) -> Complexity:
    """Count parameters and MACs/FLOPs of ``model`` on one (1, 3, H, W) input.

    Args:
        model: a HyperSeg (counted in eval mode on a copy; the model is not changed).
        resolution: (W, H) in pixels.
        counters: which of ``thop``, ``fvcore``, ``flop_counter`` to run
            (the others report NaN); fvcore traces the model and is the slowest.

    Raises:
        ValueError: if the resolution is below the model's 64x64 minimum.
    """
    width, height = resolution
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, 3, height, width)
        nan = float("nan")
        dpw, mapper = _own_counts(model, x)
        return Complexity(
            resolution=(width, height),
            grid=model.grid_shape(height, width) if model.config.dynamic else None,
            params_learned=sum(p.numel() for p in model.parameters() if p.requires_grad),
            params_weight_mapper=model.weight_mapper_parameters(),
            generated_weights=model.generated_weights(height, width),
            gmacs_thop=_gmacs_thop(model, x) if "thop" in counters else nan,
            gmacs_fvcore=_gmacs_fvcore(model, x) if "fvcore" in counters else nan,
            gflops=_gflops(model, x) if "flop_counter" in counters else nan,
            gmacs_dpwconv=dpw / 1e9,
            gmacs_weight_mapper=mapper / 1e9,
        )
    finally:
        model.train(was_training)
