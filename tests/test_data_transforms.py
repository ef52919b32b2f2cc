"""Joint image/label transforms of hsbench.data (HyperSeg Sec. 4.1 augmentation).

Images here encode their label: each class has its own colour, so after any
geometric transform the (denormalised) colour of a pixel must still name the
pixel's label. Labels must only ever hold valid ids or 255.
"""

from __future__ import annotations

import pytest
import torch

from hsbench.data import DataConfig, EvalTransform, TrainTransform, build_dataset, build_transform, pad_collate
from hsbench.data.config import IMAGENET_MEAN, IMAGENET_STD

torch.set_num_threads(1)

# 11 well-separated, non-black colours, one per class
PALETTE = torch.tensor(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 190], [128, 128, 128]],
    dtype=torch.uint8,
)


def denorm(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x * std + mean) * 255


def blocky_pair(h=48, w=64, seed=0, ignore_block=True):
    """Label made of 8x8 blocks of classes 0..10 (+ one 255 block); image = palette[label]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 11, (h // 8, w // 8), generator=g)
    label = coarse.repeat_interleave(8, 0).repeat_interleave(8, 1).to(torch.uint8)
    image = PALETTE[label.long()].permute(2, 0, 1).contiguous()
    if ignore_block:
        label[:8, :8] = 255
        image[:, :8, :8] = 0
    return image, label


def colour_class(image: torch.Tensor) -> torch.Tensor:
    """Nearest palette class of each pixel of a denormalised image (3, H, W) -> (H, W)."""
    d = ((image.permute(1, 2, 0)[..., None, :] - PALETTE.float()) ** 2).sum(-1)
    return d.argmin(-1)


def _interior(label: torch.Tensor) -> torch.Tensor:
    """Pixels off the crop border whose 3x3 neighbourhood holds a single label value."""
    y = label.float()[None, None]
    hi = torch.nn.functional.max_pool2d(y, 3, 1, 1)
    lo = -torch.nn.functional.max_pool2d(-y, 3, 1, 1)
    out = (hi == lo)[0, 0]
    out[[0, -1], :] = False
    out[:, [0, -1]] = False
    return out


def test_hflip_keeps_image_and_label_aligned():
    # asymmetric pattern: left half class 1 with a class-3 column at x=2, right half class 2
    label = torch.ones(6, 10, dtype=torch.uint8)
    label[:, 5:] = 2
    label[:, 2] = 3
    image = PALETTE[label.long()].permute(2, 0, 1).contiguous()
    t = TrainTransform(crop_size=None, scale_range=(1.0, 1.0), hflip=True)
    outcomes = set()
    for seed in range(40):
        torch.manual_seed(seed)
        x, y = t(image, label)
        flipped = torch.equal(y, label.flip(-1).long())
        assert flipped or torch.equal(y, label.long())
        assert torch.allclose(denorm(x), PALETTE[y].permute(2, 0, 1).float(), atol=1e-3)
        outcomes.add(flipped)
    assert outcomes == {True, False}  # p = 0.5: both happen


def test_no_hflip_when_disabled():
    image, label = blocky_pair()
    t = TrainTransform(crop_size=None, scale_range=(1.0, 1.0), hflip=False)
    for seed in range(10):
        torch.manual_seed(seed)
        x, y = t(image, label)
        assert torch.equal(y, label.long())


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(crop_size=(40, 56), scale_range=(0.5, 2.0)),  # CamVid / Cityscapes recipe
        dict(crop_size=None, scale_range=(0.5, 2.0)),
        dict(crop_size=(96, 96), scale_range=(0.25, 1.0), rotation=30.0, color_jitter=(0.0, 0.0, 0.0, 0.0)),
    ],
)
def test_random_geometry_keeps_alignment_and_valid_labels(kwargs):
    image, label = blocky_pair()
    t = TrainTransform(hflip=True, **kwargs)
    out_hw = kwargs["crop_size"] or (48, 64)
    for seed in range(12):
        torch.manual_seed(seed)
        x, y = t(image, label)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape) == (3, *out_hw) and tuple(y.shape) == out_hw
        values = set(y.unique().tolist())
        assert values <= set(range(11)) | {255}  # nearest only: no new ids
        labelled = y != 255
        if labelled.sum() < 50:
            continue
        seen = colour_class(denorm(x))
        # away from class boundaries (where bilinear blends colours) image and label agree exactly
        interior = _interior(y) & labelled
        if interior.any():
            assert (seen[interior] == y[interior]).float().mean().item() > 0.99, f"seed {seed}"
        # and the label fits the image better than the same label moved by one pixel
        inner = labelled.clone()
        inner[[0, -1], :] = False
        inner[:, [0, -1]] = False
        agree = (seen[inner] == y[inner]).float().mean().item()
        for shift in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            moved = torch.roll(y, shift, dims=(0, 1))
            assert agree > (seen[inner] == moved[inner]).float().mean().item(), f"seed {seed}, shift {shift}"
        # padding: black image pixels (beyond the source) carry 255
        black = denorm(x).abs().sum(0) < 1.0
        if black.any():
            assert (y[black] == 255).float().mean().item() > 0.95


def test_crop_pads_label_with_ignore_and_image_with_zero():
    image, label = blocky_pair(ignore_block=False)
    t = TrainTransform(crop_size=(80, 100), scale_range=(1.0, 1.0), hflip=False)
    x, y = t(image, label)
    assert torch.equal(y[:48, :64], label.long())  # pad at bottom/right only
    assert (y[48:] == 255).all() and (y[:, 64:] == 255).all()
    raw = denorm(x)
    assert raw[:, 48:].abs().max() < 1e-3 and raw[:, :, 64:].abs().max() < 1e-3


def test_voc_defaults_pad_to_512_with_rotation_and_jitter():
    cfg = DataConfig(dataset="voc")
    t = build_transform(cfg, train=True)
    assert isinstance(t, TrainTransform) and t.rotation == 30.0 and t.crop_size == (512, 512)
    image, label = blocky_pair(h=120, w=160)
    for seed in range(3):
        torch.manual_seed(seed)
        x, y = t(image, label)
        assert x.shape == (3, 512, 512) and y.shape == (512, 512)
        assert set(y.unique().tolist()) <= set(range(11)) | {255}
        assert (y[200:] == 255).all()  # scale <= 1 on a 120x160 image: the rest is padding


def test_colour_jitter_changes_image_not_label():
    image, label = blocky_pair()
    t = TrainTransform(crop_size=None, scale_range=(1.0, 1.0), hflip=False, color_jitter=(0.5, 0.5, 0.5, 0.2))
    plain = TrainTransform(crop_size=None, scale_range=(1.0, 1.0), hflip=False)
    torch.manual_seed(0)
    x, y = t(image, label)
    assert torch.equal(y, label.long())
    assert not torch.allclose(x, plain(image, label)[0])


def test_same_seed_same_sample():
    image, label = blocky_pair()
    t = build_transform(DataConfig(dataset="camvid", crop_size=(32, 32)), train=True)
    torch.manual_seed(3)
    a = t(image, label)
    torch.manual_seed(3)
    b = t(image, label)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_eval_resizes_image_only_and_normalises():
    image = torch.full((3, 48, 64), 128, dtype=torch.uint8)
    _, label = blocky_pair()
    x, y = EvalTransform(eval_resolution=(32, 24))(image, label)  # (W, H)
    assert x.shape == (3, 24, 32) and torch.equal(y, label.long())
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x[:, 5, 7], expected, atol=1e-5)
    x, y = EvalTransform(None)(image, label)
    assert x.shape == (3, 48, 64)


def test_build_transform_follows_config():
    cfg = DataConfig(dataset="camvid", eval_resolution=(768, 576), crop_size=(360, 480))
    assert isinstance(build_transform(cfg, train=False), EvalTransform)
    assert build_transform(cfg, train=False).eval_resolution == (768, 576)
    t = build_transform(cfg, train=True)
    assert t.scale_range == (0.5, 2.0) and t.hflip and t.crop_size == (360, 480) and t.rotation == 0


def test_synthetic_through_dataloader_with_augmentation():
    cfg = DataConfig(dataset="synthetic", synthetic_length=6, synthetic_size=(32, 32), scale_range=(0.5, 2.0))
    ds = build_dataset(cfg, "train", train=True)
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert x.shape == (3, 3, 32, 32) and y.shape == (3, 32, 32) and y.dtype == torch.int64
    assert set(y.unique().tolist()) <= {0, 1, 2, 3, 255}


def test_pad_collate_pads_with_ignore():
    a = (torch.ones(3, 4, 5), torch.zeros(4, 5, dtype=torch.int64))
    b = (torch.ones(3, 6, 3), torch.ones(6, 3, dtype=torch.int64))
    x, y = pad_collate([a, b])
    assert x.shape == (2, 3, 6, 5) and y.shape == (2, 6, 5)
    assert (y[0, 4:] == 255).all() and (y[1, :, 3:] == 255).all() and (x[0, :, 4:] == 0).all()


def test_transform_rejects_misshaped_input():
    with pytest.raises(TypeError, match="uint8"):
        TrainTransform()(torch.zeros(3, 4, 4), torch.zeros(4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="label"):
        EvalTransform()(torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(4, 5, dtype=torch.uint8))
