"""Evaluation metrics (issue 3 item 5): confusion matrix, mIoU & co., trimap band, evaluate()."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from hsbench.engine.config import EvalConfig
from hsbench.engine.evaluate import evaluate
from hsbench.engine.metrics import boundary_band, confusion_matrix, metrics_from_confusion

torch.set_num_threads(1)
IGNORE = 255


def _np_confusion(pred: np.ndarray, gt: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), np.int64)
    for p, t in zip(pred.ravel(), gt.ravel()):
        if t != IGNORE:
            cm[t, p] += 1
    return cm


def _np_metrics(cm: np.ndarray, absent: str = "exclude") -> dict:
    """Independent, loop-based metric computation from a confusion matrix."""
    k = cm.shape[0]
    ious, accs = [], []
    for c in range(k):
        tp = cm[c, c]
        fn = cm[c, :].sum() - tp
        fp = cm[:, c].sum() - tp
        if tp + fn + fp == 0:
            ious.append({"exclude": None, "one": 1.0, "zero": 0.0}[absent])
        else:
            ious.append(tp / (tp + fn + fp))
        accs.append(tp / (tp + fn) if tp + fn > 0 else None)
    present = [v for v in ious if v is not None]
    present_acc = [v for v in accs if v is not None]
    return {
        "miou": sum(present) / len(present),
        "macc": sum(present_acc) / len(present_acc),
        "pixel_acc": sum(cm[c, c] for c in range(k)) / cm.sum(),
        "iou": ious,
        "acc": accs,
    }


def _random_split(seed, k=6, n=3, h=13, w=17):
    """Predictions/labels with ignore pixels, a class absent from both (4), and one only predicted (5)."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.randint(0, 4, (n, h, w), generator=g)  # classes 4, 5 never in GT
    gt[torch.rand(n, h, w, generator=g) < 0.25] = IGNORE
    pred = torch.randint(0, 4, (n, h, w), generator=g)
    pred[torch.rand(n, h, w, generator=g) < 0.05] = 5  # class 5 predicted, never true
    return pred, gt, k


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("absent", ["exclude", "one", "zero"])
def test_metrics_equal_independent_numpy(seed, absent):
    pred, gt, k = _random_split(seed)
    cm = confusion_matrix(pred, gt, k, IGNORE)
    ref_cm = _np_confusion(pred.numpy(), gt.numpy(), k)
    np.testing.assert_array_equal(cm.numpy(), ref_cm)
    assert cm.sum() == (gt != IGNORE).sum()  # ignore pixels never counted

    got = metrics_from_confusion(cm, absent)
    want = _np_metrics(ref_cm, absent)
    for key in ("miou", "macc", "pixel_acc"):
        assert got[key] == pytest.approx(want[key], rel=1e-12)
    for c in range(k):
        if want["iou"][c] is None:
            assert math.isnan(got["iou"][c])
        else:
            assert got["iou"][c] == pytest.approx(want["iou"][c], rel=1e-12)
        if want["acc"][c] is None:
            assert math.isnan(got["acc"][c])
        else:
            assert got["acc"][c] == pytest.approx(want["acc"][c], rel=1e-12)
    # class 4: absent from both; class 5: predicted only -> IoU 0, counted in every rule
    assert got["iou"][5] == 0.0
    if absent == "exclude":
        assert math.isnan(got["iou"][4])
    # accumulation over batches equals one big matrix
    split = sum(confusion_matrix(pred[i], gt[i], k, IGNORE) for i in range(pred.shape[0]))
    assert torch.equal(split, cm)


def test_confusion_matrix_rejects_out_of_range_and_shape_mismatch():
    with pytest.raises(ValueError, match="lie in"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 7]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="square"):
        metrics_from_confusion(np.zeros((2, 3)))


def test_boundary_band_on_hand_made_label():
    """Vertical boundary between columns 9 and 10 of a 20x20 map; w = 3 -> columns 7..12."""
    lab = torch.zeros(20, 20, dtype=torch.long)
    lab[:, 10:] = 1
    band = boundary_band(lab, width=3, ignore_index=IGNORE)
    cols = torch.zeros(20, dtype=torch.bool)
    cols[7:13] = True
    assert torch.equal(band, cols[None, :].expand(20, 20))
    # no boundary at the image border, none in a constant map
    assert not boundary_band(torch.zeros(8, 8, dtype=torch.long), 3).any()
    # width 1 -> columns 9, 10
    assert boundary_band(lab, 1)[0].nonzero().flatten().tolist() == [9, 10]


