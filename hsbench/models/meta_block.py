"""Meta blocks m_i of the decoder (paper Sec. 3.2, Fig. 3a) and the positional encoding P.

A full meta block is MobileNetV2's inverted residual built from dynamic
patch-wise convolutions: pw1 (1x1, C_in -> 2 C_in) -> BN -> ReLU6 -> dw (3x3
depth-wise) -> BN -> ReLU6 -> pw2 (1x1 -> C_out) -> BN (linear bottleneck),
with the residual when C_in == C_out. At levels whose patches are smaller than
8x8 (4x4 in voc-l) the block is a single 1x1 DPWConv -> BN -> ReLU. Each
block's weights theta^{m_i} are produced by its own weight mapper w_i right
before use (Sec. 3.1). With ``dynamic=False`` ("w/o DPWConv", Table 4) every
DPWConv is an ordinary learned convolution of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from hsbench.models.weight_mapper import WeightMapperHead
from hsbench.ops import check_backend, meta_block_conv, patchwise_conv2d


def positional_encoding(h: int, w: int, *, device=None, dtype=None) -> torch.Tensor:
    """P^{H,W} of paper Sec. 3: (1, 2, H, W) with P_{i,j} = ((2i-H+1)/(H-1), (2j-W+1)/(W-1)).

    Channel 0 holds the row coordinate, channel 1 the column coordinate, both
    in [-1, 1]. A side of length 1 gets coordinate 0.
    """
    rows = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype) if h > 1 else torch.zeros(1, device=device, dtype=dtype)
    cols = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype) if w > 1 else torch.zeros(1, device=device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))
    return grid.unsqueeze(0)


@dataclass(frozen=True)
class ConvSpec:
    """One convolution of a meta block: C_in -> C_out, K x K, ``groups`` groups."""

    c_in: int
    c_out: int
    kernel: int
    groups: int = 1

    @property
    def num_weights(self) -> int:
        """Kernel weights: C_out * C_in / groups * K * K (no bias: a BN follows)."""
        return self.c_out * self.c_in // self.groups * self.kernel**2


class DynamicConv2d(nn.Module):
    """A DPWConv layer: applies :func:`hsbench.ops.patchwise_conv2d` with given weights.

    It holds no learned weights (they come from the weight mapper), only the
    layer's shape, so that complexity counters can attribute its MACs
    (:mod:`hsbench.measure.complexity`). After BN fusion it holds the BN shift
    as a static per-channel bias (supplement Sec. E, Eq. 5).

    Args:
        spec: the layer's shape.
    """

    def __init__(self, spec: ConvSpec):
        super().__init__()
        self.spec = spec
        self.dpw_backend = "auto"  # hsbench.ops backend name; HyperSeg.set_dpw_backend sets it
        self.register_buffer("bias", None)

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W), weight (B, C_out, C_in/G, K, K, N_h, N_w) -> (B, C_out, H, W)."""
        bias = None
        if self.bias is not None:
            b, (n_h, n_w) = weight.shape[0], weight.shape[-2:]
            bias = self.bias.view(1, -1, 1, 1).expand(b, -1, n_h, n_w)
        return patchwise_conv2d(
            x, weight, bias, padding=self.spec.kernel // 2, groups=self.spec.groups, backend=self.dpw_backend
        )

    def extra_repr(self) -> str:
        s = self.spec
        return f"{s.c_in}, {s.c_out}, kernel_size={s.kernel}, groups={s.groups}"


