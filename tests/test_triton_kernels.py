"""Triton kernels (the "triton" DPWConv backend) equal the references, run on CPU by Triton's interpreter.

``TRITON_INTERPRET=1`` must be set before Triton compiles the kernels (at
import of :mod:`hsbench.ops.triton_kernels`), so this module sets it first;
on a CUDA machine the same tests also run on the GPU. Shapes are small (the
interpreter executes every program in Python): odd channel counts, grids that
do not divide the map, 1-pixel patches, batch 2, groups, both border rules.
"""

import functools
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

triton = pytest.importorskip("triton")

from hsbench.ops import (
    channel_affine,
    meta_block_conv,
    meta_block_reference,
    patchwise_conv2d,
    patchwise_conv2d_reference,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
if os.environ.get("TRITON_INTERPRET") != "1":
    DEVICES = [d for d in DEVICES if d == "cuda"]
pytestmark = pytest.mark.skipif(not DEVICES, reason="needs TRITON_INTERPRET=1 or a CUDA device")
ATOL = RTOL = 1e-4  # fp32 kernels against the fp32 reference

LAYERS = [  # (C_in, C_out, K, groups), (H, W), (N_h, N_w)
    ((5, 7, 1, 1), (9, 11), (2, 3)),  # pointwise (tl.dot), uneven grid
    ((6, 6, 3, 6), (9, 11), (2, 3)),  # depth-wise
    ((6, 4, 3, 2), (8, 8), (2, 2)),  # 2 groups
    ((3, 5, 3, 1), (3, 4), (3, 4)),  # dense 3x3, 1-pixel patches
    ((4, 6, 1, 2), (6, 7), (1, 1)),  # grouped 1x1, one patch
]


def _t(*shape, gen):
    return torch.randn(*shape, generator=gen)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("spec,size,grid", LAYERS)
def test_patchwise_conv2d_equals_reference(device, spec, size, grid):
    c_in, c_out, k, g = spec
    gen = torch.Generator().manual_seed(0)
    x = _t(2, c_in, *size, gen=gen)
    w = _t(2, c_out, c_in // g, k, k, *grid, gen=gen)
    bias = _t(2, c_out, *grid, gen=gen)
    ref = patchwise_conv2d_reference(x, w, bias, padding=k // 2, groups=g)
    got = patchwise_conv2d(x.to(device), w.to(device), bias.to(device), padding=k // 2, groups=g, backend="triton")
    torch.testing.assert_close(got.cpu(), ref, atol=ATOL, rtol=RTOL)
    # a channels-last weight grid (what the weight mapper gives the model) and no bias
    w_cl = w.permute(0, 5, 6, 1, 2, 3, 4).contiguous().permute(0, 3, 4, 5, 6, 1, 2)
    got = patchwise_conv2d(x.to(device), w_cl.to(device), padding=k // 2, groups=g, backend="triton")
    torch.testing.assert_close(got.cpu(), patchwise_conv2d_reference(x, w, padding=k // 2, groups=g),
                               atol=ATOL, rtol=RTOL)


BLOCKS = [  # C_in, C_h, C_out, (H, W), (N_h, N_w), residual
    (5, 10, 3, (9, 11), (2, 3), False),  # uneven grid
    (4, 8, 4, (8, 8), (2, 2), True),  # residual
    (3, 6, 5, (3, 4), (3, 4), False),  # 1-pixel patches: every dw tap is a halo pixel
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("border", ["paper", "release"])
@pytest.mark.parametrize("c_in,c_h,c_out,size,grid,residual", BLOCKS)
def test_meta_block_equals_reference(device, border, c_in, c_h, c_out, size, grid, residual):
    gen = torch.Generator().manual_seed(1)
    x = _t(2, c_in, *size, gen=gen)
    w1 = _t(2, c_h, c_in, 1, 1, *grid, gen=gen)
    w2 = _t(2, c_h, 1, 3, 3, *grid, gen=gen)
    w3 = _t(2, c_out, c_h, 1, 1, *grid, gen=gen)
    biases = [_t(c, gen=gen) for c in (c_h, c_h, c_out)]
    norms = [functools.partial(channel_affine, shift=b) for b in biases]
    ref = meta_block_reference(x, w1, w2, w3, norms, border=border, residual=residual)
    dev = [t.to(device) for t in (x, w1, w2, w3)]
    got = meta_block_conv(*dev, [b.to(device) for b in biases], border=border, residual=residual, backend="triton")
    torch.testing.assert_close(got.cpu(), ref, atol=ATOL, rtol=RTOL)
    if border == "release":  # the rules differ, and the kernel follows the one asked for
        other = meta_block_reference(x, w1, w2, w3, norms, border="paper", residual=residual)
        assert (other - ref).abs().max() > 1e-3


def test_triton_refuses_what_it_does_not_implement():
    x = torch.randn(1, 2, 4, 4)
    w = torch.randn(1, 2, 1, 3, 3, 2, 2)
    with pytest.raises(ValueError, match="padding_mode"):
        patchwise_conv2d(x, w, padding=1, groups=2, padding_mode="reflect", backend="triton")
    with pytest.raises(ValueError, match="backward"):
        patchwise_conv2d(x, w.requires_grad_(), padding=1, groups=2, backend="triton")
