"""Statistics over seeds: aggregates per variant and paired deltas against a baseline.

An ablation row says "knob X costs 0.8 mIoU"; whether that is a finding or
noise depends on the spread over seeds. This module is the arithmetic behind
every report that groups runs of one variant over seeds:

* :func:`aggregate` - mean, *sample* standard deviation (``ddof=1``) and n of
  one metric over the seeds of one variant. With n = 1 there is no spread and
  :meth:`Aggregate.text` says so ("one seed").
* :func:`paired_delta` - Δ = variant − baseline computed *per seed* (same seed,
  same data order, so the seed's share of the noise cancels), summarised as the
  mean Δ with a confidence interval. Seeds that only one side has are left out
  of the pair and counted (``unpaired_variant`` / ``unpaired_baseline``).

Interval methods (``method``):

``"t"``
    Student's t-interval ``mean ± t_{(1+c)/2, n-1} · sd / sqrt(n)`` of the
    per-seed deltas: exact under normal per-seed noise and the right choice for
    the few seeds ablations can afford.
``"bootstrap"``
    :func:`scipy.stats.bootstrap` over seeds (percentile method, a fixed random
    state, 9,999 resamples): no normality assumption, but with fewer than ~10
    seeds the resampled means take so few distinct values that the interval is
    too narrow.
``"auto"`` (default)
    ``"t"`` for n < 10 pairs, ``"bootstrap"`` from 10 on. The chosen method is
    stored in :attr:`PairedDelta.method` and printed by every report.

A delta whose interval contains 0 is "not distinguishable" from the baseline
(:attr:`PairedDelta.distinguishable` is False). With one pair there is no
interval and nothing is claimed (``distinguishable`` is None).

Values are in the units of the metric they come from (mIoU in percent,
FPS in frames/s, ...); this module never converts units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np

#: Number of paired seeds from which ``method="auto"`` switches to the bootstrap.
BOOTSTRAP_MIN_PAIRS = 10
#: Resamples of the bootstrap interval.
BOOTSTRAP_RESAMPLES = 9999
#: Fixed random state of the bootstrap, so that a report is reproducible.
BOOTSTRAP_SEED = 0

IntervalMethod = Literal["auto", "t", "bootstrap"]


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Aggregate:
    """One metric of one variant over its seeds.

    Attributes:
        seeds: the seeds that have a value, ascending.
        values: the value of each seed, in the order of ``seeds`` (metric units).
    """

    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        """Number of seeds with a value."""
        return len(self.values)

    @property
    def mean(self) -> float | None:
        """Mean over seeds; None when no seed has a value."""
        return float(np.mean(self.values)) if self.values else None

    @property
    def sd(self) -> float | None:
        """Sample standard deviation over seeds (ddof = 1); None when n < 2."""
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else None

    def text(self, digits: int = 2) -> str:
        """``"34.50 ± 1.20 (n=3)"``; ``"34.50 (n=1)"`` for one seed; ``""`` for none."""
        if self.mean is None:
            return ""
        if self.sd is None:
            return f"{self.mean:.{digits}f} (n=1)"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f} (n={self.n})"

    def to_dict(self) -> dict:
        """JSON-ready: per-seed values and the aggregates recomputable from them."""
        return {
            "n": self.n,
            "mean": self.mean,
            "sd": self.sd,
            "per_seed": {str(s): v for s, v in zip(self.seeds, self.values)},
        }


def aggregate(by_seed: Mapping[int, float | None]) -> Aggregate:
    """Mean, sample sd and n of ``by_seed`` (seed -> value); None/NaN values are skipped."""
    kept = sorted((int(s), float(v)) for s, v in by_seed.items() if _finite(v))
    return Aggregate(seeds=tuple(s for s, _ in kept), values=tuple(v for _, v in kept))


@dataclass(frozen=True)
class PairedDelta:
    """Δ = variant − baseline over the seeds both sides have.

    Attributes:
        per_seed: ``(seed, Δ)`` for every paired seed, ascending seed.
        low, high: the ``confidence`` interval of the mean Δ; None with fewer than 2 pairs.
        method: ``"t"`` or ``"bootstrap"`` (what actually produced the interval), or
            ``"none"`` with fewer than 2 pairs.
        unpaired_variant: seeds the variant has and the baseline lacks.
        unpaired_baseline: seeds the baseline has and the variant lacks.
    """

    per_seed: tuple[tuple[int, float], ...]
    low: float | None
    high: float | None
    method: str
    confidence: float
    unpaired_variant: tuple[int, ...] = ()
    unpaired_baseline: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        """Number of paired seeds."""
        return len(self.per_seed)

    @property
    def mean(self) -> float | None:
        """Mean of the per-seed deltas; None without pairs."""
        return float(np.mean([d for _, d in self.per_seed])) if self.per_seed else None

    @property
    def n_unpaired(self) -> int:
        """Runs left out of the pairing (on either side)."""
        return len(self.unpaired_variant) + len(self.unpaired_baseline)

    @property
    def distinguishable(self) -> bool | None:
        """False when the interval contains 0; None when there is no interval."""
        if self.low is None or self.high is None:
            return None
        return not (self.low <= 0.0 <= self.high)

    def text(self, digits: int = 2) -> str:
        """``"-0.80 [-1.50, -0.10] (n=3, t)"``, with "not distinguishable" when the CI holds 0."""
        if self.mean is None:
            return "no paired seeds"
        if self.low is None:
            return f"{self.mean:+.{digits}f} (n=1, no interval)"
        s = (f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}] "
             f"(n={self.n}, {self.method})")
        return s if self.distinguishable else s + " not distinguishable"

    def to_dict(self) -> dict:
        """JSON-ready: per-seed deltas and the summary recomputable from them."""
        return {
            "n": self.n,
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "method": self.method,
            "distinguishable": self.distinguishable,
            "per_seed": {str(s): d for s, d in self.per_seed},
            "unpaired_variant_seeds": list(self.unpaired_variant),
            "unpaired_baseline_seeds": list(self.unpaired_baseline),
        }


def t_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student's t-interval of the mean of ``values`` (n >= 2).

    Raises:
        ValueError: fewer than 2 values or a confidence outside (0, 1).
    """
    from scipy import stats

    n = len(values)
    if n < 2 or not 0.0 < confidence < 1.0:
        raise ValueError(f"t_interval needs n >= 2 and 0 < confidence < 1, got n={n}, "
                         f"confidence={confidence}")
    mean = float(np.mean(values))
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * float(
        np.std(values, ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


def bootstrap_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (scipy.stats.bootstrap).

    Constant values (zero spread) give the degenerate interval [v, v].

    Raises:
        ValueError: fewer than 2 values.
    """
    from scipy import stats

    if len(values) < 2:
        raise ValueError(f"bootstrap_interval needs n >= 2, got {len(values)}")
    if np.ptp(values) == 0.0:
        v = float(values[0])
        return v, v
    res = stats.bootstrap(
        (values,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
        method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_delta(
    variant: Mapping[int, float | None],
    baseline: Mapping[int, float | None],
    *,
    confidence: float = 0.95,
    method: IntervalMethod = "auto",
) -> PairedDelta:
    """Paired Δ = variant − baseline per seed, with a ``confidence`` interval of its mean.

    Args:
        variant, baseline: seed -> value of one metric (None/NaN = no value, unpaired).
        confidence: interval coverage, in (0, 1).
        method: ``"t"``, ``"bootstrap"`` or ``"auto"`` (see the module docstring).

    Raises:
        ValueError: an unknown method or a confidence outside (0, 1).
    """
    if method not in ("auto", "t", "bootstrap"):
        raise ValueError(f"unknown interval method {method!r}; use auto, t or bootstrap")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    v = {int(s): float(x) for s, x in variant.items() if _finite(x)}
    b = {int(s): float(x) for s, x in baseline.items() if _finite(x)}
    paired = sorted(set(v) & set(b))
    per_seed = tuple((s, v[s] - b[s]) for s in paired)
    unpaired_v = tuple(sorted(set(v) - set(b)))
    unpaired_b = tuple(sorted(set(b) - set(v)))
    if len(per_seed) < 2:
        return PairedDelta(per_seed, None, None, "none", confidence, unpaired_v, unpaired_b)
    deltas = np.array([d for _, d in per_seed], dtype=np.float64)
    chosen = method if method != "auto" else (
        "bootstrap" if len(deltas) >= BOOTSTRAP_MIN_PAIRS else "t")
    low, high = (t_interval if chosen == "t" else bootstrap_interval)(deltas, confidence)
    return PairedDelta(per_seed, low, high, chosen, confidence, unpaired_v, unpaired_b)


__all__ = [
    "Aggregate",
    "PairedDelta",
    "aggregate",
    "paired_delta",
    "t_interval",
    "bootstrap_interval",
    "BOOTSTRAP_MIN_PAIRS",
]
