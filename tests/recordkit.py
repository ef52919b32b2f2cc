"""Test helper: :class:`hsbench.record.RunRecord` objects with only the values a test cares about.

Every field a test does not name is None (a value that was not measured), so
fixtures state what they store and nothing else; a misspelt field name is a
TypeError, as in the records themselves.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from hsbench.record import (
    ComplexityRecord,
    MetricsRecord,
    RunRecord,
    SpeedRecord,
    TrainingRecord,
)

T = TypeVar("T")


def part(cls: type[T], **values: Any) -> T:
    """``cls`` with ``values`` and None everywhere else (unknown names: TypeError)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {unknown}")
    return cls(**{n: values.get(n) for n in names})


def metrics(**values: Any) -> MetricsRecord:
    """A :class:`MetricsRecord` with ``values`` (fractions in [0, 1])."""
    return part(MetricsRecord, **values)


def training(**values: Any) -> TrainingRecord:
    """A :class:`TrainingRecord` with ``values``."""
    return part(TrainingRecord, **values)


def complexity(**values: Any) -> ComplexityRecord:
    """A :class:`ComplexityRecord` with ``values`` (counts, GMACs)."""
    return part(ComplexityRecord, **values)


def speed(**values: Any) -> SpeedRecord:
    """A :class:`SpeedRecord` with ``values`` (frames/s, ms)."""
    return part(SpeedRecord, **values)


def record(variant_id: str, seed: int = 0, **values: Any) -> RunRecord:
    """A finished :class:`RunRecord` of ``(variant_id, seed)`` with ``values`` (sub-records included)."""
    values.setdefault("status", "finished")
    return part(RunRecord, variant_id=variant_id, seed=seed, **values)
