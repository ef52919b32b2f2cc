"""The run record (hsbench.record): fields = columns, strict JSON, and the device it carries.

Also: ``--device cuda:1`` reaches the FPS measurement (fake CUDA, no GPU needed).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import recordkit as rk
import torch
from torch import nn

from hsbench.record import (
    RECORD_FORMAT,
    SUB_RECORDS,
    ComplexityRecord,
    MetricsRecord,
    RecordError,
    RunRecord,
    SpeedRecord,
    TrainingRecord,
    scalar_fields,
)
from hsbench.store.runs import BOOKKEEPING, ROW_CLASSES, check_columns
from hsbench.store.schema import RunRow


def full_record() -> RunRecord:
    return rk.record(
        "abc", seed=2, device="cuda:1", budget_iters=10, max_iters=None, dataset="synthetic",
        dataset_version="v1", resolution="64x64", host="box", wall_time_s=3.0, checkpoint_path="c.pt",
        metrics=rk.metrics(split="val", miou=0.5, per_class_acc={"a": 0.25, "b": None},
                           confusion_matrix=[[1, 0], [0, 1]], protocol={"ignore_index": 255}),
        training=rk.training(device="cuda:1", iterations_done=10, start_iteration=0),
        complexity=rk.complexity(resolution="64x64", params_learned=10, counters=["thop"]),
        speed=rk.speed(device="cuda:1", fps=12.5, batch_size=1, config={"device": "cuda:1"}),
    )


# --------------------------------------------------------------------------- fields = columns


@pytest.mark.parametrize("name", sorted(SUB_RECORDS))
def test_every_sub_record_field_is_a_column_of_the_same_name(name):
    cls, row = SUB_RECORDS[name], ROW_CLASSES[name]
    columns = [c.key for c in row.__table__.columns if c.key not in BOOKKEEPING]
    assert sorted(columns) == sorted(f.name for f in dataclasses.fields(cls))
    check_columns()


def test_every_scalar_field_of_the_run_record_is_a_runs_column():
    assert set(scalar_fields(RunRecord)) <= {c.key for c in RunRow.__table__.columns}
    # no catch-all column anywhere: an unknown key has nowhere to go
    for table in [RunRow, *ROW_CLASSES.values()]:
        assert "extra" not in table.__table__.columns


def test_per_class_accuracy_is_a_stored_column():
    assert "per_class_acc" in ROW_CLASSES["metrics"].__table__.columns
    assert "per_class_acc" in {f.name for f in dataclasses.fields(MetricsRecord)}


# --------------------------------------------------------------------------- JSON


def test_json_round_trip_is_exact():
    rec = full_record()
    text = rec.to_json()
    assert json.loads(text)["format"] == RECORD_FORMAT
    back = RunRecord.from_json(text)
    assert back == rec
    assert isinstance(back.speed, SpeedRecord) and back.speed.device_kind == "cuda"


def test_write_and_read_in_a_folder(tmp_path):
    rec = full_record()
    path = rec.write(tmp_path / "record.json")
    assert RunRecord.read(path) == rec
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temp file left


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(mioU=0.5), r"unknown record field\(s\) \['mioU'\]"),
    (lambda d: d["metrics"].update(mean_iou=0.5), r"unknown record.metrics field\(s\) \['mean_iou'\]"),
    (lambda d: d["speed"].pop("fps"), r"record.speed lacks field\(s\) \['fps'\]"),
    (lambda d: d["speed"].update(fps="fast"), "record.speed.fps must be a number"),
    (lambda d: d["complexity"].update(params_learned=1.5), "params_learned must be an integer"),
    (lambda d: d.update(format=1), "record format 1 is not"),
    (lambda d: d.update(status="done"), "record status 'done'"),
])
def test_unknown_missing_and_mistyped_fields_are_errors(mutate, message):
    d = json.loads(full_record().to_json())
    mutate(d)
    with pytest.raises(RecordError, match=message):
        RunRecord.from_dict(d)


def test_percentages_and_nan_never_become_records():
    with pytest.raises(RecordError, match=r"fraction in \[0, 1\].*78.4"):
        rk.metrics(miou=78.4)
    with pytest.raises(RecordError, match="per_class_acc"):
        rk.metrics(per_class_acc={"sky": 95.0})
    with pytest.raises(RecordError, match="NaN or inf"):
        rk.record("v", training=rk.training(final_loss=float("nan"))).to_json()


def test_sub_records_are_typed_and_frozen():
    rec = full_record()
    assert isinstance(rec.metrics, MetricsRecord) and isinstance(rec.training, TrainingRecord)
    assert isinstance(rec.complexity, ComplexityRecord)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.seed = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- one device


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """torch believes in two CUDA devices (nothing runs on them in these tests)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: f"Fake GPU {torch.device(d).index}")
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def test_resolve_device_honours_the_index(two_fake_gpus, monkeypatch):
    from hsbench.device import resolve_device
    from hsbench.errors import ConfigError

    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's second process
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"sees 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="--device 'gpu1'"):
        resolve_device("gpu1")


