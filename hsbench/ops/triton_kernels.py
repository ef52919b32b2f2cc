"""Triton kernels of DPWConv and of the fused meta block (the ``"triton"`` backend, inference only).

Every kernel works on NCHW tensors of any strides and on patch grids that need
not divide the map (pixel ``y`` belongs to patch row ``floor(y N_h / H)``, paper
Sec. 3.3; the patch starts come in as a small int32 tensor). One program
handles one patch and a block of ``BLOCK_P`` of its pixels, so it loads that
patch's generated weights once.

* :func:`patchwise_conv2d`: any odd K, any groups (a direct convolution, the
  input channel of every output channel gathered per tap); 1x1 layers without
  groups take a ``tl.dot`` kernel instead.
* :func:`meta_block`: pw1 -> bias -> ReLU6 -> dw 3x3 -> bias -> ReLU6 -> pw2 ->
  bias (-> + x). Release rule: one kernel per patch tile that recomputes the
  patch's pw1 on each of the nine shifted input tiles (so the halo is computed
  with the *current* patch's weights) and writes only the block output.
  Paper rule: the pw1 kernel writes ``h1`` for the whole map (halo pixels then
  carry their owner's weights by construction), and one fused kernel does
  dw -> ReLU6 -> pw2 -> bias from it.

Matrix products use ``tl.dot`` with ``input_precision="ieee"`` (no TF32), so
fp32 results match the reference to rounding. On CPU the kernels run under
Triton's interpreter (``TRITON_INTERPRET=1``, set before this module is
imported); tests/test_triton_kernels.py checks them there against the
references on odd shapes, uneven grids, groups and both border rules.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from hsbench.ops.patchwise import patch_bounds

_ACTS = {None: 0, "relu": 1, "relu6": 2}


def _pow2(n: int, floor: int = 16) -> int:
    return max(floor, triton.next_power_of_2(int(n)))


def _starts(size: int, n: int, device) -> torch.Tensor:
    return torch.tensor(patch_bounds(size, n), dtype=torch.int32, device=device)


def _max_patch(size: int, n: int) -> int:
    b = patch_bounds(size, n)
    return max(b[i + 1] - b[i] for i in range(n))


@triton.jit
def _patch_pixels(pid_patch, pid_pix, row_starts, col_starts, N_H: tl.constexpr, N_W: tl.constexpr,
                  BLOCK_P: tl.constexpr):
    """(b, i, j, y, x, mask) of this program's BLOCK_P pixels of patch (b, i, j)."""
    b = pid_patch // (N_H * N_W)
    ij = pid_patch % (N_H * N_W)
    i = ij // N_W
    j = ij % N_W
    r0 = tl.load(row_starts + i)
    r1 = tl.load(row_starts + i + 1)
    c0 = tl.load(col_starts + j)
    c1 = tl.load(col_starts + j + 1)
    pw = c1 - c0
    q = pid_pix * BLOCK_P + tl.arange(0, BLOCK_P)
    mask = q < (r1 - r0) * pw
    y = r0 + q // pw
    x = c0 + q % pw
    return b, i, j, y, x, mask


@triton.jit
def _act(v, ACT: tl.constexpr):
    if ACT == 1:
        v = tl.maximum(v, 0.0)
    elif ACT == 2:
        v = tl.minimum(tl.maximum(v, 0.0), 6.0)
    return v


