"""Datasets of hsbench.data: config, each loader on a tiny tree in its real layout, errors.

The trees are written here, in tmp_path, with 32x24 PNGs; label mappings are
checked on exact pixel values against tables written out in this file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hsbench.data import (
    IGNORE_INDEX,
    DataConfig,
    build_dataset,
    dataset_info,
    resolve_data_root,
)
from hsbench.data.config import IMAGENET_MEAN, IMAGENET_STD
from hsbench.errors import ConfigError, DataError

torch.set_num_threads(1)

H, W = 24, 32


# --------------------------------------------------------------------------- helpers
def rng_image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def save(arr: np.ndarray, path, mode: str | None = None, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    if palette:
        im = im.convert("P") if im.mode != "L" else Image.fromarray(arr, "L").convert("P")
        im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
        im.putdata(arr.ravel().tolist())
    im.save(path)


def denormalize(x: torch.Tensor) -> np.ndarray:
    """float32 (3, H, W) normalised -> float (H, W, 3) in [0, 255]."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((x * std + mean) * 255).permute(1, 2, 0).numpy()


def segnet_label(seed: int) -> np.ndarray:
    """Every raw SegNet value 0..11 plus an out-of-range 12, at known places."""
    lab = np.random.default_rng(seed).integers(0, 13, size=(H, W)).astype(np.uint8)
    lab[0, :13] = np.arange(13)
    return lab


def write_camvid_segnet(root, counts=(2, 1, 1), lists=True, jpeg=False):
    folder = root / "camvid"
    raw = {}
    for split, n in zip(("train", "val", "test"), counts):
        lines = []
        for i in range(n):
            stem = f"0001TP_{split}{i:03d}"
            ext = ".jpg" if jpeg else ".png"
            img, lab = rng_image(hash((split, i)) % 1000), segnet_label(i + 10 * len(split))
            save(img, folder / split / f"{stem}{ext}")
            save(lab, folder / f"{split}annot" / f"{stem}.png", "L")
            raw[(split, i)] = (img, lab)
            lines.append(f"/SegNet/CamVid/{split}/{stem}{ext} /SegNet/CamVid/{split}annot/{stem}.png")
        if lists:
            # reversed order: the list, not the folder listing, fixes the order
            (folder / f"{split}.txt").write_text("\n".join(reversed(lines)) + "\n")
    return folder, raw


# The 32-class palette of the full-resolution CamVid release (label_colors.txt
# of Brostow et al.), and the 11-class id this test expects for each.
CAMVID32 = {
    "Animal": ((64, 128, 64), 9),
    "Archway": ((192, 0, 128), 1),
    "Bicyclist": ((0, 128, 192), 10),
    "Bridge": ((0, 128, 64), 1),
    "Building": ((128, 0, 0), 1),
    "Car": ((64, 0, 128), 8),
    "CartLuggagePram": ((64, 0, 192), 9),
    "Child": ((192, 128, 64), 9),
    "Column_Pole": ((192, 192, 128), 2),
    "Fence": ((64, 64, 128), 7),
    "LaneMkgsDriv": ((128, 0, 192), 3),
    "LaneMkgsNonDriv": ((192, 0, 64), 3),
    "Misc_Text": ((128, 128, 64), 6),
    "MotorcycleScooter": ((192, 0, 192), 10),
    "OtherMoving": ((128, 64, 64), 8),
    "ParkingBlock": ((64, 192, 128), 4),
    "Pedestrian": ((64, 64, 0), 9),
    "Road": ((128, 64, 128), 3),
    "RoadShoulder": ((128, 128, 192), 4),
    "Sidewalk": ((0, 0, 192), 4),
    "SignSymbol": ((192, 128, 128), 6),
    "Sky": ((128, 128, 128), 0),
    "SUVPickupTruck": ((64, 128, 192), 8),
    "TrafficCone": ((0, 0, 64), 2),
    "TrafficLight": ((0, 64, 64), 6),
    "Train": ((192, 64, 128), 8),
    "Tree": ((128, 128, 0), 5),
    "Truck_Bus": ((192, 128, 192), 8),
    "Tunnel": ((64, 0, 64), 1),
    "VegetationMisc": ((192, 192, 0), 5),
    "Void": ((0, 0, 0), 255),
    "Wall": ((64, 192, 0), 1),
}
UNKNOWN_COLOUR = (1, 2, 3)