def test_only_one_resolve_device_in_hsbench():
    import importlib
    import pkgutil

    import hsbench
    from hsbench.device import resolve_device

    for info in pkgutil.walk_packages(hsbench.__path__, "hsbench."):
        if info.name.endswith("__main__") or ".migrations." in info.name:
            continue  # scripts and Alembic revisions, not library modules
        mod = importlib.import_module(info.name)
        other = getattr(mod, "resolve_device", resolve_device)
        assert other is resolve_device, f"{info.name} has its own resolve_device"


class _Stop(Exception):
    pass


def test_measure_fps_times_on_the_gpu_it_was_given(two_fake_gpus):
    """``SpeedConfig(device="cuda:1")``: the frame steps are built for cuda:1, not cuda:0."""
    from hsbench.measure.config import SpeedConfig
    from hsbench.measure.speed import measure_fps

    class NoParams(nn.Module):  # nothing to move: .to("cuda:1") works without a GPU
        def forward(self, x):
            return x

    seen = []

    def factory(model, device, cfg, host):
        seen.append(device)
        raise _Stop  # stop before anything would touch the (fake) GPU

    cfg = SpeedConfig(device="cuda:1", resolution=(8, 8), fuse_bn=False, cudnn_benchmark=False)
    with pytest.raises(_Stop):
        measure_fps(NoParams(), cfg, steps_factory=factory, provenance=False)
    assert seen == [torch.device("cuda", 1)]


def test_device_cuda_1_reaches_training_and_fps_in_the_worker(two_fake_gpus, monkeypatch, tmp_path):
    """The worker resolves ``--device cuda:1`` once and hands cuda:1 to training, evaluation AND FPS."""
    import hsbench.engine.run as engine_run
    import hsbench.measure.speed as speed_mod
    from hsbench.engine.run import RunResult
    from hsbench.measure.speed import LatencyStats, SpeedResult
    from hsbench.studies import parse_study
    from hsbench.worker import Job, run_job

    study = parse_study(STUDY)
    (v,) = study.variants
    calls = {}

    def fake_run_variant(model_cfg, data_cfg, train_cfg, eval_cfg, *, run_dir, device, progress=None):
        calls["train"] = device
        return RunResult(
            metrics={"miou": 0.5, "macc": 0.5, "pixel_acc": 0.5, "trimap_miou": None}, per_class_iou={"a": 0.5},
            per_class_acc={"a": 0.5}, confusion_matrix=[[1]], protocol={"split": "val"}, wall_time_s=1.0,
            train_wall_time_s=1.0, eval_wall_time_s=0.1, train_images_per_s=2.0, eval_images_per_s=3.0,
            iterations_done=1, start_iteration=0, final_loss=0.3, checkpoint_path=None, device=str(device),
            device_name=torch.cuda.get_device_name(device), world_size=1, dataset_version="synthetic-v1",
            configs={},
        )

    def fake_measure_fps(model, cfg, **kwargs):
        calls["fps"] = cfg.device
        lat = LatencyStats(n=1, mean_ms=2.0, median_ms=2.0, p10_ms=2.0, p90_ms=2.0, std_ms=0.0, min_ms=2.0,
                           max_ms=2.0, fps=500.0, fps_ci95=(490.0, 510.0), repeat_median_ms=(2.0,))
        return SpeedResult(device="cuda", fps=500.0, fps_ci95=(490.0, 510.0), latency=lat, model_only=lat,
                           warmup_frames=1, warmup_converged=True, bn_fused=True,
                           settings={"device": cfg.device, "device_name": "Fake GPU 1", "resolution": [64, 64]},
                           config=cfg.to_dict(), provenance={})

    monkeypatch.setattr(engine_run, "run_variant", fake_run_variant)
    monkeypatch.setattr(speed_mod, "measure_fps", fake_measure_fps)
    job = Job(variant=v, seed=0, device="cuda:1", max_iters=None, run_dir=str(tmp_path / "run"))
    record = run_job(job, on_phase=lambda name: None)
    assert calls == {"train": torch.device("cuda", 1), "fps": "cuda:1"}
    assert record.device == "cuda:1" and record.training.device == "cuda:1" and record.speed.device == "cuda:1"
    assert record.speed.device_name == "Fake GPU 1" and record.speed.fps_ci_low == 490.0
    assert RunRecord.read(tmp_path / "run" / "record.json") == record


