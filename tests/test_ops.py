"""DPWConv: the fast op equals the slow reference (paper Sec. 3.3, Eq. 8), gradients included."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from hsbench.ops import patch_bounds, patchwise_conv2d, patchwise_conv2d_reference

torch.set_num_threads(1)

SIZES = [(16, 16), (18, 13)]  # divisible by every grid below / not divisible
GRIDS = [1, 2, 4, 8, 16]


def _inputs(b, c_in, c_out, k, groups, size, grid, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    n_h, n_w = min(grid, h), min(grid, w)
    x = torch.randn(b, c_in, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(b, c_out, c_in // groups, k, k, n_h, n_w, generator=g, dtype=torch.float64)
    bi = torch.randn(b, c_out, n_h, n_w, generator=g, dtype=torch.float64) if bias else None
    return x, weight, bi


@pytest.mark.parametrize(
    "grid,k,groups,size",
    list(itertools.product(GRIDS, [1, 3], ["one", "depthwise"], SIZES)),
)
def test_fast_equals_reference_with_gradients(grid, k, groups, size):
    c_in = 4
    c_out = 4 if groups == "depthwise" else 3
    g = c_in if groups == "depthwise" else 1
    x, weight, bias = _inputs(2, c_in, c_out, k, g, size, grid)
    x32, w32, b32 = (t.float().requires_grad_() for t in (x, weight, bias))
    xr, wr, br = (t.float().detach().clone().requires_grad_() for t in (x, weight, bias))
    pad = k // 2
    fast = patchwise_conv2d(x32, w32, b32, padding=pad, groups=g)
    ref = patchwise_conv2d_reference(xr, wr, br, padding=pad, groups=g)
    assert fast.shape == (2, c_out, *size)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(fast)
    (fast * upstream).sum().backward()
    (ref * upstream).sum().backward()
    for a, r in ((x32, xr), (w32, wr), (b32, br)):
        torch.testing.assert_close(a.grad, r.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k,groups,mode", [(1, 1, "zeros"), (3, 1, "zeros"), (3, 4, "zeros"), (3, 1, "reflect")])
def test_one_patch_equals_conv2d(k, groups, mode):
    x, weight, bias = _inputs(2, 4, 4, k, groups, (11, 9), 1)
    out = patchwise_conv2d(x, weight, bias, padding=k // 2, groups=groups, padding_mode=mode)
    xp = F.pad(x, (k // 2,) * 4, mode="constant" if mode == "zeros" else mode)
    for b in range(2):
        expected = F.conv2d(xp[b : b + 1], weight[b, ..., 0, 0], bias[b, :, 0, 0], groups=groups)
        torch.testing.assert_close(out[b : b + 1], expected)


def test_kernel_reads_neighbour_patch_pixels():
    """A 3x3 kernel at a patch border sees the neighbour's pixels, not padding."""
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, :, 2] = 1.0  # first column of the right-hand patch
    weight = torch.zeros(1, 1, 1, 3, 3, 1, 2)
    weight[..., 1, 2, 0, 0] = 1.0  # left patch: read the right neighbour pixel
    out = patchwise_conv2d(x, weight, padding=1)
    assert out[0, 0, :, 1].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert out[0, 0, :, 0].abs().sum() == 0


def test_each_patch_uses_its_own_kernel():
    x = torch.ones(1, 1, 6, 6)
    weight = torch.arange(9.0).view(1, 1, 1, 1, 1, 3, 3)
    out = patchwise_conv2d(x, weight)
    expected = torch.arange(9.0).view(3, 3).repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(out[0, 0], expected)


def test_patch_assignment_rule():
    # pixel y belongs to patch floor(y * n / size)
    bounds = patch_bounds(13, 4)
    for y in range(13):
        i = y * 4 // 13
        assert bounds[i] <= y < bounds[i + 1]
    with pytest.raises(ValueError, match="does not fit"):
        patch_bounds(3, 4)


def test_bad_shapes_raise_clear_errors():
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="padding"):
        patchwise_conv2d(x, torch.randn(1, 2, 4, 3, 3, 2, 2), padding=0)
    with pytest.raises(ValueError, match="groups"):
        patchwise_conv2d(x, torch.randn(1, 3, 2, 1, 1, 2, 2), groups=2)
    with pytest.raises(ValueError, match="bias"):
        patchwise_conv2d(x, torch.randn(1, 2, 4, 1, 1, 2, 2), torch.randn(1, 2, 1, 1))
