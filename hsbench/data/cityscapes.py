"""Cityscapes (Cordts et al., CVPR 2016) with the 19 evaluation classes (trainIds).

Expected layout (the official ``leftImg8bit_trainvaltest.zip`` and
``gtFine_trainvaltest.zip`` from https://www.cityscapes-dataset.com/downloads/,
unpacked into one folder)::

    cityscapes/leftImg8bit/{train,val,test}/<city>/<stem>_leftImg8bit.png
    cityscapes/gtFine/{train,val,test}/<city>/<stem>_gtFine_labelIds.png

``labelIds`` are mapped to trainIds 0..18 with the official table of the
``cityscapesscripts`` package when it is installed, else with our own copy of
it (:data:`hsbench.data.info.CITYSCAPES_LABELID_TO_TRAINID`); every other
labelId -> 255. Split ``trainval`` = ``train`` followed by ``val``. The test
split's public labels are all void, so it only serves inference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hsbench.data.base import SegmentationDataset, Transform, apply_lut, lut_from, missing_folder_hint, read_index_label
from hsbench.data.info import CITYSCAPES_CLASSES, IGNORE_INDEX, DatasetInfo, cityscapes_labelid_table
from hsbench.errors import DataError

SOURCE = (
    "download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
    "https://www.cityscapes-dataset.com/downloads/ and unpack both into it"
)
EXPECTED = "leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/<split>/<city>/*_gtFine_labelIds.png"
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def _looks_like_cityscapes(folder: Path) -> bool:
    return (folder / "leftImg8bit").is_dir() and (folder / "gtFine").is_dir()


def cityscapes_pairs(folder: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of one split, sorted by city then file name.

    Raises:
        DataError: when the folder or a split folder is missing, the split is
            empty, or an image has no ``_gtFine_labelIds.png``.
    """
    if not folder.is_dir():
        raise DataError(
            f"Cityscapes folder {folder} not found{missing_folder_hint(folder, _looks_like_cityscapes)}; "
            f"expected {EXPECTED}; {SOURCE}"
        )
    image_root, label_root = folder / "leftImg8bit" / split, folder / "gtFine" / split
    for sub in (image_root, label_root):
        if not sub.is_dir():
            raise DataError(
                f"Cityscapes folder {folder} has no {sub.relative_to(folder)}/ folder; expected {EXPECTED}; {SOURCE}"
            )
    pairs = []
    for image in sorted(image_root.glob(f"*/*{IMAGE_SUFFIX}")):
        stem = image.name[: -len(IMAGE_SUFFIX)]
        label = label_root / image.parent.name / f"{stem}{LABEL_SUFFIX}"
        if not label.is_file():
            raise DataError(
                f"Cityscapes folder {folder}: image {image.relative_to(folder)} has no label "
                f"{label.relative_to(folder)}; expected {EXPECTED}; {SOURCE}"
            )
        pairs.append((image, label))
    if not pairs:
        raise DataError(f"Cityscapes folder {folder}: {image_root.relative_to(folder)}/ holds no *{IMAGE_SUFFIX}; expected {EXPECTED}; {SOURCE}")
    return pairs


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations, 19 classes.

    Items: image ``float32`` (3, H, W) normalised (2048x1024 natively), label
    ``int64`` (H, W) in 0..18 or 255. ``label_table_source`` says which
    labelId table was used (``"cityscapesscripts"`` or ``"hsbench fallback table"``).

    Args:
        folder: the ``cityscapes/`` folder.
        split: ``train``, ``val``, ``test`` or ``trainval``.
        transform: joint transform (``None`` = raw pairs).

    Raises:
        DataError: missing or malformed folder.
    """

    def __init__(self, folder: Path, split: str, transform: Transform | None = None) -> None:
        folder = Path(folder)
        splits = ("train", "val") if split == "trainval" else (split,)
        pairs = [p for s in splits for p in cityscapes_pairs(folder, s)]
        table, self.label_table_source = cityscapes_labelid_table()
        self._lut = lut_from(table)
        with Image.open(pairs[0][0]) as im:
            w, h = im.size
        version = f"Cityscapes gtFine {w}x{h} (labelIds -> 19 trainIds, {self.label_table_source})"
        info = DatasetInfo("cityscapes", len(CITYSCAPES_CLASSES), CITYSCAPES_CLASSES, IGNORE_INDEX, version, str(folder))
        super().__init__(pairs, info, split, transform)

    def decode_label(self, path: Path) -> np.ndarray:
        """labelIds PNG -> trainIds ``uint8`` (H, W); unlisted ids -> 255."""
        return apply_lut(read_index_label(path), self._lut)
