"""DPWConv backends: the patch-major "torch" inference paths and the fused meta block equal the references.

Odd channel counts, batch 2, grids that divide the map and grids that do not,
both patch-border rules (paper Sec. 3.3 / the authors' release), weight grids in
either memory format; plus backend selection by argument and $HSBENCH_DPW_BACKEND.
"""

import functools

import pytest
import torch

from hsbench.ops import (
    ENV_VAR,
    channel_affine,
    meta_block_conv,
    meta_block_reference,
    patchwise_conv2d,
    patchwise_conv2d_reference,
    resolve_backend,
)

CASES = [  # (H, W), (N_h, N_w)
    ((12, 16), (3, 4)),  # divides
    ((13, 11), (3, 4)),  # does not divide
    ((7, 9), (1, 1)),
    ((6, 5), (6, 5)),  # 1-pixel patches
]


def _grid(b, c_out, c_in, k, grid, gen, channels_last=False):
    n_h, n_w = grid
    if channels_last:  # the layout HyperSeg's weight mapper produces: (B, N_h, N_w, weights)
        flat = torch.randn(b, n_h, n_w, c_out * c_in * k * k, generator=gen, dtype=torch.float64)
        return flat.permute(0, 3, 1, 2).reshape(b, c_out, c_in, k, k, n_h, n_w)
    return torch.randn(b, c_out, c_in, k, k, n_h, n_w, generator=gen, dtype=torch.float64)


def _block(size, grid, c_in=5, c_h=7, c_out=3, b=2, seed=0, channels_last=False):
    """x, w1, w2, w3 and per-channel biases of a meta block (float64)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c_in, *size, generator=gen, dtype=torch.float64)
    w1 = _grid(b, c_h, c_in, 1, grid, gen, channels_last)
    w2 = _grid(b, c_h, 1, 3, grid, gen, channels_last)
    w3 = _grid(b, c_out, c_h, 1, grid, gen, channels_last)
    biases = tuple(torch.randn(c, generator=gen, dtype=torch.float64) for c in (c_h, c_h, c_out))
    return x, w1, w2, w3, biases


def _reference(x, w1, w2, w3, biases, **kw):
    norms = [functools.partial(channel_affine, shift=b) for b in biases]
    return meta_block_reference(x, w1, w2, w3, norms, **kw)


def _patch_grid(b, c, grid, gen):
    return torch.randn(b, c, *grid, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("size,grid", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_patch_major_layers_equal_reference(size, grid, channels_last):
    x, w1, w2, _, _ = _block(size, grid, channels_last=channels_last)
    gen = torch.Generator().manual_seed(3)
    b1, b2 = _patch_grid(2, 7, grid, gen), _patch_grid(2, 7, grid, gen)
    with torch.no_grad():
        got = patchwise_conv2d(x, w1, b1, backend="torch")
        torch.testing.assert_close(got, patchwise_conv2d_reference(x, w1, b1))
        h = torch.randn_like(got)
        got = patchwise_conv2d(h, w2, b2, padding=1, groups=7, backend="torch")
        torch.testing.assert_close(got, patchwise_conv2d_reference(h, w2, b2, padding=1, groups=7))
        torch.testing.assert_close(patchwise_conv2d(x, w1, backend="torch"), patchwise_conv2d_reference(x, w1))


@pytest.mark.parametrize("size,grid", CASES)
@pytest.mark.parametrize("border", ["paper", "release"])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_fused_meta_block_equals_reference(size, grid, border, padding_mode):
    if padding_mode == "reflect" and min(size) < 2:
        pytest.skip("reflect needs 2 pixels")
    x, w1, w2, w3, biases = _block(size, grid, channels_last=True)
    kw = {"border": border, "padding_mode": padding_mode}
    with torch.no_grad():
        got = meta_block_conv(x, w1, w2, w3, biases, backend="torch", **kw)
        ref = _reference(x, w1, w2, w3, biases, **kw)
    assert got.shape == (2, 3, *size)
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("border", ["paper", "release"])
def test_c_kernel_path_float32(border):
    """float32 on an evenly divided grid runs the C depth-wise kernel (hsbench.ops.cpu_kernels)."""
    from hsbench.ops import cpu_kernels

    if not cpu_kernels.available():
        pytest.skip("no C compiler")
    x, w1, w2, w3, biases = _block((12, 15), (3, 5), channels_last=True)
    x32, w1, w2, w3 = (t.float() for t in (x, w1, w2, w3))
    biases = [t.float() for t in biases]
    with torch.no_grad():
        got = meta_block_conv(x32, w1, w2, w3, biases, border=border, backend="torch")
        ref = _reference(x32, w1, w2, w3, biases, border=border)
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
        h = torch.randn(2, 7, 12, 15)
        bias = torch.randn(2, 7, 3, 5)
        got = patchwise_conv2d(h, w2, bias, padding=1, groups=7, backend="torch")
        torch.testing.assert_close(got, patchwise_conv2d_reference(h, w2, bias, padding=1, groups=7),
                                   atol=1e-4, rtol=1e-4)


def test_fused_meta_block_residual_and_no_biases():
    x, w1, w2, w3, _ = _block((8, 6), (2, 3), c_out=5)
    with torch.no_grad():
        got = meta_block_conv(x, w1, w2, w3, residual=True, backend="torch")
    torch.testing.assert_close(got, meta_block_reference(x, w1, w2, w3, residual=True))


def test_training_path_has_gradients_equal_to_reference():
    x, w1, w2, w3, biases = _block((8, 8), (2, 2))
    args = [t.float().requires_grad_() for t in (x, w1, w2, w3, *biases)]
    ref_args = [t.detach().clone().requires_grad_() for t in args]
    out = meta_block_conv(*args[:4], args[4:], backend="torch")
    ref = _reference(*ref_args[:4], ref_args[4:])
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    out.sum().backward()
    ref.sum().backward()
    for a, r in zip(args, ref_args):
        torch.testing.assert_close(a.grad, r.grad, atol=1e-4, rtol=1e-4)


def test_backend_choice_and_environment(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_backend("auto", device_type="cpu") == "torch"
    assert resolve_backend("reference") == "reference"
    monkeypatch.setenv(ENV_VAR, "reference")
    assert resolve_backend("auto") == "reference"
    assert resolve_backend("torch") == "torch"  # an explicit argument wins
    monkeypatch.setenv(ENV_VAR, "cudnn")
    with pytest.raises(ValueError, match=ENV_VAR):
        resolve_backend("auto")
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(ValueError, match="allowed"):
        patchwise_conv2d(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1, 1, 1, 1), backend="fast")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        resolve_backend("triton", device_type="cpu")
    x, w1, w2, w3, biases = _block((4, 4), (1, 1))
    with pytest.raises(ValueError, match="border"):
        meta_block_conv(x, w1, w2, w3, biases, border="halo")
    with pytest.raises(ValueError, match="per-channel"):
        meta_block_conv(x, w1, w2, w3, (biases[0], biases[1], biases[0]))
