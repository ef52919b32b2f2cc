"""Errors raised by the training engine (subclasses of :class:`hsbench.errors.HsbenchError`)."""

from __future__ import annotations

from hsbench.errors import HsbenchError


class TrainingDiverged(HsbenchError):
    """The training loss became NaN or infinite.

    Attributes:
        iteration: 0-based iteration whose loss was not finite.
        loss: the offending loss value.
    """

    def __init__(self, iteration: int, loss: float, lr: float | None = None) -> None:
        self.iteration = int(iteration)
        self.loss = float(loss)
        self.lr = lr
        at_lr = f" at lr={lr:.3g}" if lr is not None else ""
        super().__init__(
            f"training diverged: loss is {loss} at iteration {iteration}{at_lr}; "
            "lower lr0, turn amp off, or check the labels (values outside [0, K) and the ignore index)"
        )


class CheckpointError(HsbenchError):
    """A checkpoint cannot be read, or belongs to a different training configuration."""


__all__ = ["TrainingDiverged", "CheckpointError"]
