"""Intervals: the threaded bootstrap is exact and seeded; normal and studentized intervals."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

import campaignrl.ope.intervals as intervals
from campaignrl.ope import (
    DR,
    IPS,
    SNIPS,
    RoundTerms,
    bootstrap_values,
    normal_interval,
    studentized_interval,
)
from campaignrl.ope.intervals import bootstrap_interval


def reference_resamples(n: int, n_bootstrap: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Every resample's row indices, replaying the documented scheme with plain loops.

    One seed from ``rng`` -> ``SeedSequence.spawn``, child ``i`` for chunk ``i``; inside a
    chunk, either ``k * n`` uniform indices per draw (small tables) or, per group of
    resamples, multinomial rows per segment and then uniform rows inside each segment.
    """
    per_chunk = max(
        1, min(intervals._CHUNK_ELEMENTS // n, math.ceil(n_bootstrap / intervals._MIN_CHUNKS))
    )
    n_chunks = math.ceil(n_bootstrap / per_chunk)
    seed = np.random.SeedSequence(rng.integers(0, 2**63, size=4).tolist())
    seg = intervals._SEGMENT_ROWS
    out: list[np.ndarray] = []
    for i, child in enumerate(seed.spawn(n_chunks)):
        gen = np.random.Generator(np.random.PCG64(child))
        count = min(per_chunk, n_bootstrap - i * per_chunk)
        if n <= seg:
            per_draw = max(1, intervals._DRAW_ELEMENTS // n)
            for start in range(0, count, per_draw):
                k = min(per_draw, count - start)
                index = gen.integers(0, n, size=k * n)
                out += [index[j * n : (j + 1) * n] for j in range(k)]
            continue
        n_seg = math.ceil(n / seg)
        bounds = [s * n // n_seg for s in range(n_seg + 1)]
        shares = np.diff(bounds) / n
        per_draw = max(1, intervals._DRAW_ELEMENTS // seg)
        for start in range(0, count, per_draw):
            k = min(per_draw, count - start)
            counts = gen.multinomial(n, shares, size=k)
            rows: list[list[int]] = [[] for _ in range(k)]
            for s in range(n_seg):
                total = int(counts[:, s].sum())
                if total == 0:
                    continue
                index = list(gen.integers(bounds[s], bounds[s + 1], size=total))
                for j in range(k):
                    rows[j] += index[: counts[j, s]]
                    index = index[counts[j, s] :]
            out += [np.array(r) for r in rows]
    return out


@pytest.fixture
def small_chunks(monkeypatch):
    """Tiny chunks, draws and segments, so that a small log takes every path."""
    monkeypatch.setattr(intervals, "_CHUNK_ELEMENTS", 60)
    monkeypatch.setattr(intervals, "_DRAW_ELEMENTS", 16)
    monkeypatch.setattr(intervals, "_SEGMENT_ROWS", 4)
    monkeypatch.setattr(intervals, "_THREADED_ELEMENTS", 0)  # threads even on tiny logs


@pytest.mark.parametrize("n", [3, 13])  # one segment (small-table path), then 4 segments
def test_bootstrap_recomputes_the_estimate_on_each_resample_like_a_plain_loop(small_chunks, n):
    rng = np.random.default_rng(0)
    d, u, v = rng.normal(size=n), rng.normal(size=n), rng.uniform(0.1, 3.0, size=n)
    b = 23
    for terms in (RoundTerms(d), RoundTerms(None, u, v), RoundTerms(d, u, v)):
        got = bootstrap_values(terms, n_bootstrap=b, rng=np.random.default_rng(42), n_threads=2)
        rows = reference_resamples(n, b, np.random.default_rng(42))
        assert len(rows) == b and all(len(r) == n for r in rows)
        for k, idx in enumerate(rows):
            want = 0.0
            if terms.direct is not None:
                want += sum(d[i] for i in idx) / n
            if terms.numerator is not None:
                # the ratio is re-normalized by the resample's own weight total
                want += sum(u[i] for i in idx) / sum(v[i] for i in idx)
            assert got[k] == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_resample_counts_are_exactly_multinomial(monkeypatch):
    # Row i contributes 100**i: a resample's sum spells its count vector in base 100.
    # Segments of 2 rows force the multinomial-then-uniform path on 7 rows.
    monkeypatch.setattr(intervals, "_SEGMENT_ROWS", 2)
    n, b = 7, 20_000
    table = (100.0 ** np.arange(n))[np.newaxis, :]
    sums = intervals._resampled_sums(
        table, n_bootstrap=b, rng=np.random.default_rng(5), n_threads=2
    )
    codes = sums[:, 0].astype(np.int64)
    counts = np.stack([(codes // 100**i) % 100 for i in range(n)], axis=1)
    assert (counts.sum(axis=1) == n).all()
    # Multinomial(n, 1/n): mean 1, variance (n-1)/n, covariance -1/n, P(count=0) = (1-1/n)^n
    se = 4.0 / math.sqrt(b)  # about four standard errors of each moment
    np.testing.assert_allclose(counts.mean(axis=0), 1.0, atol=se)
    np.testing.assert_allclose(counts.var(axis=0), (n - 1) / n, atol=2 * se)
    cov = np.cov(counts.T)
    np.testing.assert_allclose(cov[~np.eye(n, dtype=bool)], -1.0 / n, atol=2 * se)
    np.testing.assert_allclose((counts == 0).mean(axis=0), (1 - 1 / n) ** n, atol=se)


def test_threads_do_not_change_the_values_only_the_seed_does(monkeypatch):
    monkeypatch.setattr(intervals, "_CHUNK_ELEMENTS", 5_000)  # 100 resamples -> 20 chunks
    monkeypatch.setattr(intervals, "_SEGMENT_ROWS", 256)
    monkeypatch.setattr(intervals, "_THREADED_ELEMENTS", 0)
    rng = np.random.default_rng(9)
    terms = RoundTerms(rng.normal(size=1_000), rng.normal(size=1_000), rng.uniform(size=1_000))
    runs = [
        bootstrap_values(terms, n_bootstrap=100, rng=np.random.default_rng(3), n_threads=t)
        for t in (1, 2, 3, 2)
    ]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)
    different = bootstrap_values(terms, n_bootstrap=100, rng=np.random.default_rng(4))
    assert not np.array_equal(runs[0], different)


def test_every_estimator_draws_the_same_resamples_from_one_seed():
    # Common random numbers: the resamples depend on (seed, n, B) only, not on the columns.
    rng = np.random.default_rng(2)
    d, u, v = rng.normal(size=20_000), rng.normal(size=20_000), rng.uniform(size=20_000)
    direct = bootstrap_values(RoundTerms(d), n_bootstrap=20, rng=np.random.default_rng(1))
    both = bootstrap_values(RoundTerms(d, u * 0.0, v), n_bootstrap=20, rng=np.random.default_rng(1))
    np.testing.assert_allclose(direct, both, rtol=1e-12)


def test_resample_standard_errors_match_a_direct_recomputation(small_chunks):
    n, b = 13, 30
    rng = np.random.default_rng(1)
    d, u, v = rng.normal(size=n), rng.normal(size=n), rng.uniform(0.1, 3.0, size=n)
    rows = reference_resamples(n, b, np.random.default_rng(8))
    for terms in (RoundTerms(d), RoundTerms(None, u, v), RoundTerms(d, u, v)):
        columns = intervals._Columns.of(terms, moments=True)
        sums = intervals._resampled_sums(
            columns.table, n_bootstrap=b, rng=np.random.default_rng(8), n_threads=1
        )
        values, ses = columns.values(sums, n), columns.standard_errors(sums, n)
        for k, idx in enumerate(rows):
            again = RoundTerms(
                None if terms.direct is None else d[idx],
                None if terms.numerator is None else u[idx],
                None if terms.denominator is None else v[idx],
            )
            assert values[k] == pytest.approx(again.value(), rel=1e-10)
            assert ses[k] == pytest.approx(again.standard_error(), rel=1e-8)


def test_studentized_interval_by_hand(monkeypatch):
    # x = (0, 1, 2, 5): V = 2, sd = sqrt(14/3), se = sd / 2 = 1.080123.
    # Four chosen resamples (rows), their mean, se* = sd* / 2 and t* = (mean - 2) / se*:
    #   (0, 1, 2, 2): 1.25, sqrt(2.75/3)/2   = 0.478714, t* = -1.566699
    #   (1, 2, 5, 5): 3.25, sqrt(12.75/3)/2  = 1.030776, t* = +1.212678
    #   (0, 0, 1, 5): 1.50, sqrt(17/3)/2     = 1.190238, t* = -0.420084
    #   (0, 2, 5, 5): 3.00, sqrt(18/3)/2     = 1.224745, t* = +0.816497
    # alpha = 0.5: the 25% and 75% order statistics of t* (inverted cdf) are the 1st and the
    # 3rd of four: t_lo = -1.566699, t_hi = +0.816497, so the interval is
    #   [2 - 0.816497 * 1.080123, 2 + 1.566699 * 1.080123] = [1.118083, 3.692228].
    x = np.array([0.0, 1.0, 2.0, 5.0])
    chosen = np.array([[0, 1, 2, 2], [1, 2, 3, 3], [0, 0, 1, 3], [0, 2, 3, 3]])

    def fake_sums(table, *, n_bootstrap, rng, n_threads):
        assert n_bootstrap == 4
        return np.stack([table[:, idx].sum(axis=1) for idx in chosen])

    monkeypatch.setattr(intervals, "_resampled_sums", fake_sums)
    lo, hi = studentized_interval(
        RoundTerms(x), alpha=0.5, n_bootstrap=4, rng=np.random.default_rng(0)
    )
    assert (lo, hi) == pytest.approx((1.118083, 3.692228), abs=1e-6)


def test_studentized_interval_is_exact_on_constant_terms_and_needs_two_rows():
    rng = np.random.default_rng(0)
    assert studentized_interval(
        RoundTerms(np.full(50, 2.5)), alpha=0.05, n_bootstrap=50, rng=rng
    ) == (2.5, 2.5)
    with pytest.raises(ValueError, match="at least 2 logged rows, got 1"):
        studentized_interval(RoundTerms(np.ones(1)), alpha=0.05, n_bootstrap=5, rng=rng)


def test_studentized_upper_bound_is_infinite_when_the_log_cannot_bound_it():
    # Two informative rows in 100: 13% of resamples miss both and have no spread at all, so
    # the 2.5% lower quantile of t* is -inf and nothing bounds the value from above.
    x = np.zeros(100)
    x[[3, 70]] = 50.0
    lo, hi = studentized_interval(
        RoundTerms(x), alpha=0.05, n_bootstrap=1000, rng=np.random.default_rng(0)
    )
    assert 0.0 < lo < 1.0 and hi == np.inf


def test_studentized_interval_covers_a_skewed_mean_where_the_normal_one_falls_short():
    # Importance-sampling-like terms: weight 40 on 1 row in 40, lognormal reward; mean e^0.5.
    # 500 rows hold about 12 weighted rows, so the sample mean is strongly right-skewed.
    truth, reps = math.exp(0.5), 200
    hits = {"normal": 0, "studentized": 0}
    for seed in range(reps):
        rng = np.random.default_rng([7, seed])
        hit = rng.random(500) < 1 / 40
        terms = RoundTerms(np.where(hit, 40.0 * rng.lognormal(0.0, 1.0, 500), 0.0))
        lo, hi = normal_interval(terms, alpha=0.05)
        hits["normal"] += lo <= truth <= hi
        lo, hi = studentized_interval(terms, alpha=0.05, n_bootstrap=400, rng=rng)
        hits["studentized"] += lo <= truth <= hi
    assert hits["normal"] < 0.90 * reps, hits  # the symmetric interval misses, low
    assert hits["studentized"] >= 0.91 * reps, hits


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


def test_a_resample_without_weight_counts_its_ratio_as_zero():
    terms = RoundTerms(None, np.array([0.0, 0.0, 3.0]), np.array([0.0, 0.0, 1.0]))
    values = bootstrap_values(terms, n_bootstrap=400, rng=np.random.default_rng(0))
    assert set(np.unique(values)) == {0.0, 3.0}  # 3 where row 2 was drawn, 0 where it was not
    assert abs((values == 0.0).mean() - (2 / 3) ** 3) < 0.08


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


def test_intervals_cover_the_truth_in_most_seeds(bandit_factory):
    # 100 small logs with a known truth; 95% intervals should cover in ~95% of them.
    methods = ("studentized", "bootstrap", "normal")
    hits = {(e, m): 0 for e in ("ipw", "snipw", "dr") for m in methods}
    for seed in range(100):
        b = bandit_factory(400, seed=100 + seed)
        q_hat = b.q_true + 0.05  # a biased model: DR's correction must fix it
        for est in (IPS(), SNIPS(), DR()):
            for method in methods:
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


# --------------------------------------------------------------------------------------------
# Clustered rows (a customer's decisions): cluster-robust errors and the cluster bootstrap
# --------------------------------------------------------------------------------------------


def test_cluster_robust_standard_error_by_hand():
    # d = 1..6 in clusters {1,2}, {3,4}, {5,6}: psi = d - 3.5, cluster sums E = (-4, 0, 4),
    # se = sqrt(C / (C - 1) * sum E^2) / n = sqrt(3/2 * 32) / 6 = sqrt(48) / 6.
    d = np.arange(1.0, 7.0)
    terms = RoundTerms(d, clusters=np.array([0, 0, 1, 1, 2, 2]))
    assert terms.standard_error() == pytest.approx(math.sqrt(48.0) / 6.0, rel=1e-12)
    assert terms.n_clusters == 3
    # One row per cluster is the plain formula sd(psi) / sqrt(n).
    singles = RoundTerms(d, clusters=np.arange(6)[::-1].copy())
    assert singles.standard_error() == pytest.approx(d.std(ddof=1) / math.sqrt(6), rel=1e-12)
    # A ratio: psi_i = (u_i - R v_i) / mean(v), summed per cluster.
    u, v = np.array([1.0, 0.0, 2.0, 4.0]), np.array([1.0, 2.0, 1.0, 4.0])
    ratio = RoundTerms(None, u, v, clusters=np.array([1, 0, 1, 0]))
    r, mv = u.sum() / v.sum(), v.mean()
    e = np.array([(u[1] - r * v[1]) + (u[3] - r * v[3]), (u[0] - r * v[0]) + (u[2] - r * v[2])])
    want = math.sqrt(2 * (e / mv) @ (e / mv)) / 4
    assert ratio.standard_error() == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("n_clusters", [4, 9])  # small-table path, then the segment path
def test_cluster_bootstrap_resamples_whole_clusters_like_a_plain_loop(small_chunks, n_clusters):
    # Clusters of 1 to 3 rows; each resample draws n_clusters clusters (reference_resamples
    # over the cluster list) and the estimate and its se are recomputed on the copied rows.
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 4, size=n_clusters)
    codes = np.repeat(np.arange(n_clusters), sizes)
    order = rng.permutation(codes.size)  # rows of a cluster need not be adjacent
    codes = codes[order]
    n = codes.size
    d, u, v = rng.normal(size=n), rng.normal(size=n), rng.uniform(0.1, 3.0, size=n)
    b = 25
    draws = reference_resamples(n_clusters, b, np.random.default_rng(11))
    for parts in ((d, None, None), (None, u, v), (d, u, v)):
        terms = RoundTerms(*parts, clusters=codes)
        columns = intervals._Columns.of(terms, moments=True)
        sums = intervals._resampled_sums(
            columns.table, n_bootstrap=b, rng=np.random.default_rng(11), n_threads=2
        )
        values, ses = columns.values(sums, n), columns.standard_errors(sums, n)
        plain = bootstrap_values(terms, n_bootstrap=b, rng=np.random.default_rng(11))
        for k, picked in enumerate(draws):
            rows = np.concatenate([np.flatnonzero(codes == c) for c in picked])
            new_codes = np.repeat(np.arange(len(picked)), [np.sum(codes == c) for c in picked])
            again = RoundTerms(*(None if p is None else p[rows] for p in parts), clusters=new_codes)
            assert values[k] == pytest.approx(again.value(), rel=1e-10, abs=1e-12)
            assert plain[k] == pytest.approx(again.value(), rel=1e-10, abs=1e-12)
            assert ses[k] == pytest.approx(again.standard_error(), rel=1e-8)


def test_one_row_clusters_give_the_row_bootstrap():
    rng = np.random.default_rng(4)
    d, u, v = rng.normal(size=500), rng.normal(size=500), rng.uniform(size=500)
    rows = RoundTerms(d, u, v)
    singles = RoundTerms(d, u, v, clusters=np.arange(500))
    for method in (bootstrap_interval, studentized_interval):
        a = method(rows, alpha=0.05, n_bootstrap=300, rng=np.random.default_rng(0))
        c = method(singles, alpha=0.05, n_bootstrap=300, rng=np.random.default_rng(0))
        np.testing.assert_allclose(a, c, rtol=1e-10)


def test_clustered_intervals_cover_correlated_rows_where_row_intervals_do_not():
    # 200 customers x 10 decisions, each customer with its own level (intraclass correlation
    # 0.5): the design effect is 1 + 9 * 0.5 = 5.5, so row intervals are sqrt(5.5) = 2.3x too
    # narrow and cover ~60%; cluster-robust ones cover ~95%.
    hits = {"row": 0, "episode": 0}
    codes = np.repeat(np.arange(200), 10)
    for seed in range(200):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=200)[codes] + rng.normal(size=2000)
        rows = RoundTerms(x)
        clustered = RoundTerms(x, clusters=codes)
        for key, terms in (("row", rows), ("episode", clustered)):
            lo, hi = normal_interval(terms, alpha=0.05)
            hits[key] += lo <= 0.0 <= hi
    assert hits["episode"] >= 180, hits  # 95% of 200, minus ~3.5 standard errors
    assert hits["row"] <= 140, hits


def test_clusters_are_checked():
    with pytest.raises(ValueError, match=r"`clusters` must be \(3,\) integer codes"):
        RoundTerms(np.ones(3), clusters=np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match=r"`clusters` must be \(3,\) integer codes"):
        RoundTerms(np.ones(3), clusters=np.zeros(3))
    with pytest.raises(ValueError, match="codes >= 0, got -1"):
        RoundTerms(np.ones(3), clusters=np.array([0, -1, 0]))
    with pytest.raises(ValueError, match="at least 2 clusters, got 1"):
        normal_interval(RoundTerms(np.arange(3.0), clusters=np.zeros(3, dtype=int)), alpha=0.05)
