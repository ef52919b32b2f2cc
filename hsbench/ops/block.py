"""The meta block as one DPWConv op: its definition, both patch-border rules, the reference.

A full meta block (paper Sec. 3.2, Fig. 3a) with its BNs folded
(supplement Sec. E, :meth:`hsbench.models.meta_block.MetaBlock.fuse_bn_`) is,
per patch ``(i, j)`` of an ``N_h x N_w`` grid::

    h1 = ReLU6(pw1_ij(x) + b1)        1x1 DPWConv, C_in -> C_h
    h2 = ReLU6(dw_ij(h1) + b_dw)      3x3 depth-wise DPWConv, zero padding at the image border
    y  = pw2_ij(h2) + b2              1x1 DPWConv, C_h -> C_out (linear bottleneck)

:func:`hsbench.ops.meta_block_conv` computes this. The 3x3 layer of a patch reads a one-pixel
halo of ``h1`` across the patch border, and the two HyperSeg texts disagree on
what that halo holds (``border=``):

``"paper"``
    Every op is applied to the whole map (paper Sec. 3.3, "we first apply
    padding to the entire input feature map"): the halo pixel is the
    neighbour's ``h1``, computed with the *neighbour's* pw1 weights.
``"release"``
    The authors' release pads ``x`` by one pixel per patch and runs the
    patch's own pw1 over the padded patch: the halo pixel is computed with the
    *current* patch's weights from the neighbour's ``x``. At the image border
    the halo is the 3x3 layer's zero padding, as under the paper's rule.

Implementations: :func:`meta_block_reference` here (slow, obviously correct),
:func:`hsbench.ops.patch_major.meta_block_patch_major` (CPU, PyTorch) and
:mod:`hsbench.ops.triton_kernels` (CUDA); :func:`hsbench.ops.meta_block_conv`
chooses between them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hsbench.ops.patchwise import patch_bounds, patchwise_conv2d_reference

BORDERS = ("paper", "release")


def check_block_args(x, w_pw1, b_pw1, w_dw, b_dw, w_pw2, b_pw2, border: str) -> None:
    """Validate :func:`hsbench.ops.meta_block_conv` arguments.

    Raises:
        ValueError: naming the tensor, the expected and the given shape, or the bad border rule.
    """
    if border not in BORDERS:
        raise ValueError(f"border={border!r}; allowed: {', '.join(BORDERS)}")
    if x.dim() != 4 or w_pw1.dim() != 7 or w_dw.dim() != 7 or w_pw2.dim() != 7:
        raise ValueError("x must be (B, C_in, H, W) and every weight (B, C_out, C_in / G, K, K, N_h, N_w)")
    b, c_in, _, _ = x.shape
    c_h = w_pw1.shape[1]
    grid = tuple(w_pw1.shape[-2:])
    expect = {
        "w_pw1": (w_pw1, (b, c_h, c_in, 1, 1, *grid)),
        "w_dw": (w_dw, (b, c_h, 1, 3, 3, *grid)),
        "w_pw2": (w_pw2, (b, w_pw2.shape[1], c_h, 1, 1, *grid)),
    }
    for name, (t, shape) in expect.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for x {tuple(x.shape)}, got {tuple(t.shape)}")
    for name, t, c in (("b_pw1", b_pw1, c_h), ("b_dw", b_dw, c_h), ("b_pw2", b_pw2, w_pw2.shape[1])):
        if t is not None and tuple(t.shape) != (b, c, *grid):
            raise ValueError(f"{name} must be (B, C, N_h, N_w) = {(b, c, *grid)}, got {tuple(t.shape)}")


def relu6(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(0.0, 6.0)


def meta_block_reference(
    x: torch.Tensor,
    w_pw1: torch.Tensor,
    b_pw1: torch.Tensor | None,
    w_dw: torch.Tensor,
    b_dw: torch.Tensor | None,
    w_pw2: torch.Tensor,
    b_pw2: torch.Tensor | None,
    *,
    border: str = "paper",
) -> torch.Tensor:
    """Slow reference of :func:`meta_block_conv`: loops over patches, one ``F.conv2d`` each.

    ``"paper"`` composes three :func:`~hsbench.ops.patchwise_conv2d_reference`
    calls; ``"release"`` cuts every patch with a one-pixel halo out of the
    zero-padded input, applies the patch's pw1 to all of it, zeroes the halo
    pixels that lie outside the image and runs the patch's 3x3 and pw2 on it.
    Arguments, result and errors as :func:`hsbench.ops.meta_block_conv`.
    """
    check_block_args(x, w_pw1, b_pw1, w_dw, b_dw, w_pw2, b_pw2, border)
    c_h = w_pw1.shape[1]
    if border == "paper":
        h = relu6(patchwise_conv2d_reference(x, w_pw1, b_pw1))
        h = relu6(patchwise_conv2d_reference(h, w_dw, b_dw, padding=1, groups=c_h))
        return patchwise_conv2d_reference(h, w_pw2, b_pw2)
    b, _, height, width = x.shape
    n_h, n_w = w_pw1.shape[-2:]
    rows, cols = patch_bounds(height, n_h), patch_bounds(width, n_w)
    xp = F.pad(x, (1, 1, 1, 1))
    inside = F.pad(torch.ones(1, 1, height, width, dtype=x.dtype, device=x.device), (1, 1, 1, 1))
    out = []
    for bi in range(b):
        out_rows = []
        for i in range(n_h):
            out_cols = []
            for j in range(n_w):
                sl = (slice(rows[i], rows[i + 1] + 2), slice(cols[j], cols[j + 1] + 2))
                patch = xp[bi : bi + 1, :, sl[0], sl[1]]

                b1, bd, b2 = (None if t is None else t[bi, :, i, j] for t in (b_pw1, b_dw, b_pw2))
                h = relu6(F.conv2d(patch, w_pw1[bi, ..., i, j], b1)) * inside[:, :, sl[0], sl[1]]
                h = relu6(F.conv2d(h, w_dw[bi, ..., i, j], bd, groups=c_h))
                out_cols.append(F.conv2d(h, w_pw2[bi, ..., i, j], b2))
            out_rows.append(torch.cat(out_cols, dim=3))
        out.append(torch.cat(out_rows, dim=2))
    return torch.cat(out, dim=0)
