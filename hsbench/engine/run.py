"""One variant end to end: build, train (resumable), evaluate, return a :class:`RunResult`.

This is the entry point the study runner calls (issue 3, item 6). Everything a
run writes lives in its ``run_dir``:

* ``config.json``  the four config sections (model resolved where the model says so);
* ``checkpoint.pt`` the latest training checkpoint (see :mod:`hsbench.engine.train`);
  present at the start, the run resumes from it;
* ``result.json``  the :class:`RunResult`, written atomically at the end.

Trained weights (``model.weights``: a release checkpoint or an hsbench weights
file, :func:`hsbench.models.load_weights`) replace the initialisation; with
``train.iterations = 0`` the run only evaluates them. A relative weights path is
found under ``weights_root`` (``--weights-root`` / ``$HSBENCH_WEIGHTS``); the
file's name and SHA-256 are recorded in the result.

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

#: Environment variable naming the folder relative ``model.weights`` paths are found in.
WEIGHTS_ENV = "HSBENCH_WEIGHTS"

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
        weights_file: file name of ``model.weights`` (None when the run started from scratch).
        weights_sha256: SHA-256 of that file (hex).
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
    weights_file: str | None = None
    weights_sha256: str | None = None

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


def resolve_weights_path(weights: str | os.PathLike, weights_root: str | os.PathLike | None = None) -> Path:
    """Where ``model.weights`` lies: itself if absolute, else under ``weights_root`` or ``$HSBENCH_WEIGHTS`` (else the cwd).

    Raises:
        WeightsError: if the file does not exist, naming the path looked at and how to point elsewhere.
    """
    from hsbench.errors import WeightsError

    p = Path(weights).expanduser()
    root = weights_root if weights_root is not None else os.environ.get(WEIGHTS_ENV)
    if not p.is_absolute():
        p = Path(root).expanduser() / p if root else Path.cwd() / p
    if not p.is_file():
        where = f"--weights-root / ${WEIGHTS_ENV} = {root!r}" if root else f"no --weights-root / ${WEIGHTS_ENV} given"
        raise WeightsError(
            f"weights file {str(Path(weights))!r} is missing: looked for {str(p)!r} ({where}); put the file there "
            "or point --weights-root / HSBENCH_WEIGHTS at the folder that holds it"
        )
    return p


def load_variant_weights(model_cfg: Any, weights_root: str | os.PathLike | None = None) -> tuple[torch.nn.Module, Path]:
    """Load ``model_cfg.weights`` and check that they are the network ``model_cfg`` describes.

    Returns:
        (model in eval mode, resolved path).

    Raises:
        WeightsError: missing or unreadable file (see :func:`resolve_weights_path`).
        ConfigError: the file's network differs from the config's (names the fields).
    """
    from hsbench.models import load_weights, resolve

    path = resolve_weights_path(model_cfg.weights, weights_root)
    model = load_weights(path)
    want = resolve(model_cfg).to_dict()
    have = model.config.to_dict()
    ignore = {"weights", "pretrained", "backbone_weights"}
    differ = sorted(k for k in set(want) | set(have) if k not in ignore and want.get(k) != have.get(k))
    if differ:
        detail = ", ".join(f"{k}: config {want.get(k)!r}, file {have.get(k)!r}" for k in differ)
        raise ConfigError(f"model.weights {str(path)!r} hold another network than the model config ({detail}); "
                          "set the model section to the file's values")
    return model, path


def dataset_num_classes(model_cfg: Any, k: int) -> int:
    """The model's class count for a dataset of ``k`` classes when the config leaves it open.

    ``k``, except for a ``semantics="release"`` template that predicts one class
    more (CamVid's 12 with void): ``k + 1``; evaluation then scores the ``k``.
    """
    if getattr(model_cfg, "semantics", "paper") == "release":
        from hsbench.models import get_template

        extra = get_template(model_cfg.template).release_num_classes
        if extra == k + 1:
            return extra
    return k


class _ScoredClasses(torch.nn.Module):
    """Logits (B, K + 1, H, W) of a model with the release's void logit -> the K scored classes."""

    def __init__(self, model: torch.nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, : self.k]


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
    weights_root: str | os.PathLike | None = None,
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
        weights_root: folder of relative ``model.weights`` paths (default ``$HSBENCH_WEIGHTS``).

    Returns:
        A :class:`RunResult`, also written to ``run_dir/result.json``.

    Raises:
        ConfigError: the model's class count disagrees with the dataset's,
            CUDA was asked for without one, ``train.iterations = 0`` without
            ``model.weights``, or weights of another network than the config's.
        hsbench.errors.WeightsError: ``model.weights`` is missing or unreadable.
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
    model_classes = dataset_num_classes(model_cfg, num_classes)
    if model_cfg.num_classes is None:
        model_cfg = model_cfg.replace(num_classes=model_classes)
    elif model_cfg.num_classes not in (num_classes, model_classes):
        raise ConfigError(
            f"model has num_classes={model_cfg.num_classes} but dataset {info.name} has {num_classes} classes"
        )
    weights = getattr(model_cfg, "weights", None)
    if int(train_cfg.iterations) == 0 and not weights:
        raise ConfigError("train.iterations = 0 only evaluates trained weights; set model.weights to a checkpoint")

    seed_everything(derive_seed(train_cfg.seed, "init"))
    weights_file = weights_sha256 = None
    if model_cfg.weights:
        from hsbench.models.weights import file_sha256

        model, weights_path = load_variant_weights(model_cfg, weights_root)
        weights_file, weights_sha256 = weights_path.name, file_sha256(weights_path)
    else:
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

    if int(train_cfg.iterations) > 0:
        train_ds = build_dataset(data_cfg, data_cfg.train_split, train=True)
        tr = train(
            model, train_ds, train_cfg, device=dev, checkpoint_path=run_dir / CHECKPOINT_NAME,
            ignore_index=ignore_index, num_classes=model_classes, progress=progress,
            meta={"configs": configs},
        )
        del train_ds
        tr_fields = (tr.wall_time_s, tr.images_per_s, tr.iterations_done, tr.start_iteration, tr.last_loss,
                     tr.checkpoint_path, tr.world_size)
    else:  # evaluation only: the weights as they are
        tr_fields = (0.0, 0.0, 0, 0, None, None, hdist.world_size())
    scored = _ScoredClasses(model, num_classes) if getattr(model, "void_logit", False) else model

    split = eval_cfg.split or data_cfg.eval_split
    eval_ds = build_dataset(data_cfg, split, train=False)
    ev = evaluate(
        scored, eval_ds, num_classes=num_classes, class_names=info.class_names,
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
        train_wall_time_s=tr_fields[0],
        eval_wall_time_s=ev.wall_time_s,
        train_images_per_s=tr_fields[1],
        eval_images_per_s=ev.images_per_s,
        iterations_done=tr_fields[2],
        start_iteration=tr_fields[3],
        final_loss=tr_fields[4],
        checkpoint_path=tr_fields[5],
        device=str(dev),
        device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        world_size=tr_fields[6],
        dataset_version=info.version,
        configs=configs,
        weights_file=weights_file,
        weights_sha256=weights_sha256,
    )
    if hdist.is_main():
        write_json_atomic(run_dir / RESULT_NAME, result.to_dict())
    hdist.barrier()
    return result


__all__ = [
    "CHECKPOINT_NAME",
    "RESULT_NAME",
    "WEIGHTS_ENV",
    "RunResult",
    "dataset_num_classes",
    "load_variant_weights",
    "resolve_weights_path",
    "run_variant",
    "write_json_atomic",
]
