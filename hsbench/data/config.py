"""The data configuration of one variant: which dataset, which splits, which augmentation.

A :class:`DataConfig` is frozen and, once built, fully resolved: every field
left out takes the paper's default for the chosen dataset (HyperSeg, Sec. 4.1),
so two configs that mean the same thing compare (and hash) equal, whether the
study wrote the defaults out or not.

Paper defaults (Sec. 4.1):

* CamVid, Cityscapes: random resize with scale in [0.5, 2.0], crop,
  horizontal flip with p = 0.5.
* PASCAL VOC: horizontal flip, random resize with scale in [0.25, 1.0],
  rotation in [-30, 30] degrees, colour jitter (brightness, contrast,
  saturation, hue), pad to 512x512.

Not stated in the paper, chosen by us and documented here: the crop size of
CamVid and Cityscapes (default: the image's own size before the random
resize, so a batch keeps the source resolution), the colour-jitter strengths
for VOC (0.4, 0.4, 0.4, 0.1 as in torchvision's ``ColorJitter``), and that the
paper's CamVid models train on train+val and are scored on test (Sec. 4.4),
Cityscapes on train / val, VOC on the SBD-augmented ``train_aug`` / ``val``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsbench.errors import ConfigError, check_fields

#: Datasets accepted by ``DataConfig.dataset``.
DATASETS = ("camvid", "cityscapes", "voc", "synthetic")

#: Split names per dataset.
SPLITS: dict[str, tuple[str, ...]] = {
    "camvid": ("train", "val", "test", "trainval"),
    "cityscapes": ("train", "val", "test", "trainval"),
    "voc": ("train_aug", "train", "val", "trainval"),
    "synthetic": ("train", "val", "test"),
}

#: CamVid folder layouts (``"auto"`` detects, see :mod:`hsbench.data.camvid`).
CAMVID_LAYOUTS = ("auto", "segnet", "full")

#: ImageNet channel statistics (RGB, for images scaled to [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Environment variable naming the data root (issue 3 item 1).
DATA_ROOT_ENV = "HSBENCH_DATA"


class _Auto:
    """Sentinel default: 'take the dataset's default' (resolved in __post_init__)."""

    _instance = None

    def __new__(cls) -> "_Auto":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = _Auto()

_DEFAULTS: dict[str, dict[str, Any]] = {
    "camvid": dict(
        train_split="trainval",
        eval_split="test",
        crop_size=None,
        scale_range=(0.5, 2.0),
        hflip=True,
        rotation=0.0,
        color_jitter=(0.0, 0.0, 0.0, 0.0),
    ),
    "cityscapes": dict(
        train_split="train",
        eval_split="val",
        crop_size=None,
        scale_range=(0.5, 2.0),
        hflip=True,
        rotation=0.0,
        color_jitter=(0.0, 0.0, 0.0, 0.0),
    ),
    "voc": dict(
        train_split="train_aug",
        eval_split="val",
        crop_size=(512, 512),
        scale_range=(0.25, 1.0),
        hflip=True,
        rotation=30.0,
        color_jitter=(0.4, 0.4, 0.4, 0.1),
    ),
    "synthetic": dict(
        train_split="train",
        eval_split="val",
        crop_size=None,
        scale_range=(1.0, 1.0),
        hflip=True,
        rotation=0.0,
        color_jitter=(0.0, 0.0, 0.0, 0.0),
    ),
}


def resolve_data_root(root: str | os.PathLike[str] | None) -> Path:
    """The data root: ``root`` if given, else ``$HSBENCH_DATA``, else ``./data``.

    Each dataset lives in a folder below it: ``<root>/camvid``,
    ``<root>/cityscapes``, ``<root>/voc``. ``~`` is expanded and a relative
    path is made absolute against the current directory. Nothing is checked
    here (the dataset loaders raise :class:`hsbench.errors.DataError`).
    """
    if root is None or str(root) == "":
        root = os.environ.get(DATA_ROOT_ENV) or "./data"
    return Path(os.path.abspath(Path(root).expanduser()))


def _pair(value: Any, name: str, kind: type) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"data option {name} must be a pair of {kind.__name__}s, got {value!r}")
    try:
        return tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"data option {name} must be a pair of {kind.__name__}s, got {value!r}") from None