class MetaBlock(nn.Module):
    """m_i: (B, C_in, h, w) [+ signal part phi_i (B, C_phi_i, N_h, N_w)] -> (B, C_out, h, w).

    Args:
        c_in: input channels (reduced F_i + coarser output + 2 positional channels).
        c_out: output channels (the number of classes at the finest level).
        full: inverted residual (pw1, dw, pw2) if True, else a single 1x1 conv.
        expand_ratio: hidden width = expand_ratio * c_in (Table S1: 2).
        dynamic: DPWConvs whose weights come from a weight mapper; False = static convs.

    Attributes:
        num_weights: |theta^{m_i}|, dynamic weights the block needs per patch.
        mapper: its :class:`WeightMapperHead` w_i (after :meth:`attach_mapper`).
    """

    def __init__(self, c_in: int, c_out: int, *, full: bool, expand_ratio: int = 2, dynamic: bool = True):
        super().__init__()
        if full:
            hidden = expand_ratio * c_in
            self.specs = (ConvSpec(c_in, hidden, 1), ConvSpec(hidden, hidden, 3, hidden), ConvSpec(hidden, c_out, 1))
            acts = (nn.ReLU6(inplace=True), nn.ReLU6(inplace=True), nn.Identity())
        else:
            self.specs = (ConvSpec(c_in, c_out, 1),)
            acts = (nn.ReLU(inplace=True),)
        self.c_in, self.c_out, self.full, self.dynamic = c_in, c_out, full, dynamic
        self.residual = full and c_in == c_out
        if dynamic:
            self.convs = nn.ModuleList(DynamicConv2d(s) for s in self.specs)
        else:
            self.convs = nn.ModuleList(
                nn.Conv2d(s.c_in, s.c_out, s.kernel, padding=s.kernel // 2, groups=s.groups, bias=False)
                for s in self.specs
            )
        self.bns = nn.ModuleList(nn.BatchNorm2d(s.c_out) for s in self.specs)
        self.acts = nn.ModuleList(acts)
        self.num_weights = sum(s.num_weights for s in self.specs) if dynamic else 0
        self.mapper: WeightMapperHead | None = None
        self.dpw_backend = "auto"

    def set_dpw_backend(self, backend: str) -> None:
        """Run this block's DPWConvs with ``backend`` (:data:`hsbench.ops.BACKENDS`).

        Raises:
            ValueError: for an unknown name.
        """
        self.dpw_backend = check_backend(backend)
        for conv in self.convs:
            if isinstance(conv, DynamicConv2d):
                conv.dpw_backend = backend

    def attach_mapper(self, signal_channels: int, groups: int) -> None:
        """Create w_i: signal part of ``signal_channels`` channels -> |theta^{m_i}| weights."""
        fan_in = sum(s.c_in // s.groups * s.kernel**2 * s.num_weights for s in self.specs) / self.num_weights
        self.mapper = WeightMapperHead(signal_channels, self.num_weights, groups, fan_in=fan_in)

    def forward(self, x: torch.Tensor, phi: torch.Tensor | None = None) -> torch.Tensor:
        identity = x
        if self.dynamic:
            if self.mapper is None or phi is None:
                raise RuntimeError("a dynamic meta block needs its weight mapper and its signal part phi_i")
            if self.bn_fused:
                return self._forward_bn_fused(x, phi)
            theta = self.mapper(phi)  # (B, |theta^{m_i}|, N_h, N_w)
            b, _, n_h, n_w = theta.shape
            offset = 0
            for spec, conv, bn, act in zip(self.specs, self.convs, self.bns, self.acts):
                w = theta[:, offset : offset + spec.num_weights]
                offset += spec.num_weights
                w = w.reshape(b, spec.c_out, spec.c_in // spec.groups, spec.kernel, spec.kernel, n_h, n_w)
                x = act(bn(conv(x, w)))
        else:
            for conv, bn, act in zip(self.convs, self.bns, self.acts):
                x = act(bn(conv(x)))
        return x + identity if self.residual else x

    @property
    def bn_fused(self) -> bool:
        """Whether :meth:`fuse_bn_` folded the BNs (the block then runs :func:`hsbench.ops.meta_block_conv`)."""
        return all(isinstance(bn, nn.Identity) for bn in self.bns)

    def _forward_bn_fused(self, x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """BN-folded dynamic block as one op: the fused meta block, or one 1x1 DPWConv + ReLU.

        The weight mapper runs on channels-last ``phi`` so that every patch's
        weights are contiguous (the patch-major kernels then read them in place).
        """
        theta = self.mapper(phi.contiguous(memory_format=torch.channels_last))
        b, _, n_h, n_w = theta.shape
        weights, offset = [], 0
        for spec in self.specs:
            w = theta[:, offset : offset + spec.num_weights]
            offset += spec.num_weights
            weights.append(w.reshape(b, spec.c_out, spec.c_in // spec.groups, spec.kernel, spec.kernel, n_h, n_w))
        if self.full:
            return meta_block_conv(
                x,
                *weights,
                tuple(conv.bias for conv in self.convs),
                border=getattr(self, "border", "paper"),
                padding_mode=getattr(self, "padding_mode", "zeros"),
                residual=self.residual,
                backend=self.dpw_backend,
            )
        bias = self.convs[0].bias
        if bias is not None:
            bias = bias.view(1, -1, 1, 1).expand(b, -1, n_h, n_w)
        return self.acts[0](patchwise_conv2d(x, weights[0], bias, backend=self.dpw_backend))

    @torch.no_grad()
    def fuse_bn_(self) -> None:
        """Fold every BN into the layer before it, in place (supplement Sec. E).

        Static convs: theta~ = theta^BN . theta*, b~ = theta^BN . b* + b^BN (Eq. 4).
        DPWConvs: the BN scale multiplies the weight mapper's rows that produce
        that output channel's kernels and the BN shift becomes the layer's
        static bias (Eq. 5). Only valid in eval mode (running statistics).
        """
        for i, (spec, conv, bn) in enumerate(zip(self.specs, self.convs, self.bns)):
            if isinstance(bn, nn.Identity):
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            if self.dynamic:
                start = sum(s.num_weights for s in self.specs[:i])
                per_out = spec.num_weights // spec.c_out
                rows = self.mapper.conv.weight[start : start + spec.num_weights]
                rows.mul_(scale.repeat_interleave(per_out).view(-1, 1, 1, 1))
                conv.bias = shift.detach().clone()
            else:
                w, b = fuse_conv_bn_weights(
                    conv.weight, None, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
                )
                conv.weight = w
                conv.bias = b
            self.bns[i] = nn.Identity()
