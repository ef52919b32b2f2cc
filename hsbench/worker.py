"""The worker: one ``(variant, seed)`` in, one :class:`~hsbench.record.RunRecord` out.

This is what a submitit job pickles and runs (:func:`run_job`); it touches no
database. Its phases, all on ONE device resolved once by
:func:`hsbench.device.resolve_device` (``--device cuda:1`` trains, evaluates
and times on GPU 1):

1. **complexity**: builds the model and counts parameters and MACs at the
   variant's resolution (:func:`hsbench.measure.complexity.complexity`);
2. **train+eval**: :func:`hsbench.engine.run.run_variant` trains for the
   budget (paper Table 1, or ``--max-iters``) and scores the evaluation split;
   it resumes from the checkpoint in the run folder;
3. **speed**: loads the trained weights and times the model with the paper's
   FPS protocol (:func:`hsbench.measure.speed.measure_fps`, Sec. 4) on the
   same device;
4. writes the record to ``record.json`` in the run folder (temp file +
   ``os.replace``) and returns it.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hsbench.config import Variant
from hsbench.record import (
    ComplexityRecord,
    MetricsRecord,
    RecordError,
    RunRecord,
    SpeedRecord,
    TrainingRecord,
    finite_or_none,
)

if TYPE_CHECKING:  # torch stays out of the import of this module
    import torch

    from hsbench.engine.run import RunResult
    from hsbench.measure.complexity import Complexity
    from hsbench.measure.speed import SpeedResult

#: File a worker writes its record to, in the run folder.
RECORD_NAME = "record.json"

#: Called with the name of each phase: ``"complexity"``, ``"train+eval"``, ``"speed"``.
PhaseCallback = Callable[[str], None]


@dataclass(frozen=True)
class Job:
    """Everything a worker needs for one ``(variant, seed)``; picklable.

    Attributes:
        variant: the resolved variant (its data root absolute: workers may start elsewhere).
        seed: the training seed.
        device: the device as the user gave it (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        max_iters: ``--max-iters`` override of the training budget, None = the study's budget.
        run_dir: the run folder (checkpoint, ``record.json``).
    """

    variant: Variant
    seed: int
    device: str
    max_iters: int | None
    run_dir: str

    @property
    def variant_id(self) -> str:
        """The variant's id (hash of its resolved config)."""
        return self.variant.variant_id()

    @property
    def record_path(self) -> Path:
        """``<run_dir>/record.json``."""
        return Path(self.run_dir) / RECORD_NAME


def metrics_record(result: RunResult) -> MetricsRecord:
    """The :class:`MetricsRecord` of a :class:`hsbench.engine.run.RunResult` (fractions in [0, 1]).

    The scalar scores of ``result.metrics`` go to the fields of the same names,
    so a score that evaluation adds needs only its record field (and column).

    Raises:
        RecordError: a score without a :class:`MetricsRecord` field (it would be lost).
    """
    names = {f.name for f in dataclasses.fields(MetricsRecord)}
    unknown = sorted(set(result.metrics) - names)
    if unknown:
        raise RecordError(f"evaluation scores {unknown} have no MetricsRecord field; add them to hsbench.record")
    scores = {name: finite_or_none(result.metrics.get(name)) for name in names}
    return MetricsRecord(**{
        **scores,
        "split": result.protocol.get("split"),
        "per_class_iou": {k: finite_or_none(v) for k, v in result.per_class_iou.items()},
        "per_class_acc": {k: finite_or_none(v) for k, v in result.per_class_acc.items()},
        "confusion_matrix": [[int(c) for c in row] for row in result.confusion_matrix],
        "protocol": dict(result.protocol),
    })


def training_record(result: RunResult) -> TrainingRecord:
    """The :class:`TrainingRecord` of a :class:`hsbench.engine.run.RunResult`: its fields of
    the same names (s, images/s; a non-finite loss becomes None)."""
    values = {f.name: getattr(result, f.name) for f in dataclasses.fields(TrainingRecord)}
    values["final_loss"] = finite_or_none(values["final_loss"])
    return TrainingRecord(**values)


def complexity_record(cx: Complexity, *, counters: tuple[str, ...], wall_time_s: float) -> ComplexityRecord:
    """The :class:`ComplexityRecord` of :class:`hsbench.measure.complexity.Complexity`.

    A counter left out of ``counters`` is stored as None (missing), never as 0.
    """
    w, h = cx.resolution
    ran = set(counters)
    return ComplexityRecord(
        resolution=f"{w}x{h}",
        grid=None if cx.grid is None else f"{cx.grid[0]}x{cx.grid[1]}",
        params_learned=int(cx.params_learned),
        params_weight_mapper=int(cx.params_weight_mapper),
        generated_weights=int(cx.generated_weights),
        gmacs_thop=finite_or_none(cx.gmacs_thop) if "thop" in ran else None,
        gmacs_fvcore=finite_or_none(cx.gmacs_fvcore) if "fvcore" in ran else None,
        gflops=finite_or_none(cx.gflops) if "flop_counter" in ran else None,
        gmacs_dpwconv=finite_or_none(cx.gmacs_dpwconv),
        gmacs_weight_mapper=finite_or_none(cx.gmacs_weight_mapper),
        counters=list(counters),
        wall_time_s=wall_time_s,
    )


def speed_record(sr: SpeedResult, *, weights: str) -> SpeedRecord:
    """The :class:`SpeedRecord` of a :class:`hsbench.measure.speed.SpeedResult` (frames/s, ms).

    ``device`` is the torch device timed (``"cuda:1"``), from the measurement's settings.
    """
    st, prov, cfg = sr.settings, sr.provenance, sr.config
    w, h = st.get("resolution") or cfg.get("resolution") or (None, None)
    cudnn = prov.get("cudnn_version")
    return SpeedRecord(
        device=str(st.get("device") or sr.device),
        device_name=st.get("device_name"),
        fps=finite_or_none(sr.fps),
        fps_ci_low=finite_or_none(sr.fps_ci95[0]),
        fps_ci_high=finite_or_none(sr.fps_ci95[1]),
        latency_median_ms=finite_or_none(sr.latency.median_ms),
        latency_mean_ms=finite_or_none(sr.latency.mean_ms),
        latency_p10_ms=finite_or_none(sr.latency.p10_ms),
        latency_p90_ms=finite_or_none(sr.latency.p90_ms),
        latency_std_ms=finite_or_none(sr.latency.std_ms),
        model_only_latency_ms=finite_or_none(sr.model_only.median_ms),
        precision=cfg.get("precision"),
        resolution=None if w is None else f"{w}x{h}",
        batch_size=cfg.get("batch_size"),
        tta_hflip=cfg.get("tta_hflip"),
        bn_fused=sr.bn_fused,
        warmup_frames=sr.warmup_frames,
        warmup_converged=sr.warmup_converged,
        weights=weights,
        dpwconv_backend=st.get("dpwconv_backend"),
        protocol=sr.protocol,
        driver_version=prov.get("driver_version"),
        cuda_version=prov.get("cuda_version"),
        cudnn_version=None if cudnn is None else str(cudnn),
        torch_version=prov.get("torch_version"),
        hsbench_version=prov.get("hsbench_version"),
        git_commit=prov.get("git_commit"),
        config=dict(cfg),
        settings=dict(st),
        provenance=dict(prov),
    )


def measure_speed(job: Job, model: torch.nn.Module, device: torch.device, *, weights: str) -> SpeedRecord:
    """Time ``model`` with the variant's speed settings (paper Sec. 4 protocol).

    A study's ``speed.device = "auto"`` (the default) becomes the run's resolved
    ``device`` (``cuda:1`` stays ``cuda:1``): the FPS is measured where training
    ran. A study that names a speed device (``cpu`` for a CPU figure beside GPU
    training) is timed there; the record's ``speed.device`` says which.
    """
    from hsbench.device import resolve_device
    from hsbench.measure.speed import measure_fps

    wanted = job.variant.speed.device
    timed_on = device if wanted == "auto" else resolve_device(wanted)
    cfg = job.variant.speed.replace(device=str(timed_on))
    record = speed_record(measure_fps(model, cfg), weights=weights)
    backend_for = getattr(model, "dpw_backend_for", None)  # HyperSeg: which DPWConv implementation ran
    if record.dpwconv_backend is None and callable(backend_for):
        record = dataclasses.replace(record, dpwconv_backend=backend_for(timed_on.type))
    return record


def run_job(job: Job, on_phase: PhaseCallback | None = None) -> RunRecord | None:
    """Run one ``(variant, seed)``: complexity, train + eval, speed; write and return its record.

    Args:
        job: what to run (:class:`Job`).
        on_phase: called with ``"complexity"``, ``"train+eval"``, ``"speed"``
            (default: print ``phase: <name>``, which lands in a submitit log).

    Returns:
        The finished :class:`RunRecord`, also written atomically to ``job.record_path``;
        None on the ranks other than 0 of a DDP job (``RANK`` > 0), which train and evaluate only.

    Raises:
        ConfigError: an unusable device (e.g. ``cuda:1`` on a one-GPU machine).
        Whatever the phases raise (DataError, TrainingDiverged, CUDA OOM, ...).
    """
    import torch

    from hsbench.data import dataset_info
    from hsbench.device import resolve_device
    from hsbench.engine import run as engine_run
    from hsbench.engine.distributed import launch_rank
    from hsbench.engine.train import load_checkpoint
    from hsbench.measure.complexity import complexity
    from hsbench.models import build_model

    phase = on_phase or (lambda name: print(f"phase: {name}", flush=True))
    t0 = time.perf_counter()
    device = resolve_device(job.device)  # the ONE resolution: training, evaluation and FPS
    v = job.variant.for_seed(job.seed)
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    evaluate_only = int(v.train.iterations) == 0  # model.weights as they are (--max-iters does not apply)
    train_cfg = v.train if job.max_iters is None or evaluate_only else v.train.replace(iterations=int(job.max_iters))
    bare_cfg = v.model.replace(pretrained=False, backbone_weights=None)  # weights don't change counts

    # Under DDP (torchrun, or a submitit job of several tasks: hsbench.jobs.WorkerTask) every
    # rank trains and evaluates; complexity, speed and the record are rank 0's alone.
    main_rank = launch_rank() == 0
    if main_rank:
        phase("complexity")
        t = time.perf_counter()
        model = build_model(bare_cfg)
        counters = tuple(v.measure.counters)
        cx = complexity_record(complexity(model, v.resolution, counters=counters), counters=counters,
                               wall_time_s=time.perf_counter() - t)
        del model

    phase("train+eval")
    result = engine_run.run_variant(v.model, v.data, train_cfg, v.eval, run_dir=run_dir, device=device)
    if not main_rank:
        return None

    phase("speed")
    model = build_model(bare_cfg)
    weights = "random init"
    if evaluate_only:  # the weights that were evaluated ($HSBENCH_WEIGHTS / --weights-root)
        model, _ = engine_run.load_variant_weights(v.model)
        weights = "given"
    elif result.checkpoint_path and Path(result.checkpoint_path).is_file():
        state = load_checkpoint(result.checkpoint_path, map_location="cpu")
        model.load_state_dict(state["model"])
        weights = "trained"
    speed = measure_speed(job, model, device, weights=weights)
    del model

    record = RunRecord(
        variant_id=job.variant_id,
        seed=job.seed,
        status="finished",
        error=None,
        device=job.device,
        budget_iters=v.train.iterations,
        max_iters=job.max_iters,
        dataset=v.data.dataset,
        dataset_version=result.dataset_version or dataset_info(v.data).version,
        resolution=v.resolution_text,
        host=socket.gethostname(),
        wall_time_s=time.perf_counter() - t0,
        checkpoint_path=result.checkpoint_path,
        metrics=metrics_record(result),
        training=training_record(result),
        complexity=cx,
        speed=speed,
    )
    record.write(job.record_path)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return record


def read_record(job: Job) -> RunRecord | None:
    """The finished record in ``job``'s run folder if it is one of this job, else None.

    A record of another variant, seed or ``--max-iters``, of another format or
    unreadable counts as absent (the job runs again).
    """
    path = job.record_path
    if not path.is_file():
        return None
    try:
        rec = RunRecord.read(path)
    except RecordError:
        return None
    ok = (rec.status == "finished" and rec.variant_id == job.variant_id and rec.seed == job.seed
          and rec.max_iters == job.max_iters)
    return rec if ok else None


def clear_run_dir(run_dir: str | os.PathLike[str]) -> None:
    """Delete what a ``--force`` rerun must not reuse: checkpoint, record, result, error."""
    from hsbench.engine.run import CHECKPOINT_NAME, RESULT_NAME

    for name in (CHECKPOINT_NAME, RECORD_NAME, RESULT_NAME, ERROR_NAME):
        try:
            (Path(run_dir) / name).unlink()
        except FileNotFoundError:
            pass


#: File the traceback of a failed job goes to, in its run folder.
ERROR_NAME = "error.txt"


__all__ = [
    "ERROR_NAME",
    "Job",
    "PhaseCallback",
    "RECORD_NAME",
    "clear_run_dir",
    "complexity_record",
    "measure_speed",
    "metrics_record",
    "read_record",
    "run_job",
    "speed_record",
    "training_record",
]
