"""The file-backed segmentation dataset every real loader builds on, and image I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from hsbench.data.info import IGNORE_INDEX, DatasetInfo
from hsbench.errors import DataError

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def read_rgb(path: Path) -> np.ndarray:
    """An image file as ``uint8`` (H, W, 3) RGB.

    Raises:
        DataError: when the file cannot be decoded.
    """
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def read_index_label(path: Path) -> np.ndarray:
    """A single-channel label PNG (mode L, P or I) as its raw values, ``int64`` (H, W).

    Palette (mode P) images give their palette indices, as VOC's labels need.

    Raises:
        DataError: when the file cannot be decoded or is colour-coded (RGB).
    """
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise DataError(
                    f"label {path} is a {im.mode} image; expected single-channel class ids "
                    "(8-bit grey or palette PNG)"
                )
            return np.asarray(im).astype(np.int64, copy=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read label {path}: {exc}") from None


def lut_from(table: dict[int, int], default: int = IGNORE_INDEX) -> np.ndarray:
    """A 256-entry ``uint8`` lookup table: raw value -> train id, ``default`` elsewhere."""
    lut = np.full(256, default, dtype=np.uint8)
    for raw, train_id in table.items():
        if 0 <= raw < 256:
            lut[raw] = train_id
    return lut


def apply_lut(raw: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map raw label values through ``lut``; values outside 0..255 become 255."""
    out = np.full(raw.shape, IGNORE_INDEX, dtype=np.uint8)
    ok = (raw >= 0) & (raw < lut.shape[0])
    out[ok] = lut[raw[ok]]
    return out


class SegmentationDataset(Dataset):
    """A list of (image file, label file) pairs with a label decoder and a joint transform.

    Items are ``(image, label)``: image ``float32`` (3, H, W) normalised
    (ImageNet mean/std by default), label ``int64`` (H, W) with train ids
    ``0..info.num_classes-1`` or 255 (ignore). :meth:`load` gives the raw
    pair before the transform (image ``uint8`` (3, H, W), label ``uint8`` (H, W)).

    Attributes:
        info: :class:`DatasetInfo` (name, classes, ignore index, version).
        version: same as ``info.version``, e.g. ``"CamVid 480x360 (SegNet layout)"``.
        split: the split name.
        samples: the (image path, label path) pairs, in list order.
        transform: the joint transform (see :mod:`hsbench.data.transforms`);
            ``None`` = items are the raw pair with the label as ``int64``.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        info: DatasetInfo,
        split: str,
        transform: Transform | None,
    ) -> None:
        self.samples = list(samples)
        self.info = info
        self.split = split
        self.transform = transform

    @property
    def version(self) -> str:
        """Which release/layout was read (``info.version``)."""
        return self.info.version

    @property
    def num_classes(self) -> int:
        """Number of evaluated classes."""
        return self.info.num_classes

    def decode_label(self, path: Path) -> np.ndarray:
        """Read a label file and map it to train ids: ``uint8`` (H, W). Subclasses override."""
        raise NotImplementedError

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw pair: image ``uint8`` (3, H, W), label ``uint8`` (H, W) of train ids / 255.

        Raises:
            DataError: on an unreadable file or image/label size mismatch.
        """
        image_path, label_path = self.samples[index]
        image = read_rgb(image_path)
        label = self.decode_label(label_path)
        if image.shape[:2] != label.shape:
            raise DataError(
                f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label {label_path} "
                f"is {label.shape[1]}x{label.shape[0]}; they must be the same size"
            )
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), torch.from_numpy(label)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image float32 (3, H, W), label int64 (H, W))`` after the transform.

        Without a transform: ``(image uint8 (3, H, W), label int64 (H, W))``.
        """
        image, label = self.load(index)
        if self.transform is None:
            return image, label.to(torch.int64)
        return self.transform(image, label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, version={self.version!r})"


def require_dir(path: Path, what: str, hint: str) -> None:
    """Raise :class:`DataError` unless ``path`` is a directory."""
    if not path.is_dir():
        raise DataError(f"{what} folder {path} not found; {hint}")


def missing_folder_hint(folder: Path, looks_like: Callable[[Path], bool]) -> str:
    """A suffix for a 'not found' message when the user pointed at the dataset folder itself."""
    parent = folder.parent
    if parent.is_dir() and looks_like(parent):
        return (
            f" (the data root {parent} itself looks like the {folder.name} folder: "
            f"pass its parent {parent.parent} as the data root)"
        )
    return ""
