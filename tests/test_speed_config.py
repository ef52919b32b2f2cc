"""SpeedConfig: defaults are the paper's protocol; round trip; precise errors."""

from __future__ import annotations

import json

import pytest

from hsbench.errors import ConfigError
from hsbench.measure.config import SpeedConfig
from hsbench.values import parse_resolution


def test_defaults_follow_the_paper():
    cfg = SpeedConfig()
    assert cfg.batch_size == 1 and cfg.precision == "fp32" and cfg.fuse_bn and not cfg.tta_hflip
    assert not cfg.compile and not cfg.cuda_graphs and cfg.denormals == "flush"


def test_round_trip_through_json():
    cfg = SpeedConfig(device="cpu", resolution=(768, 576), precision="bf16", repeats=3, cpu_threads=2)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["resolution"] == [768, 576]
    assert SpeedConfig.from_dict(d) == cfg
    assert SpeedConfig.from_dict({}) == SpeedConfig()
    assert cfg.replace(repeats=1).repeats == 1


def test_unknown_key_names_the_allowed_keys():
    with pytest.raises(ValueError, match="unknown speed option.*allowed keys: device, precision") as exc:
        SpeedConfig.from_dict({"devise": "cpu"})
    assert "'devise'" in str(exc.value)
    assert isinstance(exc.value, ConfigError)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"device": "tpu"}, "device"),
        ({"precision": "int8"}, "precision"),
        ({"denormals": "zero"}, "denormals"),
        ({"resolution": (0, 4)}, "resolution"),
        ({"resolution": (4,)}, "resolution"),
        ({"batch_size": 0}, "batch_size"),
        ({"timed_frames": 0}, "timed_frames"),
        ({"repeats": -1}, "repeats"),
        ({"min_warmup": 5, "max_warmup": 2}, "max_warmup"),
        ({"warmup_rtol": 0}, "warmup_rtol"),
        ({"cpu_threads": 0}, "cpu_threads"),
        ({"compile": True, "cuda_graphs": True}, "compile"),
        ({"device": "cpu", "cuda_graphs": True}, "cuda_graphs"),
    ],
)
def test_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SpeedConfig(**kwargs)


def test_parse_resolution():
    assert parse_resolution("768x576") == (768, 576)
    assert parse_resolution("1024X512") == (1024, 512)
    for bad in ("768", "ax3", "0x4", "1x2x3"):
        with pytest.raises(ConfigError, match="resolution"):
            parse_resolution(bad)
