"""A synthetic segmentation dataset for fast tests: coloured shapes on a noisy background.

Each image shows 1 to 3 shapes (rectangle, disk, triangle: classes 1, 2, 3)
on a smooth, noisy background (class 0). Every class has its own mean colour
and shape, so a small model learns it in a few hundred iterations; in about a
third of the images a small square of pure noise is labelled 255 (ignore), so
ignore handling is exercised too. Item ``i`` of a split is a pure function of
``(seed, split, i)``: the same config always yields the same pixels, in any
order and in any DataLoader worker.
"""

from __future__ import annotations

import numpy as np
import torch

from hsbench.data.base import SegmentationDataset, Transform
from hsbench.data.info import IGNORE_INDEX, SYNTHETIC_CLASSES, DatasetInfo

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_COLOURS = np.array([[0, 0, 0], [205, 60, 55], [60, 185, 80], [70, 90, 215]], dtype=np.float64)


def synthetic_sample(seed: int, split: str, index: int, size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic pair: image ``uint8`` (H, W, 3), label ``uint8`` (H, W) in {0, 1, 2, 3, 255}."""
    h, w = size_hw
    rng = np.random.default_rng([int(seed), _SPLIT_CODES[split], int(index)])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = rng.uniform(90, 160, size=3)
    gx, gy = rng.uniform(-40, 40, size=2)
    image = base[None, None, :] + (gx * xx / w + gy * yy / h)[..., None]
    label = np.zeros((h, w), dtype=np.uint8)
    side = min(h, w)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, 4))
        r = rng.uniform(0.12, 0.25) * side
        cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
        if cls == 1:  # axis-aligned rectangle, aspect 0.6..1.6
            ry, rx = r, r * rng.uniform(0.6, 1.6)
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= min(rx, cx, w - cx))
        elif cls == 2:  # disk
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        else:  # upward triangle: apex (cy - r, cx), base at cy + r, half-width r
            t = (yy - (cy - r)) / (2 * r)
            mask = (t >= 0) & (t <= 1) & (np.abs(xx - cx) <= t * r)
        colour = _COLOURS[cls] + rng.uniform(-20, 20, size=3)
        image[mask] = colour
        label[mask] = cls
    image += rng.normal(0, 10, size=image.shape)
    if rng.random() < 0.33:
        s = max(2, side // 8)
        y0, x0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        image[y0 : y0 + s, x0 : x0 + s] = rng.uniform(0, 255, size=(s, s, 3))
        label[y0 : y0 + s, x0 : x0 + s] = IGNORE_INDEX
    return np.clip(image, 0, 255).astype(np.uint8), label


class SyntheticShapes(SegmentationDataset):
    """Deterministic synthetic shapes, 4 classes (:data:`SYNTHETIC_CLASSES`), no files.

    Items: image ``float32`` (3, H, W) normalised, label ``int64`` (H, W) in
    {0, 1, 2, 3, 255}, with (H, W) = ``size`` before any transform.

    Args:
        split: ``train``, ``val`` or ``test`` (independent images).
        transform: joint transform (``None`` = raw pairs).
        size: (H, W) in pixels.
        length: number of images.
        seed: base seed.
    """

    def __init__(
        self,
        split: str = "train",
        transform: Transform | None = None,
        size: tuple[int, int] = (64, 64),
        length: int = 32,
        seed: int = 0,
    ) -> None:
        if split not in _SPLIT_CODES:
            raise ValueError(f"synthetic split {split!r}; choose one of {list(_SPLIT_CODES)}")
        self.size = (int(size[0]), int(size[1]))
        self.length = int(length)
        self.seed = int(seed)
        version = f"synthetic shapes v1 ({self.size[1]}x{self.size[0]}, seed {self.seed}, {self.length} per split)"
        info = DatasetInfo("synthetic", len(SYNTHETIC_CLASSES), SYNTHETIC_CLASSES, IGNORE_INDEX, version, "")
        super().__init__([], info, split, transform)

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw pair: image ``uint8`` (3, H, W), label ``uint8`` (H, W)."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} synthetic images")
        image, label = synthetic_sample(self.seed, self.split, index, self.size)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), torch.from_numpy(label)