def test_boundary_band_ignore_pixels_never_counted_but_bound_classes():
    lab = torch.zeros(1, 12, 12, dtype=torch.long)
    lab[:, :, 6:] = IGNORE  # class 0 | void
    band = boundary_band(lab, width=2, ignore_index=IGNORE)
    assert band[0, :, 4:6].all() and not band[0, :, :4].any()
    assert not band[0, :, 6:].any()  # void pixels themselves never in the band


def test_trimap_iou_from_evaluate_on_known_boundary():
    """Prediction correct only inside the band: trimap mIoU = 1, full mIoU lower and known."""
    lab = torch.zeros(20, 20, dtype=torch.long)
    lab[:, 10:] = 1
    pred = torch.full((20, 20), 2)  # class 2 outside the band: wrong
    pred[:, 7:13] = lab[:, 7:13]

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return nn.functional.one_hot(pred, 3).permute(2, 0, 1)[None].float().expand(x.shape[0], -1, -1, -1)

    ds = [(torch.zeros(3, 20, 20), lab)]
    res = evaluate(Fixed(), ds, num_classes=3, class_names=["a", "b", "c"], cfg=EvalConfig(trimap_width=3))
    assert res.metrics["trimap_miou"] == pytest.approx(1.0)
    cm = _np_confusion(pred.numpy(), lab.numpy(), 3)
    want = _np_metrics(cm)
    assert res.metrics["miou"] == pytest.approx(want["miou"])
    # class 0: 60 correct (cols 7..9) of 200 GT pixels, no false positive -> IoU 60/200;
    # class 2: predicted on 280 pixels, never true -> IoU 0
    assert res.per_class_iou == pytest.approx({"a": 0.3, "b": 0.3, "c": 0.0})
    assert res.metrics["miou"] == pytest.approx(0.2)
    assert np.array(res.trimap_confusion).sum() == 20 * 6


class _TinyDataset(Dataset):
    """Images at a reduced 'eval resolution', labels at native size, with ignore pixels."""

    def __init__(self, n=4, k=5, native=(12, 16), low=(6, 8)):
        g = torch.Generator().manual_seed(7)
        self.images = torch.randn(n, 3, *low, generator=g)
        self.labels = torch.randint(0, k - 1, (n, *native), generator=g)  # class k-1 absent
        self.labels[torch.rand(n, *native, generator=g) < 0.2] = IGNORE

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


class _Conv(nn.Module):
    def __init__(self, k=5):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, k, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("hflip", [False, True])
def test_evaluate_equals_numpy_with_resize_and_protocol(hflip):
    ds, model, k = _TinyDataset(), _Conv(), 5
    res = evaluate(model, ds, num_classes=k, cfg=EvalConfig(hflip=hflip, batch_size=2),
                   split="test", eval_resolution=(8, 6))
    # independent prediction: resize logits (or averaged softmax) bilinearly to native, argmax
    with torch.no_grad():
        out = model(ds.images)
        if hflip:
            out = out.softmax(1) + model(ds.images.flip(-1)).flip(-1).softmax(1)
        up = nn.functional.interpolate(out, size=(12, 16), mode="bilinear", align_corners=False)
    cm = _np_confusion(up.argmax(1).numpy(), ds.labels.numpy(), k)
    assert res.confusion == cm.tolist()
    want = _np_metrics(cm)
    assert res.metrics["miou"] == pytest.approx(want["miou"])
    assert res.metrics["macc"] == pytest.approx(want["macc"])
    assert res.metrics["pixel_acc"] == pytest.approx(want["pixel_acc"])
    p = res.protocol
    assert p["hflip_tta"] is hflip and p["absent_class"] == "exclude" and p["ignore_index"] == IGNORE
    assert p["eval_resolution"] == [8, 6] and p["num_images"] == 4 and p["split"] == "test"
    assert p["class_names"] == ["0", "1", "2", "3", "4"] and p["trimap_width_px"] == 3
    assert res.num_images == 4 and res.images_per_s > 0
    assert model.training  # evaluate restores the mode


def test_evaluate_hflip_changes_a_non_symmetric_model():
    ds, model = _TinyDataset(), _Conv()
    a = evaluate(model, ds, num_classes=5, cfg=EvalConfig(hflip=False))
    b = evaluate(model, ds, num_classes=5, cfg=EvalConfig(hflip=True))
    assert a.confusion != b.confusion


def test_evaluate_max_images_and_class_name_check():
    ds, model = _TinyDataset(), _Conv()
    res = evaluate(model, ds, num_classes=5, cfg=EvalConfig(max_images=1))
    assert res.num_images == 1
    assert np.array(res.confusion).sum() == int((ds.labels[0] != IGNORE).sum())
    with pytest.raises(ValueError, match="class names"):
        evaluate(model, ds, num_classes=5, class_names=["a"])
