"""DPWConv backends: the patch-major "torch" inference paths and the fused meta block equal the references.

Odd channel counts, batch 2, grids that divide the map and grids that do not,
both patch-border rules (paper Sec. 3.3 / the authors' release), weight grids in
either memory format; plus backend selection by argument and $HSBENCH_DPW_BACKEND.
"""

import pytest
import torch

from hsbench.ops import (
    ENV_VAR,
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
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c_in, *size, generator=gen, dtype=torch.float64)
    w1 = _grid(b, c_h, c_in, 1, grid, gen, channels_last)
    wd = _grid(b, c_h, 1, 3, grid, gen, channels_last)
    w2 = _grid(b, c_out, c_h, 1, grid, gen, channels_last)
    b1, bd, b2 = (torch.randn(b, c, *grid, generator=gen, dtype=torch.float64) for c in (c_h, c_h, c_out))
    return x, w1, b1, wd, bd, w2, b2


@pytest.mark.parametrize("size,grid", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_patch_major_layers_equal_reference(size, grid, channels_last):
    x, w1, b1, wd, bd, _, _ = _block(size, grid, channels_last=channels_last)
    with torch.no_grad():
        got = patchwise_conv2d(x, w1, b1, backend="torch")
        torch.testing.assert_close(got, patchwise_conv2d_reference(x, w1, b1))
        h = torch.randn_like(got)
        got = patchwise_conv2d(h, wd, bd, padding=1, groups=h.shape[1], backend="torch")
        torch.testing.assert_close(got, patchwise_conv2d_reference(h, wd, bd, padding=1, groups=h.shape[1]))
        torch.testing.assert_close(patchwise_conv2d(x, w1, None, backend="torch"), patchwise_conv2d_reference(x, w1))


@pytest.mark.parametrize("size,grid", CASES)
@pytest.mark.parametrize("border", ["paper", "release"])
def test_fused_meta_block_equals_reference(size, grid, border):
    args = _block(size, grid, channels_last=True)
    with torch.no_grad():
        got = meta_block_conv(*args, border=border, backend="torch")
        ref = meta_block_reference(*args, border=border)
    assert got.shape == (2, 3, *size)
    torch.testing.assert_close(got, ref)


def test_border_rules_differ_exactly_at_patch_borders():
    """Interior pixels (two away from any patch border) agree; patch-border pixels do not."""
    args = _block((12, 12), (2, 2), seed=1)
    paper = meta_block_reference(*args, border="paper")
    release = meta_block_reference(*args, border="release")
    diff = (paper - release).abs().amax(dim=(0, 1))
    border = torch.zeros(12, 12, dtype=torch.bool)
    border[5:7, :] = True
    border[:, 5:7] = True
    assert diff[~border].max() < 1e-12
    assert (diff[border] > 1e-6).all()


def test_reference_meta_block_is_three_reference_layers():
    x, w1, b1, wd, bd, w2, b2 = _block((8, 10), (2, 5))
    h = patchwise_conv2d_reference(x, w1, b1).clamp(0, 6)
    h = patchwise_conv2d_reference(h, wd, bd, padding=1, groups=7).clamp(0, 6)
    torch.testing.assert_close(meta_block_reference(x, w1, b1, wd, bd, w2, b2), patchwise_conv2d_reference(h, w2, b2))


def test_training_path_has_gradients_equal_to_reference():
    args = [t.float().requires_grad_() for t in _block((8, 8), (2, 2))]
    ref_args = [t.detach().clone().requires_grad_() for t in args]
    out = meta_block_conv(*args, backend="torch")
    ref = meta_block_reference(*ref_args)
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
    with pytest.raises(ValueError, match="border"):
        meta_block_conv(*_block((4, 4), (1, 1)), border="halo")