@triton.jit
def _direct_conv_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr, row_starts, col_starts,
    C_OUT, C_IN_G, C_OUT_G, H, W,
    sxb, sxc, sxh, sxw,
    swb, swo, swi, swkh, swkw, swi_, swj,
    sbb, sbc, sbi, sbj,
    sob, soc, soh, sow,
    N_H: tl.constexpr, N_W: tl.constexpr, K: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_CO: tl.constexpr,
):
    """Any-groups DPWConv: out[p, co] = sum_{ci, tap} x[group(co) C_in_g + ci, p + tap] w_patch[co, ci, tap]."""
    b, i, j, y, x, pmask = _patch_pixels(tl.program_id(0), tl.program_id(1), row_starts, col_starts,
                                        N_H, N_W, BLOCK_P)
    co = tl.program_id(2) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    comask = co < C_OUT
    cin0 = (co // C_OUT_G) * C_IN_G
    acc = tl.zeros((BLOCK_P, BLOCK_CO), dtype=tl.float32)
    wbase = w_ptr + b * swb + i * swi_ + j * swj + co * swo
    for ci in range(C_IN_G):
        for t in tl.static_range(K * K):
            ky = t // K
            kx = t % K
            yy = y + ky - K // 2
            xx = x + kx - K // 2
            inside = pmask & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            xv = tl.load(
                x_ptr + b * sxb + (cin0 + ci)[None, :] * sxc + (yy * sxh + xx * sxw)[:, None],
                mask=inside[:, None] & comask[None, :], other=0.0,
            )
            wv = tl.load(wbase + ci * swi + ky * swkh + kx * swkw, mask=comask, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + b * sbb + co * sbc + i * sbi + j * sbj, mask=comask, other=0.0).to(tl.float32)[None, :]
    acc = _act(acc, ACT)
    o = out_ptr + b * sob + co[None, :] * soc + (y * soh + x * sow)[:, None]
    tl.store(o, acc.to(out_ptr.dtype.element_ty), mask=pmask[:, None] & comask[None, :])


@triton.jit
def _pointwise_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr, row_starts, col_starts,
    C_IN, C_OUT,
    sxb, sxc, sxh, sxw,
    swb, swo, swi, swi_, swj,
    sbb, sbc, sbi, sbj,
    sob, soc, soh, sow,
    N_H: tl.constexpr, N_W: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_CI: tl.constexpr, BLOCK_CO: tl.constexpr,
):
    """1x1 DPWConv: the patch's (C_in, C_out) matrix loaded once, one tl.dot per pixel block."""
    b, i, j, y, x, pmask = _patch_pixels(tl.program_id(0), tl.program_id(1), row_starts, col_starts,
                                        N_H, N_W, BLOCK_P)
    ci = tl.arange(0, BLOCK_CI)
    co = tl.arange(0, BLOCK_CO)
    cimask = ci < C_IN
    comask = co < C_OUT
    xv = tl.load(x_ptr + b * sxb + ci[None, :] * sxc + (y * sxh + x * sxw)[:, None],
                 mask=pmask[:, None] & cimask[None, :], other=0.0)
    wv = tl.load(w_ptr + b * swb + i * swi_ + j * swj + ci[:, None] * swi + co[None, :] * swo,
                 mask=cimask[:, None] & comask[None, :], other=0.0)
    acc = tl.dot(xv.to(tl.float32), wv.to(tl.float32), input_precision="ieee")
    if HAS_BIAS:
        acc += tl.load(b_ptr + b * sbb + co * sbc + i * sbi + j * sbj, mask=comask, other=0.0).to(tl.float32)[None, :]
    acc = _act(acc, ACT)
    o = out_ptr + b * sob + co[None, :] * soc + (y * soh + x * sow)[:, None]
    tl.store(o, acc.to(out_ptr.dtype.element_ty), mask=pmask[:, None] & comask[None, :])


