"""PASCAL VOC 2012 (Everingham et al., IJCV 2010) with the SBD augmented training set (Hariharan et al., ICCV 2011).

Expected layout (VOC 2012 trainval from
http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ plus the SBD labels converted
to index PNGs, the ``SegmentationClassAug`` folder and ``train_aug.txt`` list
that DeepLab popularised; SBD itself is at
http://home.bharathh.info/pubs/codes/SBD/download.html)::

    voc/JPEGImages/<id>.jpg
    voc/SegmentationClassAug/<id>.png          (else voc/SegmentationClass/<id>.png)
    voc/ImageSets/Segmentation/train_aug.txt   10,582 ids (SBD train + VOC train, minus VOC val)
    voc/ImageSets/Segmentation/val.txt         1,449 ids
    voc/ImageSets/Segmentation/train.txt       1,464 ids (optional)

``voc/VOCdevkit/VOC2012/`` as the base instead of ``voc/`` is accepted too,
and a list may also sit in ``ImageSets/SegmentationAug/``. A list line is an
id (``2007_000032``) or ``<image path> <label path>``; only the file stem of
the first token is used. Labels are single-channel (grey or palette) PNGs
with values 0..20 and 255; any other value -> 255. Colour-coded RGB labels are
rejected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsbench.data.base import SegmentationDataset, Transform, apply_lut, lut_from, missing_folder_hint, read_index_label
from hsbench.data.info import IGNORE_INDEX, VOC_CLASSES, DatasetInfo
from hsbench.errors import DataError

SOURCE = (
    "get VOC 2012 from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ and the SBD augmented labels "
    "(SegmentationClassAug, train_aug.txt) from http://home.bharathh.info/pubs/codes/SBD/download.html"
)
EXPECTED = (
    "JPEGImages/, SegmentationClassAug/ (or SegmentationClass/) and ImageSets/Segmentation/<split>.txt"
)
LABEL_DIRS = ("SegmentationClassAug", "SegmentationClass")
LIST_DIRS = ("ImageSets/Segmentation", "ImageSets/SegmentationAug")
_LUT = lut_from({i: i for i in range(len(VOC_CLASSES))})


def _base(folder: Path) -> Path | None:
    for base in (folder, folder / "VOCdevkit" / "VOC2012"):
        if (base / "JPEGImages").is_dir():
            return base
    return None


def voc_pairs(folder: Path, split: str) -> tuple[list[tuple[Path, Path]], str]:
    """(image, label) paths of ``split`` and the label folder's name.

    Raises:
        DataError: when the folder, ``JPEGImages/``, a label folder or the
            split list is missing, the list is empty, or a listed file is missing.
    """
    if not folder.is_dir():
        raise DataError(
            f"VOC folder {folder} not found{missing_folder_hint(folder, lambda p: _base(p) is not None)}; "
            f"expected {EXPECTED}; {SOURCE}"
        )
    base = _base(folder)
    if base is None:
        raise DataError(f"VOC folder {folder} has no JPEGImages/ folder; expected {EXPECTED}; {SOURCE}")
    label_dir = next((base / d for d in LABEL_DIRS if (base / d).is_dir()), None)
    if label_dir is None:
        raise DataError(f"VOC folder {folder} has no SegmentationClassAug/ or SegmentationClass/ folder; expected {EXPECTED}; {SOURCE}")
    list_file = next((base / d / f"{split}.txt" for d in LIST_DIRS if (base / d / f"{split}.txt").is_file()), None)
    if list_file is None:
        raise DataError(
            f"VOC folder {folder} has no ImageSets/Segmentation/{split}.txt list; expected {EXPECTED}; {SOURCE}"
        )
    ids = [Path(line.split()[0]).stem for line in list_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"VOC list {list_file} is empty; expected one image id per line")
    pairs = [(base / "JPEGImages" / f"{i}.jpg", label_dir / f"{i}.png") for i in ids]
    missing = [p for pair in pairs for p in pair if not p.is_file()]
    if missing:
        raise DataError(
            f"VOC folder {folder}: {len(missing)} file(s) listed by {list_file.name} are missing, first {missing[0]}; "
            f"expected {EXPECTED}; {SOURCE}"
        )
    return pairs, label_dir.name


class VOC(SegmentationDataset):
    """PASCAL VOC 2012 segmentation, 21 classes (background + 20), optionally with SBD.

    Items: image ``float32`` (3, H, W) normalised (sizes vary, up to 500x500),
    label ``int64`` (H, W) in 0..20 or 255 (object boundaries and void).

    Args:
        folder: the ``voc/`` folder.
        split: ``train_aug`` (10,582), ``train`` (1,464), ``val`` (1,449) or ``trainval``.
        transform: joint transform (``None`` = raw pairs).

    Raises:
        DataError: missing or malformed folder.
    """

    def __init__(self, folder: Path, split: str, transform: Transform | None = None) -> None:
        folder = Path(folder)
        pairs, label_dir = voc_pairs(folder, split)
        aug = label_dir == "SegmentationClassAug"
        version = "PASCAL VOC 2012 + SBD (SegmentationClassAug)" if aug else "PASCAL VOC 2012 (SegmentationClass)"
        info = DatasetInfo("voc", len(VOC_CLASSES), VOC_CLASSES, IGNORE_INDEX, version, str(folder))
        super().__init__(pairs, info, split, transform)

    def decode_label(self, path: Path) -> np.ndarray:
        """Index PNG -> ``uint8`` (H, W) in 0..20 or 255."""
        return apply_lut(read_index_label(path), _LUT)


__all__ = ["VOC", "voc_pairs"]
