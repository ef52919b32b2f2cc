"""Scoring a model on a split: confusion matrix, mIoU & co., trimap IoU, with the protocol.

The protocol (issue 3, item 5) travels with the numbers in
:attr:`EvalResult.protocol`: split, class names, ignore index, the rule for
classes absent from prediction and ground truth, horizontal-flip TTA on/off,
the evaluation resolution (the dataset resizes the *image* to it; the label
stays at its native size), how logits reach the label's size (bilinear,
``align_corners=False``, then argmax) and the trimap band width. Metric
definitions are in :mod:`hsbench.engine.metrics`; all values are fractions
in [0, 1].
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from hsbench.engine import distributed as hdist
from hsbench.engine.config import EvalConfig
from hsbench.engine.metrics import boundary_band, confusion_matrix, metrics_from_confusion


def _none_if_nan(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


@dataclass(frozen=True)
class EvalResult:
    """Scores of one model on one split, with the protocol that produced them.

    Attributes:
        metrics: ``miou``, ``macc``, ``pixel_acc``, ``trimap_miou`` (fractions
            in [0, 1]; None when undefined, e.g. no boundary pixel at all).
        per_class_iou: class name -> IoU (None: class absent from prediction
            and ground truth under the ``exclude`` rule).
        per_class_acc: class name -> accuracy (None: class absent from ground truth).
        per_class_trimap_iou: class name -> IoU inside the trimap band.
        confusion: (K, K) nested lists, rows = ground truth, columns = prediction.
        trimap_confusion: the same, restricted to the trimap band.
        protocol: how the numbers were made (see the module docstring).
        num_images: images scored.
        wall_time_s: seconds for the whole pass (s).
        images_per_s: num_images / wall_time_s (images/s).
    """

    metrics: dict[str, float | None]
    per_class_iou: dict[str, float | None]
    per_class_acc: dict[str, float | None]
    per_class_trimap_iou: dict[str, float | None]
    confusion: list[list[int]]
    trimap_confusion: list[list[int]]
    protocol: dict[str, Any]
    num_images: int
    wall_time_s: float
    images_per_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return asdict(self)


def _predict(model: nn.Module, images: torch.Tensor, size: tuple[int, int], hflip: bool) -> torch.Tensor:
    """(B, 3, h, w) images -> (B, H, W) int64 predictions at label size ``size``."""
    logits = model(images).float()
    if hflip:
        flipped = model(images.flip(-1)).float().flip(-1)
        scores = logits.softmax(1) + flipped.softmax(1)
    else:
        scores = logits
    if scores.shape[-2:] != tuple(size):
        scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    return scores.argmax(1)


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    ignore_index: int = 255,
    cfg: EvalConfig | None = None,
    device: str | torch.device = "cpu",
    split: str | None = None,
    eval_resolution: Any = None,
    progress: bool | None = None,
) -> EvalResult:
    """Score ``model`` on every image of ``dataset``.

    Args:
        model: maps images (B, 3, h, w) to logits (B, K, h', w'); logits are
            resized bilinearly to the label's (H, W) before the argmax.
        dataset: items ``(image (3, h, w) float, label (H, W) int64)`` with
            ``ignore_index`` for void; the image may be at the evaluation
            resolution while the label is native.
        num_classes: K.
        class_names: K names (default ``"0" .. "K-1"``).
        ignore_index: label value never scored (255).
        cfg: TTA, absent-class rule, trimap width, batch size, ...
        device: torch device.
        split, eval_resolution: recorded in the protocol (the dataset applies the resolution).
        progress: tqdm bar; ``None`` = only when stderr is a TTY (rank 0).

    Under ``torch.distributed`` each process scores a shard and the confusion
    matrices are summed, so every process returns the same result.

    Returns:
        An :class:`EvalResult`.

    Raises:
        ValueError: ``class_names`` has the wrong length, or a label lies
            outside ``[0, K)`` and is not the ignore index.
    """
    cfg = cfg or EvalConfig()
    device = torch.device(device)
    k = int(num_classes)
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names given for {k} classes")

    n_total = len(dataset)  # type: ignore[arg-type]
    if cfg.max_images is not None:
        n_total = min(n_total, int(cfg.max_images))
    shard = list(range(hdist.rank(), n_total, hdist.world_size()))
    loader = DataLoader(
        Subset(dataset, shard), batch_size=cfg.batch_size, shuffle=False,
        num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
    )
    cm = torch.zeros(k, k, dtype=torch.int64, device=device)
    cm_tri = torch.zeros_like(cm)
    n_images = torch.zeros((), dtype=torch.int64, device=device)

    from tqdm.auto import tqdm

    show = hdist.is_main() and (progress if progress is not None else sys.stderr.isatty())
    was_training = model.training
    model.to(device).eval()
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            for images, labels in tqdm(loader, desc="eval", unit="batch", disable=not show, dynamic_ncols=True):
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True).long()
                pred = _predict(model, images, tuple(labels.shape[-2:]), cfg.hflip)
                cm += confusion_matrix(pred, labels, k, ignore_index)
                band = boundary_band(labels, cfg.trimap_width, ignore_index)
                cm_tri += confusion_matrix(pred, labels, k, ignore_index, mask=band)
                n_images += labels.shape[0]
        if hdist.is_distributed():
            for t in (cm, cm_tri, n_images):
                dist.all_reduce(t)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        model.train(was_training)
    wall = time.perf_counter() - t0

    m = metrics_from_confusion(cm, cfg.absent_class)
    mt = metrics_from_confusion(cm_tri, cfg.absent_class)
    n = int(n_images)
    protocol = {
        "split": split,
        "num_images": n,
        "class_names": names,
        "num_classes": k,
        "ignore_index": int(ignore_index),
        "absent_class": cfg.absent_class,
        "hflip_tta": bool(cfg.hflip),
        "eval_resolution": list(eval_resolution) if isinstance(eval_resolution, (tuple, list)) else eval_resolution,
        "label_resolution": "native",
        "logits_resize": "bilinear, align_corners=False, to the label size, then argmax",
        "trimap_width_px": int(cfg.trimap_width),
        "confusion_layout": "rows = ground truth, columns = prediction",
        "metric_scale": "fraction in [0, 1]",
        "precision": "float32",
    }
    return EvalResult(
        metrics={
            "miou": _none_if_nan(m["miou"]),
            "macc": _none_if_nan(m["macc"]),
            "pixel_acc": _none_if_nan(m["pixel_acc"]),
            "trimap_miou": _none_if_nan(mt["miou"]),
        },
        per_class_iou={c: _none_if_nan(v) for c, v in zip(names, m["iou"].tolist())},
        per_class_acc={c: _none_if_nan(v) for c, v in zip(names, m["acc"].tolist())},
        per_class_trimap_iou={c: _none_if_nan(v) for c, v in zip(names, mt["iou"].tolist())},
        confusion=cm.cpu().tolist(),
        trimap_confusion=cm_tri.cpu().tolist(),
        protocol=protocol,
        num_images=n,
        wall_time_s=wall,
        images_per_s=n / wall if wall > 0 else 0.0,
    )


__all__ = ["EvalResult", "evaluate"]
