"""Dynamic patch-wise convolution (DPWConv), paper Sec. 3.3, Eq. 8, Fig. 3(b).

The image is split into an ``N_h x N_w`` grid of patches and every patch is
convolved with its own kernel, taken from a grid of weights
``theta in R^{C_out x C_in/G x K_h x K_w x N_h x N_w}`` (per image, so the tensor
carries a batch dimension in front). Following the paper, the whole feature map
is padded once and each patch's kernel window then reads the *neighbouring
patches' pixels* across patch borders ("we first apply padding to the entire
input feature map, X, and then at each patch, X_{i,j}, we wrap the adjacent
pixels from neighboring patches").

Patch assignment: pixel row ``y`` of an ``H``-row map belongs to patch row
``floor(y * N_h / H)`` (columns alike), so sizes that the grid does not divide
work; the patch sizes then differ by at most one pixel.

Two implementations share one signature:

* :func:`patchwise_conv2d_reference`: a loop over images and patches, one
  ``F.conv2d`` per padded patch. Slow and obviously correct.
* :func:`patchwise_conv2d_batched`: gathers every patch with its halo into one
  tensor and runs a single grouped convolution (or one batched matmul for 1x1
  kernels), then scatters the patches back. Differentiable: the ``"torch"``
  backend's training path. Tested equal to the reference, gradients included
  (tests/test_ops.py).

:func:`hsbench.ops.patchwise_conv2d` chooses among these, the patch-major
inference formulations (:mod:`hsbench.ops.patch_major`) and the Triton kernels
(:mod:`hsbench.ops.triton_kernels`) by its ``backend`` argument.

Meta blocks built from these ops read, at patch borders, neighbour pixels that
the *neighbour's own* ``pw1`` produced: each op is applied to the whole map.
The authors' later release instead applies ``pw1`` to a one-pixel halo with the
current patch's weights, which differs on every patch-border pixel; both rules
are implemented by the fused meta block op (:mod:`hsbench.ops.block`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def patch_bounds(size: int, n: int) -> list[int]:
    """Start offsets of ``n`` patches along an axis of ``size`` pixels, plus ``size``.

    Pixel ``y`` belongs to patch ``floor(y * n / size)``, so patch ``i`` spans
    ``[ceil(i * size / n), ceil((i + 1) * size / n))``.

    Raises:
        ValueError: if ``n < 1`` or ``n > size`` (a patch would be empty).
    """
    if n < 1 or n > size:
        raise ValueError(
            f"a grid of {n} patches does not fit an axis of {size} pixels; "
            f"use between 1 and {size} patches"
        )
    return [-(-i * size // n) for i in range(n + 1)]


def check_patchwise_args(x: torch.Tensor, weight: torch.Tensor, bias, padding: int, groups: int, padding_mode: str) -> None:
    """Validate the arguments of a DPWConv call (see :func:`patchwise_conv2d_reference`).

    Raises:
        ValueError: naming the inconsistent shape or value and what is allowed.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C_in, H, W), got shape {tuple(x.shape)}")
    if weight.dim() != 7:
        raise ValueError(
            "weight must be (B, C_out, C_in // groups, K_h, K_w, N_h, N_w), "
            f"got shape {tuple(weight.shape)}"
        )
    b, c_in, h, w = x.shape
    wb, c_out, c_in_g, k_h, k_w, n_h, n_w = weight.shape
    if wb != b:
        raise ValueError(f"weight batch {wb} != input batch {b}")
    if groups < 1 or c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide C_in={c_in} and C_out={c_out}")
    if c_in_g * groups != c_in:
        raise ValueError(f"weight has {c_in_g} input channels per group; expected C_in / groups = {c_in // groups}")
    if k_h != k_w or k_h % 2 == 0 or 2 * padding != k_h - 1:
        raise ValueError(
            f"only odd square kernels with 'same' padding are supported: kernel {k_h}x{k_w} "
            f"needs padding={(k_h - 1) // 2}, got {padding}"
        )
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode={padding_mode!r}; allowed: {_PADDING_MODES}")
    if bias is not None and tuple(bias.shape) != (b, c_out, n_h, n_w):
        raise ValueError(f"bias must be (B, C_out, N_h, N_w) = {(b, c_out, n_h, n_w)}, got {tuple(bias.shape)}")
    patch_bounds(h, n_h)
    patch_bounds(w, n_w)


def _pad(x: torch.Tensor, padding: int, padding_mode: str) -> torch.Tensor:
    if padding == 0:
        return x
    if padding_mode == "zeros":
        return F.pad(x, (padding,) * 4)
    return F.pad(x, (padding,) * 4, mode=padding_mode)


