"""Joint image/label transforms: the training augmentation of HyperSeg Sec. 4.1 and evaluation resizing.

Inputs are an image ``uint8`` tensor of shape (3, H, W) and a label ``uint8``
tensor of shape (H, W) that already holds train ids (0..C-1) or 255.
Outputs are an image ``float32`` tensor (3, h, w), normalised with the
configured mean/std (ImageNet's by default), and a label ``int64`` tensor
(h, w) with values in 0..C-1 or 255 (:data:`IGNORE_INDEX`).

The pixel operations are torchvision's (``torchvision.transforms.v2.functional``):
images are resampled bilinearly (with antialiasing when shrinking), labels
only ever with nearest-neighbour ("nearest-exact", the half-pixel-centred
variant, so label and image stay aligned), and nothing a label is padded or
rotated in with is anything but 255. Randomness comes from torch's global
generator, which ``torch.utils.data.DataLoader`` seeds per worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from hsbench.data.config import IMAGENET_MEAN, IMAGENET_STD, DataConfig
from hsbench.data.info import IGNORE_INDEX

Sample = tuple[torch.Tensor, torch.Tensor]


def _check(image: torch.Tensor, label: torch.Tensor) -> None:
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise TypeError(f"image must be a uint8 tensor (3, H, W), got {image.dtype} {tuple(image.shape)}")
    if label.ndim != 2 or tuple(label.shape) != tuple(image.shape[1:]):
        raise TypeError(f"label must be a tensor (H, W) matching the image {tuple(image.shape)}, got {tuple(label.shape)}")


def normalize(image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``uint8`` (3, H, W) in [0, 255] -> ``float32`` (3, H, W), ``(x/255 - mean) / std``."""
    return F.normalize(image.to(torch.float32).div_(255.0), mean=list(mean), std=list(std))


