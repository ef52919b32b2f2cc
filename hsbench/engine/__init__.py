"""hsbench.engine: losses, the training loop, evaluation and the run API (issue 3, items 3-6).

Public entry points:

* :func:`run_variant` -> :class:`RunResult`: build, train (resumable), evaluate one variant;
* :func:`train` / :func:`evaluate`: the two halves, usable on any model and dataset;
* :class:`TrainConfig` (paper Sec. 4.1, Table 1) and :class:`EvalConfig`;
* :class:`BootstrappedCrossEntropy`, :class:`CrossEntropy`, :func:`build_loss` (supplement Sec. B);
* :func:`confusion_matrix`, :func:`metrics_from_confusion`, :func:`boundary_band`.
"""

from hsbench.engine.config import TABLE1, EvalConfig, TrainConfig
from hsbench.engine.errors import CheckpointError, TrainingDiverged
from hsbench.engine.evaluate import EvalResult, evaluate
from hsbench.engine.losses import BootstrappedCrossEntropy, CrossEntropy, build_loss
from hsbench.engine.metrics import boundary_band, confusion_matrix, metrics_from_confusion
from hsbench.engine.run import RunResult, run_variant
from hsbench.engine.train import TrainResult, load_checkpoint, save_checkpoint, train

__all__ = [
    "TABLE1", "TrainConfig", "EvalConfig",
    "TrainingDiverged", "CheckpointError",
    "EvalResult", "evaluate",
    "BootstrappedCrossEntropy", "CrossEntropy", "build_loss",
    "boundary_band", "confusion_matrix", "metrics_from_confusion",
    "RunResult", "run_variant",
    "TrainResult", "train", "load_checkpoint", "save_checkpoint",
]
