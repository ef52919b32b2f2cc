"""TrainConfig / EvalConfig (issue 3 items 4-5; paper Sec. 4.1, Table 1)."""

import json

import pytest

from hsbench.engine.config import TABLE1, EvalConfig, TrainConfig


@pytest.mark.parametrize(
    "dataset,batch,lr0,p,t_images,loss",
    [
        ("voc", 32, 1e-4, 3.0, 3_200_000, "ce"),
        ("cityscapes", 16, 1e-3, 0.9, 1_400_000, "bootstrapped_ce"),
        ("camvid", 16, 1e-3, 2.0, 240_000, "bootstrapped_ce"),
    ],
)
def test_presets_are_table1_with_t_in_images(dataset, batch, lr0, p, t_images, loss):
    cfg = TrainConfig.preset(dataset)
    assert (cfg.batch_size, cfg.lr0, cfg.poly_power, cfg.loss) == (batch, lr0, p, loss)
    # Table 1's t counts images seen: iterations = t / batch
    assert cfg.iterations * cfg.batch_size == t_images
    assert cfg.images_seen == t_images
    assert cfg.betas == (0.5, 0.999) and cfg.weight_decay == 0.0
    assert TABLE1[dataset]["t_images"] == t_images


def test_preset_overrides_and_aliases():
    cfg = TrainConfig.preset("camvid", iterations=200, batch_size=4)
    assert (cfg.iterations, cfg.batch_size, cfg.poly_power) == (200, 4, 2.0)
    assert TrainConfig.preset("pascal_voc").lr0 == 1e-4
    with pytest.raises(ValueError, match="no Table 1 preset"):
        TrainConfig.preset("ade20k")
    with pytest.raises(ValueError, match="unknown train option"):
        TrainConfig.preset("camvid", iters=3)


def test_poly_lr_formula():
    cfg = TrainConfig(iterations=100, lr0=1e-3, poly_power=2.0)
    assert cfg.lr_at(0) == pytest.approx(1e-3)
    assert cfg.lr_at(50) == pytest.approx(1e-3 * 0.25)
    assert cfg.lr_at(100) == 0.0


def test_train_config_roundtrip_json_and_hashable():
    cfg = TrainConfig(iterations=10, loss_params={"threshold": 0.25, "k": 100}, seed=4)
    d = cfg.to_dict()
    assert d["loss_params"] == {"k": 100, "threshold": 0.25} and d["betas"] == [0.5, 0.999]
    back = TrainConfig.from_dict(json.loads(json.dumps(d)))
    assert back == cfg and hash(back) == hash(cfg)
    assert back.loss_kwargs == {"threshold": 0.25, "k": 100}


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"iterations": -1}, "iterations"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr0": -1.0}, "lr0"),
        ({"loss": "dice"}, "unknown loss"),
        ({"betas": (0.5, 1.5)}, "betas"),
        ({"amp_dtype": "float8"}, "amp_dtype"),
        ({"loss": "ce", "loss_params": {"k": 3}}, "takes no parameter"),
    ],
)
def test_train_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_unknown_keys_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown train option\(s\) \['lr'\]; allowed keys: .*lr0"):
        TrainConfig.from_dict({"lr": 0.1})
    with pytest.raises(ValueError, match=r"unknown eval option\(s\) \['tta'\]; allowed keys: .*hflip"):
        EvalConfig.from_dict({"tta": True})


def test_eval_config_defaults_and_roundtrip():
    e = EvalConfig()
    assert (e.hflip, e.absent_class, e.trimap_width, e.split) == (False, "exclude", 3, None)
    assert EvalConfig.from_dict(e.to_dict()) == e
    with pytest.raises(ValueError, match="absent_class"):
        EvalConfig(absent_class="nan")
    with pytest.raises(ValueError, match="trimap_width"):
        EvalConfig(trimap_width=0)
