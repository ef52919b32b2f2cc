"""The dynamic inverted residual (meta block, paper Sec. 3.2, Fig. 3a) as one op, with both border rules.

A full meta block is ``pw1 (1x1, C_in -> C_hid) -> norm1 -> ReLU6 -> dw (K x K
depth-wise) -> norm2 -> ReLU6 -> pw2 (1x1, C_hid -> C_out) -> norm3`` (+ the
input when ``residual``), every convolution patch-wise: patch ``(i, j)`` of the
``N_h x N_w`` grid uses its own kernels. The only pixels where two readings of
that definition differ are those that the depth-wise kernel reads *across a patch
border* (its halo of ``K // 2`` pixels):

``border="paper"``
    Every op is a DPWConv of the whole map (paper Sec. 3.3, Eq. 8): the dw
    kernel of patch (i, j) reads, across the border, the hidden pixels that the
    *neighbour* computed with the neighbour's own pw1 weights.

``border="release"``
    The authors' released code (``hyperseg_v1_0.py``, ``HyperPatchInvertedResidual``;
    used by camvid-s, camvid-l, cityscapes-m, cityscapes-s): each patch is cut
    out of the input with a ``K // 2``-pixel halo and pw1 -> norm1 -> ReLU6 is
    computed on the whole halo'd window with *the current patch's* weights, so
    the halo holds the neighbour's input pixels transformed by this patch's pw1.

At the image border the map is padded (``padding_mode``): ``"zeros"`` or
``"reflect"`` (the release reflects). Padding is defined on the dw conv's input,
the hidden map, under both rules: with ``"reflect"`` this equals reflecting the
block input (pw1, the norms and ReLU6 act per pixel), which is what the release
does; with ``"zeros"`` the release rule's halo outside the image is zero, as
under the paper rule. So the two rules differ only at patch borders inside the
image.

Two implementations share one signature (and are tested equal, tests/test_meta_block_op.py):

* :func:`meta_block_reference`: a loop over images and patches, ``F.conv2d`` on
  each patch (release) or :func:`~hsbench.ops.patchwise.patchwise_conv2d_reference`
  per op (paper). Slow and obviously correct; other backends test against it.
* :func:`meta_block_torch`: all patches in batched ``torch.bmm`` / grouped
  ``F.conv2d`` calls; what the model runs on CPU and GPU.

Norms: each of ``norms`` is a per-channel map ``(N, C, h, w) -> (N, C, h, w)``
or ``None`` (identity): an ``nn.BatchNorm2d`` (eval or train mode), or a fused
affine (:func:`channel_affine`). The paper rule applies ``norm1`` to the whole
hidden maps ``(B, C_hid, H, W)``; the release rule applies it to the halo'd
patches, in the fast version stacked as ``(B * N_h * N_w, C_hid, L_h + 2p, L_w +
2p)``, so that training-mode batch statistics include the halo as in the
release; the reference applies it patch by patch, which is the same whenever
the norm is a per-channel affine (eval-mode BN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from hsbench.ops.patchwise import (
    patch_bounds,
    patchwise_conv2d_batched,
    patchwise_conv2d_reference,
)

Border = Literal["paper", "release"]
BORDERS: tuple[str, ...] = ("paper", "release")
PADDING_MODES: tuple[str, ...] = ("zeros", "reflect")
Norm = Callable[[torch.Tensor], torch.Tensor]


def channel_affine(x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Per-channel ``x * scale + shift`` for x (N, C, h, w), scale/shift (C,) or None (eval-mode or fused BN)."""
    if scale is not None:
        x = x * scale.view(1, -1, 1, 1)
    if shift is not None:
        x = x + shift.view(1, -1, 1, 1)
    return x


def _norm(norm: Norm | None, x: torch.Tensor) -> torch.Tensor:
    return x if norm is None else norm(x)


def check_meta_block_args(x, w1, w2, w3, norms, *, border, padding_mode, residual) -> int:
    """Validate meta block arguments (see :func:`meta_block_reference`); returns the halo K // 2.

    Raises:
        ValueError: as :func:`meta_block_reference`.
    """
    if border not in BORDERS:
        raise ValueError(f"border={border!r}; allowed: {', '.join(BORDERS)}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode={padding_mode!r}; allowed: {', '.join(PADDING_MODES)}")
    if len(norms) != 3:
        raise ValueError(f"norms must hold 3 entries (after pw1, dw, pw2), got {len(norms)}")
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C_in, H, W), got shape {tuple(x.shape)}")
    if w1.dim() != 7 or w2.dim() != 7 or w3.dim() != 7:
        raise ValueError("w1, w2, w3 must be (B, C_out, C_in / G, K, K, N_h, N_w) weight grids")
    b, c_in, h, w = x.shape
    hid, k = w1.shape[1], w2.shape[3]
    grid = tuple(w1.shape[-2:])
    if tuple(w1.shape) != (b, hid, c_in, 1, 1, *grid):
        raise ValueError(f"w1 must be (B, C_hid, C_in, 1, 1, N_h, N_w) = {(b, hid, c_in, 1, 1, *grid)}, got {tuple(w1.shape)}")
    if k % 2 == 0 or tuple(w2.shape) != (b, hid, 1, k, k, *grid):
        raise ValueError(f"w2 must be a depth-wise odd kernel (B, C_hid, 1, K, K, N_h, N_w) = {(b, hid, 1, k, k, *grid)}, got {tuple(w2.shape)}")
    c_out = w3.shape[1]
    if tuple(w3.shape) != (b, c_out, hid, 1, 1, *grid):
        raise ValueError(f"w3 must be (B, C_out, C_hid, 1, 1, N_h, N_w) = {(b, c_out, hid, 1, 1, *grid)}, got {tuple(w3.shape)}")
    if residual and c_out != c_in:
        raise ValueError(f"residual=True needs C_out == C_in, got {c_out} and {c_in}")
    patch_bounds(h, grid[0])
    patch_bounds(w, grid[1])
    pad = k // 2
    if padding_mode == "reflect" and min(h, w) <= pad:
        raise ValueError(f"reflect padding of {pad} needs a map larger than {pad}x{pad}, got {w}x{h}")
    return pad


