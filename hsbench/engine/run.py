"""One variant end to end: build, train (resumable), evaluate, return a :class:`RunResult`.

This is the entry point the study runner calls (issue 3, item 6). Everything a
run writes lives in its ``run_dir``:

* ``config.json``  the four config sections (model resolved where the model says so);
* ``checkpoint.pt`` the latest training checkpoint (see :mod:`hsbench.engine.train`);
  present at the start, the run resumes from it;
* ``result.json``  the :class:`RunResult`, written atomically at the end.

Under ``torchrun`` every process calls :func:`run_variant` with the same
arguments; training is DDP, evaluation is sharded, only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from hsbench.data import build_dataset, dataset_info
from hsbench.data.config import DataConfig
from hsbench.device import resolve_device
from hsbench.engine import distributed as hdist
from hsbench.engine.config import EvalConfig, TrainConfig
from hsbench.engine.evaluate import evaluate
from hsbench.engine.train import atomic_temp, derive_seed, seed_everything, train
from hsbench.errors import ConfigError
from hsbench.models import build_model
from hsbench.models.config import ModelConfig

CHECKPOINT_NAME = "checkpoint.pt"
RESULT_NAME = "result.json"
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class RunResult:
    """The outcome of :func:`run_variant`; JSON round-trips via :meth:`to_dict` / :meth:`from_dict`.

    Attributes:
        metrics: ``miou``, ``macc``, ``pixel_acc``, ``trimap_miou`` as fractions in [0, 1].
        per_class_iou: class name -> IoU (None = absent from prediction and GT, excluded).
        per_class_acc: class name -> accuracy (None = absent from GT).
        confusion_matrix: (K, K) nested lists, rows = ground truth, columns = prediction.
        protocol: the evaluation protocol (see :mod:`hsbench.engine.evaluate`).
        wall_time_s: seconds of this call, build + train + evaluate (s).
        train_wall_time_s: seconds spent training in this call (s).
        eval_wall_time_s: seconds spent evaluating (s).
        train_images_per_s: training throughput of this call (images/s; 0 if no
            iteration ran, e.g. a finished checkpoint).
        eval_images_per_s: evaluation throughput (images/s).
        iterations_done: training iterations completed (resumed ones included).
        start_iteration: iteration this call resumed from (0 = fresh).
        final_loss: loss of the last iteration run in this call (None if none ran).
        checkpoint_path: the final checkpoint.
        device: torch device string (``cpu``, ``cuda:0``).
        device_name: the GPU's name, or ``cpu``.
        world_size: training processes.
        dataset_version: what the data loader reports it read (``DatasetInfo.version``).
        configs: ``{"model", "data", "train", "eval"}`` dicts as run.
    """

    metrics: dict[str, float | None]
    per_class_iou: dict[str, float | None]
    per_class_acc: dict[str, float | None]
    confusion_matrix: list[list[int]]
    protocol: dict[str, Any]
    wall_time_s: float
    train_wall_time_s: float
    eval_wall_time_s: float
    train_images_per_s: float
    eval_images_per_s: float
    iterations_done: int
    start_iteration: int
    final_loss: float | None
    checkpoint_path: str | None
    device: str
    device_name: str
    world_size: int
    dataset_version: str | None
    configs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunResult":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: on a key that is not a field.
        """
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"unknown run-result key(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**dict(d))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunResult":
        """Read a ``result.json`` written by :func:`run_variant`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON via a temporary file and ``os.replace``."""
    path = Path(path)
    fd, tmp = atomic_temp(path)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def run_variant(
    model_cfg: ModelConfig,
    data_cfg: DataConfig,
    train_cfg: TrainConfig,
    eval_cfg: EvalConfig | None = None,
    *,
    run_dir: str | os.PathLike,
    device: str | torch.device = "auto",
    progress: bool | None = None,
) -> RunResult:
    """Build the model, train it (resuming from ``run_dir``), evaluate it, return the result.

    Args:
        model_cfg: :class:`hsbench.models.config.ModelConfig`; a ``num_classes``
            of ``None`` takes the dataset's class count.
        data_cfg: :class:`hsbench.data.DataConfig` (dataset, splits, eval resolution, ...).
        train_cfg: the training recipe and budget (:class:`TrainConfig`).
        eval_cfg: the evaluation protocol (:class:`EvalConfig`; default settings if None).
        run_dir: folder for the checkpoint and result files (created).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``
            (resolved by :func:`hsbench.device.resolve_device`).
        progress: progress bars; ``None`` = only when stderr is a TTY.

    Returns:
        A :class:`RunResult`, also written to ``run_dir/result.json``.

    Raises:
        ConfigError: the model's class count disagrees with the dataset's, or
            CUDA was asked for without one.
        hsbench.errors.DataError: the dataset folder is missing or malformed
            (from :mod:`hsbench.data`).
        TrainingDiverged: the loss became NaN/inf (names the iteration).
        CheckpointError: ``run_dir`` holds a checkpoint of another training config.
    """
    t0 = time.perf_counter()
    eval_cfg = eval_cfg or EvalConfig()
    dev = resolve_device(device)
    hdist.init_from_env(dev)
    run_dir = Path(run_dir)
    if hdist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
    hdist.barrier()

    info = dataset_info(data_cfg)
    num_classes = int(info.num_classes)
    ignore_index = int(info.ignore_index)
    if model_cfg.num_classes is None:
        model_cfg = model_cfg.replace(num_classes=num_classes)
    elif model_cfg.num_classes != num_classes:
        raise ConfigError(
            f"model has num_classes={model_cfg.num_classes} but dataset {info.name} has {num_classes} classes"
        )

    seed_everything(derive_seed(train_cfg.seed, "init"))
    model = build_model(model_cfg)
    resolved = model.config if isinstance(getattr(model, "config", None), ModelConfig) else model_cfg
    configs = {
        "model": resolved.to_dict(),
        "data": data_cfg.to_dict(),
        "train": train_cfg.to_dict(),
        "eval": eval_cfg.to_dict(),
    }
    if hdist.is_main():
        write_json_atomic(run_dir / CONFIG_NAME, configs)

    train_ds = build_dataset(data_cfg, data_cfg.train_split, train=True)
    tr = train(
        model, train_ds, train_cfg, device=dev, checkpoint_path=run_dir / CHECKPOINT_NAME,
        ignore_index=ignore_index, num_classes=num_classes, progress=progress,
        meta={"configs": configs},
    )
    del train_ds

    split = eval_cfg.split or data_cfg.eval_split
    eval_ds = build_dataset(data_cfg, split, train=False)
    ev = evaluate(
        model, eval_ds, num_classes=num_classes, class_names=info.class_names,
        ignore_index=ignore_index, cfg=eval_cfg, device=dev, split=split,
        eval_resolution=data_cfg.eval_resolution, progress=progress,
    )
    protocol = dict(ev.protocol, dataset=info.name, dataset_version=info.version)
    result = RunResult(
        metrics=ev.metrics,
        per_class_iou=ev.per_class_iou,
        per_class_acc=ev.per_class_acc,
        confusion_matrix=ev.confusion,
        protocol=protocol,
        wall_time_s=time.perf_counter() - t0,
        train_wall_time_s=tr.wall_time_s,
        eval_wall_time_s=ev.wall_time_s,
        train_images_per_s=tr.images_per_s,
        eval_images_per_s=ev.images_per_s,
        iterations_done=tr.iterations_done,
        start_iteration=tr.start_iteration,
        final_loss=tr.last_loss,
        checkpoint_path=tr.checkpoint_path,
        device=str(dev),
        device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        world_size=tr.world_size,
        dataset_version=info.version,
        configs=configs,
    )
    if hdist.is_main():
        write_json_atomic(run_dir / RESULT_NAME, result.to_dict())
    hdist.barrier()
    return result


__all__ = ["RunResult", "run_variant", "write_json_atomic", "CHECKPOINT_NAME", "RESULT_NAME"]
