"""run_variant (issue 3 item 6): train + evaluate + result, resume from run_dir.

The model is a tiny stand-in (patched over ``hsbench.engine.run.build_model``)
so the tests stay fast; the data are hsbench's synthetic shapes.
"""

import json
import os

import pytest
import torch
from torch import nn

from hsbench.data import DataConfig, dataset_info
from hsbench.engine import run as run_mod
from hsbench.engine.config import EvalConfig, TrainConfig
from hsbench.engine.run import RunResult, run_variant
from hsbench.engine.train import load_checkpoint
from hsbench.errors import ConfigError
from hsbench.models.config import ModelConfig

torch.set_num_threads(1)


class Tiny(nn.Module):
    """Stand-in for HyperSeg: (B, 3, H, W) -> (B, K, H, W) at half resolution, upsampled."""

    def __init__(self, cfg, crash_at=None):
        super().__init__()
        self.config = cfg
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, cfg.num_classes, 1),
        )
        self.crash_at, self.calls = crash_at, 0

    def forward(self, x):
        if self.training:
            if self.calls == self.crash_at:
                raise KeyboardInterrupt
            self.calls += 1
        y = self.body(x)
        return nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@pytest.fixture
def tiny_models(monkeypatch):
    built = []

    def build(cfg, crash_at=None):
        m = Tiny(cfg, crash_at)
        built.append(m)
        return m

    monkeypatch.setattr(run_mod, "build_model", build)
    return built


DATA = DataConfig(dataset="synthetic", synthetic_size=(24, 24), synthetic_length=8)
TRAIN = TrainConfig(iterations=6, batch_size=2, lr0=5e-3, checkpoint_every=2, seed=1,
                    deterministic=True, loss_params={"k": 64})


def test_run_variant_end_to_end(tmp_path, tiny_models):
    res = run_variant(ModelConfig(template="camvid-s"), DATA, TRAIN, EvalConfig(),
                      run_dir=tmp_path / "run", device="cpu", progress=False)
    info = dataset_info(DATA)
    k = info.num_classes
    assert tiny_models[0].config.num_classes == k  # None took the dataset's class count
    assert res.iterations_done == 6 and res.start_iteration == 0 and res.final_loss is not None
    assert res.device == "cpu" and res.device_name == "cpu" and res.world_size == 1
    assert res.dataset_version == info.version and res.protocol["dataset_version"] == info.version
    assert res.protocol["class_names"] == list(info.class_names)
    assert res.protocol["split"] == DATA.eval_split and res.protocol["num_images"] == 8
    assert len(res.confusion_matrix) == k and all(len(r) == k for r in res.confusion_matrix)
    assert 0.0 <= res.metrics["miou"] <= 1.0 and 0.0 <= res.metrics["pixel_acc"] <= 1.0
    assert set(res.per_class_iou) == set(info.class_names)
    assert res.wall_time_s >= res.train_wall_time_s + res.eval_wall_time_s > 0
    assert res.train_images_per_s > 0 and res.eval_images_per_s > 0
    # files: checkpoint at the budget, config and result written atomically
    assert load_checkpoint(res.checkpoint_path)["iteration"] == 6
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert RunResult.from_dict(saved) == res == RunResult.load(tmp_path / "run" / "result.json")
    cfgs = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfgs["train"] == TRAIN.to_dict() and cfgs["model"]["num_classes"] == k
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "config.json", "result.json"]
    mask = os.umask(0)
    os.umask(mask)
    for p in (tmp_path / "run").iterdir():  # ordinary file modes, not mkstemp's 0600
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def test_run_variant_resumes_from_run_dir_to_the_same_weights(tmp_path, tiny_models, monkeypatch):
    mc = ModelConfig(template="camvid-s")
    full = run_variant(mc, DATA, TRAIN, run_dir=tmp_path / "full", device="cpu")

    original = run_mod.build_model
    monkeypatch.setattr(run_mod, "build_model", lambda cfg: original(cfg, crash_at=3))
    with pytest.raises(KeyboardInterrupt):  # killed during iteration 3, after the checkpoint at 2
        run_variant(mc, DATA, TRAIN, run_dir=tmp_path / "run", device="cpu")
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == 2
    monkeypatch.setattr(run_mod, "build_model", original)

    res = run_variant(mc, DATA, TRAIN, run_dir=tmp_path / "run", device="cpu")
    assert res.start_iteration == 2 and res.iterations_done == 6
    a = load_checkpoint(full.checkpoint_path)["model"]
    b = load_checkpoint(res.checkpoint_path)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert res.confusion_matrix == full.confusion_matrix and res.metrics == full.metrics

    # a finished run directory: nothing to train, same scores
    again = run_variant(mc, DATA, TRAIN, run_dir=tmp_path / "run", device="cpu")
    assert again.start_iteration == 6 and again.train_images_per_s == 0.0
    assert again.metrics == full.metrics


def test_run_variant_rejects_class_mismatch_and_missing_cuda(tmp_path, tiny_models):
    with pytest.raises(ConfigError, match="num_classes=7"):
        run_variant(ModelConfig(num_classes=7), DATA, TRAIN, run_dir=tmp_path, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            run_variant(ModelConfig(), DATA, TRAIN, run_dir=tmp_path, device="cuda:0")
