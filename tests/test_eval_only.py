"""Evaluation-only runs of trained weights: model.weights + train.iterations = 0 (issue 9 item 4)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from hsbench.data import DataConfig, build_dataset
from hsbench.engine import evaluate
from hsbench.engine.config import EvalConfig, TrainConfig
from hsbench.engine.run import run_variant
from hsbench.errors import ConfigError, WeightsError
from hsbench.models import build_model, load_weights, save_weights
from hsbench.models.config import ModelConfig
from hsbench.models.official import release_arch, release_key_map
from hsbench.models.meta_block import release_coordinates

DATA = DataConfig(dataset="synthetic", synthetic_size=(64, 96), synthetic_length=3)
EVAL_ONLY = TrainConfig(iterations=0, batch_size=2)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights")
    model = build_model(template="camvid-s", num_classes=4)
    save_weights(model, folder / "camvid-s-4.pt")
    return folder


def test_eval_only_run_records_weights_and_scores_them_unchanged(tmp_path, weights_dir):
    cfg = ModelConfig(template="camvid-s", num_classes=4, weights="camvid-s-4.pt")
    res = run_variant(cfg, DATA, EVAL_ONLY, EvalConfig(), run_dir=tmp_path / "run", device="cpu", weights_root=weights_dir)
    path = weights_dir / "camvid-s-4.pt"
    assert res.iterations_done == 0 and res.final_loss is None and res.checkpoint_path is None
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert res.weights_file == "camvid-s-4.pt"
    assert res.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    direct = evaluate(load_weights(path), build_dataset(DATA, "val", train=False), num_classes=4, device="cpu")
    assert res.confusion_matrix == direct.confusion


def test_weights_root_from_environment(tmp_path, weights_dir, monkeypatch):
    monkeypatch.setenv("HSBENCH_WEIGHTS", str(weights_dir))
    cfg = ModelConfig(template="camvid-s", num_classes=4, weights="camvid-s-4.pt")
    res = run_variant(cfg, DATA, EVAL_ONLY, run_dir=tmp_path, device="cpu")
    assert res.weights_file == "camvid-s-4.pt"


def test_eval_only_errors_name_the_problem(tmp_path, weights_dir):
    with pytest.raises(WeightsError, match=r"'missing\.pth' is missing: looked for .*missing\.pth"):
        run_variant(ModelConfig(num_classes=4, weights="missing.pth"), DATA, EVAL_ONLY, run_dir=tmp_path,
                    device="cpu", weights_root=weights_dir)
    with pytest.raises(ConfigError, match="iterations = 0 only evaluates"):
        run_variant(ModelConfig(num_classes=4), DATA, EVAL_ONLY, run_dir=tmp_path, device="cpu")
    with pytest.raises(ConfigError, match="template: config 'cityscapes-m', file 'camvid-s'"):
        run_variant(ModelConfig(template="cityscapes-m", num_classes=4, weights="camvid-s-4.pt"), DATA, EVAL_ONLY,
                    run_dir=tmp_path, device="cpu", weights_root=weights_dir)
    with pytest.raises(ConfigError, match="iterations must be >= 1"):
        TrainConfig(iterations=-1)


def test_weights_do_not_change_variant_ids_of_configs_without_them():
    plain = ModelConfig(template="camvid-s")
    assert "weights" not in plain.to_dict() and "semantics" not in plain.to_dict()
    assert ModelConfig(semantics="release", weights="a.pth").to_dict()["weights"] == "a.pth"


CAMVID = Path(os.environ.get("HSBENCH_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.mark.skipif(not (CAMVID / "camvid").is_dir(), reason="real CamVid not found (../shared/data/camvid or $HSBENCH_DATA)")
def test_release_camvid_checkpoint_is_scored_on_the_11_classes(tmp_path):
    """A 12-class release CamVid model: its void logit is left out, the protocol's 11 classes are scored."""
    torch.manual_seed(2)
    model = build_model(template="camvid-s", semantics="release")
    own = model.state_dict()
    sd = {r: own[k] for k, r in release_key_map(model).items()}
    sd["decoder.coord36_48"] = release_coordinates(36, 48)
    torch.save({"state_dict": sd, "arch": release_arch("camvid-s")}, tmp_path / "camvid_efficientnet_b1_hyperseg-s.pth")
    cfg = ModelConfig(template="camvid-s", semantics="release", weights="camvid_efficientnet_b1_hyperseg-s.pth")
    data = DataConfig(dataset="camvid", root=str(CAMVID))
    res = run_variant(cfg, data, EVAL_ONLY, EvalConfig(max_images=1), run_dir=tmp_path / "run", device="cpu",
                      weights_root=tmp_path)
    assert res.configs["model"]["num_classes"] == 12 and res.configs["model"]["semantics"] == "release"
    assert len(res.confusion_matrix) == 11 and res.protocol["num_classes"] == 11


