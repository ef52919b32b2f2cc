"""Patch-major PyTorch formulations of DPWConv for inference (the ``"torch"`` backend, no autograd).

Measured fastest of the exact formulations tried on CPU (README, "DPWConv backends"):
the input is copied once into a *patch-major* buffer ``(P, h_p, w_p, C_in + 1)``
whose last channel is 1, so pw1 and its bias are one ``torch.bmm`` with the
patch weights ``(P, C_in + 1, C_h)``; ReLU6 writes ``h1`` into a *pixel-major*
halo buffer ``(h_p + 2, w_p + 2, P, C_h)`` (for the paper rule the halo rows and
columns are then copied from the neighbouring patches); the depth-wise 3x3 is
nine fused multiply-adds over that buffer in cache-sized chunks of patches, in
which every patch's kernel is a contiguous ``(P, C_h)`` row; pw2 is one more
``torch.bmm`` on a strided view and its bias is added while the result is put
back into (B, C_out, H, W). ``P = B N_h N_w``. With the weight mapper's output in
channels-last memory (``HyperSeg`` does this) the per-patch weight matrices are
views, not copies.

All functions equal the references of :mod:`hsbench.ops.patchwise` and
:mod:`hsbench.ops.block` (tests/test_ops_backends.py) and write into
preallocated buffers, so they run under ``torch.no_grad`` / ``inference_mode``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hsbench.ops import cpu_kernels
from hsbench.ops.patchwise import patch_gather_index

#: Bytes of the halo buffer one chunk of the depth-wise taps works on (fits L2).
_DW_CHUNK_BYTES = 1 << 19

def _patch_weights(w: torch.Tensor) -> torch.Tensor:
    """(B, C_out, C_in, 1, 1, N_h, N_w) -> (P, C_in, C_out); a view for channels-last weight grids."""
    b, c_out, c_in, _, _, n_h, n_w = w.shape
    return w[:, :, :, 0, 0].permute(0, 3, 4, 2, 1).reshape(b * n_h * n_w, c_in, c_out)


def _patch_bias(bias: torch.Tensor | None, ref: torch.Tensor, c: int) -> torch.Tensor:
    """(B, C, N_h, N_w) -> (P, C); zeros when ``bias`` is None."""
    if bias is None:
        b, n_h, n_w = ref.shape[0], *ref.shape[-2:]
        return ref.new_zeros(b * n_h * n_w, c)
    return bias.permute(0, 2, 3, 1).reshape(-1, c)


def _patch_major(x: torch.Tensor, n_h: int, n_w: int, halo: int, extra_ones: bool, halo_of_padded: int = 0):
    """Copy x (B, C, H, W) into patch-major (B, N_h, N_w, L_h, L_w, C [+ 1]) with a ``halo``-pixel border.

    The border comes from the zero-padded map; ``halo_of_padded`` says that
    ``x`` is already padded by that many pixels (patches are then cut from its
    inner map, each with that halo). With ``extra_ones`` the last channel is 1
    (it carries the next matmul's bias). Returns the buffer and the row /
    column gather info of the inner map (``None`` for an evenly divided axis).
    """
    if halo_of_padded:
        halo = halo_of_padded
        xp = x
        b, c = x.shape[:2]
        h, w = x.shape[2] - 2 * halo, x.shape[3] - 2 * halo
    else:
        b, c, h, w = x.shape
        xp = F.pad(x, (halo,) * 4) if halo else x
    even = h % n_h == 0 and w % n_w == 0
    if even:
        ph, pw = h // n_h, w // n_w
        patches = xp.unfold(2, ph + 2 * halo, ph).unfold(3, pw + 2 * halo, pw)  # (B, C, Nh, Nw, Lh, Lw)
        rinfo = cinfo = None
    else:
        rinfo = patch_gather_index(h, n_h, halo, x.device)
        cinfo = patch_gather_index(w, n_w, halo, x.device)
        patches = xp[:, :, rinfo[0]][:, :, :, :, cinfo[0]].permute(0, 1, 2, 4, 3, 5)
    lh, lw = patches.shape[-2:]
    buf = x.new_empty(b, n_h, n_w, lh, lw, c + int(extra_ones))
    buf[..., :c].copy_(patches.permute(0, 2, 3, 4, 5, 1))
    if extra_ones:
        buf[..., c].fill_(1.0)
    return buf, rinfo, cinfo


def _to_image(y: torch.Tensor, bias: torch.Tensor | None, shape, rinfo, cinfo) -> torch.Tensor:
    """Patch-major y (B, N_h, N_w, L_h, L_w, C) (+ bias (B, C, N_h, N_w)) -> (B, C, H, W)."""
    b, c, h, w = shape
    n_h, n_w = y.shape[1:3]
    yp = y.permute(0, 5, 1, 3, 2, 4)  # (B, C, Nh, Lh, Nw, Lw)
    if rinfo is None:
        out = y.new_empty(b, c, h, w)
        view = out.view(b, c, n_h, h // n_h, n_w, w // n_w)
        if bias is None:
            view.copy_(yp)
        else:
            torch.add(yp, bias.view(b, c, n_h, 1, n_w, 1), out=view)
        return out
    _, r_patch, r_off, _ = rinfo
    _, c_patch, c_off, _ = cinfo
    out = yp[:, :, r_patch[:, None], r_off[:, None], c_patch[None, :], c_off[None, :]]
    if bias is not None:
        out += bias[:, :, r_patch[:, None], c_patch[None, :]]
    return out


def pointwise_patch_major(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """1x1 DPWConv without halo gathering: one ``torch.bmm`` of every patch's pixels with its matrix.

    x (B, C_in, H, W), weight (B, C_out, C_in, 1, 1, N_h, N_w), bias
    (B, C_out, N_h, N_w) or None -> (B, C_out, H, W). Inference only (writes
    into preallocated buffers); equals :func:`~hsbench.ops.patchwise_conv2d_reference`.
    """
    b, c_in, h, w = x.shape
    n_h, n_w = weight.shape[-2:]
    buf, rinfo, cinfo = _patch_major(x, n_h, n_w, 0, extra_ones=False)
    p = b * n_h * n_w
    lh, lw = buf.shape[3:5]
    y = torch.bmm(buf.view(p, lh * lw, c_in), _patch_weights(weight))
    return _to_image(y.view(b, n_h, n_w, lh, lw, -1), bias, (b, weight.shape[1], h, w), rinfo, cinfo)


def _depthwise_taps(hp: torch.Tensor, w_dw: torch.Tensor, b_dw: torch.Tensor, relu6: bool) -> torch.Tensor:
    """3x3 depth-wise conv of pixel-major hp (L_h + 2, L_w + 2, P, C) with per-patch kernels.

    w_dw (9, P, C) taps row-major, b_dw (P, C) or per-channel (C,). Returns (L_h, L_w, P, C),
    ReLU6 applied when ``relu6``. Nine multiply-adds on chunks of patches that
    fit in L2: the fallback where the C kernel (:mod:`hsbench.ops.cpu_kernels`) cannot run.
    """
    lh2, lw2, p, c = hp.shape
    lh, lw = lh2 - 2, lw2 - 2
    out = hp.new_empty(lh, lw, p, c)
    chunk = max(1, _DW_CHUNK_BYTES // (lh2 * lw2 * c * hp.element_size()))
    for s in range(0, p, chunk):
        e = min(p, s + chunk)
        o, src = out[:, :, s:e], hp[:, :, s:e]
        torch.addcmul(b_dw if b_dw.dim() == 1 else b_dw[s:e], src[0:lh, 0:lw], w_dw[0, s:e], out=o)
        for k in range(1, 9):
            dy, dx = divmod(k, 3)
            o.addcmul_(src[dy : dy + lh, dx : dx + lw], w_dw[k, s:e])
        if relu6:
            o.clamp_(0.0, 6.0)
    return out


def _dw_weights_per_patch(w_dw: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, 3, 3, N_h, N_w) -> (P, 9, C) contiguous."""
    c = w_dw.shape[1]
    return w_dw[:, :, 0].permute(0, 4, 5, 2, 3, 1).reshape(-1, 9, c).contiguous()


def _dw_weights(w_dw: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, 3, 3, N_h, N_w) -> (9, P, C) contiguous."""
    c = w_dw.shape[1]
    return w_dw[:, :, 0].permute(2, 3, 0, 4, 5, 1).reshape(9, -1, c).contiguous()


def depthwise3x3_patch_major(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """3x3 depth-wise DPWConv (zero padding) by nine multiply-adds on a pixel-major halo buffer.

    x (B, C, H, W), weight (B, C, 1, 3, 3, N_h, N_w), bias (B, C, N_h, N_w)
    or None -> (B, C, H, W). Inference only; equals the reference.
    """
    b, c, h, w = x.shape
    n_h, n_w = weight.shape[-2:]
    if h % n_h == 0 and w % n_w == 0:
        ph, pw = h // n_h, w // n_w
        xpm = x.reshape(b, c, n_h, ph, n_w, pw).permute(0, 2, 4, 3, 5, 1).reshape(-1, ph, pw, c)
        out = cpu_kernels.depthwise3x3_patches(
            xpm, _dw_weights_per_patch(weight), None, (b, n_h, n_w), own_halo=False, in_relu6=False, out_relu6=False
        )
        if out is not None:
            return _to_image(out.view(b, n_h, n_w, ph, pw, c), bias, (b, c, h, w), None, None)
    buf, rinfo, cinfo = _patch_major(x, n_h, n_w, 1, extra_ones=False)  # (B, Nh, Nw, Lh+2, Lw+2, C)
    lh2, lw2 = buf.shape[3:5]
    hp = buf.view(-1, lh2, lw2, c).permute(1, 2, 0, 3).contiguous()
    out = _depthwise_taps(hp, _dw_weights(weight), _patch_bias(bias, weight, c), relu6=False)
    y = out.view(lh2 - 2, lw2 - 2, b, n_h, n_w, c).permute(2, 3, 4, 0, 1, 5)
    return _to_image(y, None, (b, c, h, w), rinfo, cinfo)


def _fill_paper_halo(hp: torch.Tensor, b: int, n_h: int, n_w: int, padding_mode: str) -> None:
    """Halo of pixel-major hp (ph + 2, pw + 2, P, C) from the neighbouring patches' interiors.

    At the image border: zeros, or the reflection (``padding_mode="reflect"``).
    """
    lh2, lw2, _, c = hp.shape
    ph, pw = lh2 - 2, lw2 - 2
    v = hp.view(lh2, lw2, b, n_h, n_w, c)
    reflect = padding_mode == "reflect"
    # rows first (interior columns), then whole columns, which carries the corners along
    v[0, 1 : pw + 1, :, 1:] = v[ph, 1 : pw + 1, :, :-1]
    v[ph + 1, 1 : pw + 1, :, :-1] = v[1, 1 : pw + 1, :, 1:]
    if reflect:
        v[0, 1 : pw + 1, :, 0] = v[2, 1 : pw + 1, :, 0]
        v[ph + 1, 1 : pw + 1, :, -1] = v[ph - 1, 1 : pw + 1, :, -1]
    else:
        v[0, 1 : pw + 1, :, 0] = 0.0
        v[ph + 1, 1 : pw + 1, :, -1] = 0.0
    v[:, 0, :, :, 1:] = v[:, pw, :, :, :-1]
    v[:, pw + 1, :, :, :-1] = v[:, 1, :, :, 1:]
    if reflect:
        v[:, 0, :, :, 0] = v[:, 2, :, :, 0]
        v[:, pw + 1, :, :, -1] = v[:, pw - 1, :, :, -1]
    else:
        v[:, 0, :, :, 0] = 0.0
        v[:, pw + 1, :, :, -1] = 0.0


def _zero_image_border(hp: torch.Tensor, b: int, n_h: int, n_w: int, rinfo, cinfo, size: tuple[int, int]) -> None:
    """Release rule, zero padding: zero the halo pixels of pixel-major hp (L_h, L_w, P, C) outside the image."""
    lh, lw, _, c = hp.shape
    v = hp.view(lh, lw, b, n_h, n_w, c)
    for axis, info, n, length, full in ((0, rinfo, n_h, lh, size[0]), (1, cinfo, n_w, lw, size[1])):
        if info is None:
            hits = [(0, 0), (n - 1, full // n + 1)]
        else:
            idx = info[0].tolist()
            hits = [(i, t) for i in range(n) for t in range(length) if idx[i][t] in (0, full + 1)]
        for i, t in hits:
            if axis == 0:
                v[t, :, :, i] = 0.0
            else:
                v[:, t, :, :, i] = 0.0


def _meta_block_c(x, w1, w2, w3, biases, *, release: bool, residual: bool) -> torch.Tensor:
    """Even grid, zero padding, float32: bmm -> C depth-wise kernel (halo, ReLU6s, bias) -> bmm."""
    b, c_in, h, w = x.shape
    c_h, c_out = w1.shape[1], w3.shape[1]
    n_h, n_w = w1.shape[-2:]
    p = b * n_h * n_w
    b1, b2, b3 = biases
    xa, _, _ = _patch_major(x, n_h, n_w, int(release), extra_ones=True)
    lh, lw = xa.shape[3:5]
    w1p = _patch_weights(w1)
    w1a = torch.cat([w1p, (w1p.new_zeros(c_h) if b1 is None else b1).expand(p, 1, c_h)], dim=1)
    h1 = torch.bmm(xa.view(p, lh * lw, c_in + 1), w1a).view(p, lh, lw, c_h)  # pw1 + b1, before ReLU6
    h2 = cpu_kernels.depthwise3x3_patches(
        h1, _dw_weights_per_patch(w2), b2, (b, n_h, n_w), own_halo=release, in_relu6=True, out_relu6=True
    )
    ph, pw = h2.shape[1:3]
    y = torch.bmm(h2.view(p, ph * pw, c_h), _patch_weights(w3))
    bias = None if b3 is None else b3.view(1, c_out, 1, 1).expand(b, c_out, n_h, n_w)
    out = _to_image(y.view(b, n_h, n_w, ph, pw, c_out), bias, (b, c_out, h, w), None, None)
    return out.add_(x) if residual else out


def meta_block_patch_major(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    biases,
    *,
    border: str,
    padding_mode: str,
    residual: bool,
) -> torch.Tensor:
    """:func:`hsbench.ops.meta_block_conv` (same arguments, checked by the caller) on patch-major buffers.

    3x3 depth-wise kernels only; ``border="paper"`` needs a grid that divides
    the map, ``"release"`` takes any grid. x (B, C_in, H, W) -> (B, C_out, H, W).
    """
    b, c_in, h, w = x.shape
    c_h, c_out = w1.shape[1], w3.shape[1]
    n_h, n_w = w1.shape[-2:]
    p = b * n_h * n_w
    b1, b2, b3 = biases
    even = h % n_h == 0 and w % n_w == 0
    if even and padding_mode == "zeros" and cpu_kernels.available() and x.dtype == torch.float32:
        return _meta_block_c(x, w1, w2, w3, biases, release=border == "release", residual=residual)
    if border == "release":
        xin = F.pad(x, (1,) * 4, mode="reflect") if padding_mode == "reflect" else F.pad(x, (1,) * 4)
        xa, rinfo, cinfo = _patch_major(xin, n_h, n_w, 0, extra_ones=True, halo_of_padded=1)
    else:
        xa, rinfo, cinfo = _patch_major(x, n_h, n_w, 0, extra_ones=True)
    lh, lw = xa.shape[3:5]
    w1p = _patch_weights(w1)  # (P, C_in, C_h)
    w1a = torch.cat([w1p, (w1p.new_zeros(c_h) if b1 is None else b1).expand(p, 1, c_h)], dim=1)
    h1 = torch.bmm(xa.view(p, lh * lw, c_in + 1), w1a).view(p, lh, lw, c_h).permute(1, 2, 0, 3)
    if border == "paper":
        hp = x.new_empty(lh + 2, lw + 2, p, c_h)
        torch.clamp(h1, 0.0, 6.0, out=hp[1:-1, 1:-1])
        _fill_paper_halo(hp, b, n_h, n_w, padding_mode)
    else:
        hp = x.new_empty(lh, lw, p, c_h)
        torch.clamp(h1, 0.0, 6.0, out=hp)
        if padding_mode == "zeros":
            _zero_image_border(hp, b, n_h, n_w, rinfo, cinfo, (h, w))
    bd = w2.new_zeros(c_h) if b2 is None else b2
    h2 = _depthwise_taps(hp, _dw_weights(w2), bd, relu6=True)
    oh, ow = h2.shape[:2]
    y = torch.bmm(h2.view(oh * ow, p, c_h).transpose(0, 1), _patch_weights(w3))  # (P, oh * ow, C_out)
    bias = None if b3 is None else b3.view(1, c_out, 1, 1).expand(b, c_out, n_h, n_w)
    out = _to_image(y.view(b, n_h, n_w, oh, ow, c_out), bias, (b, c_out, h, w), rinfo, cinfo)
    return out.add_(x) if residual else out
