"""One finished (or failed) run as one typed record: :class:`RunRecord`.

The worker (:mod:`hsbench.worker`) fills a :class:`RunRecord`, writes it to
``record.json`` in the run folder (:meth:`RunRecord.to_json`), the store
persists it column by column (:meth:`hsbench.store.Store.finish_run`) and
reporting reads it back (:meth:`hsbench.store.Store.finished_runs`). There is
no renaming on the way: every field of a sub-record is a column of the same
name in its table, every scalar field of :class:`RunRecord` a column of
``runs``, and the units below are the units stored.

=====================  ==========  ============================================
record                 table       what
=====================  ==========  ============================================
:class:`RunRecord`     runs        the run: variant, seed, device, budget, dataset
:class:`MetricsRecord` metrics     evaluation scores (fractions in [0, 1])
:class:`TrainingRecord` training   how training and evaluation ran (s, images/s)
:class:`ComplexityRecord` complexity  parameter counts, GMACs (billions)
:class:`SpeedRecord`   speed       FPS (frames/s), latencies (ms), settings, provenance
=====================  ==========  ============================================

Adding a metric is one field here and one column of the same name in
:mod:`hsbench.store.schema` (plus the Alembic revision that adds the column);
``tests/test_record.py`` checks that fields and columns agree.

:meth:`RunRecord.from_dict` refuses unknown and missing keys
(:class:`RecordError`): a typo never lands silently somewhere. This module
imports neither torch nor SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TypeVar

from hsbench.errors import HsbenchError

#: Version of the ``record.json`` layout (1 was the untyped dict of the first release).
RECORD_FORMAT = 2
#: Values of :attr:`RunRecord.status`.
RECORD_STATUSES = ("finished", "failed")


class RecordError(HsbenchError):
    """A ``record.json`` (or a dict meant as a record) has an unknown, missing or mistyped field."""


T = TypeVar("T")


@dataclass(frozen=True)
class MetricsRecord:
    """Evaluation of one run (paper Sec. 4 metrics); accuracies are fractions in [0, 1].

    Attributes:
        split: evaluation split, ``"val"`` or ``"test"``.
        miou: mean intersection over union over the classes (fraction).
        macc: mean per-class accuracy (fraction).
        pixel_acc: pixel accuracy (fraction).
        trimap_miou: mIoU inside the boundary band (trimap), or None when not computed.
        per_class_iou: class name -> IoU (None: absent from prediction and ground truth).
        per_class_acc: class name -> accuracy (None: absent from ground truth).
        confusion_matrix: (K, K) counts, rows = ground truth, columns = prediction.
        protocol: the metric protocol (classes, ignore index, absent-class rule, ...).
    """

    split: str | None
    miou: float | None
    macc: float | None
    pixel_acc: float | None
    trimap_miou: float | None
    per_class_iou: dict[str, float | None] | None
    per_class_acc: dict[str, float | None] | None
    confusion_matrix: list[list[int]] | None
    protocol: dict[str, Any] | None

    def __post_init__(self) -> None:
        for name in ("miou", "macc", "pixel_acc", "trimap_miou"):
            value = getattr(self, name)
            if value is not None and not (0.0 <= value <= 1.0):
                raise RecordError(f"metrics.{name} must be a fraction in [0, 1], got {value!r} (0.784, not 78.4)")
        for name in ("per_class_iou", "per_class_acc"):
            for cls, value in (getattr(self, name) or {}).items():
                if value is not None and not (0.0 <= value <= 1.0):
                    raise RecordError(f"metrics.{name}[{cls!r}] must be a fraction in [0, 1], got {value!r}")


@dataclass(frozen=True)
class TrainingRecord:
    """How one run trained and evaluated.

    Attributes:
        device: torch device that trained and evaluated (``"cuda:1"``, ``"cpu"``).
        device_name: the GPU's name, or ``"cpu"``.
        world_size: training processes (DDP under torchrun).
        iterations_done: training iterations completed (resumed ones included).
        start_iteration: iteration this attempt resumed from (0 = fresh).
        final_loss: loss of the last iteration run in this attempt (None if none ran).
        train_wall_time_s: seconds spent training in this attempt (s).
        eval_wall_time_s: seconds spent evaluating (s).
        train_images_per_s: training throughput (images/s; 0 when no iteration ran).
        eval_images_per_s: evaluation throughput (images/s).
        weights_file: file name of the weights the run started from (``model.weights``),
            None when it started from scratch.
        weights_sha256: SHA-256 (hex) of that file.
    """

    device: str | None
    device_name: str | None
    world_size: int | None
    iterations_done: int | None
    start_iteration: int | None
    final_loss: float | None
    train_wall_time_s: float | None
    eval_wall_time_s: float | None
    train_images_per_s: float | None
    eval_images_per_s: float | None
    weights_file: str | None
    weights_sha256: str | None


@dataclass(frozen=True)
class ComplexityRecord:
    """Size and cost of the variant's model at its resolution (:mod:`hsbench.measure.complexity`).

    A counter that did not run is None, never 0.

    Attributes:
        resolution: ``"WxH"`` in pixels of the input counted.
        grid: ``"N_hxN_w"`` weight grid at that resolution, None for static models.
        params_learned: trainable parameters, a count (the paper's "Params").
        params_weight_mapper: parameters of the weight mapper heads, a count (Table S3's |theta^w|).
        generated_weights: dynamic weights generated per image, a count.
        gmacs_thop: thop multiply-accumulates, billions (the paper's "GFLOPs" column).
        gmacs_fvcore: fvcore multiply-accumulates, billions.
        gflops: floating point operations (2 per MAC), billions (torch.utils.flop_counter).
        gmacs_dpwconv: MACs of the DPWConv layers alone, billions.
        gmacs_weight_mapper: MACs of the weight mapper heads alone (Eq. 7), billions.
        counters: the counters that ran (``thop``, ``fvcore``, ``flop_counter``).
        wall_time_s: seconds the counting took (s).
    """

    resolution: str | None
    grid: str | None
    params_learned: int | None
    params_weight_mapper: int | None
    generated_weights: int | None
    gmacs_thop: float | None
    gmacs_fvcore: float | None
    gflops: float | None
    gmacs_dpwconv: float | None
    gmacs_weight_mapper: float | None
    counters: list[str] | None
    wall_time_s: float | None


@dataclass(frozen=True)
class SpeedRecord:
    """One FPS measurement with the paper's protocol (Sec. 4) and everything to interpret it.

    Attributes:
        device: torch device timed (``"cuda:1"``, ``"cpu"``); a ``cpu`` figure is never a GPU figure.
        device_name: ``"NVIDIA H100 80GB HBM3"``, ``"AMD EPYC 7B13"``, ...
        fps: end-to-end frames/s from the median latency (upload .. prediction download).
        fps_ci_low: lower end of the 95% bootstrap confidence interval of ``fps``, frames/s.
        fps_ci_high: upper end of that interval, frames/s.
        latency_median_ms: median end-to-end latency, ms.
        latency_mean_ms: mean end-to-end latency, ms.
        latency_p10_ms: 10th percentile, ms.
        latency_p90_ms: 90th percentile, ms.
        latency_std_ms: standard deviation, ms.
        model_only_latency_ms: median forward-pass-only latency (no transfers, no argmax), ms.
        precision: ``fp32``, ``fp16`` or ``bf16`` (SpeedConfig.precision).
        resolution: ``"WxH"`` of the timed input, pixels.
        batch_size: images per timed frame (1 in the paper).
        tta_hflip: test-time horizontal-flip augmentation on.
        bn_fused: BN fused into the convolutions (supplement Sec. E).
        warmup_frames: warm-up frames before timing.
        warmup_converged: the warm-up rule was met before ``max_warmup``.
        weights: ``"trained"`` (the run's checkpoint) or ``"random init"``.
        dpwconv_backend: the DPWConv implementation that ran (``reference``, ``torch``,
            ``triton``, ...), None when the model did not say.
        protocol: name of the timing protocol.
        driver_version, cuda_version, cudnn_version, torch_version, hsbench_version,
            git_commit: provenance of the figure (None where not applicable).
        config: the :class:`hsbench.measure.config.SpeedConfig` settings as a dict.
        settings: the effective settings measure_fps recorded (timers, threads, shapes, ...).
        provenance: :func:`hsbench.measure.provenance.collect_provenance`.
    """

    device: str | None
    device_name: str | None
    fps: float | None
    fps_ci_low: float | None
    fps_ci_high: float | None
    latency_median_ms: float | None
    latency_mean_ms: float | None
    latency_p10_ms: float | None
    latency_p90_ms: float | None
    latency_std_ms: float | None
    model_only_latency_ms: float | None
    precision: str | None
    resolution: str | None
    batch_size: int | None
    tta_hflip: bool | None
    bn_fused: bool | None
    warmup_frames: int | None
    warmup_converged: bool | None
    weights: str | None
    dpwconv_backend: str | None
    protocol: str | None
    driver_version: str | None
    cuda_version: str | None
    cudnn_version: str | None
    torch_version: str | None
    hsbench_version: str | None
    git_commit: str | None
    config: dict[str, Any] | None
    settings: dict[str, Any] | None
    provenance: dict[str, Any] | None

    @property
    def device_kind(self) -> str | None:
        """``"cuda"`` of ``"cuda:1"``: the column a figure belongs in."""
        return None if self.device is None else self.device.split(":", 1)[0]


@dataclass(frozen=True)
class RunRecord:
    """One run of one ``(variant, seed)``: what a worker returns and ``record.json`` holds.

    Attributes:
        variant_id: hash of the resolved variant config (:meth:`hsbench.config.Variant.variant_id`).
        seed: training seed.
        status: ``"finished"`` or ``"failed"``.
        error: one-line error of a failed run, else None.
        device: the device as the user gave it (``"cuda:1"``, ``"auto"``); the
            resolved one is in ``training.device`` and ``speed.device``.
        budget_iters: the study's training budget, iterations (paper Table 1).
        max_iters: the ``--max-iters`` override used, None = the full budget.
        dataset: dataset name (``"camvid"``, ``"synthetic"``, ...).
        dataset_version: what the data loader reports it read.
        resolution: ``"WxH"`` of training/evaluation/FPS, pixels.
        host: machine that ran the worker.
        wall_time_s: seconds the worker took, all phases (s).
        checkpoint_path: the final training checkpoint.
        metrics, training, complexity, speed: the sub-records (None for a failed run).
    """

    variant_id: str
    seed: int
    status: str
    error: str | None
    device: str | None
    budget_iters: int | None
    max_iters: int | None
    dataset: str | None
    dataset_version: str | None
    resolution: str | None
    host: str | None
    wall_time_s: float | None
    checkpoint_path: str | None
    metrics: MetricsRecord | None = None
    training: TrainingRecord | None = None
    complexity: ComplexityRecord | None = None
    speed: SpeedRecord | None = None

    def __post_init__(self) -> None:
        if self.status not in RECORD_STATUSES:
            raise RecordError(f"record status {self.status!r} is not one of {', '.join(RECORD_STATUSES)}")

    # ---- serialisation ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: every field, sub-records nested, plus ``"format"``."""
        return {"format": RECORD_FORMAT, **dataclasses.asdict(self)}

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON (NaN and inf are refused: they are stored as None).

        Raises:
            RecordError: a non-finite float somewhere in the record.
        """
        try:
            return json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        except ValueError as exc:
            raise RecordError(f"run record of {self.variant_id} holds a NaN or inf: {exc}") from None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        """Inverse of :meth:`to_dict`.

        Raises:
            RecordError: another ``format``, an unknown or missing field, a value of the wrong type.
        """
        if not isinstance(d, Mapping):
            raise RecordError(f"a run record must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        fmt = d.pop("format", None)
        if fmt != RECORD_FORMAT:
            raise RecordError(f"record format {fmt!r} is not {RECORD_FORMAT} (written by another hsbench)")
        return _build(cls, d, "record")

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        """Parse :meth:`to_json` output.

        Raises:
            RecordError: not JSON, or as :meth:`from_dict`.
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RecordError(f"run record is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_json` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
        import tempfile

        path = Path(path)
        text = self.to_json()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunRecord:
        """Read a ``record.json``.

        Raises:
            RecordError: unreadable, not JSON, or not a record of this format.
        """
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise RecordError(f"cannot read {path}: {exc.strerror or exc}") from None
        return cls.from_json(text)


#: Sub-record classes by the :class:`RunRecord` field that holds them.
SUB_RECORDS: dict[str, type] = {
    "metrics": MetricsRecord,
    "training": TrainingRecord,
    "complexity": ComplexityRecord,
    "speed": SpeedRecord,
}


def scalar_fields(cls: type) -> tuple[str, ...]:
    """Names of the fields of ``cls`` that are not sub-records (the columns of its table)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in SUB_RECORDS)


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None when it is None, NaN or inf (what records store)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ---- strict construction from plain data ----------------------------------------------


def _check(value: Any, tp: Any, where: str) -> Any:
    """``value`` if it has type ``tp`` (ints accepted as floats), else RecordError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except RecordError as exc:
                errors.append(exc)
        raise errors[0] if errors else RecordError(f"{where} must not be null")
    if origin is dict:
        if not isinstance(value, Mapping):
            raise RecordError(f"{where} must be an object, got {value!r}")
        _, vt = typing.get_args(tp)
        return {str(k): _check(v, vt, f"{where}[{k!r}]") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"{where} must be a list, got {value!r}")
        (et,) = typing.get_args(tp)
        return [_check(v, et, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise RecordError(f"{where} must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise RecordError(f"{where} must be an integer, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise RecordError(f"{where} must be true or false, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise RecordError(f"{where} must be a string, got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return _build(tp, value, where)
    raise TypeError(f"record field type {tp!r} is not supported")  # pragma: no cover - a bug here


def _build(cls: type[T], data: Any, where: str) -> T:
    """``cls(**data)`` with unknown, missing and mistyped fields refused (RecordError)."""
    if not isinstance(data, Mapping):
        raise RecordError(f"{where} must be an object, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecordError(f"unknown {where} field(s) {unknown}; allowed: {', '.join(fields)}")
    required = [
        n for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in data]
    if missing:
        raise RecordError(f"{where} lacks field(s) {missing}")
    kwargs = {k: _check(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def build(cls: type[T], data: Mapping[str, Any], where: str | None = None) -> T:
    """A record of type ``cls`` from plain data (a dict or an ORM row's columns), strictly.

    Raises:
        RecordError: an unknown, missing or mistyped field.
    """
    return _build(cls, data, where or cls.__name__)


__all__ = [
    "RECORD_FORMAT",
    "RECORD_STATUSES",
    "SUB_RECORDS",
    "ComplexityRecord",
    "MetricsRecord",
    "RecordError",
    "RunRecord",
    "SpeedRecord",
    "TrainingRecord",
    "build",
    "finite_or_none",
    "scalar_fields",
]