def write_camvid_full(root, counts=(2, 1, 1)):
    folder = root / "camvid"
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["name,r,g,b"] + [f"{n},{c[0]},{c[1]},{c[2]}" for n, (c, _) in CAMVID32.items()]
    (folder / "class_dict.csv").write_text("\n".join(rows) + "\n")
    colours = [c for c, _ in CAMVID32.values()] + [UNKNOWN_COLOUR]
    ids = [i for _, i in CAMVID32.values()] + [255]
    expected = {}
    for split, n in zip(("train", "val", "test"), counts):
        for i in range(n):
            idx = np.random.default_rng(i + 7 * len(split)).integers(0, len(colours), size=(H, W))
            idx.ravel()[: len(colours)] = np.arange(len(colours))  # every colour once, row-major
            rgb = np.array(colours, dtype=np.uint8)[idx]
            save(rng_image(i), folder / split / f"0006R0_f{i:05d}.png")
            save(rgb, folder / f"{split}_labels" / f"0006R0_f{i:05d}_L.png")
            expected[(split, i)] = np.array(ids, dtype=np.int64)[idx]
    return folder, expected


# Cityscapes labelId -> trainId, written out for this test (Cordts et al. 2016).
CS_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
               24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def write_cityscapes(root):
    folder = root / "cityscapes"
    raw = {}
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for c, city in enumerate(cities):
            stem = f"{city}_000000_0000{c}9"
            lab = np.random.default_rng(c).integers(0, 34, size=(H, W)).astype(np.uint8)
            lab.ravel()[:34] = np.arange(34)
            save(rng_image(c), folder / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            save(lab, folder / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", "L")
            raw[(split, city)] = lab
    return folder, raw


def write_voc(root, nested=False, palette=True):
    folder = root / "voc"
    base = folder / "VOCdevkit" / "VOC2012" if nested else folder
    raw = {}
    ids = {"train_aug": ["2007_000032", "2008_000002", "2011_003276"], "val": ["2007_000033"]}
    for split, names in ids.items():
        for k, name in enumerate(names):
            lab = np.random.default_rng(k).integers(0, 21, size=(H, W)).astype(np.uint8)
            lab[0, :21] = np.arange(21)
            lab[1, :3] = (255, 100, 21)  # boundary (255) and two invalid values
            Image.fromarray(rng_image(k)).save(_mk(base / "JPEGImages" / f"{name}.jpg"), quality=95)
            save(lab, base / "SegmentationClassAug" / f"{name}.png", "L", palette=palette)
            raw[name] = lab
        lst = _mk(base / "ImageSets" / "Segmentation" / f"{split}.txt")
        if split == "train_aug":  # DeepLab-style 'image label' lines
            lst.write_text("".join(f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png\n" for n in names))
        else:
            lst.write_text("".join(f"{n}\n" for n in names))
    return folder, raw


def _mk(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def valid_labels(label: torch.Tensor, num_classes: int) -> bool:
    u = label.unique()
    return bool(((u < num_classes) | (u == IGNORE_INDEX)).all()) and bool((u >= 0).all())


# --------------------------------------------------------------------------- config
def test_config_defaults_follow_paper_sec_4_1():
    cam = DataConfig(dataset="camvid")
    assert cam.scale_range == (0.5, 2.0) and cam.hflip and cam.rotation == 0
    assert (cam.train_split, cam.eval_split) == ("trainval", "test")
    cs = DataConfig(dataset="cityscapes")
    assert cs.scale_range == (0.5, 2.0) and cs.hflip and (cs.train_split, cs.eval_split) == ("train", "val")
    voc = DataConfig(dataset="voc")
    assert voc.scale_range == (0.25, 1.0) and voc.rotation == 30.0 and voc.crop_size == (512, 512)
    assert all(v > 0 for v in voc.color_jitter) and voc.hflip
    assert voc.train_split == "train_aug"
    # explicit values win, including an explicit None
    assert DataConfig(dataset="voc", crop_size=None).crop_size is None
    assert DataConfig(dataset="camvid", scale_range=[1, 1]).scale_range == (1.0, 1.0)


def test_config_round_trip_and_unknown_keys():
    cfg = DataConfig(dataset="camvid", root="/x", crop_size=(360, 480), eval_resolution=(768, 576))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert DataConfig.from_dict(d) == cfg
    assert hash(DataConfig.from_dict(d)) == hash(cfg)
    # defaults written out or left out: same config
    assert DataConfig.from_dict({"dataset": "voc"}) == DataConfig.from_dict(DataConfig(dataset="voc").to_dict())
    with pytest.raises(ValueError, match="allowed.*crop_size"):
        DataConfig.from_dict({"dataset": "camvid", "crop": [1, 2]})
    assert cfg.replace(dataset="voc").scale_range == (0.25, 1.0)
    assert cfg.replace(dataset="voc").eval_resolution == (768, 576)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(dataset="kitti"), "dataset"),
        (dict(dataset="camvid", train_split="train_aug"), "train_split"),
        (dict(dataset="camvid", scale_range=(2.0, 1.0)), "scale_range"),
        (dict(dataset="camvid", crop_size=(0, 5)), "crop_size"),
        (dict(dataset="camvid", color_jitter=(0.1, 0.1, 0.1, 0.9)), "color_jitter"),
        (dict(dataset="camvid", camvid_layout="kaggle"), "camvid_layout"),
    ],
)
def test_config_rejects_bad_values(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        DataConfig(**kwargs)


def test_resolve_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("HSBENCH_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root(None) == tmp_path / "data"
    monkeypatch.setenv("HSBENCH_DATA", str(tmp_path / "env"))
    assert resolve_data_root(None) == tmp_path / "env"
    assert resolve_data_root(str(tmp_path / "x" / ".." / "y")) == tmp_path / "y"
    assert DataConfig(dataset="voc").folder == tmp_path / "env" / "voc"


def test_build_dataset_rejects_split_of_another_dataset():
    with pytest.raises(ConfigError, match="not a camvid split"):
        build_dataset(DataConfig(dataset="camvid"), "train_aug", train=False)


# --------------------------------------------------------------------------- CamVid
def eval_cfg(dataset, root, **kw):
    return DataConfig(dataset=dataset, root=str(root), **kw)


def test_camvid_segnet_layout(tmp_path):
    folder, raw = write_camvid_segnet(tmp_path)
    cfg = eval_cfg("camvid", tmp_path)
    sizes = {s: len(build_dataset(cfg, s, train=False)) for s in ("train", "val", "test", "trainval")}
    assert sizes == {"train": 2, "val": 1, "test": 1, "trainval": 3}
    ds = build_dataset(cfg, "train", train=False)
    assert ds.layout == "segnet" and ds.version == "CamVid 32x24 (SegNet layout)"
    assert ds.info.num_classes == 11 and ds.info.class_names[0] == "Sky"
    assert dataset_info(cfg).version == ds.version
    # list order is honoured (the list is reversed): item 0 is file 001
    assert ds.samples[0][0].name == "0001TP_train001.png"
    image, label = ds[0]
    img_raw, lab_raw = raw[("train", 1)]
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert label.dtype == torch.int64 and label.shape == (H, W)
    np.testing.assert_allclose(denormalize(image), img_raw, atol=1e-3)
    expected = np.where(lab_raw >= 11, 255, lab_raw)
    assert np.array_equal(label.numpy(), expected)
    assert label[0, :13].tolist() == list(range(11)) + [255, 255]
    # trainval = train then val
    tv = build_dataset(cfg, "trainval", train=False)
    assert [p[0].parent.name for p in tv.samples] == ["train", "train", "val"]


def test_camvid_segnet_without_lists_and_with_jpeg(tmp_path):
    write_camvid_segnet(tmp_path, lists=False, jpeg=True)
    ds = build_dataset(eval_cfg("camvid", tmp_path), "train", train=False)
    assert [p[0].name for p in ds.samples] == ["0001TP_train000.jpg", "0001TP_train001.jpg"]
    assert "JPEG" in ds.version
    assert valid_labels(ds[0][1], 11)


def test_camvid_full_resolution_release(tmp_path):
    folder, expected = write_camvid_full(tmp_path)
    cfg = eval_cfg("camvid", tmp_path)
    ds = build_dataset(cfg, "train", train=False)
    assert ds.layout == "full"
    assert ds.version == "CamVid 32x24 (full-resolution release, 32->11 SegNet grouping)"
    assert len(build_dataset(cfg, "trainval", train=False)) == 3
    for i in range(2):
        _, label = ds[i]
        assert np.array_equal(label.numpy(), expected[("train", i)])
    # the first 33 pixels hold every colour once, in CAMVID32 order, then an unknown colour
    assert ds[0][1].ravel()[:33].tolist() == [i for _, i in CAMVID32.values()] + [255]


def test_camvid_full_release_rejects_unknown_class_name(tmp_path):
    folder, _ = write_camvid_full(tmp_path)
    with (folder / "class_dict.csv").open("a") as fh:
        fh.write("Spaceship,1,1,1\n")
    with pytest.raises(DataError, match="Spaceship"):
        build_dataset(eval_cfg("camvid", tmp_path), "train", train=False)


def test_camvid_both_layouts_need_an_explicit_choice(tmp_path):
    folder, _ = write_camvid_segnet(tmp_path)
    (folder / "class_dict.csv").write_text("name,r,g,b\nSky,128,128,128\n")
    with pytest.raises(DataError, match="camvid_layout"):
        build_dataset(eval_cfg("camvid", tmp_path), "train", train=False)
    ds = build_dataset(eval_cfg("camvid", tmp_path, camvid_layout="segnet"), "train", train=False)
    assert ds.layout == "segnet"


# --------------------------------------------------------------------------- Cityscapes
def test_cityscapes_labelids_to_trainids(tmp_path):
    folder, raw = write_cityscapes(tmp_path)
    cfg = eval_cfg("cityscapes", tmp_path)
    ds = build_dataset(cfg, "train", train=False)
    assert len(ds) == 2 and len(build_dataset(cfg, "trainval", train=False)) == 3
    assert ds.info.num_classes == 19 and ds.version.startswith("Cityscapes gtFine 32x24")
    lut = np.full(256, 255)
    for k, v in CS_TRAIN_ID.items():
        lut[k] = v
    for i, city in enumerate(("aachen", "bochum")):
        _, label = ds[i]
        assert np.array_equal(label.numpy(), lut[raw[("train", city)]])
    first_pixels = ds[0][1].ravel()[:34].tolist()
    assert first_pixels == [CS_TRAIN_ID.get(i, 255) for i in range(34)]


def test_cityscapes_fallback_table_matches_cityscapesscripts():
    from hsbench.data.info import CITYSCAPES_LABELID_TO_TRAINID

    assert CITYSCAPES_LABELID_TO_TRAINID == CS_TRAIN_ID
    labels = pytest.importorskip("cityscapesscripts.helpers.labels", reason="optional cityscapesscripts not installed")
    official = {l.id: l.trainId for l in labels.labels if l.id >= 0 and 0 <= l.trainId < 19}
    assert official == CITYSCAPES_LABELID_TO_TRAINID


def test_cityscapes_missing_label_names_the_file(tmp_path):
    folder, _ = write_cityscapes(tmp_path)
    (folder / "gtFine/train/bochum/bochum_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DataError, match=r"bochum_000000_000019_gtFine_labelIds\.png"):
        build_dataset(eval_cfg("cityscapes", tmp_path), "train", train=False)


# --------------------------------------------------------------------------- VOC
@pytest.mark.parametrize("nested, palette", [(False, True), (True, False)])
def test_voc_with_sbd(tmp_path, nested, palette):
    folder, raw = write_voc(tmp_path, nested=nested, palette=palette)
    cfg = eval_cfg("voc", tmp_path)
    ds = build_dataset(cfg, "train_aug", train=False)
    assert len(ds) == 3 and len(build_dataset(cfg, "val", train=False)) == 1
    assert ds.info.num_classes == 21 and ds.version == "PASCAL VOC 2012 + SBD (SegmentationClassAug)"
    for i, name in enumerate(["2007_000032", "2008_000002", "2011_003276"]):
        image, label = ds[i]
        expected = np.where(raw[name] > 20, 255, raw[name])
        assert np.array_equal(label.numpy(), expected)
        assert image.shape == (3, H, W)
    assert ds[0][1][1, :3].tolist() == [255, 255, 255]


def test_voc_rejects_colour_coded_labels(tmp_path):
    folder, _ = write_voc(tmp_path)
    Image.fromarray(rng_image(0)).save(folder / "SegmentationClassAug" / "2007_000033.png")
    ds = build_dataset(eval_cfg("voc", tmp_path), "val", train=False)
    with pytest.raises(DataError, match="2007_000033.png.*RGB"):
        ds[0]


# --------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_and_learnable_shaped():
    cfg = DataConfig(dataset="synthetic", synthetic_length=12, synthetic_size=(32, 48))
    a = build_dataset(cfg, "train", train=False)
    b = build_dataset(cfg, "train", train=False)
    assert len(a) == 12 and a.info.num_classes == 4
    for i in (0, 5, 11):
        xa, ya = a[i]
        xb, yb = b[i]
        assert xa.shape == (3, 32, 48) and ya.shape == (32, 48)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], build_dataset(cfg, "val", train=False)[0][0])
    assert not torch.equal(a[0][0], build_dataset(cfg.replace(synthetic_seed=1), "train", False)[0][0])
    seen = torch.cat([a[i][1].unique() for i in range(len(a))]).unique().tolist()
    assert set(seen) == {0, 1, 2, 3, 255}
    with pytest.raises(IndexError):
        a.load(12)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("dataset, split", [("camvid", "train"), ("cityscapes", "train"), ("voc", "train_aug")])
def test_missing_folder_error_names_folder_and_source(tmp_path, dataset, split):
    with pytest.raises(DataError) as err:
        build_dataset(eval_cfg(dataset, tmp_path), split, train=False)
    msg = str(err.value)
    assert str(tmp_path / dataset) in msg and "expected" in msg and "http" in msg
    assert "\n" not in msg


def test_missing_folder_hints_when_root_is_the_dataset_folder(tmp_path):
    write_camvid_segnet(tmp_path)
    with pytest.raises(DataError, match="pass its parent"):
        build_dataset(eval_cfg("camvid", tmp_path / "camvid"), "train", train=False)


def test_malformed_camvid_folders(tmp_path):
    folder = tmp_path / "camvid"
    (folder / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{folder}.*neither"):
        build_dataset(eval_cfg("camvid", tmp_path), "train", train=False)
    folder, _ = write_camvid_segnet(tmp_path)
    for p in (folder / "valannot").iterdir():
        p.unlink()
    (folder / "valannot").rmdir()
    with pytest.raises(DataError, match=f"{folder} has no valannot/"):
        build_dataset(eval_cfg("camvid", tmp_path), "val", train=False)
    (folder / "train" / "0001TP_train000.png").unlink()
    with pytest.raises(DataError, match=f"{folder}: 1 file.*0001TP_train000.png"):
        build_dataset(eval_cfg("camvid", tmp_path), "train", train=False)
    (folder / "test.txt").write_text("only-one-token.png\n")
    with pytest.raises(DataError, match="test.txt line 1"):
        build_dataset(eval_cfg("camvid", tmp_path), "test", train=False)


def test_malformed_voc_and_cityscapes_folders(tmp_path):
    (tmp_path / "voc" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{tmp_path / 'voc'} has no SegmentationClassAug"):
        build_dataset(eval_cfg("voc", tmp_path), "val", train=False)
    (tmp_path / "voc" / "SegmentationClassAug").mkdir()
    with pytest.raises(DataError, match=r"ImageSets/Segmentation/val\.txt"):
        build_dataset(eval_cfg("voc", tmp_path), "val", train=False)
    (tmp_path / "cityscapes" / "leftImg8bit").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{tmp_path / 'cityscapes'} has no leftImg8bit/val/"):
        build_dataset(eval_cfg("cityscapes", tmp_path), "val", train=False)


def test_dataset_info_without_probe_reads_nothing(tmp_path):
    info = dataset_info(eval_cfg("voc", tmp_path / "absent"), probe=False)
    assert info.num_classes == 21 and info.ignore_index == 255 and info.version == ""
