"""Training losses: cross entropy and bootstrapped (hardest-pixel) cross entropy.

HyperSeg trains its PASCAL VOC model with plain cross entropy and its
Cityscapes and CamVid models with a *bootstrapped* cross entropy (supplement
Sec. B). The supplement cites Reed et al. 2014 ("Training deep neural networks
on noisy labels with bootstrapping") for that loss, but the rule the authors use
is the online hard-pixel bootstrapping of Wu, Shen and van den Hengel 2016
("Bridging category-level and instance-level semantic image segmentation",
arXiv:1605.06885): per image, keep only the hardest pixels.

The rule implemented by :class:`BootstrappedCrossEntropy` (issue 3, item 3):

1. per image, compute the per-pixel cross entropy of every non-ignored pixel;
2. if more than ``k`` (4096) pixel losses exceed ``threshold`` (0.3), the
   image's loss is the mean of all losses above the threshold;
3. otherwise it is the mean of the ``k`` largest losses (all valid pixels if
   the image has fewer than ``k``);
4. the batch loss is the mean of the per-image losses (images without a single
   valid pixel are left out; a batch with none at all gives a zero loss that
   still carries a graph, so ``backward`` works).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Loss names accepted by build_loss (and TrainConfig.loss) with their parameters: defined,
# torch-free, beside TrainConfig.
from hsbench.engine.config import LOSS_PARAMS, LOSSES


class CrossEntropy(nn.Module):
    """Pixel-wise cross entropy averaged over non-ignored pixels (VOC in the paper).

    Args:
        ignore_index: label value that contributes neither loss nor gradient
            (255 in every hsbench dataset).

    Shapes:
        ``logits`` (B, K, H, W) float, ``target`` (B, H, W) int64 in
        ``[0, K) ∪ {ignore_index}``; returns a scalar tensor. A batch where every
        pixel is ignored gives 0 (not NaN).
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross entropy over valid pixels; see the class docstring for shapes."""
        losses = F.cross_entropy(
            logits.float(), target, ignore_index=self.ignore_index, reduction="none"
        )
        valid = target != self.ignore_index
        n = valid.sum()
        return losses.sum() / n.clamp(min=1)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"


class BootstrappedCrossEntropy(nn.Module):
    """Hardest-pixel bootstrapped cross entropy (Wu et al. 2016; HyperSeg supp. Sec. B).

    See the module docstring for the rule. Defaults are the values used for
    HyperSeg's Cityscapes and CamVid models: ``threshold=0.3``, ``k=4096``.

    Args:
        threshold: per-pixel loss (nats) above which a pixel counts as hard.
        k: minimum number of hardest pixels averaged per image.
        ignore_index: label value excluded from the loss.

    Shapes:
        ``logits`` (B, K, H, W) float, ``target`` (B, H, W) int64; returns a
        scalar tensor.

    Raises:
        ValueError: ``k < 1`` or ``threshold < 0``.
    """

    def __init__(self, threshold: float = 0.3, k: int = 4096, ignore_index: int = 255) -> None:
        super().__init__()
        if int(k) < 1:
            raise ValueError(f"bootstrapped_ce: k must be >= 1, got {k}")
        if float(threshold) < 0:
            raise ValueError(f"bootstrapped_ce: threshold must be >= 0, got {threshold}")
        self.threshold = float(threshold)
        self.k = int(k)
        self.ignore_index = int(ignore_index)

    def per_image(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image bootstrapped losses.

        Returns:
            ``(losses, has_valid)``: (B,) float losses (0 where the image has no
            valid pixel) and a (B,) bool mask of images with at least one valid pixel.
        """
        b = logits.shape[0]
        pix = F.cross_entropy(
            logits.float(), target, ignore_index=self.ignore_index, reduction="none"
        ).reshape(b, -1)
        valid = (target != self.ignore_index).reshape(b, -1)
        n_valid = valid.sum(dim=1)  # (B,)

        # Images with many hard pixels: mean of every loss above the threshold.
        hard = valid & (pix > self.threshold)
        n_hard = hard.sum(dim=1)
        mean_hard = torch.where(hard, pix, torch.zeros_like(pix)).sum(dim=1) / n_hard.clamp(min=1)

        # Otherwise: mean of the k largest valid losses (fewer if the image has fewer).
        k = min(self.k, pix.shape[1])
        masked = torch.where(valid, pix, torch.full_like(pix, float("-inf")))
        top, _ = masked.topk(k, dim=1)  # (B, k), descending; ignored pixels sort last
        m = torch.minimum(n_valid, torch.full_like(n_valid, k))  # how many of them are valid
        keep = torch.arange(k, device=pix.device)[None, :] < m[:, None]
        mean_top = torch.where(keep, top, torch.zeros_like(top)).sum(dim=1) / m.clamp(min=1)

        losses = torch.where(n_hard > self.k, mean_hard, mean_top)
        return losses, n_valid > 0

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Batch mean of the per-image bootstrapped losses; see the class docstring."""
        losses, has_valid = self.per_image(logits, target)
        n = has_valid.sum()
        total = torch.where(has_valid, losses, torch.zeros_like(losses)).sum()
        # 0 * logits.sum() keeps a graph when every pixel of the batch is ignored.
        return total / n.clamp(min=1) + 0.0 * logits.sum()

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, k={self.k}, ignore_index={self.ignore_index}"


def build_loss(name: str, params: dict[str, Any] | None = None, *, ignore_index: int = 255) -> nn.Module:
    """The loss called ``name`` (one of :data:`LOSSES`) with keyword ``params``.

    Args:
        name: ``"ce"`` (:class:`CrossEntropy`) or ``"bootstrapped_ce"``
            (:class:`BootstrappedCrossEntropy`, params ``threshold``, ``k``).
        params: extra keyword arguments of the loss class.
        ignore_index: the dataset's ignore label (255).

    Raises:
        ValueError: unknown loss name, or a parameter the loss does not take.
    """
    params = dict(params or {})
    if name not in LOSS_PARAMS:
        raise ValueError(f"unknown loss {name!r}; choose one of {list(LOSSES)}")
    cls: type[nn.Module] = CrossEntropy if name == "ce" else BootstrappedCrossEntropy
    allowed = LOSS_PARAMS[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"loss {name!r} takes no parameter(s) {unknown}; allowed: {list(allowed)}"
        )
    return cls(ignore_index=ignore_index, **params)


__all__ = ["LOSSES", "LOSS_PARAMS", "CrossEntropy", "BootstrappedCrossEntropy", "build_loss"]