EVAL_STUDY = """
[study]
name = "evalonly"

[base.model]
template = "camvid-s"
backbone = "tf_efficientnet_lite0"
num_classes = 4
weights = "lite0-4.pt"

[base.data]
dataset = "synthetic"
synthetic_size = [64, 64]
synthetic_length = 2

[base.train]
iterations = 0

[base.eval]
max_images = 2

[base.speed]
min_warmup = 1
max_warmup = 2
warmup_window = 1
timed_frames = 2
repeats = 1
bootstrap_samples = 10
cpu_threads = 1

[base.measure]
counters = ["thop"]

[[variants]]
name = "given-weights"
"""


def test_study_evaluates_given_weights_and_stores_their_name_and_digest(tmp_path, monkeypatch, capsys):
    from hsbench.cli import main
    from hsbench.store import Store

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HSBENCH_WEIGHTS", raising=False)
    torch.manual_seed(0)
    folder = tmp_path / "weights"
    save_weights(build_model(template="camvid-s", backbone="tf_efficientnet_lite0", num_classes=4), folder / "lite0-4.pt")
    study = tmp_path / "evalonly.toml"
    study.write_text(EVAL_STUDY)
    url = f"sqlite:///{tmp_path / 'hs.db'}"
    assert main(["run", str(study), "--db", url, "--device", "cpu", "--weights-root", str(tmp_path / "none")]) == 2
    assert "lite0-4.pt' is missing" in capsys.readouterr().err
    assert not (tmp_path / "hs.db").exists()
    assert main(["run", str(study), "--db", url, "--device", "cpu", "--weights-root", str(folder)]) == 0
    with Store.open(url, create=False) as store:
        (run,) = store.list_runs(study="evalonly")
        d = store.get_run(run.id)
    digest = hashlib.sha256((folder / "lite0-4.pt").read_bytes()).hexdigest()
    assert d.training.weights_file == "lite0-4.pt" and d.training.weights_sha256 == digest
    assert d.training.iterations_done == 0 and d.record.budget_iters == 0
    assert d.speed[0].weights == "given" and d.speed[0].fps > 0 and 0.0 <= d.metrics.miou <= 1.0


def test_release_study_rows_land_under_the_paper_rows_they_reproduce():
    from hsbench.reporting.measured import DATASET_TABLE, find_paper_row, variant_knobs
    from hsbench.reporting.paper import get_table
    from hsbench.studies import load_study

    study = load_study(Path(__file__).resolve().parents[1] / "studies" / "release.toml", check_data=False)
    assert {v.model.template for v in study.variants} == {"camvid-s", "cityscapes-m", "cityscapes-s", "voc-l"}
    labels = set()
    for v in study.variants:
        assert v.model.semantics == "release" and v.model.weights and v.train.iterations == 0
        table = get_table(DATASET_TABLE[v.data.dataset])
        row = find_paper_row(table, variant_knobs(v.config_dict(), v.resolution_text))
        assert row is not None, v.name
        labels.add((table.id, row.label))
    assert len(labels) == 4
