"""The meta block op under the paper's and the release's border rules (hsbench.ops.meta_block_ref)."""

from __future__ import annotations

import functools

import pytest
import torch

from hsbench.ops import meta_block_reference, meta_block_torch
from hsbench.ops.meta_block_ref import channel_affine
from hsbench.ops.patchwise import patch_bounds


def _weights(b, c_in, hid, c_out, k, grid, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    n_h, n_w = grid
    w1 = torch.randn(b, hid, c_in, 1, 1, n_h, n_w, generator=g, dtype=dtype) / c_in**0.5
    w2 = torch.randn(b, hid, 1, k, k, n_h, n_w, generator=g, dtype=dtype) / k
    w3 = torch.randn(b, c_out, hid, 1, 1, n_h, n_w, generator=g, dtype=dtype) / hid**0.5
    return w1, w2, w3


def _norms(hid, c_out, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in (hid, hid, c_out):
        scale = 1 + 0.3 * torch.randn(c, generator=g, dtype=dtype)
        shift = 0.5 * torch.randn(c, generator=g, dtype=dtype)
        out.append(functools.partial(channel_affine, scale=scale, shift=shift))
    return out


CASES = [
    # (size H x W, grid, k, residual)
    ((8, 12), (2, 3), 3, False),
    ((16, 16), (4, 4), 3, True),
    ((10, 13), (3, 4), 3, False),  # uneven patches
    ((9, 9), (2, 2), 5, True),
]


@pytest.mark.parametrize("border", ["paper", "release"])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
@pytest.mark.parametrize("size,grid,k,residual", CASES)
def test_fast_equals_reference_with_gradients(border, padding_mode, size, grid, k, residual):
    b, c_in, hid = 2, 4, 8
    c_out = c_in if residual else 3
    x = torch.randn(b, c_in, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_()
    ws = [w.requires_grad_() for w in _weights(b, c_in, hid, c_out, k, grid)]
    norms = _norms(hid, c_out)
    kw = {"border": border, "padding_mode": padding_mode, "residual": residual}
    ref = meta_block_reference(x, *ws, norms, **kw)
    fast = meta_block_torch(x, *ws, norms, **kw)
    assert fast.shape == (b, c_out, *size)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
    g_ref = torch.autograd.grad(ref.square().sum(), [x, *ws])
    g_fast = torch.autograd.grad(fast.square().sum(), [x, *ws])
    for a, r in zip(g_fast, g_ref):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_release_patch_equals_whole_map_with_that_patchs_weights(padding_mode):
    """Release rule: patch (i, j) equals the block run on the whole map with (i, j)'s weights everywhere."""
    b, c_in, hid, c_out, k, grid, size = 1, 3, 6, 2, 3, (3, 2), (11, 8)
    x = torch.randn(b, c_in, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    w1, w2, w3 = _weights(b, c_in, hid, c_out, k, grid, seed=3)
    norms = _norms(hid, c_out, seed=4)
    out = meta_block_reference(x, w1, w2, w3, norms, border="release", padding_mode=padding_mode)
    rows, cols = patch_bounds(size[0], grid[0]), patch_bounds(size[1], grid[1])
    for i in range(grid[0]):
        for j in range(grid[1]):
            uniform = [w[..., i : i + 1, j : j + 1] for w in (w1, w2, w3)]
            whole = meta_block_reference(x, *uniform, norms, border="paper", padding_mode=padding_mode)
            region = (slice(None), slice(None), slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1]))
            torch.testing.assert_close(out[region], whole[region], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_rules_agree_on_one_patch_and_differ_only_at_patch_borders(padding_mode):
    b, c_in, hid, c_out = 1, 4, 8, 4
    x = torch.randn(b, c_in, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    one = _weights(b, c_in, hid, c_out, 3, (1, 1), seed=5)
    kw = {"padding_mode": padding_mode, "residual": True}
    torch.testing.assert_close(
        meta_block_torch(x, *one, border="release", **kw), meta_block_torch(x, *one, border="paper", **kw)
    )
    grid = _weights(b, c_in, hid, c_out, 3, (3, 3), seed=6)
    diff = (meta_block_torch(x, *grid, border="release", **kw) - meta_block_torch(x, *grid, border="paper", **kw)).abs()
    border_px = torch.zeros(12, 12, dtype=torch.bool)
    for edge in (3, 4, 7, 8):  # the rows/cols on both sides of the patch borders at 4 and 8
        border_px[edge, :] = True
        border_px[:, edge] = True
    per_pixel = diff.amax(dim=1)[0]
    assert per_pixel[~border_px].max() < 1e-12
    for edge in (3, 4, 7, 8):  # each side of every patch border differs
        assert per_pixel[edge, :].max() > 1e-3 and per_pixel[:, edge].max() > 1e-3


def test_reflect_equals_reflected_input_on_one_patch():
    """With reflect padding the block equals one unpadded conv stack on the reflected input (the release's order)."""
    b, c_in, hid, c_out = 1, 3, 6, 2
    x = torch.randn(b, c_in, 7, 9, dtype=torch.float64)
    w1, w2, w3 = _weights(b, c_in, hid, c_out, 3, (1, 1), seed=7)
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    y = torch.nn.functional.conv2d(xp, w1[0, ..., 0, 0]).clamp(0, 6)
    y = torch.nn.functional.conv2d(y, w2[0, ..., 0, 0], groups=hid).clamp(0, 6)
    expected = torch.nn.functional.conv2d(y, w3[0, ..., 0, 0])
    out = meta_block_reference(x, w1, w2, w3, border="release", padding_mode="reflect")
    torch.testing.assert_close(out, expected)


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(1, 4, 8, 8)
    w1, w2, w3 = _weights(1, 4, 8, 3, 3, (2, 2), dtype=torch.float32)
    with pytest.raises(ValueError, match="border="):
        meta_block_reference(x, w1, w2, w3, border="tf")
    with pytest.raises(ValueError, match="residual"):
        meta_block_torch(x, w1, w2, w3, residual=True)
    with pytest.raises(ValueError, match="padding_mode"):
        meta_block_torch(x, w1, w2, w3, padding_mode="circular")
    with pytest.raises(ValueError, match="w1 must be"):
        meta_block_torch(x[:, :3], w1, w2, w3)
