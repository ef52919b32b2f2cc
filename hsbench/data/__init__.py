"""hsbench.data: the datasets HyperSeg is trained and scored on, and their joint transforms.

Public API::

    from hsbench.data import DataConfig, build_dataset, dataset_info

    cfg = DataConfig(dataset="camvid", root="../shared/data")   # paper defaults (Sec. 4.1)
    train_set = build_dataset(cfg, cfg.train_split, train=True)  # augmented
    test_set = build_dataset(cfg, cfg.eval_split, train=False)   # eval_resolution, native labels
    image, label = test_set[0]   # float32 (3, H, W) normalised; int64 (H, W), 255 = ignore
    test_set.version             # "CamVid 480x360 (SegNet layout)"

Datasets live under a data root (``DataConfig.root`` -> ``$HSBENCH_DATA`` ->
``./data``), one folder each: ``camvid/``, ``cityscapes/``, ``voc/``; the
expected layouts are in :mod:`hsbench.data.camvid`, :mod:`hsbench.data.cityscapes`
and :mod:`hsbench.data.voc`. A missing or malformed folder raises
:class:`hsbench.errors.DataError` with one sentence naming the folder, what
should be there and where to get it.
"""

from __future__ import annotations


from typing import TYPE_CHECKING

from hsbench.lazy import lazy_exports

from hsbench.data.config import DATASETS, SPLITS, DataConfig, resolve_data_root
from hsbench.data.info import CLASS_NAMES, IGNORE_INDEX, DatasetInfo
from hsbench.errors import ConfigError

if TYPE_CHECKING:
    from hsbench.data.base import SegmentationDataset

#: Torch-using public names -> their submodule, imported on first use (PEP 562), so that
#: ``hsbench.data.config`` / ``hsbench.data.info`` (and the CLI) stay torch-free.
_EXPORTS = {
    "SegmentationDataset": "base",
    "CamVid": "camvid",
    "Cityscapes": "cityscapes",
    "SyntheticShapes": "synthetic",
    "EvalTransform": "transforms",
    "TrainTransform": "transforms",
    "build_transform": "transforms",
    "pad_collate": "transforms",
    "VOC": "voc",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


def build_dataset(cfg: DataConfig, split: str, train: bool) -> "SegmentationDataset":
    """The dataset ``cfg`` names, for ``split``, with training augmentation or evaluation resizing.

    Args:
        cfg: the data config (dataset, root, augmentation).
        split: a split of ``cfg.dataset`` (:data:`SPLITS`), usually
            ``cfg.train_split`` or ``cfg.eval_split``.
        train: ``True`` = random resize/rotate/crop/flip/jitter as ``cfg``
            says (paper Sec. 4.1); ``False`` = resize the image to
            ``cfg.eval_resolution`` (W, H) and keep the label at native size.

    Returns:
        A ``torch.utils.data.Dataset`` of ``(image float32 (3, H, W), label
        int64 (H, W))`` with ImageNet normalisation (or ``cfg.mean``/``cfg.std``)
        and 255 = ignore; it has ``.info`` (:class:`DatasetInfo`) and ``.version``.

    Raises:
        ConfigError: ``split`` is not a split of the dataset.
        DataError: the dataset folder is missing or malformed.
    """
    if split not in SPLITS[cfg.dataset]:
        raise ConfigError(f"{split!r} is not a {cfg.dataset} split; choose one of {list(SPLITS[cfg.dataset])}")
    from hsbench.data.camvid import CamVid
    from hsbench.data.cityscapes import Cityscapes
    from hsbench.data.synthetic import SyntheticShapes
    from hsbench.data.transforms import build_transform
    from hsbench.data.voc import VOC

    transform = build_transform(cfg, train)
    if cfg.dataset == "synthetic":
        return SyntheticShapes(split, transform, cfg.synthetic_size, cfg.synthetic_length, cfg.synthetic_seed)
    if cfg.dataset == "camvid":
        return CamVid(cfg.folder, split, transform, layout=cfg.camvid_layout)
    if cfg.dataset == "cityscapes":
        return Cityscapes(cfg.folder, split, transform)
    if cfg.dataset == "voc":
        return VOC(cfg.folder, split, transform)
    raise ConfigError(f"unknown dataset {cfg.dataset!r}; choose one of {list(DATASETS)}")  # pragma: no cover


def dataset_info(cfg: DataConfig, probe: bool = True) -> DatasetInfo:
    """Name, classes, ignore index and version of the dataset ``cfg`` names.

    With ``probe=True`` (default) the dataset folder is read (its evaluation
    split is listed) so that ``version`` says which release/layout is there;
    with ``probe=False`` nothing is read and ``version`` is ``""``.

    Raises:
        DataError: (probe only) the dataset folder is missing or malformed.
    """
    if probe:
        return build_dataset(cfg, cfg.eval_split, train=False).info
    names = CLASS_NAMES[cfg.dataset]
    return DatasetInfo(cfg.dataset, len(names), names, IGNORE_INDEX, "", "")


__all__ = [
    "CamVid",
    "Cityscapes",
    "DATASETS",
    "DataConfig",
    "DatasetInfo",
    "EvalTransform",
    "IGNORE_INDEX",
    "SPLITS",
    "SegmentationDataset",
    "SyntheticShapes",
    "TrainTransform",
    "VOC",
    "build_dataset",
    "build_transform",
    "dataset_info",
    "pad_collate",
    "resolve_data_root",
]
