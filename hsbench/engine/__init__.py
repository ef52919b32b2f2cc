"""hsbench.engine: losses, the training loop, evaluation and the run API (issue 3, items 3-6).

Public entry points:

* :func:`run_variant` -> :class:`RunResult`: build, train (resumable), evaluate one variant;
* :func:`train` / :func:`evaluate`: the two halves, usable on any model and dataset;
* :class:`TrainConfig` (paper Sec. 4.1, Table 1) and :class:`EvalConfig`;
* :class:`BootstrappedCrossEntropy`, :class:`CrossEntropy`, :func:`build_loss` (supplement Sec. B);
* :func:`confusion_matrix`, :func:`metrics_from_confusion`, :func:`boundary_band`.
"""

import importlib
from typing import Any

#: Public name -> the submodule that defines it, imported on first use (PEP 562) so that
#: ``import hsbench.<pkg>.config`` and the CLI stay torch-free.
_EXPORTS = {
    "TABLE1": "config",
    "EvalConfig": "config",
    "TrainConfig": "config",
    "CheckpointError": "errors",
    "TrainingDiverged": "errors",
    "EvalResult": "evaluate",
    "evaluate": "evaluate",
    "BootstrappedCrossEntropy": "losses",
    "CrossEntropy": "losses",
    "build_loss": "losses",
    "boundary_band": "metrics",
    "confusion_matrix": "metrics",
    "metrics_from_confusion": "metrics",
    "RunResult": "run",
    "run_variant": "run",
    "TrainResult": "train",
    "load_checkpoint": "train",
    "save_checkpoint": "train",
    "train": "train",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "TABLE1", "TrainConfig", "EvalConfig",
    "TrainingDiverged", "CheckpointError",
    "EvalResult", "evaluate",
    "BootstrappedCrossEntropy", "CrossEntropy", "build_loss",
    "boundary_band", "confusion_matrix", "metrics_from_confusion",
    "RunResult", "run_variant",
    "TrainResult", "train", "load_checkpoint", "save_checkpoint",
]
