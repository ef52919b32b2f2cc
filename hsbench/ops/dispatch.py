"""The public DPWConv entry points: one signature each, the backend chosen by name.

:func:`patchwise_conv2d` (one DPWConv layer) and :func:`meta_block_conv` (a
BN-folded full meta block) run the backend named by ``backend=`` or
``$HSBENCH_DPW_BACKEND`` (:mod:`hsbench.ops.backends`). Every backend returns
the reference's result (tests/test_ops.py, tests/test_ops_backends.py,
tests/test_triton_kernels.py).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from hsbench.ops import patch_major
from hsbench.ops.backends import check_backend, resolve_backend
from hsbench.ops.meta_block_ref import (
    Border,
    channel_affine,
    check_meta_block_args,
    meta_block_reference,
    meta_block_torch,
)
from hsbench.ops.patchwise import (
    check_patchwise_args,
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


def _shift(bias: torch.Tensor | None):
    return None if bias is None else functools.partial(channel_affine, shift=bias)


def meta_block_conv(
    x: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    w3: torch.Tensor,
    biases: Sequence[torch.Tensor | None] = (None, None, None),
    *,
    border: Border = "paper",
    padding_mode: str = "zeros",
    residual: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """A full meta block with its BNs folded into per-channel biases (paper Fig. 3a, supplement Sec. E).

    ``y = pw2(ReLU6(dw(ReLU6(pw1(x) + b1)) + b2)) + b3`` (+ ``x`` when
    ``residual``), every convolution patch-wise; the border rules and the
    image-border padding are those of :mod:`hsbench.ops.meta_block_ref`, whose
    :func:`~hsbench.ops.meta_block_ref.meta_block_reference` (norms = the
    biases) is the ``"reference"`` backend.

    Args:
        x: (B, C_in, H, W).
        w1: pw1 weight grid, (B, C_hid, C_in, 1, 1, N_h, N_w).
        w2: depth-wise weight grid, (B, C_hid, 1, K, K, N_h, N_w), K odd.
        w3: pw2 weight grid, (B, C_out, C_hid, 1, 1, N_h, N_w).
        biases: per-channel biases after pw1, dw and pw2, (C_hid,), (C_hid,),
            (C_out,), each or None: the folded BN shifts (:meth:`MetaBlock.fuse_bn_`).
        border: ``"paper"`` or ``"release"``.
        padding_mode: ``"zeros"`` or ``"reflect"`` (the dw input at the image border).
        residual: add ``x`` (needs C_out == C_in).
        backend: ``"auto"``, ``"reference"``, ``"torch"`` or ``"triton"``
            (:mod:`hsbench.ops.backends`). ``"torch"`` runs the patch-major
            inference formulation (:mod:`hsbench.ops.patch_major`) for 3x3
            kernels without autograd and the batched, differentiable
            :func:`~hsbench.ops.meta_block_ref.meta_block_torch` otherwise.

    Returns:
        (B, C_out, H, W).

    Raises:
        ValueError: inconsistent shapes, a grid larger than the map, an unknown
            border rule, padding mode or backend, or a backend that cannot run here.
    """
    check_backend(backend)
    if len(biases) != 3:
        raise ValueError(f"biases must hold 3 entries (after pw1, dw, pw2), got {len(biases)}")
    for name, bias, c in zip(("b1", "b2", "b3"), biases, (w1.shape[1], w1.shape[1], w3.shape[1])):
        if bias is not None and tuple(bias.shape) != (c,):
            raise ValueError(f"bias {name} must be per-channel, shape ({c},), got {tuple(bias.shape)}")
    norms = tuple(_shift(b) for b in biases)
    kw = {"border": border, "padding_mode": padding_mode, "residual": residual}
    needs_grad = _needs_grad(x, w1, w2, w3, *biases)
    name = resolve_backend(backend, device_type=x.device.type, needs_grad=needs_grad)
    if name == "reference":
        return meta_block_reference(x, w1, w2, w3, norms, **kw)
    if name == "triton":
        if padding_mode != "zeros" or w2.shape[3] != 3:
            raise ValueError("DPWConv backend 'triton' runs 3x3 meta blocks with zero padding; use 'torch'")
        check_meta_block_args(x, w1, w2, w3, norms, **kw)
        from hsbench.ops import triton_kernels

        return triton_kernels.meta_block(x, w1, w2, w3, biases, border=border, residual=residual)
    h, w = x.shape[-2:]
    n_h, n_w = w1.shape[-2:]
    even = h % n_h == 0 and w % n_w == 0
    if needs_grad or w2.shape[3] != 3 or (border == "paper" and not even):
        return meta_block_torch(x, w1, w2, w3, norms, **kw)
    check_meta_block_args(x, w1, w2, w3, norms, **kw)
    return patch_major.meta_block_patch_major(x, w1, w2, w3, biases, **kw)
