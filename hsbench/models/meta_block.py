"""Meta blocks m_i of the decoder (paper Sec. 3.2, Fig. 3a) and the positional encoding P.

A full meta block is MobileNetV2's inverted residual built from dynamic
patch-wise convolutions: pw1 (1x1, C_in -> 2 C_in) -> BN -> ReLU6 -> dw (3x3
depth-wise) -> BN -> ReLU6 -> pw2 (1x1 -> C_out) -> BN (linear bottleneck),
with the residual when C_in == C_out. At levels whose patches are smaller than
8x8 (4x4 in voc-l) the block is a single 1x1 DPWConv -> BN -> ReLU. Each
block's weights theta^{m_i} are produced by its own weight mapper w_i right
before use (Sec. 3.1). With ``dynamic=False`` ("w/o DPWConv", Table 4) every
DPWConv is an ordinary learned convolution of the same shape.

Border rules (:mod:`hsbench.ops.meta_block_ref`): ``border="paper"`` applies
each DPWConv to the whole map; ``border="release"`` is the authors' released
code, whose full blocks recompute pw1 -> BN -> ReLU6 on each patch's halo with
the current patch's weights (:class:`HaloMetaBlockOp`). ``padding_mode`` pads
the image border (``"zeros"``, or ``"reflect"`` as in the release).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from hsbench.models.weight_mapper import WeightMapperHead
from hsbench.ops import check_backend, meta_block_conv, meta_block_torch, patch_bounds, patchwise_conv2d
from hsbench.ops.meta_block_ref import channel_affine


def positional_encoding(h: int, w: int, *, device=None, dtype=None) -> torch.Tensor:
    """P^{H,W} of paper Sec. 3: (1, 2, H, W) with P_{i,j} = ((2i-H+1)/(H-1), (2j-W+1)/(W-1)).

    Channel 0 holds the row coordinate, channel 1 the column coordinate, both
    in [-1, 1]. A side of length 1 gets coordinate 0.
    See :func:`release_coordinates` for the authors' code's order.
    """
    rows = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype) if h > 1 else torch.zeros(1, device=device, dtype=dtype)
    cols = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype) if w > 1 else torch.zeros(1, device=device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"))
    return grid.unsqueeze(0)


def release_coordinates(h: int, w: int, *, device=None, dtype=None) -> torch.Tensor:
    """The release's positional channels: (1, 2, H, W), channel 0 = x (column), channel 1 = y (row).

    ``torch.linspace(-1, 1, n)`` per axis, so a side of length 1 gets -1
    (hyperseg_v1_0.py ``cache_image_coordinates``). The release prepends them
    to each level's input.
    """
    cols = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
    rows = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
    return torch.stack([cols.view(1, w).expand(h, w), rows.view(h, 1).expand(h, w)]).unsqueeze(0)


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
        padding_mode: image-border padding, ``"zeros"`` or ``"reflect"``.
    """

    def __init__(self, spec: ConvSpec, padding_mode: str = "zeros"):
        super().__init__()
        self.spec = spec
        self.padding_mode = padding_mode
        self.dpw_backend = "auto"  # hsbench.ops backend name; HyperSeg.set_dpw_backend sets it
        self.register_buffer("bias", None)

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W), weight (B, C_out, C_in/G, K, K, N_h, N_w) -> (B, C_out, H, W)."""
        bias = None
        if self.bias is not None:
            b, (n_h, n_w) = weight.shape[0], weight.shape[-2:]
            bias = self.bias.view(1, -1, 1, 1).expand(b, -1, n_h, n_w)
        return patchwise_conv2d(
            x, weight, bias, padding=self.spec.kernel // 2, groups=self.spec.groups,
            padding_mode=self.padding_mode, backend=self.dpw_backend,
        )

    def extra_repr(self) -> str:
        s = self.spec
        return f"{s.c_in}, {s.c_out}, kernel_size={s.kernel}, groups={s.groups}"


class HaloMetaBlockOp(nn.Module):
    """The release's border rule for a full meta block: :func:`hsbench.ops.meta_block_torch` with ``border="release"``.

    A module (without parameters) so that complexity counters see it:
    :meth:`macs` counts pw1 on every patch's halo'd window (the halo recompute).

    Args:
        specs: the block's (pw1, dw, pw2) shapes.
        padding_mode: image-border padding (``"reflect"`` in the release).
        residual: add the input (C_in == C_out).
    """

    def __init__(self, specs: tuple[ConvSpec, ...], padding_mode: str, residual: bool):
        super().__init__()
        self.specs, self.padding_mode, self.residual = specs, padding_mode, residual

    def forward(self, x, w1, w2, w3, norms) -> torch.Tensor:
        """x (B, C_in, H, W), w_k (B, C_out_k, C_in_k / G_k, K, K, N_h, N_w), 3 norms -> (B, C_out, H, W)."""
        return meta_block_torch(
            x, w1, w2, w3, norms, border="release", padding_mode=self.padding_mode, residual=self.residual
        )

    def macs(self, x_shape: tuple[int, ...], grid: tuple[int, int]) -> int:
        """MACs of one call: pw1 on sum_{i,j} (h_i + 2p)(w_j + 2p) pixels, dw and pw2 on H x W."""
        b, _, h, w = x_shape
        pw1, dw, pw2 = self.specs
        pad = dw.kernel // 2
        rows, cols = patch_bounds(h, grid[0]), patch_bounds(w, grid[1])
        halo_px = sum(rows[i + 1] - rows[i] + 2 * pad for i in range(grid[0])) * sum(
            cols[j + 1] - cols[j] + 2 * pad for j in range(grid[1])
        )
        return b * (halo_px * pw1.c_out * pw1.c_in + h * w * (dw.c_out * dw.kernel**2 + pw2.c_out * pw2.c_in))


class MetaBlock(nn.Module):
    """m_i: (B, C_in, h, w) [+ signal part phi_i (B, C_phi_i, N_h, N_w)] -> (B, C_out, h, w).

    Args:
        c_in: input channels (reduced F_i + coarser output + 2 positional channels).
        c_out: output channels (the number of classes at the finest level).
        full: inverted residual (pw1, dw, pw2) if True, else a single 1x1 conv.
        expand_ratio: hidden width = expand_ratio * c_in (Table S1: 2).
        dynamic: DPWConvs whose weights come from a weight mapper; False = static convs.
        border: ``"paper"`` or ``"release"`` (module docstring; only full dynamic blocks differ).
        padding_mode: image-border padding, ``"zeros"`` or ``"reflect"``.

    Attributes:
        num_weights: |theta^{m_i}|, dynamic weights the block needs per patch.
        mapper: its :class:`WeightMapperHead` w_i (after :meth:`attach_mapper`).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        full: bool,
        expand_ratio: int = 2,
        dynamic: bool = True,
        border: str = "paper",
        padding_mode: str = "zeros",
    ):
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
            self.convs = nn.ModuleList(DynamicConv2d(s, padding_mode) for s in self.specs)
        else:
            self.convs = nn.ModuleList(
                nn.Conv2d(s.c_in, s.c_out, s.kernel, padding=s.kernel // 2, groups=s.groups, bias=False, padding_mode=padding_mode)
                for s in self.specs
            )
        self.border, self.padding_mode = border, padding_mode
        self.halo_op = HaloMetaBlockOp(self.specs, padding_mode, self.residual) if (full and dynamic and border == "release") else None
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

    def forward(
        self, x: torch.Tensor, phi: torch.Tensor | None = None, *, theta: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, C_in, h, w) and phi_i (B, C_phi_i, N_h, N_w) -> (B, C_out, h, w).

        ``theta`` (B, |theta^{m_i}|, N_h, N_w) gives the block's weights directly
        instead (a weight-mapper layer shared with other blocks, see
        :class:`hsbench.models.hyperseg.HyperSeg`).
        """
        identity = x
        if self.dynamic:
            if theta is None:
                if self.mapper is None or phi is None:
                    raise RuntimeError("a dynamic meta block needs its weight mapper and its signal part phi_i")
                if self.bn_fused:  # channels-last phi: every patch's weights contiguous for the fused kernels
                    phi = phi.contiguous(memory_format=torch.channels_last)
                theta = self.mapper(phi)  # (B, |theta^{m_i}|, N_h, N_w)
            b, _, n_h, n_w = theta.shape
            offset, weights = 0, []
            for spec in self.specs:
                w = theta[:, offset : offset + spec.num_weights]
                offset += spec.num_weights
                weights.append(w.reshape(b, spec.c_out, spec.c_in // spec.groups, spec.kernel, spec.kernel, n_h, n_w))
            if self.bn_fused:
                return self._forward_bn_fused(x, weights)
            if self.halo_op is not None:
                return self.halo_op(x, *weights, self._norms())
            for w, conv, bn, act in zip(weights, self.convs, self.bns, self.acts):
                x = act(bn(conv(x, w)))
        else:
            for conv, bn, act in zip(self.convs, self.bns, self.acts):
                x = act(bn(conv(x)))
        return x + identity if self.residual else x

    def _norms(self) -> list:
        """The norm after each conv: its BN, or after :meth:`fuse_bn_` the static bias."""
        return [
            partial(channel_affine, shift=conv.bias) if isinstance(bn, nn.Identity) and conv.bias is not None else bn
            for conv, bn in zip(self.convs, self.bns)
        ]

    @property
    def bn_fused(self) -> bool:
        """Whether :meth:`fuse_bn_` folded the BNs (the block then runs :func:`hsbench.ops.meta_block_conv`)."""
        return all(isinstance(bn, nn.Identity) for bn in self.bns)

    def _forward_bn_fused(self, x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        """BN-folded dynamic block as one op: the fused meta block, or one 1x1 DPWConv + ReLU.

        ``weights``: the per-conv weight grids (B, C_out, C_in / G, K, K, N_h, N_w).
        """
        b, n_h, n_w = weights[0].shape[0], *weights[0].shape[-2:]
        if self.full:
            return meta_block_conv(
                x,
                *weights,
                tuple(conv.bias for conv in self.convs),
                border=self.border,
                padding_mode=self.padding_mode,
                residual=self.residual,
                backend=self.dpw_backend,
            )
        bias = self.convs[0].bias
        if bias is not None:
            bias = bias.view(1, -1, 1, 1).expand(b, -1, n_h, n_w)
        return self.acts[0](patchwise_conv2d(x, weights[0], bias, backend=self.dpw_backend))

    @torch.no_grad()
    def fuse_bn_(self, mapper_rows: torch.Tensor | None = None) -> None:
        """Fold every BN into the layer before it, in place (supplement Sec. E).

        Static convs: theta~ = theta^BN . theta*, b~ = theta^BN . b* + b^BN (Eq. 4).
        DPWConvs: the BN scale multiplies the weight mapper's rows that produce
        that output channel's kernels and the BN shift becomes the layer's
        static bias (Eq. 5). Only valid in eval mode (running statistics).

        Args:
            mapper_rows: the rows of a shared weight-mapper layer that produce
                this block's weights (|theta^{m_i}|, C, 1, 1), scaled in place;
                default: the block's own mapper.
        """
        rows_all = self.mapper.conv.weight if mapper_rows is None and self.mapper is not None else mapper_rows
        for i, (spec, conv, bn) in enumerate(zip(self.specs, self.convs, self.bns)):
            if isinstance(bn, nn.Identity):
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            if self.dynamic:
                start = sum(s.num_weights for s in self.specs[:i])
                per_out = spec.num_weights // spec.c_out
                rows = rows_all[start : start + spec.num_weights]
                rows.mul_(scale.repeat_interleave(per_out).view(-1, 1, 1, 1))
                conv.bias = shift.detach().clone()
            else:
                w, b = fuse_conv_bn_weights(
                    conv.weight, None, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
                )
                conv.weight = w
                conv.bias = b
            self.bns[i] = nn.Identity()