def resize_pair(image: torch.Tensor, label: torch.Tensor, size_hw: tuple[int, int]) -> Sample:
    """Resize image (bilinear, antialiased) and label (nearest-exact) to ``size_hw`` = (H, W)."""
    size = [int(size_hw[0]), int(size_hw[1])]
    image = F.resize(image, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    label = F.resize(label[None], size, interpolation=InterpolationMode.NEAREST_EXACT, antialias=False)[0]
    return image, label


def pad_crop_pair(
    image: torch.Tensor, label: torch.Tensor, size_hw: tuple[int, int], top: int | None = None, left: int | None = None
) -> Sample:
    """Crop (H, W) = ``size_hw``; pad first at the bottom/right if the image is smaller.

    The image is padded with 0 (black, before normalisation), the label with
    255. ``top``/``left`` pick the crop window in the padded image; ``None`` =
    uniformly random.
    """
    th, tw = int(size_hw[0]), int(size_hw[1])
    h, w = label.shape
    ph, pw = max(th - h, 0), max(tw - w, 0)
    if ph or pw:
        image = F.pad(image, [0, 0, pw, ph], fill=0)
        label = F.pad(label[None], [0, 0, pw, ph], fill=IGNORE_INDEX)[0]
        h, w = h + ph, w + pw
    if top is None:
        top = int(torch.randint(0, h - th + 1, ()).item())
    if left is None:
        left = int(torch.randint(0, w - tw + 1, ()).item())
    return image[:, top : top + th, left : left + tw], label[top : top + th, left : left + tw]


def _uniform(lo: float, hi: float) -> float:
    return lo if hi <= lo else lo + (hi - lo) * float(torch.rand(()).item())


class TrainTransform:
    """Training augmentation of HyperSeg (Sec. 4.1), applied jointly to image and label.

    In order: colour jitter (image only; before any padding so padding stays
    black), random resize by a factor uniform in ``scale_range``, rotation
    uniform in [-rotation, rotation] degrees (image bilinear with fill 0, label
    nearest with fill 255), crop to ``crop_size`` (H, W) with bottom/right
    padding (image 0, label 255; ``None`` = the size before the resize),
    horizontal flip with p = 0.5, then normalisation.

    Call with ``(image uint8 (3, H, W), label uint8/int (H, W))``; returns
    ``(image float32 (3, h, w), label int64 (h, w))`` with ``(h, w)`` =
    ``crop_size`` or ``(H, W)``.
    """

    def __init__(
        self,
        crop_size: tuple[int, int] | None = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        hflip: bool = True,
        rotation: float = 0.0,
        color_jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.hflip = bool(hflip)
        self.rotation = float(rotation)
        self.color_jitter = tuple(float(v) for v in color_jitter)
        self._jitter = v2.ColorJitter(*self.color_jitter) if any(self.color_jitter) else None
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Sample:
        _check(image, label)
        label = label.to(torch.uint8) if label.dtype != torch.uint8 else label
        h0, w0 = label.shape
        if self._jitter is not None:
            image = self._jitter(image)
        scale = _uniform(*self.scale_range)
        if scale != 1.0:
            image, label = resize_pair(image, label, (max(1, round(h0 * scale)), max(1, round(w0 * scale))))
        if self.rotation > 0:
            angle = _uniform(-self.rotation, self.rotation)
            image = F.rotate(image, angle, interpolation=InterpolationMode.BILINEAR, fill=[0.0])
            label = F.rotate(label[None], angle, interpolation=InterpolationMode.NEAREST, fill=[float(IGNORE_INDEX)])[0]
        image, label = pad_crop_pair(image, label, self.crop_size or (h0, w0))
        if self.hflip and torch.rand(()).item() < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return normalize(image, self.mean, self.std), label.to(torch.int64)

    def __repr__(self) -> str:
        return (
            f"TrainTransform(crop_size={self.crop_size}, scale_range={self.scale_range}, hflip={self.hflip}, "
            f"rotation={self.rotation}, color_jitter={self.color_jitter})"
        )


class EvalTransform:
    """Evaluation preprocessing: resize the image to ``eval_resolution`` = (W, H), bilinear.

    The label keeps its native size (predictions are resized back to it by
    the evaluator). Returns ``(image float32 (3, H', W'), label int64 (H, W))``.
    """

    def __init__(
        self,
        eval_resolution: tuple[int, int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.eval_resolution = None if eval_resolution is None else (int(eval_resolution[0]), int(eval_resolution[1]))
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Sample:
        _check(image, label)
        if self.eval_resolution is not None:
            w, h = self.eval_resolution
            if tuple(image.shape[1:]) != (h, w):
                image = F.resize(image, [h, w], interpolation=InterpolationMode.BILINEAR, antialias=True)
        return normalize(image, self.mean, self.std), label.to(torch.int64)

    def __repr__(self) -> str:
        return f"EvalTransform(eval_resolution={self.eval_resolution})"


def build_transform(cfg: DataConfig, train: bool) -> TrainTransform | EvalTransform:
    """The transform a :class:`DataConfig` asks for: training augmentation or evaluation resizing."""
    if train:
        return TrainTransform(
            crop_size=cfg.crop_size,
            scale_range=cfg.scale_range,
            hflip=cfg.hflip,
            rotation=cfg.rotation,
            color_jitter=cfg.color_jitter,
            mean=cfg.mean,
            std=cfg.std,
        )
    return EvalTransform(cfg.eval_resolution, mean=cfg.mean, std=cfg.std)


def pad_collate(batch: Sequence[Sample]) -> Sample:
    """Collate samples of different sizes: pad to the largest (H, W) at the bottom/right.

    Images (already normalised) are padded with 0, labels with 255. Returns
    ``(images float32 (B, 3, H, W), labels int64 (B, H, W))``. Useful for
    evaluating VOC, whose images differ in size; for same-size samples it
    equals ``torch.utils.data.default_collate``.
    """
    hi = max(s[0].shape[1] for s in batch)
    wi = max(s[0].shape[2] for s in batch)
    hl = max(s[1].shape[0] for s in batch)
    wl = max(s[1].shape[1] for s in batch)
    images = batch[0][0].new_zeros((len(batch), 3, hi, wi))
    labels = torch.full((len(batch), hl, wl), IGNORE_INDEX, dtype=torch.int64)
    for i, (img, lbl) in enumerate(batch):
        images[i, :, : img.shape[1], : img.shape[2]] = img
        labels[i, : lbl.shape[0], : lbl.shape[1]] = lbl
    return images, labels


__all__ = ["EvalTransform", "TrainTransform", "build_transform", "normalize", "pad_collate", "pad_crop_pair", "resize_pair"]
