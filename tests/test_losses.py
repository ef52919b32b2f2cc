"""Losses (issue 3 item 3; HyperSeg supplement Sec. B): CE with ignore, bootstrapped CE."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hsbench.engine.losses import BootstrappedCrossEntropy, CrossEntropy, build_loss

torch.set_num_threads(1)
IGNORE = 255


def _pixel_losses_np(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Independent per-pixel cross entropy in float64: (B, K, H, W), (B, H, W) -> (B, H*W)."""
    b, k = logits.shape[:2]
    x = logits.reshape(b, k, -1).astype(np.float64)
    t = target.reshape(b, -1)
    m = x.max(1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(1)) + m[:, 0]
    out = np.zeros(t.shape)
    for i in range(b):
        for j in range(t.shape[1]):
            if t[i, j] != IGNORE:
                out[i, j] = lse[i, j] - x[i, t[i, j], j]
    return out


def _bootstrap_np(logits, target, thr, k):
    """The rule of the supplement, written as a plain per-image loop with a full sort."""
    pix = _pixel_losses_np(logits, target)
    per_image = []
    for i in range(pix.shape[0]):
        vals = pix[i][target[i].reshape(-1) != IGNORE]
        if vals.size == 0:
            continue
        vals = np.sort(vals)[::-1]
        above = vals[vals > thr]
        per_image.append(above.mean() if above.size > k else vals[:k].mean())
    return float(np.mean(per_image)) if per_image else 0.0


def _batch(seed, b=3, k=5, h=9, w=11, scale=3.0, p_ignore=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, h, w, generator=g) * scale
    target = torch.randint(0, k, (b, h, w), generator=g)
    target[torch.rand(b, h, w, generator=g) < p_ignore] = IGNORE
    return logits, target


def test_cross_entropy_matches_reference_and_ignores_void():
    logits, target = _batch(0)
    got = CrossEntropy(IGNORE)(logits, target)
    want = _pixel_losses_np(logits.numpy(), target.numpy())
    n_valid = int((target != IGNORE).sum())
    assert got.item() == pytest.approx(want.sum() / n_valid, rel=1e-5)
    # Changing the logits of ignored pixels changes nothing.
    logits2 = logits.clone()
    logits2.permute(0, 2, 3, 1)[target == IGNORE] += 100.0
    assert CrossEntropy(IGNORE)(logits2, target).item() == pytest.approx(got.item(), rel=1e-6)


def test_cross_entropy_all_ignored_is_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), IGNORE)
    loss = CrossEntropy(IGNORE)(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thr,k", [(0.3, 10), (0.3, 4096), (2.0, 5), (0.0, 30)])
def test_bootstrapped_ce_matches_the_rule(seed, thr, k):
    logits, target = _batch(seed)
    got = BootstrappedCrossEntropy(threshold=thr, k=k, ignore_index=IGNORE)(logits, target)
    want = _bootstrap_np(logits.numpy(), target.numpy(), thr, k)
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-7)


def test_bootstrapped_ce_both_branches_are_exercised():
    """One image with many hard pixels (mean above threshold), one with few (top-k mean)."""
    k, thr = 8, 0.3
    logits = torch.zeros(2, 2, 6, 6)
    target = torch.zeros(2, 6, 6, dtype=torch.long)
    # image 0: every pixel hard (wrong with margin 2 -> loss ~2.13), 36 > k
    logits[0, 1] = 2.0
    # image 1: 3 hard pixels only, the rest easy (loss ~0.0067)
    logits[1, 0] = 5.0
    logits[1, 1, 0, :3] = 7.0
    loss_fn = BootstrappedCrossEntropy(threshold=thr, k=k)
    per, has = loss_fn.per_image(logits, target)
    pix = F.cross_entropy(logits, target, reduction="none").reshape(2, -1)
    assert has.tolist() == [True, True]
    assert per[0].item() == pytest.approx(pix[0].mean().item(), rel=1e-6)  # all 36 above thr
    top = pix[1].sort(descending=True).values[:k]
    assert per[1].item() == pytest.approx(top.mean().item(), rel=1e-6)
    assert (pix[1] > thr).sum() == 3  # fewer than k hard pixels: top-k branch
    assert loss_fn(logits, target).item() == pytest.approx(per.mean().item(), rel=1e-6)


def test_bootstrapped_ce_default_k_on_a_large_image():
    """Defaults 0.3 / 4096 on 80x80 = 6400 pixels: both > k and < k hard-pixel cases."""
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 3, (2, 80, 80), generator=g)
    logits = torch.randn(2, 3, 80, 80, generator=g) * 0.5  # most pixels hard
    onehot = F.one_hot(target[1], 3).permute(2, 0, 1).float()
    logits[1] = onehot * 8.0  # image 1: all easy ...
    logits[1, :, :10, :] = 0.0  # ... but 800 pixels at loss log 3
    loss_fn = BootstrappedCrossEntropy()
    assert (loss_fn.threshold, loss_fn.k) == (0.3, 4096)
    got = loss_fn(logits, target).item()
    want = _bootstrap_np(logits.numpy(), target.numpy(), 0.3, 4096)
    assert got == pytest.approx(want, rel=1e-5)


def test_bootstrapped_ce_gradient_only_reaches_selected_pixels():
    k = 4
    logits, target = _batch(3, b=1, h=5, w=5, scale=0.5, p_ignore=0.3)
    logits.requires_grad_(True)
    loss_fn = BootstrappedCrossEntropy(threshold=100.0, k=k)  # never "many hard": top-k branch
    loss_fn(logits, target).backward()
    touched = logits.grad.abs().sum(1)[0] > 0  # (H, W)
    assert int(touched.sum()) == k
    assert not touched[target[0] == IGNORE].any()


def test_bootstrapped_ce_ignored_images_left_out_of_batch_mean():
    logits, target = _batch(5, b=2)
    target[1] = IGNORE
    loss_fn = BootstrappedCrossEntropy(0.3, 10)
    alone = loss_fn(logits[:1], target[:1])
    assert loss_fn(logits, target).item() == pytest.approx(alone.item(), rel=1e-6)
    x = logits.clone().requires_grad_(True)
    everything_ignored = loss_fn(x, torch.full_like(target, IGNORE))
    assert everything_ignored.item() == 0.0 and not math.isnan(everything_ignored.item())
    everything_ignored.backward()  # still has a graph


def test_build_loss_names_and_errors():
    assert isinstance(build_loss("ce"), CrossEntropy)
    b = build_loss("bootstrapped_ce", {"threshold": 0.5, "k": 7}, ignore_index=11)
    assert (b.threshold, b.k, b.ignore_index) == (0.5, 7, 11)
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("focal")
    with pytest.raises(ValueError, match="takes no parameter"):
        build_loss("ce", {"k": 3})
    with pytest.raises(ValueError, match="k must be"):
        BootstrappedCrossEntropy(k=0)