def _pad(x: torch.Tensor, pad: int, padding_mode: str) -> torch.Tensor:
    if pad == 0:
        return x
    return F.pad(x, (pad,) * 4) if padding_mode == "zeros" else F.pad(x, (pad,) * 4, mode=padding_mode)


def meta_block_reference(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    norms: Sequence[Norm | None] = (None, None, None),
    *,
    border: Border = "paper",
    padding_mode: Literal["zeros", "reflect"] = "zeros",
    residual: bool = False,
) -> torch.Tensor:
    """Slow reference meta block (paper Fig. 3a) under either border rule (see the module docstring).

    Args:
        x: block input, (B, C_in, H, W).
        w1: pw1 weight grid, (B, C_hid, C_in, 1, 1, N_h, N_w).
        w2: depth-wise weight grid, (B, C_hid, 1, K, K, N_h, N_w), K odd.
        w3: pw2 weight grid, (B, C_out, C_hid, 1, 1, N_h, N_w).
        norms: per-channel maps after pw1, dw and pw2 (``None`` = identity).
        border: ``"paper"`` or ``"release"``.
        padding_mode: image-border padding of the dw conv's input, ``"zeros"`` or ``"reflect"``.
        residual: add ``x`` to the output (needs C_out == C_in).

    Returns:
        (B, C_out, H, W).

    Raises:
        ValueError: on inconsistent shapes, an unknown border or padding mode,
            a grid larger than the map, or a map too small to reflect.
    """
    pad = check_meta_block_args(x, w1, w2, w3, norms, border=border, padding_mode=padding_mode, residual=residual)
    hid = w1.shape[1]
    if border == "paper":
        y = F.relu6(_norm(norms[0], patchwise_conv2d_reference(x, w1)))
        y = F.relu6(_norm(norms[1], patchwise_conv2d_reference(y, w2, padding=pad, groups=hid, padding_mode=padding_mode)))
        y = _norm(norms[2], patchwise_conv2d_reference(y, w3))
        return x + y if residual else y
    b, _, h, w = x.shape
    n_h, n_w = w1.shape[-2:]
    rows, cols = patch_bounds(h, n_h), patch_bounds(w, n_w)
    xp = _pad(x, pad, padding_mode)
    images = []
    for bi in range(b):
        out_rows = []
        for i in range(n_h):
            out_cols = []
            for j in range(n_w):
                r0, r1, c0, c1 = rows[i], rows[i + 1] + 2 * pad, cols[j], cols[j + 1] + 2 * pad
                window = xp[bi : bi + 1, :, r0:r1, c0:c1]  # the patch and its halo
                y = F.relu6(_norm(norms[0], F.conv2d(window, w1[bi, ..., i, j])))
                if padding_mode == "zeros" and pad:
                    inside = torch.zeros_like(y[:1, :1])
                    ri = torch.arange(r0, r1) - pad
                    ci = torch.arange(c0, c1) - pad
                    keep = ((ri >= 0) & (ri < h))[:, None] & ((ci >= 0) & (ci < w))[None, :]
                    inside[0, 0] = keep.to(y.dtype)
                    y = y * inside  # the halo outside the image is zero padding
                y = F.relu6(_norm(norms[1], F.conv2d(y, w2[bi, ..., i, j], groups=hid)))
                y = _norm(norms[2], F.conv2d(y, w3[bi, ..., i, j]))
                out_cols.append(y)
            out_rows.append(torch.cat(out_cols, dim=3))
        images.append(torch.cat(out_rows, dim=2))
    y = torch.cat(images, dim=0)
    return x + y if residual else y


