"""The real CamVid copy (SegNet layout, 480x360) at ../shared/data/camvid, when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hsbench.data import DataConfig, build_dataset, dataset_info

torch.set_num_threads(1)

DATA_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
pytestmark = pytest.mark.skipif(
    not (DATA_ROOT / "camvid" / "trainannot").is_dir(),
    reason=f"real CamVid not found at {DATA_ROOT / 'camvid'} (SegNet layout; see its README.md)",
)


@pytest.fixture(scope="module")
def cfg() -> DataConfig:
    return DataConfig(dataset="camvid", root=str(DATA_ROOT))


def test_split_sizes_and_version(cfg):
    sizes = {s: len(build_dataset(cfg, s, train=False)) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 367, "val": 101, "test": 233, "trainval": 468}
    info = dataset_info(cfg)
    assert info.version == "CamVid 480x360 (SegNet layout)" and info.num_classes == 11


def test_items_shapes_and_label_values(cfg):
    test = build_dataset(cfg, "test", train=False)
    for i in (0, len(test) - 1):
        image, label = test[i]
        assert image.shape == (3, 360, 480) and image.dtype == torch.float32
        assert label.shape == (360, 480) and label.dtype == torch.int64
        raw = np.asarray(Image.open(test.samples[i][1]))
        assert raw.max() <= 11  # the SegNet release: 0..10 + 11 void
        assert np.array_equal(label.numpy(), np.where(raw == 11, 255, raw))
    assert test.samples[0][0].name == "0001TP_008550.png"  # test.txt order


def test_training_items_at_eval_resolution_and_crop(cfg):
    cfg = cfg.replace(crop_size=(352, 480), eval_resolution=(768, 576))
    torch.manual_seed(0)
    image, label = build_dataset(cfg, "train", train=True)[0]
    assert image.shape == (3, 352, 480) and label.shape == (352, 480)
    assert set(label.unique().tolist()) <= set(range(11)) | {255}
    image, label = build_dataset(cfg, "test", train=False)[0]
    assert image.shape == (3, 576, 768) and label.shape == (360, 480)


def test_data_root_from_environment(monkeypatch):
    monkeypatch.setenv("HSBENCH_DATA", str(DATA_ROOT))
    assert len(build_dataset(DataConfig(dataset="camvid"), "val", train=False)) == 101