@triton.jit
def _block_tail_kernel(
    h_ptr, x_ptr, w1_ptr, b1_ptr, wd_ptr, bd_ptr, w3_ptr, b3_ptr, out_ptr, row_starts, col_starts,
    C_IN, C_H, C_OUT, H, W,
    shb, shc, shh, shw,
    sxb, sxc, sxh, sxw,
    s1b, s1o, s1i, s1i_, s1j,
    sdb, sdc, sdkh, sdkw, sdi_, sdj,
    s3b, s3o, s3i, s3i_, s3j,
    sob, soc, soh, sow,
    N_H: tl.constexpr, N_W: tl.constexpr, RELEASE: tl.constexpr, RESIDUAL: tl.constexpr,
    HAS_B1: tl.constexpr, HAS_BD: tl.constexpr, HAS_B3: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_CI: tl.constexpr, BLOCK_CH: tl.constexpr, BLOCK_CO: tl.constexpr,
):
    """dw 3x3 -> bias -> ReLU6 -> pw2 -> bias (-> + x) for one patch tile.

    Paper rule: the dw taps read h1 (from the pw1 kernel). Release rule: each
    tap recomputes ReLU6(x_shifted @ W1_patch + b1) with this patch's W1 and
    zero outside the image, so the block reads x and writes out only.
    """
    b, i, j, y, x, pmask = _patch_pixels(tl.program_id(0), tl.program_id(1), row_starts, col_starts,
                                        N_H, N_W, BLOCK_P)
    ch = tl.arange(0, BLOCK_CH)
    chmask = ch < C_H
    co = tl.arange(0, BLOCK_CO)
    comask = co < C_OUT
    ci = tl.arange(0, BLOCK_CI)
    cimask = ci < C_IN
    if RELEASE:
        w1 = tl.load(w1_ptr + b * s1b + i * s1i_ + j * s1j + ci[:, None] * s1i + ch[None, :] * s1o,
                     mask=cimask[:, None] & chmask[None, :], other=0.0).to(tl.float32)
        if HAS_B1:
            b1 = tl.load(b1_ptr + ch, mask=chmask, other=0.0).to(tl.float32)
    acc = tl.zeros((BLOCK_P, BLOCK_CH), dtype=tl.float32)
    for t in tl.static_range(9):
        yy = y + t // 3 - 1
        xx = x + t % 3 - 1
        inside = pmask & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        if RELEASE:
            xv = tl.load(x_ptr + b * sxb + ci[None, :] * sxc + (yy * sxh + xx * sxw)[:, None],
                         mask=inside[:, None] & cimask[None, :], other=0.0).to(tl.float32)
            hv = tl.dot(xv, w1, input_precision="ieee")
            if HAS_B1:
                hv += b1[None, :]
            hv = tl.minimum(tl.maximum(hv, 0.0), 6.0)
            hv = tl.where(inside[:, None], hv, 0.0)
        else:
            hv = tl.load(h_ptr + b * shb + ch[None, :] * shc + (yy * shh + xx * shw)[:, None],
                         mask=inside[:, None] & chmask[None, :], other=0.0).to(tl.float32)
        wt = tl.load(wd_ptr + b * sdb + i * sdi_ + j * sdj + ch * sdc + (t // 3) * sdkh + (t % 3) * sdkw,
                     mask=chmask, other=0.0).to(tl.float32)
        acc += hv * wt[None, :]
    if HAS_BD:
        acc += tl.load(bd_ptr + ch, mask=chmask, other=0.0).to(tl.float32)[None, :]
    acc = tl.minimum(tl.maximum(acc, 0.0), 6.0)
    w3 = tl.load(w3_ptr + b * s3b + i * s3i_ + j * s3j + ch[:, None] * s3i + co[None, :] * s3o,
                 mask=chmask[:, None] & comask[None, :], other=0.0).to(tl.float32)
    out = tl.dot(acc, w3, input_precision="ieee")
    if HAS_B3:
        out += tl.load(b3_ptr + co, mask=comask, other=0.0).to(tl.float32)[None, :]
    if RESIDUAL:
        out += tl.load(x_ptr + b * sxb + co[None, :] * sxc + (y * sxh + x * sxw)[:, None],
                       mask=pmask[:, None] & comask[None, :], other=0.0).to(tl.float32)
    o = out_ptr + b * sob + co[None, :] * soc + (y * soh + x * sow)[:, None]
    tl.store(o, out.to(out_ptr.dtype.element_ty), mask=pmask[:, None] & comask[None, :])


def _grid_strides(w: torch.Tensor) -> tuple[int, ...]:
    """Strides of a (B, C_out, C_in/G, K, K, N_h, N_w) grid as (b, o, i, kh, kw, gi, gj)."""
    return tuple(w.stride())


def _bias_view(bias: torch.Tensor | None, ref: torch.Tensor, b: int, c: int, n_h: int, n_w: int) -> torch.Tensor:
    """A (B, C, N_h, N_w) view of a per-patch or per-channel bias (a dummy tensor when None)."""
    if bias is None:
        return ref.new_zeros(1, 1, 1, 1).expand(b, c, n_h, n_w)
    if bias.dim() == 1:
        return bias.view(1, c, 1, 1).expand(b, c, n_h, n_w)
    return bias


def patchwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    groups: int = 1,
    activation: str | None = None,
    block_p: int = 64,
) -> torch.Tensor:
    """DPWConv with zero 'same' padding: x (B, C_in, H, W), weight (B, C_out, C_in/G, K, K, N_h, N_w).

    ``bias`` (B, C_out, N_h, N_w), (C_out,) or None; ``activation`` None,
    ``"relu"`` or ``"relu6"`` applied after the bias. Returns (B, C_out, H, W),
    contiguous. Arguments are checked by :func:`hsbench.ops.patchwise_conv2d`.
    """
    b, c_in, h, w = x.shape
    _, c_out, c_in_g, k, _, n_h, n_w = weight.shape
    out = torch.empty(b, c_out, h, w, device=x.device, dtype=x.dtype)
    rows, cols = _starts(h, n_h, x.device), _starts(w, n_w, x.device)
    pixels = _max_patch(h, n_h) * _max_patch(w, n_w)
    block_p = min(block_p, _pow2(pixels))
    tiles = triton.cdiv(pixels, block_p)
    bias_v = _bias_view(bias, x, b, c_out, n_h, n_w)
    sw = _grid_strides(weight)
    if k == 1 and groups == 1 and c_in <= 256 and c_out <= 256:
        _pointwise_kernel[(b * n_h * n_w, tiles)](
            x, weight, bias_v, out, rows, cols, c_in, c_out,
            *x.stride(), sw[0], sw[1], sw[2], sw[5], sw[6], *bias_v.stride(), *out.stride(),
            N_H=n_h, N_W=n_w, HAS_BIAS=bias is not None, ACT=_ACTS[activation],
            BLOCK_P=block_p, BLOCK_CI=_pow2(c_in), BLOCK_CO=_pow2(c_out),
        )
        return out
    block_co = min(64, _pow2(c_out, 8))
    _direct_conv_kernel[(b * n_h * n_w, tiles, triton.cdiv(c_out, block_co))](
        x, weight, bias_v, out, rows, cols, c_out, c_in_g, c_out // groups, h, w,
        *x.stride(), *sw, *bias_v.stride(), *out.stride(),
        N_H=n_h, N_W=n_w, K=k, HAS_BIAS=bias is not None, ACT=_ACTS[activation],
        BLOCK_P=block_p, BLOCK_CO=block_co,
    )
    return out