@dataclass(frozen=True)
class DataConfig:
    """Which data a variant trains and is evaluated on, and how it is augmented.

    Fields left out take the paper's defaults for ``dataset`` (module
    docstring; HyperSeg Sec. 4.1). Sizes follow two conventions, as the
    paper writes them: ``crop_size`` and ``synthetic_size`` are (H, W) in
    pixels like a tensor shape; ``eval_resolution`` is (W, H) like the
    paper's "768 x 576".

    Attributes:
        dataset: ``"camvid"``, ``"cityscapes"``, ``"voc"`` or ``"synthetic"``.
        root: data root; ``None`` -> ``$HSBENCH_DATA`` -> ``./data`` (see
            :func:`resolve_data_root`). The dataset lives in ``<root>/<dataset>/``.
        train_split, eval_split: split names (:data:`SPLITS`); CamVid trains on
            ``trainval`` and evaluates on ``test`` by default (paper Sec. 4.4).
        crop_size: (H, W) of the training crop after the random resize;
            smaller images are padded (image 0 before normalisation, label
            255). ``None`` = crop back to the image's own size before the resize.
        scale_range: (min, max) factor of the random resize, uniform.
        hflip: horizontal flip with p = 0.5 in training.
        rotation: maximal absolute rotation in degrees (uniform in
            [-rotation, rotation]); 0 = none. VOC only by default.
        color_jitter: (brightness, contrast, saturation, hue) strengths as in
            ``torchvision.transforms.v2.ColorJitter``; zeros = none.
        eval_resolution: (W, H) the image is resized to (bilinear) for
            evaluation; the label stays at its native size. ``None`` = native.
        mean, std: per-channel normalisation of images in [0, 1]; ImageNet's
            by default (use the backbone's timm ``pretrained_cfg`` to change).
        camvid_layout: ``"auto"`` (detect), ``"segnet"`` (480x360 release) or
            ``"full"`` (960x720 release with ``class_dict.csv``).
        synthetic_size: (H, W) of synthetic images.
        synthetic_length: number of synthetic images per split.
        synthetic_seed: seed of the synthetic images (a split and index are
            mixed in, so items are deterministic and independent of order).

    Raises:
        ConfigError (a ``ValueError``): on an unknown dataset or split, or a
            value out of range; the message names the option.
    """

    dataset: str = "camvid"
    root: str | None = None
    train_split: str = AUTO
    eval_split: str = AUTO
    crop_size: tuple[int, int] | None = AUTO
    scale_range: tuple[float, float] = AUTO
    hflip: bool = AUTO
    rotation: float = AUTO
    color_jitter: tuple[float, float, float, float] = AUTO
    eval_resolution: tuple[int, int] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    camvid_layout: str = "auto"
    synthetic_size: tuple[int, int] = (64, 64)
    synthetic_length: int = 32
    synthetic_seed: int = 0

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose one of {list(DATASETS)}")
        for key, value in _DEFAULTS[self.dataset].items():
            if getattr(self, key) is AUTO:
                set_(key, value)
        if self.root is not None:
            set_("root", str(self.root))
        for key in ("train_split", "eval_split"):
            if getattr(self, key) not in SPLITS[self.dataset]:
                raise ConfigError(
                    f"data option {key}={getattr(self, key)!r} is not a {self.dataset} split; "
                    f"choose one of {list(SPLITS[self.dataset])}"
                )
        for key in ("crop_size", "eval_resolution"):
            value = getattr(self, key)
            if value is not None:
                value = _pair(value, key, int)
                if min(value) <= 0:
                    raise ConfigError(f"data option {key} must be positive, got {value!r}")
                set_(key, value)
        size = _pair(self.synthetic_size, "synthetic_size", int)
        if min(size) < 8:
            raise ConfigError(f"data option synthetic_size must be at least 8x8, got {size!r}")
        set_("synthetic_size", size)
        lo, hi = _pair(self.scale_range, "scale_range", float)
        if not (0 < lo <= hi) or not math.isfinite(hi):
            raise ConfigError(f"data option scale_range must satisfy 0 < min <= max, got {(lo, hi)!r}")
        set_("scale_range", (lo, hi))
        if not isinstance(self.hflip, bool):
            raise ConfigError(f"data option hflip must be true or false, got {self.hflip!r}")
        rotation = float(self.rotation)
        if not (0.0 <= rotation <= 180.0):
            raise ConfigError(f"data option rotation must be in [0, 180] degrees, got {self.rotation!r}")
        set_("rotation", rotation)
        jitter = tuple(float(v) for v in self.color_jitter)
        if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
            raise ConfigError(
                "data option color_jitter must be (brightness, contrast, saturation, hue) "
                f"with all >= 0 and hue <= 0.5, got {self.color_jitter!r}"
            )
        set_("color_jitter", jitter)
        for key in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, key))
            if len(value) != 3 or not all(math.isfinite(v) for v in value) or (key == "std" and min(value) <= 0):
                raise ConfigError(f"data option {key} must be 3 finite numbers (std > 0), got {getattr(self, key)!r}")
            set_(key, value)
        if self.camvid_layout not in CAMVID_LAYOUTS:
            raise ConfigError(
                f"data option camvid_layout={self.camvid_layout!r}; choose one of {list(CAMVID_LAYOUTS)}"
            )
        if int(self.synthetic_length) < 1:
            raise ConfigError(f"data option synthetic_length must be >= 1, got {self.synthetic_length!r}")
        set_("synthetic_length", int(self.synthetic_length))
        set_("synthetic_seed", int(self.synthetic_seed))

    @property
    def data_root(self) -> Path:
        """The resolved data root (:func:`resolve_data_root` of ``root``)."""
        return resolve_data_root(self.root)

    @property
    def folder(self) -> Path:
        """The dataset's own folder, ``<data root>/<dataset>`` (unused for synthetic)."""
        return self.data_root / self.dataset

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every (resolved) field; tuples become lists."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataConfig":
        """Inverse of :meth:`to_dict`; keys left out take the dataset's defaults.

        Raises:
            ValueError (:class:`ConfigError`): on a key that is not a field,
                naming the allowed keys, or on a bad value.
        """
        check_fields(cls, d, "data")
        return cls(**d)

    def replace(self, **changes: Any) -> "DataConfig":
        """A copy with ``changes`` applied. Changing ``dataset`` re-derives the
        dataset defaults of every field not named in ``changes``."""
        if "dataset" in changes and changes["dataset"] != self.dataset:
            return type(self)(**{**_explicit_fields(self), **changes})
        return dataclasses.replace(self, **changes)


def _explicit_fields(cfg: DataConfig) -> dict[str, Any]:
    """Fields of ``cfg`` that do not depend on the dataset's defaults."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _DEFAULTS[cfg.dataset]}


__all__ = [
    "AUTO",
    "CAMVID_LAYOUTS",
    "DATASETS",
    "DATA_ROOT_ENV",
    "DataConfig",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPLITS",
    "resolve_data_root",
]