def _axis_index(size: int, n: int, pad: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Cut a padded axis into ``n`` windows of the largest patch length plus a ``pad`` halo.

    Returns ``(in_idx, patch_of, offset_of, length)``: ``in_idx`` (n, length + 2 pad)
    indexes the padded axis (clamped at its end; those outputs are dropped);
    ``patch_of`` / ``offset_of`` (size,) place each output pixel.
    """
    bounds = patch_bounds(size, n)
    starts = torch.tensor(bounds[:-1], device=device)
    length = max(bounds[i + 1] - bounds[i] for i in range(n))
    span = torch.arange(length + 2 * pad, device=device)
    in_idx = (starts[:, None] + span[None, :]).clamp_(max=size + 2 * pad - 1)
    pix = torch.arange(size, device=device)
    patch_of = torch.div(pix * n, size, rounding_mode="floor")
    return in_idx, patch_of, pix - starts[patch_of], length


def _grid_major(weight: torch.Tensor) -> torch.Tensor:
    """(B, C_out, C_in / G, K, K, N_h, N_w) -> (B, N_h, N_w, C_out, C_in / G, K, K)."""
    return weight.permute(0, 5, 6, 1, 2, 3, 4)


def meta_block_torch(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    norms: Sequence[Norm | None] = (None, None, None),
    *,
    border: Border = "paper",
    padding_mode: Literal["zeros", "reflect"] = "zeros",
    residual: bool = False,
) -> torch.Tensor:
    """Batched meta block: same arguments, result and errors as :func:`meta_block_reference`.

    ``x`` (B, C_in, H, W), ``w1`` (B, C_hid, C_in, 1, 1, N_h, N_w), ``w2``
    (B, C_hid, 1, K, K, N_h, N_w), ``w3`` (B, C_out, C_hid, 1, 1, N_h, N_w) ->
    (B, C_out, H, W). Paper rule: three :func:`~hsbench.ops.patchwise.patchwise_conv2d_batched`
    calls. Release rule: gather every patch with its halo from the padded input
    (all cut to the largest patch size), pw1 and pw2 as one ``torch.bmm`` over
    the B * N_h * N_w patches, dw as one grouped ``F.conv2d`` without padding,
    then put the patches back. Its pw1 costs (L_h + 2p)(L_w + 2p) / (L_h L_w)
    times the paper rule's (the halo recompute).
    """
    pad = check_meta_block_args(x, w1, w2, w3, norms, border=border, padding_mode=padding_mode, residual=residual)
    b, c_in, h, w = x.shape
    hid, k = w1.shape[1], w2.shape[3]
    c_out = w3.shape[1]
    n_h, n_w = w1.shape[-2:]
    if border == "paper":
        y = F.relu6(_norm(norms[0], patchwise_conv2d_batched(x, w1)))
        y = F.relu6(_norm(norms[1], patchwise_conv2d_batched(y, w2, padding=pad, groups=hid, padding_mode=padding_mode)))
        y = _norm(norms[2], patchwise_conv2d_batched(y, w3))
        return x + y if residual else y
    n_p = b * n_h * n_w
    xp = _pad(x, pad, padding_mode)
    r_idx, r_patch, r_off, ph = _axis_index(h, n_h, pad, x.device)
    c_idx, c_patch, c_off, pw = _axis_index(w, n_w, pad, x.device)
    lh, lw = ph + 2 * pad, pw + 2 * pad
    # (B, C, N_h, lh, N_w, lw) -> (B, N_h, N_w, C, lh, lw)
    patches = xp[:, :, r_idx][:, :, :, :, c_idx].permute(0, 2, 4, 1, 3, 5).reshape(n_p, c_in, lh * lw)
    y = torch.bmm(_grid_major(w1).reshape(n_p, hid, c_in), patches).view(n_p, hid, lh, lw)
    y = F.relu6(_norm(norms[0], y))
    if padding_mode == "zeros" and pad:
        rows_in = ((r_idx >= pad) & (r_idx < h + pad)).to(y.dtype)  # (N_h, lh)
        cols_in = ((c_idx >= pad) & (c_idx < w + pad)).to(y.dtype)  # (N_w, lw)
        mask = rows_in[:, None, :, None] * cols_in[None, :, None, :]  # (N_h, N_w, lh, lw)
        y = (y.view(b, n_h, n_w, hid, lh, lw) * mask[None, :, :, None]).view(n_p, hid, lh, lw)
    y = F.conv2d(y.reshape(1, n_p * hid, lh, lw), _grid_major(w2).reshape(n_p * hid, 1, k, k), groups=n_p * hid)
    y = F.relu6(_norm(norms[1], y.view(n_p, hid, ph, pw)))
    y = torch.bmm(_grid_major(w3).reshape(n_p, c_out, hid), y.reshape(n_p, hid, ph * pw)).view(n_p, c_out, ph, pw)
    y = _norm(norms[2], y)
    y = y.view(b, n_h, n_w, c_out, ph, pw).permute(0, 3, 1, 4, 2, 5)  # (B, C_out, N_h, ph, N_w, pw)
    if h % n_h == 0 and w % n_w == 0:
        y = y.reshape(b, c_out, h, w)
    else:
        y = y[:, :, r_patch[:, None], r_off[:, None], c_patch[None, :], c_off[None, :]]
    return x + y if residual else y


__all__ = [
    "BORDERS",
    "PADDING_MODES",
    "Border",
    "channel_affine",
    "check_meta_block_args",
    "meta_block_reference",
    "meta_block_torch",
]