def patchwise_conv2d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    padding: int = 0,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Slow reference DPWConv: one ``F.conv2d`` per image and patch (paper Eq. 8).

    Args:
        x: input feature map, (B, C_in, H, W).
        weight: the weight grid theta, (B, C_out, C_in // groups, K, K, N_h, N_w).
        bias: per-patch bias, (B, C_out, N_h, N_w), or None.
        padding: zero/reflect/... padding of the whole map; must be (K - 1) / 2.
        groups: channel groups G (``groups == C_in == C_out`` is depth-wise).
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.

    Returns:
        (B, C_out, H, W).

    Raises:
        ValueError: on inconsistent shapes, a grid larger than the map, or a
            padding that does not keep the size.
    """
    check_patchwise_args(x, weight, bias, padding, groups, padding_mode)
    b, _, h, w = x.shape
    n_h, n_w = weight.shape[-2:]
    rows, cols = patch_bounds(h, n_h), patch_bounds(w, n_w)
    xp = _pad(x, padding, padding_mode)
    images = []
    for bi in range(b):
        out_rows = []
        for i in range(n_h):
            out_cols = []
            for j in range(n_w):
                patch = xp[bi : bi + 1, :, rows[i] : rows[i + 1] + 2 * padding, cols[j] : cols[j + 1] + 2 * padding]
                out_cols.append(
                    F.conv2d(
                        patch,
                        weight[bi, ..., i, j],
                        None if bias is None else bias[bi, :, i, j],
                        groups=groups,
                    )
                )
            out_rows.append(torch.cat(out_cols, dim=3))
        images.append(torch.cat(out_rows, dim=2))
    return torch.cat(images, dim=0)


def patch_gather_index(size: int, n: int, halo: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Indices that cut an axis into ``n`` patches of equal (maximal) length (the DPWConv gather).

    Returns ``(in_idx, patch_of, offset_of, length)``: ``in_idx`` (n, length +
    2 * halo) reads each patch and its halo from the padded axis (clamped past
    the end: those outputs are discarded); ``patch_of``/``offset_of`` (size,)
    map every output pixel to its patch and its offset inside it.
    """
    bounds = patch_bounds(size, n)
    starts = torch.tensor(bounds[:-1], device=device)
    length = max(bounds[i + 1] - bounds[i] for i in range(n))
    span = torch.arange(length + 2 * halo, device=device)
    in_idx = (starts[:, None] + span[None, :]).clamp_(max=size + 2 * halo - 1)
    pix = torch.arange(size, device=device)
    patch_of = torch.div(pix * n, size, rounding_mode="floor")
    offset_of = pix - starts[patch_of]
    return in_idx, patch_of, offset_of, length


def patchwise_conv2d_batched(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    padding: int = 0,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Batched, differentiable DPWConv (paper Sec. 3.3, Eq. 8): all patches in one call.

    Same arguments, result and errors as :func:`patchwise_conv2d_reference`:
    ``x`` (B, C_in, H, W), ``weight`` (B, C_out, C_in // groups, K, K, N_h, N_w),
    ``bias`` (B, C_out, N_h, N_w) or None; returns (B, C_out, H, W).

    Method: pad the whole map once; cut it into the N_h x N_w patches with
    their ``padding``-pixel halo (a strided view when the grid divides the map,
    an index gather otherwise, with every patch cut to the largest patch size);
    run one grouped ``F.conv2d`` over (1, B * N_h * N_w * C_in, ...) with
    ``B * N_h * N_w * groups`` groups, or one ``torch.bmm`` for 1x1 kernels
    without groups; put the patches back (a reshape, or an index gather that
    drops the rows and columns computed past a shorter patch's end).
    """
    check_patchwise_args(x, weight, bias, padding, groups, padding_mode)
    b, c_in, h, w = x.shape
    _, c_out, c_in_g, k, _, n_h, n_w = weight.shape
    n_p = b * n_h * n_w
    xp = _pad(x, padding, padding_mode)
    even = h % n_h == 0 and w % n_w == 0
    if even:
        ph, pw = h // n_h, w // n_w
        # (B, C, N_h, N_w, ph + 2p, pw + 2p), a view of the padded map
        patches = xp.unfold(2, ph + 2 * padding, ph).unfold(3, pw + 2 * padding, pw)
    else:
        r_idx, r_patch, r_off, ph = patch_gather_index(h, n_h, padding, x.device)
        c_idx, c_patch, c_off, pw = patch_gather_index(w, n_w, padding, x.device)
        patches = xp[:, :, r_idx][:, :, :, :, c_idx]  # (B, C, N_h, Lh, N_w, Lw)
        patches = patches.permute(0, 1, 2, 4, 3, 5)
    # -> (B, N_h, N_w, C_in, Lh, Lw)
    patches = patches.permute(0, 2, 3, 1, 4, 5)
    lh, lw = patches.shape[-2:]
    # weight -> (B, N_h, N_w, C_out, C_in/G, K, K)
    wp = weight.permute(0, 5, 6, 1, 2, 3, 4)
    if k == 1 and groups == 1:
        out = torch.bmm(wp.reshape(n_p, c_out, c_in), patches.reshape(n_p, c_in, lh * lw))
    else:
        out = F.conv2d(
            patches.reshape(1, n_p * c_in, lh, lw),
            wp.reshape(n_p * c_out, c_in_g, k, k),
            groups=n_p * groups,
        )
    out = out.view(b, n_h, n_w, c_out, ph, pw)
    if bias is not None:
        out = out + bias.permute(0, 2, 3, 1)[..., None, None]
    out = out.permute(0, 3, 1, 4, 2, 5)  # (B, C_out, N_h, ph, N_w, pw)
    if even:
        return out.reshape(b, c_out, h, w)
    return out[:, :, r_patch[:, None], r_off[:, None], c_patch[None, :], c_off[None, :]]
