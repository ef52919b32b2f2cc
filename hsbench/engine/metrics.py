"""Segmentation metrics from a confusion matrix, and the trimap boundary band.

Conventions (issue 3, item 5):

* The confusion matrix ``C`` is (K, K) int64 with **rows = ground truth,
  columns = prediction**; pixels whose label equals the ignore index never
  enter it.
* IoU_c = C[c,c] / (sum_j C[c,j] + sum_i C[i,c] - C[c,c]). A class with an
  empty union is absent from both prediction and ground truth over the whole
  split; by default it is *excluded* from the mean (mmsegmentation's rule),
  optionally it counts as 1 or as 0.
* Class accuracy_c = C[c,c] / sum_j C[c,j]; a class absent from the ground
  truth has no accuracy and is left out of the mean class accuracy.
* Pixel accuracy = trace(C) / sum(C).
* Every value is a fraction in [0, 1] (the paper prints percent).
* Trimap IoU: the same mIoU computed only on pixels within ``w`` px
  (Chebyshev distance) of a ground-truth label change, i.e. a band of ``w``
  px on each side of every boundary (Kohli et al. 2009's trimap protocol, as
  reported by video-segmentation papers). Transitions between a class and the
  ignore label count as boundaries (in PASCAL VOC the ignore label outlines
  every object); ignore pixels themselves never count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hsbench.engine.config import ABSENT_RULES


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Confusion matrix of one batch by ``torch.bincount``.

    Args:
        pred: (B, H, W) or (N,) int predictions in ``[0, K)``.
        target: same shape as ``pred``, int labels in ``[0, K) ∪ {ignore_index}``.
        num_classes: K.
        ignore_index: label value left out.
        mask: optional bool tensor of the same shape; only True pixels count
            (the trimap band).

    Returns:
        (K, K) int64 tensor on ``pred``'s device, rows = ground truth, columns = prediction.

    Raises:
        ValueError: shapes differ, or a label/prediction lies outside ``[0, K)``
            (other than the ignore index).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(target.shape)}")
    k = int(num_classes)
    valid = target != ignore_index
    if mask is not None:
        valid = valid & mask
    t = target[valid].long()
    p = pred[valid].long()
    if t.numel():
        lo = min(int(t.min()), int(p.min()))
        hi = max(int(t.max()), int(p.max()))
        if lo < 0 or hi >= k:
            raise ValueError(
                f"labels/predictions must lie in [0, {k}) or equal ignore_index={ignore_index}; "
                f"found values in [{lo}, {hi}]"
            )
    return torch.bincount(t * k + p, minlength=k * k).reshape(k, k)


def boundary_band(target: torch.Tensor, width: int = 3, ignore_index: int = 255) -> torch.Tensor:
    """Pixels within ``width`` px of a ground-truth label change (trimap band).

    A pixel is in the band when the (2w+1) x (2w+1) window centred on it holds
    more than one label value: max-pooling and min-pooling the label map over
    that window disagree. Image borders are not boundaries. Ignore pixels are
    never in the band, but a class/ignore transition is a boundary.

    Args:
        target: (B, H, W) or (H, W) int labels.
        width: band half-width ``w`` in px (the issue's 3).
        ignore_index: label never counted.

    Returns:
        bool tensor of ``target``'s shape.
    """
    squeeze = target.dim() == 2
    lab = (target[None] if squeeze else target).float()[:, None]  # (B, 1, H, W)
    k = 2 * int(width) + 1
    hi = F.max_pool2d(lab, k, stride=1, padding=int(width))
    lo = -F.max_pool2d(-lab, k, stride=1, padding=int(width))
    band = (hi != lo)[:, 0] & (target[None] if squeeze else target).ne(ignore_index)
    return band[0] if squeeze else band


def _iou_per_class(cm: np.ndarray, absent_class: str) -> np.ndarray:
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / union
    fill = {"exclude": np.nan, "one": 1.0, "zero": 0.0}[absent_class]
    iou[union == 0] = fill
    return iou


def metrics_from_confusion(
    cm: torch.Tensor | np.ndarray, absent_class: str = "exclude",
) -> dict[str, Any]:
    """mIoU, per-class IoU, class accuracy, mean class accuracy and pixel accuracy.

    Args:
        cm: (K, K) confusion matrix, rows = ground truth, columns = prediction.
        absent_class: ``"exclude"`` (default), ``"one"`` or ``"zero"``: the
            IoU of a class absent from both prediction and ground truth.

    Returns:
        ``{"miou", "macc", "pixel_acc"}`` as floats in [0, 1] (NaN when nothing
        is defined, e.g. an empty matrix), ``"iou"`` and ``"acc"`` as (K,)
        float64 numpy arrays with NaN for undefined classes, and
        ``"num_pixels"`` (int).

    Raises:
        ValueError: ``cm`` is not square or the rule is unknown.
    """
    if absent_class not in ABSENT_RULES:
        raise ValueError(f"absent_class must be one of {list(ABSENT_RULES)}, got {absent_class!r}")
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {cm.shape}")
    iou = _iou_per_class(cm, absent_class)
    gt = cm.sum(1)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(gt > 0, tp / np.maximum(gt, 1), np.nan)
    total = int(cm.sum())

    def nanmean(a: np.ndarray) -> float:
        a = a[~np.isnan(a)]
        return float(a.mean()) if a.size else math.nan

    return {
        "miou": nanmean(iou),
        "macc": nanmean(acc),
        "pixel_acc": float(tp.sum() / total) if total else math.nan,
        "iou": iou,
        "acc": acc,
        "num_pixels": total,
    }


__all__ = ["confusion_matrix", "boundary_band", "metrics_from_confusion"]
