"""One variant of a study: the five config sections, frozen, plus its id.

A :class:`Variant` bundles what determines a measurement:

=========  ==========================================  ==============================
section    class                                       what it fixes
=========  ==========================================  ==============================
model      :class:`hsbench.models.ModelConfig`         architecture (template, knobs)
data       :class:`hsbench.data.DataConfig`            dataset, splits, augmentation
train      :class:`hsbench.engine.TrainConfig`         recipe and budget (Table 1)
eval       :class:`hsbench.engine.EvalConfig`          metric protocol
speed      :class:`hsbench.measure.config.SpeedConfig` FPS protocol (paper Sec. 4)
measure    :class:`MeasureConfig`                      complexity counters
=========  ==========================================  ==============================

The sections are *resolved* (template and dataset defaults filled in) by
:mod:`hsbench.studies`, so two configs that mean the same thing hash the same.

Variant id
    ``variant_id()`` is the first 16 hex digits of the SHA-256 of the canonical
    JSON (sorted keys, no spaces) of :meth:`Variant.config_dict`. Left out of
    the hash are the fields that do not change what is measured, only where
    or how fast it runs (:data:`EXECUTION_FIELDS`): the data root, the
    training seed (a run's seed is stored beside the variant id, see
    ``seeds`` in :mod:`hsbench.studies`), the data-loader worker counts and
    the DPWConv backend (``speed.dpw_backend``: the backend that ran is stored
    with every FPS figure).
    The run device and ``--max-iters`` are properties of a *run*, not of the
    variant, and are stored with the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from hsbench.data.config import DataConfig
from hsbench.engine.config import EvalConfig, TrainConfig
from hsbench.errors import ConfigError
from hsbench.measure.config import SpeedConfig
from hsbench.models.config import ModelConfig

#: Complexity counters that :func:`hsbench.measure.complexity.complexity` knows.
COUNTERS = ("thop", "fvcore", "flop_counter")

#: (section, field) pairs that are not part of the variant id (module docstring).
EXECUTION_FIELDS: tuple[tuple[str, str], ...] = (
    ("data", "root"),
    ("train", "seed"),
    ("train", "num_workers"),
    ("speed", "dpw_backend"),
    ("eval", "num_workers"),
)

#: Length of a variant id in hex digits (64 bits of SHA-256).
VARIANT_ID_LENGTH = 16


@dataclass(frozen=True)
class MeasureConfig:
    """How complexity is counted for a variant (see :mod:`hsbench.measure.complexity`).

    Attributes:
        counters: which counters run, any of ``thop`` (MACs, the paper's
            "GFLOPs" column), ``fvcore`` (MACs, traced; the slowest) and
            ``flop_counter`` (FLOPs, 2 per MAC). A counter left out is stored
            as missing (never as zero).

    Raises:
        ConfigError: an unknown counter name, or an empty list.
    """

    counters: tuple[str, ...] = COUNTERS

    def __post_init__(self) -> None:
        counters = self.counters
        if isinstance(counters, str) or not isinstance(counters, (list, tuple)):
            raise ConfigError(f"measure option counters must be a list of names, got {counters!r}")
        counters = tuple(counters)
        bad = [c for c in counters if c not in COUNTERS]
        if bad:
            raise ConfigError(
                f"measure option counters has unknown counter(s) {bad}; choose from {list(COUNTERS)}"
            )
        if not counters:
            raise ConfigError("measure option counters is empty; name at least one of " f"{list(COUNTERS)}")
        object.__setattr__(self, "counters", counters)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (the tuple becomes a list)."""
        return {"counters": list(self.counters)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MeasureConfig":
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: on a key that is not a field or a bad value.
        """
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown measure option(s) {unknown}; allowed: {allowed}")
        return cls(**dict(d))


#: Section name -> config class, in the order a study lists them.
SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "speed": SpeedConfig,
    "measure": MeasureConfig,
}


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the text that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class Variant:
    """One fully resolved variant of a study.

    Attributes:
        name: the variant's label in its study (e.g. ``"grid16_pe"``); not hashed.
        model: resolved :class:`ModelConfig` (backbone, weight groups and
            class count filled in by :func:`hsbench.models.resolve`).
        data: :class:`DataConfig` (dataset defaults filled in).
        train: :class:`TrainConfig` (Table 1 preset of the dataset plus overrides).
        eval: :class:`EvalConfig`.
        speed: :class:`SpeedConfig`; ``speed.resolution`` (W, H) is always set
            (it is the resolution complexity and FPS are measured at).
        measure: :class:`MeasureConfig` (complexity counters).
        seeds: the training seeds this variant is run with (one run each).
        sources: ``"section.field"`` -> where the study file set it (a key
            path such as ``"variants[2].model.grid_size"``), for error messages.
    """

    name: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig = field(default_factory=EvalConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    seeds: tuple[int, ...] = (0,)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def resolution(self) -> tuple[int, int]:
        """(W, H) in pixels at which complexity and FPS are measured and the run is recorded."""
        if self.speed.resolution is None:  # pragma: no cover - studies.py always sets it
            raise ConfigError(f"variant {self.name!r} has no speed.resolution")
        return tuple(self.speed.resolution)  # type: ignore[return-value]

    @property
    def resolution_text(self) -> str:
        """``"WxH"``, e.g. ``"480x360"``."""
        w, h = self.resolution
        return f"{w}x{h}"

    def config_dict(self) -> dict[str, Any]:
        """The hashed config: every section's ``to_dict()`` minus :data:`EXECUTION_FIELDS`."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            out[section] = dict(getattr(self, section).to_dict())
        for section, name in EXECUTION_FIELDS:
            out[section].pop(name, None)
        return out

    def variant_id(self) -> str:
        """Short SHA-256 of :meth:`config_dict` (module docstring)."""
        text = canonical_json(self.config_dict())
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:VARIANT_ID_LENGTH]

    def for_seed(self, seed: int) -> "Variant":
        """A copy whose training config uses ``seed`` (same variant id)."""
        return dataclasses.replace(self, train=self.train.replace(seed=int(seed)))

    def with_data_root(self, root: str | None) -> "Variant":
        """A copy reading its dataset from ``root`` (same variant id)."""
        return dataclasses.replace(self, data=self.data.replace(root=root))


__all__ = [
    "COUNTERS",
    "DataConfig",
    "EXECUTION_FIELDS",
    "EvalConfig",
    "MeasureConfig",
    "ModelConfig",
    "SECTIONS",
    "SpeedConfig",
    "TrainConfig",
    "VARIANT_ID_LENGTH",
    "Variant",
    "canonical_json",
]