def meta_block(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    biases,
    *,
    border: str = "paper",
    residual: bool = False,
    block_p: int = 32,
) -> torch.Tensor:
    """The fused meta block (see :func:`hsbench.ops.meta_block_conv`), zero padding, 3x3 depth-wise.

    x (B, C_in, H, W); w1 (B, C_h, C_in, 1, 1, N_h, N_w); w2 (B, C_h, 1, 3, 3,
    N_h, N_w); w3 (B, C_out, C_h, 1, 1, N_h, N_w); ``biases`` three per-channel
    tensors or None. Returns (B, C_out, H, W). Arguments are checked by the caller.
    """
    b, c_in, h, w = x.shape
    c_h, c_out = w1.shape[1], w3.shape[1]
    n_h, n_w = w1.shape[-2:]
    b1, bd, b3 = biases
    release = border == "release"
    h1 = x
    if not release:
        h1 = patchwise_conv2d(x, w1, b1, activation="relu6", block_p=block_p)
    out = torch.empty(b, c_out, h, w, device=x.device, dtype=x.dtype)
    rows, cols = _starts(h, n_h, x.device), _starts(w, n_w, x.device)
    pixels = _max_patch(h, n_h) * _max_patch(w, n_w)
    block_p = min(block_p, _pow2(pixels))
    tiles = triton.cdiv(pixels, block_p)
    s1, sd, s3 = _grid_strides(w1), _grid_strides(w2), _grid_strides(w3)
    dummy = x.new_zeros(1)
    _block_tail_kernel[(b * n_h * n_w, tiles)](
        h1, x, w1, dummy if b1 is None else b1, w2, dummy if bd is None else bd, w3, dummy if b3 is None else b3,
        out, rows, cols, c_in, c_h, c_out, h, w,
        *h1.stride(), *x.stride(),
        s1[0], s1[1], s1[2], s1[5], s1[6],
        sd[0], sd[1], sd[3], sd[4], sd[5], sd[6],
        s3[0], s3[1], s3[2], s3[5], s3[6],
        *out.stride(),
        N_H=n_h, N_W=n_w, RELEASE=release, RESIDUAL=residual,
        HAS_B1=b1 is not None, HAS_BD=bd is not None, HAS_B3=b3 is not None,
        BLOCK_P=block_p, BLOCK_CI=_pow2(c_in), BLOCK_CH=_pow2(c_h), BLOCK_CO=_pow2(c_out),
    )
    return out
