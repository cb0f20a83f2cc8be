"""Intervals: the bootstrap re-normalizes inside each resample; normal intervals; coverage."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from campaignrl.ope import DR, IPS, SNIPS, RoundTerms, bootstrap_values, normal_interval
from campaignrl.ope.intervals import bootstrap_interval


def test_bootstrap_recomputes_the_self_normalized_ratio_in_every_resample():
    rng = np.random.default_rng(0)
    n, b = 7, 5
    d, u, v = rng.normal(size=n), rng.normal(size=n), rng.uniform(0.1, 3.0, size=n)
    terms = RoundTerms(d, u, v)
    got = bootstrap_values(terms, n_bootstrap=b, rng=np.random.default_rng(42))
    # The same index draws, replayed with plain loops.
    index = np.random.default_rng(42).integers(0, n, size=(b, n), dtype=np.uint32)
    for k in range(b):
        rows = index[k]
        direct = sum(d[i] for i in rows) / n
        ratio = sum(u[i] for i in rows) / sum(v[i] for i in rows)
        assert got[k] == pytest.approx(direct + ratio, rel=1e-12)


def test_chunked_bootstrap_stays_seeded(monkeypatch):
    terms = RoundTerms(np.arange(50.0))
    whole = bootstrap_values(terms, n_bootstrap=30, rng=np.random.default_rng(1))
    import campaignrl.ope.intervals as intervals

    monkeypatch.setattr(intervals, "_CHUNK_ELEMENTS", 50 * 7)  # chunks of 7 resamples
    chunked = bootstrap_values(terms, n_bootstrap=30, rng=np.random.default_rng(1))
    assert whole.shape == chunked.shape == (30,)
    # Draws differ by chunking (the generator is read in other block sizes) but stay seeded.
    again = bootstrap_values(terms, n_bootstrap=30, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(chunked, again)


def test_normal_interval_of_a_plain_mean_is_the_textbook_one():
    x = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    lo, hi = normal_interval(RoundTerms(x), alpha=0.1)
    half = NormalDist().inv_cdf(0.95) * x.std(ddof=1) / np.sqrt(5)
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half))


def test_normal_interval_of_a_ratio_uses_the_delta_method():
    rng = np.random.default_rng(3)
    u, v = rng.normal(1.0, 1.0, 200), rng.uniform(0.5, 1.5, 200)
    ratio = u.mean() / v.mean()
    psi = (u - ratio * v) / v.mean()
    half = NormalDist().inv_cdf(0.975) * psi.std(ddof=1) / np.sqrt(200)
    lo, hi = normal_interval(RoundTerms(None, u, v), alpha=0.05)
    assert (lo, hi) == pytest.approx((ratio - half, ratio + half))


def test_intervals_need_two_rows_and_terms_need_a_part():
    with pytest.raises(ValueError, match="at least 2 logged rows, got 1"):
        normal_interval(RoundTerms(np.array([1.0])), alpha=0.05)
    with pytest.raises(ValueError, match="at least 2 logged rows, got 1"):
        bootstrap_interval(
            RoundTerms(np.array([1.0])), alpha=0.05, n_bootstrap=5, rng=np.random.default_rng()
        )
    with pytest.raises(ValueError, match="given together"):
        RoundTerms(np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="needs `direct` or"):
        RoundTerms(None)


def test_bootstrap_and_normal_intervals_cover_the_truth_in_most_seeds(bandit_factory):
    # 100 small logs with a known truth; 95% intervals should cover in ~95% of them.
    seeds = range(100)
    hits = {("ipw", "bootstrap"): 0, ("snipw", "bootstrap"): 0, ("dr", "bootstrap"): 0}
    hits.update({("ipw", "normal"): 0, ("snipw", "normal"): 0, ("dr", "normal"): 0})
    for seed in seeds:
        b = bandit_factory(400, seed=100 + seed)
        q_hat = b.q_true + 0.05  # a biased model: DR's correction must fix it
        for est in (IPS(), SNIPS(), DR()):
            for method in ("bootstrap", "normal"):
                e = est.estimate_interval(
                    b.data,
                    b.target,
                    estimated_rewards=q_hat,
                    method=method,
                    n_bootstrap=200,
                    rng=seed,
                )
                hits[est.estimator_name, method] += e.ci_low <= b.truth <= e.ci_high
    for key, count in hits.items():
        assert count >= 85, f"{key} covered the truth in {count} of 100 seeds: {hits}"
