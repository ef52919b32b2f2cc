"""hsbench.reporting.stats against independent numpy / scipy computations."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from hsbench.reporting.stats import aggregate, bootstrap_interval, paired_delta

# Stored runs of known values: variant B lacks seed 2, has an extra seed 7.
BASE = {0: 60.0, 1: 61.5, 2: 59.0, 3: 60.5}
VAR_B = {0: 58.9, 1: 60.1, 3: 59.7, 7: 57.0}


def test_aggregate_mean_sd_n_match_numpy():
    agg = aggregate(BASE)
    vals = np.array(list(BASE.values()))
    assert agg.n == 4
    assert agg.seeds == (0, 1, 2, 3)
    assert agg.mean == pytest.approx(vals.mean())
    assert agg.sd == pytest.approx(vals.std(ddof=1))
    assert agg.text() == f"{vals.mean():.2f} ± {vals.std(ddof=1):.2f} (n=4)"


def test_aggregate_one_seed_has_no_sd_and_says_so():
    agg = aggregate({3: 42.0, 4: None, 5: float("nan")})
    assert (agg.n, agg.mean, agg.sd) == (1, 42.0, None)
    assert agg.text() == "42.00 (n=1)"
    assert aggregate({}).mean is None and aggregate({}).text() == ""


def test_paired_delta_t_interval_matches_scipy_ttest_with_missing_seed():
    d = paired_delta(VAR_B, BASE, method="auto")
    expected = np.array([VAR_B[s] - BASE[s] for s in (0, 1, 3)])
    assert d.n == 3
    assert d.per_seed == tuple(zip((0, 1, 3), expected))
    assert d.unpaired_variant == (7,) and d.unpaired_baseline == (2,)
    assert d.n_unpaired == 2
    assert d.method == "t"
    ci = sps.ttest_1samp(expected, 0.0).confidence_interval(0.95)
    assert d.mean == pytest.approx(expected.mean())
    assert (d.low, d.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    # -1.1, -1.4, -0.8: every seed loses about a point, the interval excludes 0.
    assert d.high < 0 and d.distinguishable is True
    assert "not distinguishable" not in d.text()


def test_paired_delta_interval_containing_zero_is_not_distinguishable():
    d = paired_delta({0: 1.0, 1: -1.0, 2: 0.5}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert d.low < 0 < d.high
    assert d.distinguishable is False
    assert d.text().endswith("not distinguishable")


def test_paired_delta_single_pair_claims_nothing():
    d = paired_delta({0: 2.0, 1: 3.0}, {0: 1.0})
    assert (d.n, d.mean, d.low, d.high, d.method) == (1, 1.0, None, None, "none")
    assert d.distinguishable is None
    assert d.unpaired_variant == (1,)


def test_auto_switches_to_bootstrap_from_ten_pairs_and_matches_numpy_percentiles():
    rng = np.random.default_rng(1)
    base = {s: float(v) for s, v in enumerate(rng.normal(60, 1, 12))}
    var = {s: base[s] + float(e) for s, e in enumerate(rng.normal(0.5, 0.3, 12))}
    d = paired_delta(var, base)
    assert d.method == "bootstrap"
    deltas = np.array([var[s] - base[s] for s in range(12)])
    # Independent percentile bootstrap with numpy: many resamples of the mean.
    idx = np.random.default_rng(123).integers(0, 12, size=(40000, 12))
    means = deltas[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    assert d.low == pytest.approx(lo, abs=0.02)
    assert d.high == pytest.approx(hi, abs=0.02)


def test_bootstrap_of_constant_values_is_degenerate_not_nan():
    assert bootstrap_interval(np.array([0.5, 0.5, 0.5]), 0.95) == (0.5, 0.5)


def test_paired_delta_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown interval method"):
        paired_delta({0: 1.0}, {0: 1.0}, method="z")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="confidence"):
        paired_delta({0: 1.0}, {0: 1.0}, confidence=95)


def test_to_dict_is_recomputable():
    d = paired_delta(VAR_B, BASE)
    data = d.to_dict()
    per_seed = np.array(list(data["per_seed"].values()))
    assert math.isclose(per_seed.mean(), data["mean"])
    agg = aggregate(BASE).to_dict()
    assert math.isclose(np.std(list(agg["per_seed"].values()), ddof=1), agg["sd"])