STUDY = """
[study]
name = "one"

[base.model]
template = "camvid-s"
backbone = "tf_efficientnet_lite0"

[base.data]
dataset = "synthetic"
synthetic_size = [64, 64]
synthetic_length = 2

[base.train]
iterations = 1
batch_size = 1

[base.measure]
counters = ["thop"]
"""


def test_the_worker_maps_scores_by_name_and_refuses_a_score_without_a_field():
    from hsbench.engine.run import RunResult
    from hsbench.worker import metrics_record

    def result(scores):
        return RunResult(metrics=scores, per_class_iou={"a": 0.5}, per_class_acc={"a": 0.75},
                         confusion_matrix=[[3]], protocol={"split": "val"}, wall_time_s=1.0, train_wall_time_s=1.0,
                         eval_wall_time_s=0.1, train_images_per_s=1.0, eval_images_per_s=1.0, iterations_done=1,
                         start_iteration=0, final_loss=None, checkpoint_path=None, device="cpu",
                         device_name="cpu", world_size=1, dataset_version=None, configs={})

    m = metrics_record(result({"miou": 0.5, "macc": 0.6, "pixel_acc": 0.7, "trimap_miou": float("nan")}))
    assert (m.miou, m.macc, m.pixel_acc, m.trimap_miou, m.split) == (0.5, 0.6, 0.7, None, "val")
    assert m.per_class_acc == {"a": 0.75}
    with pytest.raises(RecordError, match=r"scores \['fwiou'\] have no MetricsRecord field"):
        metrics_record(result({"miou": 0.5, "fwiou": 0.4}))
    # the training record takes the run result's fields of the same names
    from hsbench.worker import training_record

    r = dataclasses.replace(result({"miou": 0.5}), final_loss=float("inf"), weights_file="w.pth",
                            weights_sha256="ab" * 32)
    t = training_record(r)
    assert (t.weights_file, t.weights_sha256, t.final_loss, t.device) == ("w.pth", "ab" * 32, None, "cpu")


def test_a_study_that_names_a_speed_device_is_timed_there(two_fake_gpus, monkeypatch, tmp_path):
    """speed.device = "cpu" in a study: a CPU figure beside GPU training, labelled cpu."""
    import dataclasses as dc

    import hsbench.measure.speed as speed_mod
    from hsbench.studies import parse_study
    from hsbench.worker import Job, measure_speed

    (v,) = parse_study(STUDY).variants
    seen = []
    monkeypatch.setattr(speed_mod, "measure_fps", lambda model, cfg, **kw: seen.append(cfg.device) or 1 / 0)
    for speed_device, want in (("auto", "cuda:1"), ("cpu", "cpu")):
        job = Job(variant=dc.replace(v, speed=v.speed.replace(device=speed_device)), seed=0, device="cuda:1",
                  max_iters=None, run_dir=str(tmp_path))
        with pytest.raises(ZeroDivisionError):
            measure_speed(job, nn.Identity(), torch.device("cuda", 1), weights="trained")
        assert seen[-1] == want
