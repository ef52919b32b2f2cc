"""Training and evaluation configuration: frozen, JSON-friendly, hashable.

:class:`TrainConfig` carries the paper's training recipe (Sec. 4.1, Table 1;
supplement Sec. B) and :class:`EvalConfig` the evaluation protocol (issue 3,
item 5). Both round-trip through :meth:`to_dict` / :meth:`from_dict`, so a
study (TOML) can set any field and the runner can hash them into a variant id.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from hsbench.errors import ConfigError, check_fields

#: Losses :class:`TrainConfig` may name -> their keyword parameters (see :mod:`hsbench.engine.losses`).
LOSS_PARAMS: dict[str, tuple[str, ...]] = {"ce": (), "bootstrapped_ce": ("threshold", "k")}
#: Loss names, in :data:`LOSS_PARAMS` order.
LOSSES = tuple(LOSS_PARAMS)

#: Table 1 of the paper, per benchmark: batch size, lr_0, poly power p, and t.
#: Table 1's ``t`` counts training *images seen* (iterations x batch size),
#: so the iteration budget is ``t / batch`` (VOC 100,000; Cityscapes 87,500;
#: CamVid 15,000). The loss is from supplement Sec. B (VOC: cross entropy,
#: others: bootstrapped cross entropy). The paper trains on two V100 GPUs;
#: ``batch`` is the total over both (hsbench's ``batch_size`` is global too).
TABLE1: dict[str, dict[str, Any]] = {
    "voc": {"batch_size": 32, "lr0": 1e-4, "poly_power": 3.0, "t_images": 3_200_000, "loss": "ce"},
    "cityscapes": {
        "batch_size": 16, "lr0": 1e-3, "poly_power": 0.9, "t_images": 1_400_000, "loss": "bootstrapped_ce",
    },
    "camvid": {
        "batch_size": 16, "lr0": 1e-3, "poly_power": 2.0, "t_images": 240_000, "loss": "bootstrapped_ce",
    },
}

_DATASET_ALIASES = {"pascal_voc": "voc", "voc2012": "voc", "pascal": "voc", "voc_sbd": "voc"}

ABSENT_RULES = ("exclude", "one", "zero")
AMP_DTYPES = ("float16", "bfloat16")


def table1_key(dataset: str) -> str:
    """The :data:`TABLE1` row for a dataset name (``voc``, ``cityscapes``, ``camvid``; aliases accepted).

    Raises:
        ConfigError: no Table 1 row for ``dataset`` (e.g. ``synthetic``).
    """
    key = dataset.lower().replace("-", "_")
    key = _DATASET_ALIASES.get(key, key)
    for name in TABLE1:
        if key == name or key.startswith(name):
            return name
    raise ConfigError(f"no Table 1 preset for dataset {dataset!r}; known: {sorted(TABLE1)}")


_table1_key = table1_key  # the name hsbench.studies imports


@dataclass(frozen=True)
class TrainConfig:
    """How one variant is trained (paper Sec. 4.1, Table 1; supplement Sec. B).

    Attributes:
        iterations: budget in optimiser steps (iterations); 0 = no training,
            the run evaluates ``model.weights`` as they are. Table 1's ``t``
            counts images seen, so ``iterations = t / batch_size``; see
            :meth:`preset`.
        batch_size: images per iteration over all processes (the global
            batch); under DDP each of N processes gets ``batch_size / N``.
        lr0: initial learning rate.
        poly_power: ``p`` of the polynomial decay ``lr0 * (1 - i / t) ** p``,
            applied per iteration ``i`` with ``t = iterations``.
        betas: Adam's (beta1, beta2); the paper's (0.5, 0.999).
        weight_decay: Adam weight decay; the paper uses none (0).
        seed: seeds model init (in :func:`hsbench.engine.run.run_variant`),
            data order, augmentation and dropout.
        amp: mixed precision (autocast + GradScaler); only on CUDA, ignored on CPU.
        amp_dtype: ``"float16"`` (with loss scaling) or ``"bfloat16"``.
        checkpoint_every: write a checkpoint every this many iterations
            (0 = only the final one); the final one is always written.
        loss: ``"ce"`` or ``"bootstrapped_ce"`` (:mod:`hsbench.engine.losses`).
        loss_params: keyword parameters of the loss, e.g.
            ``{"threshold": 0.3, "k": 4096}``; stored as sorted pairs so the
            config stays hashable; :meth:`to_dict` gives a dict back.
        num_workers: DataLoader worker processes (does not change results:
            every sample's augmentation is seeded from (seed, epoch, index)).
        deterministic: ask torch for deterministic algorithms (cuDNN
            deterministic, no benchmark) while training.
        sync_bn: convert BatchNorm to SyncBatchNorm under multi-process training.

    Raises:
        ConfigError: on an impossible value (non-positive budget or batch, bad
            loss name, ...).
    """

    iterations: int = 15_000
    batch_size: int = 16
    lr0: float = 1e-3
    poly_power: float = 2.0
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    seed: int = 0
    amp: bool = True
    amp_dtype: str = "float16"
    checkpoint_every: int = 1000
    loss: str = "bootstrapped_ce"
    loss_params: Any = ()
    num_workers: int = 0
    deterministic: bool = False
    sync_bn: bool = False

    def __post_init__(self) -> None:
        lp = self.loss_params
        if isinstance(lp, Mapping):
            lp = tuple(sorted(lp.items()))
        else:
            lp = tuple(sorted((str(k), v) for k, v in (lp or ())))
        object.__setattr__(self, "loss_params", lp)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if int(self.iterations) < 0:
            raise ConfigError(
                f"iterations must be >= 1 (or 0 to only evaluate given model.weights), got {self.iterations}"
            )
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr0 > 0 and math.isfinite(self.lr0)):
            raise ConfigError(f"lr0 must be a positive number, got {self.lr0}")
        if not (self.poly_power >= 0 and math.isfinite(self.poly_power)):
            raise ConfigError(f"poly_power must be a finite number >= 0, got {self.poly_power}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if int(self.checkpoint_every) < 0:
            raise ConfigError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {list(LOSSES)}")
        bad = sorted(k for k, _ in lp if k not in LOSS_PARAMS[self.loss])
        if bad:
            raise ConfigError(
                f"loss {self.loss!r} takes no parameter(s) {bad}; allowed: {list(LOSS_PARAMS[self.loss])}"
            )
        if self.amp_dtype not in AMP_DTYPES:
            raise ConfigError(f"amp_dtype must be one of {list(AMP_DTYPES)}, got {self.amp_dtype!r}")
        if int(self.num_workers) < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")

    @property
    def loss_kwargs(self) -> dict[str, Any]:
        """``loss_params`` as a dict."""
        return dict(self.loss_params)

    @property
    def images_seen(self) -> int:
        """Images seen over the whole budget (Table 1's ``t``): iterations x batch_size."""
        return int(self.iterations) * int(self.batch_size)

    def lr_at(self, i: int) -> float:
        """The learning rate used for iteration ``i`` (0-based): ``lr0 * (1 - i/t) ** p``."""
        return self.lr0 * max(0.0, 1.0 - i / self.iterations) ** self.poly_power

    @classmethod
    def preset(cls, dataset: str, **overrides: Any) -> "TrainConfig":
        """The Table 1 recipe for ``dataset`` (``voc``, ``cityscapes``, ``camvid``).

        The iteration budget is Table 1's ``t`` divided by its batch size
        (``t`` counts images seen); ``overrides`` replace any field, e.g.
        ``TrainConfig.preset("camvid", iterations=200, batch_size=4)`` for a
        short CPU run.

        Raises:
            ConfigError: unknown dataset or field.
        """
        row = TABLE1[table1_key(dataset)]
        fields = {
            "batch_size": row["batch_size"],
            "lr0": row["lr0"],
            "poly_power": row["poly_power"],
            "iterations": row["t_images"] // row["batch_size"],
            "loss": row["loss"],
        }
        check_fields(cls, overrides, "train")
        fields.update(overrides)
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (tuples become lists, loss_params a dict)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["loss_params"] = dict(self.loss_params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: on a key that is not a field (naming the allowed keys)
                or an impossible value.
        """
        check_fields(cls, d, "train")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class EvalConfig:
    """How a trained variant is scored (issue 3, item 5).

    The evaluation *resolution* belongs to the data config
    (``DataConfig.eval_resolution``); logits are always resized bilinearly to
    the label's native size before the argmax.

    Attributes:
        split: split to score; ``None`` = the data config's ``eval_split``.
        hflip: horizontal-flip test-time augmentation (average of the softmax
            of the image and of its mirror); off by default, as in the paper's
            speed/accuracy tables.
        absent_class: IoU of a class absent from both prediction and ground
            truth over the whole split: ``"exclude"`` (left out of the mean,
            as mmsegmentation does; default), ``"one"`` (counts as 1) or
            ``"zero"`` (counts as 0).
        trimap_width: half-width ``w`` (px) of the band around ground-truth
            boundaries where trimap IoU is measured (3 px).
        batch_size: images per forward pass (labels of one batch must share a size).
        num_workers: DataLoader worker processes.
        max_images: score only the first N images (smoke tests); ``None`` = all.

    Raises:
        ConfigError: on an unknown absent rule or a negative width/size.
    """

    split: str | None = None
    hflip: bool = False
    absent_class: str = "exclude"
    trimap_width: int = 3
    batch_size: int = 1
    num_workers: int = 0
    max_images: int | None = None

    def __post_init__(self) -> None:
        if self.absent_class not in ABSENT_RULES:
            raise ConfigError(
                f"absent_class must be one of {list(ABSENT_RULES)}, got {self.absent_class!r}"
            )
        if int(self.trimap_width) < 1:
            raise ConfigError(f"trimap_width must be >= 1 px, got {self.trimap_width}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"eval batch_size must be >= 1, got {self.batch_size}")
        if int(self.num_workers) < 0:
            raise ConfigError(f"eval num_workers must be >= 0, got {self.num_workers}")
        if self.max_images is not None and int(self.max_images) < 1:
            raise ConfigError(f"max_images must be >= 1 or None, got {self.max_images}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvalConfig":
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: on a key that is not a field (naming the allowed keys).
        """
        check_fields(cls, d, "eval")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "EvalConfig":
        """A copy with ``changes`` applied (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)


__all__ = ["TABLE1", "ABSENT_RULES", "table1_key", "TrainConfig", "EvalConfig"]
