"""The public DPWConv entry points: one signature each, the backend chosen by name.

:func:`patchwise_conv2d` (one DPWConv layer) and :func:`meta_block_conv` (a
BN-folded full meta block) run the backend named by ``backend=`` or
``$HSBENCH_DPW_BACKEND`` (:mod:`hsbench.ops.backends`). Every backend returns
the reference's result (tests/test_ops.py, tests/test_ops_backends.py,
tests/test_triton_kernels.py).
"""

from __future__ import annotations

import torch

from hsbench.ops import patch_major
from hsbench.ops.backends import check_backend, resolve_backend
from hsbench.ops.block import check_block_args, meta_block_reference, relu6
from hsbench.ops.patchwise import (
    check_patchwise_args,
    patch_bounds,
    patchwise_conv2d_batched,
    patchwise_conv2d_reference,
)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def patchwise_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    padding: int = 0,
    groups: int = 1,
    padding_mode: str = "zeros",
    backend: str = "auto",
) -> torch.Tensor:
    """DPWConv (paper Sec. 3.3, Eq. 8): every patch of the grid convolved with its own kernel.

    Args:
        x: input feature map, (B, C_in, H, W).
        weight: the weight grid theta, (B, C_out, C_in // groups, K, K, N_h, N_w).
        bias: per-patch bias, (B, C_out, N_h, N_w), or None.
        padding: padding of the whole map; must be (K - 1) / 2.
        groups: channel groups G (``groups == C_in == C_out`` is depth-wise).
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``.
        backend: ``"auto"``, ``"reference"``, ``"torch"`` or ``"triton"``
            (:mod:`hsbench.ops.backends`). ``"torch"`` runs the patch-major
            inference formulation for 1x1 and 3x3 depth-wise layers with zero
            padding when no gradient is needed, else the batched differentiable one.

    Returns:
        (B, C_out, H, W).

    Raises:
        ValueError: on inconsistent shapes, a grid larger than the map, a
            padding that does not keep the size, or a backend that cannot run here.
    """
    check_backend(backend)
    check_patchwise_args(x, weight, bias, padding, groups, padding_mode)
    needs_grad = _needs_grad(x, weight, bias)
    name = resolve_backend(backend, device_type=x.device.type, needs_grad=needs_grad)
    kw = {"padding": padding, "groups": groups, "padding_mode": padding_mode}
    if name == "reference":
        return patchwise_conv2d_reference(x, weight, bias, **kw)
    k = weight.shape[3]
    if name == "triton":
        if padding_mode != "zeros":
            raise ValueError("DPWConv backend 'triton' supports padding_mode='zeros' only; use 'torch'")
        from hsbench.ops import triton_kernels

        return triton_kernels.patchwise_conv2d(x, weight, bias, groups=groups)
    if not needs_grad:
        if k == 1 and groups == 1:
            return patch_major.pointwise_patch_major(x, weight, bias)
        if k == 3 and groups == x.shape[1] == weight.shape[1] and padding_mode == "zeros":
            return patch_major.depthwise3x3_patch_major(x, weight, bias)
    return patchwise_conv2d_batched(x, weight, bias, **kw)


def meta_block_conv(
    x: torch.Tensor,
    w_pw1: torch.Tensor,
    b_pw1: torch.Tensor | None,
    w_dw: torch.Tensor,
    b_dw: torch.Tensor | None,
    w_pw2: torch.Tensor,
    b_pw2: torch.Tensor | None,
    *,
    border: str = "paper",
    backend: str = "auto",
) -> torch.Tensor:
    """A BN-folded full meta block, pw1 -> ReLU6 -> dw 3x3 -> ReLU6 -> pw2 (paper Sec. 3.2, Fig. 3a).

    No residual: the caller adds it. The two patch-border rules are defined in
    :mod:`hsbench.ops.block`; the CPU formulation in :mod:`hsbench.ops.patch_major`.
    ``"torch"`` uses the differentiable per-op path when a gradient is needed
    (the release rule then runs the reference) and for the paper rule on a grid
    that does not divide the map.

    Args:
        x: (B, C_in, H, W).
        w_pw1: (B, C_h, C_in, 1, 1, N_h, N_w); b_pw1: (B, C_h, N_h, N_w) or None.
        w_dw: (B, C_h, 1, 3, 3, N_h, N_w); b_dw: (B, C_h, N_h, N_w) or None.
        w_pw2: (B, C_out, C_h, 1, 1, N_h, N_w); b_pw2: (B, C_out, N_h, N_w) or None.
        border: ``"paper"`` or ``"release"`` (halo rule at patch borders).
        backend: ``"auto"``, ``"reference"``, ``"torch"`` or ``"triton"``
            (:mod:`hsbench.ops.backends`; ``$HSBENCH_DPW_BACKEND`` replaces ``"auto"``).

    Returns:
        (B, C_out, H, W).

    Raises:
        ValueError: inconsistent shapes, a grid larger than the map, an unknown
            border rule or backend, or a backend that cannot run here.
    """
    check_backend(backend)
    check_block_args(x, w_pw1, b_pw1, w_dw, b_dw, w_pw2, b_pw2, border)
    tensors = (x, w_pw1, b_pw1, w_dw, b_dw, w_pw2, b_pw2)
    needs_grad = _needs_grad(*tensors)
    name = resolve_backend(backend, device_type=x.device.type, needs_grad=needs_grad)
    h, w = x.shape[-2:]
    n_h, n_w = w_pw1.shape[-2:]
    patch_bounds(h, n_h)
    patch_bounds(w, n_w)
    if name == "reference":
        return meta_block_reference(*tensors, border=border)
    if name == "triton":
        from hsbench.ops import triton_kernels

        return triton_kernels.meta_block(*tensors, border=border)
    even = h % n_h == 0 and w % n_w == 0
    if needs_grad or (border == "paper" and not even):
        if border == "release":
            return meta_block_reference(*tensors, border=border)
        c_h = w_pw1.shape[1]
        hid = relu6(patchwise_conv2d_batched(x, w_pw1, b_pw1))
        hid = relu6(patchwise_conv2d_batched(hid, w_dw, b_dw, padding=1, groups=c_h))
        return patchwise_conv2d_batched(hid, w_pw2, b_pw2)
    return patch_major.meta_block_patch_major(*tensors, border)


