"""Confidence intervals: normal, percentile and studentized bootstrap, from per-row terms."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "MIN_BOOTSTRAP",
    "RoundTerms",
    "bootstrap_interval",
    "bootstrap_values",
    "normal_interval",
    "studentized_interval",
]

MIN_BOOTSTRAP = 100
"""fewest resamples behind a bootstrap interval of an estimator. A 95% interval reads the
2.5% and 97.5% quantiles of the B resamples: below 40 these are the extreme resamples, and
with B = 1 both ends are one number (a zero-width interval that need not even hold the
estimate). 100 leaves 2.5 resamples beyond each end; it is a floor, not a recommendation:
Efron & Tibshirani (An Introduction to the Bootstrap, 1993, section 19.3) ask for about
1000 for percentile intervals, the default here"""

_CHUNK_ELEMENTS = 1 << 23
"""at most this many resampled rows per child generator (8M, about 50 ms of work): the unit
of work handed to a thread"""
_MIN_CHUNKS = 16
"""resamples are split into at least this many chunks (when B allows), so that threads get
even shares of the work"""
_THREADED_ELEMENTS = 1 << 22
"""below this many resampled rows in all, one thread: starting threads would cost more"""
_DRAW_ELEMENTS = 1 << 18
"""row indices drawn per call (256K: 2 MiB of indices, 2 MiB per gathered column)"""
_SEGMENT_ROWS = 1 << 13
"""rows per segment (64 KiB per column): gathers from a segment stay in a core's L2 cache,
even for the nine columns of a studentized SNDR. The same for every column count, so that
every estimator draws the same resamples from the same seed (common random numbers)."""


@dataclass(frozen=True, eq=False)
class RoundTerms:
    """Per-row pieces of an estimate, ``V = mean(direct) + mean(numerator) / mean(denominator)``.

    Every estimator here has this form: plain ones (DM, IPS, DR, Switch-DR, DRos) only use
    ``direct``; self-normalized ones (SNIPS, SNDR) put the importance-weighted part in
    ``numerator`` and the weights in ``denominator``. Keeping the ratio apart is what lets the
    bootstrap re-normalize inside each resample, and the normal interval linearize the ratio.
    """

    direct: np.ndarray | None
    """(n,) terms averaged as they are, or ``None``"""
    numerator: np.ndarray | None = None
    """(n,) numerator terms of the self-normalized part, or ``None``"""
    denominator: np.ndarray | None = None
    """(n,) normalizing weights (given with ``numerator``), or ``None``"""
    clusters: np.ndarray | None = None
    """(n,) int64 cluster codes ``0..C-1`` (e.g. the customer or episode of each row), or
    ``None`` for independent rows. With clusters the standard error is cluster-robust and
    the bootstrap resamples whole clusters, since rows of one customer are correlated"""

    def __post_init__(self) -> None:
        if (self.numerator is None) != (self.denominator is None):
            raise ValueError("`numerator` and `denominator` must be given together")
        if self.direct is None and self.numerator is None:
            raise ValueError("RoundTerms needs `direct` or `numerator`/`denominator` terms")
        if self.clusters is not None:
            codes = self.clusters
            if codes.shape != (self.n_rounds,) or not np.issubdtype(codes.dtype, np.integer):
                raise ValueError(
                    f"`clusters` must be ({self.n_rounds},) integer codes, got "
                    f"{codes.dtype} of shape {codes.shape}"
                )
            if codes.size and (codes.min() < 0):
                raise ValueError(f"`clusters` must be codes >= 0, got {int(codes.min())}")

    @property
    def n_clusters(self) -> int:
        """Number of independent units: clusters that hold rows, or rows without clusters."""
        if self.clusters is None:
            return self.n_rounds
        return int(np.count_nonzero(np.bincount(self.clusters)))

    def cluster_sums(self, column: np.ndarray) -> np.ndarray:
        """``(C,)`` sums of a per-row column over each non-empty cluster (rows without them)."""
        if self.clusters is None:
            return column
        sums = np.bincount(self.clusters, weights=column)
        return sums[np.bincount(self.clusters) > 0]

    @property
    def n_rounds(self) -> int:
        """Number of rows."""
        first = self.direct if self.direct is not None else self.numerator
        return int(first.shape[0])  # type: ignore[union-attr]  # one is set: checked above

    def value(self) -> float:
        """The estimate ``mean(direct) + mean(numerator) / mean(denominator)``.

        A ratio whose denominator sums to zero (no weight anywhere) counts as zero.

        Examples:
            >>> RoundTerms(np.array([1.0, 3.0])).value()
            2.0
            >>> RoundTerms(None, np.array([2.0, 0.0]), np.array([2.0, 2.0])).value()
            0.5
        """
        total = float(self.direct.mean()) if self.direct is not None else 0.0
        return total + self._ratio()

    def _ratio(self) -> float:
        """``sum(numerator) / sum(denominator)``, 0 without a ratio or without weight."""
        if self.numerator is None or self.denominator is None:
            return 0.0
        den = float(self.denominator.sum())
        return float(self.numerator.sum()) / den if den != 0.0 else 0.0

    def influence(self) -> np.ndarray:
        """Per-row influence terms ``psi_i`` (mean zero), the linearization of ``value()``.

        For ``V = mean(d) + mean(u) / mean(v)`` with ``R = mean(u) / mean(v)``:
        ``psi_i = d_i - mean(d) + (u_i - R v_i) / mean(v)`` (the delta method), so that
        ``Var(V) ~ Var(psi) / n``.
        """
        n = self.n_rounds
        psi = np.zeros(n) if self.direct is None else self.direct - self.direct.mean()
        if self.numerator is not None and self.denominator is not None:
            mean_den = float(self.denominator.mean())
            if mean_den != 0.0:
                ratio = float(self.numerator.mean()) / mean_den
                psi = psi + (self.numerator - ratio * self.denominator) / mean_den
        return psi

    def standard_error(self) -> float:
        """The delta-method standard error, cluster-robust when rows come in clusters.

        Independent rows: ``sd(psi) / sqrt(n)`` (``ddof=1``). Clusters ``c = 1..C``, with
        ``E_c = sum_{i in c} psi_i``: ``sqrt(C / (C - 1) * sum_c E_c^2) / n`` (the
        sandwich estimator of Liang & Zeger, "Longitudinal data analysis using generalized
        linear models", Biometrika 73(1), 1986), which is the first with one row per cluster.
        """
        n, units = self.n_rounds, self.n_clusters
        if units < 2:
            what = "clusters" if self.clusters is not None else "logged rows"
            raise ValueError(f"an interval needs at least 2 {what}, got {units}")
        psi = self.influence()
        if self.clusters is None:
            return float(psi.std(ddof=1)) / float(np.sqrt(n))
        e = self.cluster_sums(psi)
        return float(np.sqrt(units / (units - 1) * float(e @ e))) / n


def normal_interval(terms: RoundTerms, *, alpha: float) -> tuple[float, float]:
    """Analytic interval ``V +- z_{1 - alpha/2} sd(psi) / sqrt(n)`` from influence terms.

    Examples:
        >>> lo, hi = normal_interval(RoundTerms(np.array([0.0, 1.0, 2.0, 3.0])), alpha=0.05)
        >>> round(lo, 4), round(hi, 4)
        (0.2348, 2.7652)
    """
    half = NormalDist().inv_cdf(1.0 - alpha / 2.0) * terms.standard_error()
    value = terms.value()
    return value - half, value + half


# --------------------------------------------------------------------------------------------
# The bootstrap: resample sums of a few columns, then decode estimates from them
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Columns:
    """The terms recentred on the full-sample estimate, as the rows of a ``(c, m)`` table.

    Base columns: ``a = d - mean(d)`` (with ``direct``), then ``b = u - R v`` and ``v`` (with a
    ratio, ``R`` the full-sample ratio). A resample's estimate is
    ``mean(d) + sum*(a) / n* + R + sum*(b) / sum*(v)``, which is algebraically
    ``mean*(d) + sum*(u) / sum*(v)``: the ratio is re-normalized in every resample. Centering
    keeps the sums of squares (``moments``) free of cancellation.

    Independent rows: the table has one column per row (``m = n``) and ``n* = n``. Clustered
    rows: one column per cluster holding its rows' sums, plus a count column ``k_c`` (rows in
    the cluster), so that ``n* = sum*(k)`` follows the resampled clusters.
    """

    table: np.ndarray
    """(c, m): the base columns, then with ``moments`` their products ``x_i x_j, i <= j``"""
    n_base: int
    """number of base columns (1 to 4)"""
    mean_direct: float | None
    """``mean(d)``, or ``None`` without ``direct``"""
    ratio: float | None
    """the full-sample ratio ``R``, or ``None`` without a ratio"""
    counted: bool
    """whether the base columns include the count column (clustered rows)"""

    @classmethod
    def of(cls, terms: RoundTerms, *, moments: bool) -> _Columns:
        base: list[np.ndarray] = []
        mean_direct = ratio = None
        if terms.direct is not None:
            mean_direct = float(terms.direct.mean())
            base.append(terms.direct - mean_direct)
        counted = terms.clusters is not None
        if counted:
            base.append(np.ones(terms.n_rounds))
        if terms.numerator is not None and terms.denominator is not None:
            ratio = terms._ratio()
            base += [terms.numerator - ratio * terms.denominator, terms.denominator]
        # Per cluster the products are of the cluster SUMS (E_c^2 in the robust variance).
        base = [terms.cluster_sums(np.asarray(col, dtype=np.float64)) for col in base]
        rows = list(base)
        if moments:
            rows += [base[i] * base[j] for i in range(len(base)) for j in range(i, len(base))]
        table = np.stack(rows)
        return cls(table, len(base), mean_direct, ratio, counted)

    def _layout(self) -> tuple[int | None, int | None, int | None]:
        """Indices of the ``a``, count and ``b`` columns (``v`` follows ``b``)."""
        j = 0
        a = count = b = None
        if self.mean_direct is not None:
            a, j = 0, 1
        if self.counted:
            count, j = j, j + 1
        if self.ratio is not None:
            b = j
        return a, count, b

    def _rows(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Each resample's row count ``n*``."""
        _, count, _ = self._layout()
        return sums[:, count] if count is not None else np.full(sums.shape[0], float(n))

    def values(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Each resample's estimate from its column sums ``(B, c)``."""
        a, _, b = self._layout()
        out = np.zeros(sums.shape[0])
        if a is not None:
            out += (self.mean_direct or 0.0) + sums[:, a] / self._rows(sums, n)
        if b is not None:
            out += self._ratio_part(sums[:, b], sums[:, b + 1])
        return out

    def _ratio_part(self, num: np.ndarray, den: np.ndarray) -> np.ndarray:
        # sum*(v) == 0: no weight in the resample, the ratio counts as zero (see RoundTerms)
        shift = np.zeros_like(num)
        np.divide(num, den, out=shift, where=den != 0.0)
        return np.where(den != 0.0, (self.ratio or 0.0) + shift, 0.0)

    def standard_errors(self, sums: np.ndarray, n: int) -> np.ndarray:
        """Each resample's delta-method standard error (as ``RoundTerms.standard_error``).

        The resample's influence terms, summed per unit (row or cluster), are a linear
        combination ``E_c = sum_j g_j x_cj`` of the base columns: ``g = 1`` for ``a``,
        ``-sum*(a) / n*`` for the count (clusters only: rows recentre ``a`` through the
        ``(sum E)^2`` term below instead), and ``(n* / sum*(v), -delta n* / sum*(v))`` for
        ``(b, v)`` with ``delta = sum*(b) / sum*(v)``. So ``sum_c E_c^2 = g' S2 g`` from the
        resampled products ``S2``, ``var* = (sum E^2 - (sum E)^2 / m) / (m - 1)`` over the
        ``m`` units, and ``se* = sqrt(m var*) / n*``.
        """
        k, m = self.n_base, self.table.shape[1]
        first, second = sums[:, :k], sums[:, k:]
        rows = self._rows(sums, n)
        a, count, b = self._layout()
        coef = np.zeros_like(first)
        if a is not None:
            coef[:, a] = 1.0
            if count is not None:
                coef[:, count] = -first[:, a] / rows
        if b is not None:
            sb, sv = first[:, b], first[:, b + 1]
            inv_mv = np.zeros_like(sv)
            np.divide(rows, sv, out=inv_mv, where=sv != 0.0)  # no weight: no ratio part
            delta = np.zeros_like(sv)
            np.divide(sb, sv, out=delta, where=sv != 0.0)
            coef[:, b] = inv_mv
            coef[:, b + 1] = -delta * inv_mv
        square = np.zeros(sums.shape[0])
        pos = 0
        for i in range(k):
            for j in range(i, k):
                factor = 1.0 if i == j else 2.0  # off-diagonal products count twice
                square += factor * coef[:, i] * coef[:, j] * second[:, pos]
                pos += 1
        total = np.einsum("bk,bk->b", coef, first)
        var = np.maximum(square - total * total / m, 0.0) / (m - 1)
        return np.sqrt(m * var) / rows


def bootstrap_values(
    terms: RoundTerms,
    *,
    n_bootstrap: int,
    rng: np.random.Generator,
    n_threads: int | None = None,
) -> np.ndarray:
    """The estimate recomputed on ``n_bootstrap`` resamples of the rows, shape ``(B,)``.

    Each resample draws ``n`` rows with replacement (exactly multinomial resample counts)
    and re-applies the whole estimator to them, self-normalization included: a
    self-normalized estimator divides by the resample's own weight total, not the full log's.
    With ``terms.clusters`` it draws ``C`` whole clusters instead (the cluster bootstrap:
    Davison & Hinkley, "Bootstrap Methods and their Application", 1997, section 3.8), so
    that the correlation between one customer's rows stays inside each resample.

    The resamples are split into fixed chunks, each drawn by its own child generator spawned
    from one seed taken from ``rng``, and the chunks run on ``n_threads`` threads (numpy
    releases the GIL while it draws, gathers and sums). The values depend on ``rng``, ``n``
    and ``B`` only: not on the number of threads or their scheduling, nor on the estimator
    (every estimator draws the same resamples from the same seed).

    Args:
        terms: The estimate's per-row terms.
        n_bootstrap: Number of resamples B.
        rng: The caller's generator: it is advanced by one small draw, the seed of the
            resamples' own generators.
        n_threads: Worker threads (``None``: every CPU this process may use).

    Examples:
        >>> terms = RoundTerms(np.arange(10.0))
        >>> vals = bootstrap_values(terms, n_bootstrap=3, rng=np.random.default_rng(0))
        >>> vals.shape
        (3,)
    """
    n = _check_rows(terms)
    columns = _Columns.of(terms, moments=False)
    sums = _resampled_sums(columns.table, n_bootstrap=n_bootstrap, rng=rng, n_threads=n_threads)
    return columns.values(sums, n)


def bootstrap_interval(
    terms: RoundTerms,
    *,
    alpha: float,
    n_bootstrap: int,
    rng: np.random.Generator,
    n_threads: int | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval: the ``alpha/2`` and ``1 - alpha/2`` quantiles.

    Examples:
        >>> terms = RoundTerms(np.arange(100.0))
        >>> lo, hi = bootstrap_interval(
        ...     terms, alpha=0.05, n_bootstrap=200, rng=np.random.default_rng(0)
        ... )
        >>> lo < 49.5 < hi
        True
    """
    values = bootstrap_values(terms, n_bootstrap=n_bootstrap, rng=rng, n_threads=n_threads)
    lo, hi = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def studentized_interval(
    terms: RoundTerms,
    *,
    alpha: float,
    n_bootstrap: int,
    rng: np.random.Generator,
    n_threads: int | None = None,
) -> tuple[float, float]:
    r"""Studentized (bootstrap-t) interval, for skewed terms such as heavy importance weights.

    .. math::
        \left[\hat{V} - \hat{t}_{1 - \alpha/2} \, \widehat{se},\;
              \hat{V} - \hat{t}_{\alpha/2} \, \widehat{se}\right], \quad
        t^*_b = \frac{\hat{V}^*_b - \hat{V}}{\widehat{se}^*_b}

    where ``se`` is the delta-method standard error (as in :func:`normal_interval`;
    cluster-robust with ``terms.clusters``, whose resamples are then whole clusters),
    ``se*_b`` the same formula on resample ``b`` (self-normalization re-applied) and ``t_q`` the
    ``q``-th order statistic of the ``t*_b`` (Efron & Tibshirani's definition). A resample
    with no spread has ``t* = +-inf`` (0 if it hits ``V``): when more than ``alpha/2`` of the
    resamples have none (a log with a handful of informative rows), a bound is infinite, as
    the data cannot bound the value on that side.

    Why: importance-weighted terms are strongly right-skewed (a few rows carry weights of tens
    and large rewards). A log that happens to hold few of those rows has both a low estimate
    and a low ``se``, so the symmetric normal interval (and the percentile bootstrap, which
    mirrors the estimate's own distribution) falls short on the upper side. The studentized
    statistic tracks that dependence, and its coverage error is ``O(1/n)`` instead of
    ``O(1/sqrt(n))`` (second-order accuracy); the interval extends further above the estimate
    than below it. With symmetric terms it is close to the normal interval.

    References: Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 12.5 and
    22; Hall, "Theoretical Comparison of Bootstrap Confidence Intervals", Annals of
    Statistics 16(3), 1988; Hesterberg, "What Teachers Should Know About the Bootstrap", The
    American Statistician 69(4), 2015 (skewed populations: bootstrap-t comes closest to the
    nominal coverage).

    Examples:
        >>> x = np.r_[np.zeros(95), np.full(5, 20.0)]  # mean 1, strongly right-skewed
        >>> lo, hi = studentized_interval(
        ...     RoundTerms(x), alpha=0.05, n_bootstrap=2000, rng=np.random.default_rng(0)
        ... )
        >>> hi - 1.0 > 1.0 - lo  # longer above the estimate than below
        True
    """
    n = _check_rows(terms)
    value, se = terms.value(), terms.standard_error()
    if se == 0.0:  # every row the same: so is every resample
        return value, value
    columns = _Columns.of(terms, moments=True)
    sums = _resampled_sums(columns.table, n_bootstrap=n_bootstrap, rng=rng, n_threads=n_threads)
    diff = columns.values(sums, n) - value
    boot_se = columns.standard_errors(sums, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(boot_se > 0.0, diff / boot_se, np.sign(diff) * np.inf)
    t_lo, t_hi = np.quantile(t, [alpha / 2.0, 1.0 - alpha / 2.0], method="inverted_cdf")
    return value - float(t_hi) * se, value - float(t_lo) * se


def _check_rows(terms: RoundTerms) -> int:
    n, units = terms.n_rounds, terms.n_clusters
    if units < 2:
        what = "clusters" if terms.clusters is not None else "logged rows"
        raise ValueError(f"an interval needs at least 2 {what}, got {units}")
    return n


def _resampled_sums(
    table: np.ndarray, *, n_bootstrap: int, rng: np.random.Generator, n_threads: int | None
) -> np.ndarray:
    """Column sums of ``table`` ``(c, n)`` over ``n_bootstrap`` resamples of its n columns.

    Determinism with threads: resamples go in fixed chunks (at most ``_CHUNK_ELEMENTS``
    resampled rows, at least ``_MIN_CHUNKS`` chunks when ``B`` allows), and chunk ``i``
    always draws from child generator ``i``, spawned from one seed drawn from ``rng``
    (``SeedSequence.spawn``: independent streams). Which thread runs a chunk changes nothing,
    so the result depends on ``rng`` (and ``n``, ``B``) only. numpy releases the GIL in the
    bulk draws, gathers and sums, so threads run on separate cores.

    Row indices are drawn as ``intp``: they cost the same to draw as ``uint32`` (numpy draws
    32 bits for ranges below 2**32 either way), and ``np.take`` gathers with them about 2.5x
    faster (it converts any other index type first).

    Returns:
        ``(B, c)`` sums: row ``b`` is ``sum_i table[:, idx_b[i]]`` over resample ``b``'s
        indices.
    """
    n = table.shape[1]
    # Fixed by (n, B) alone, never by the number of threads.
    per_chunk = max(1, min(_CHUNK_ELEMENTS // n, -(-n_bootstrap // _MIN_CHUNKS)))
    n_chunks = -(-n_bootstrap // per_chunk)
    seed = np.random.SeedSequence(rng.integers(0, 2**63, size=4).tolist())
    children = seed.spawn(n_chunks)

    def chunk(i: int) -> np.ndarray:
        count = min(per_chunk, n_bootstrap - i * per_chunk)
        return _chunk_sums(table, count, np.random.Generator(np.random.PCG64(children[i])))

    workers = min(n_threads if n_threads is not None else _usable_cpus(), n_chunks)
    if workers <= 1 or n * n_bootstrap < _THREADED_ELEMENTS:
        parts = [chunk(i) for i in range(n_chunks)]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(chunk, range(n_chunks)))  # in chunk order
    return np.concatenate(parts)


def _chunk_sums(table: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Column sums of ``count`` resamples of ``table`` ``(c, n)``, shape ``(count, c)``.

    Small tables (up to one segment): ``n`` uniform row indices per resample, gathered and
    summed, several resamples per draw.

    Larger tables are cut into S segments of about ``_SEGMENT_ROWS``. A resample first draws
    how many of its n rows fall in each segment, ``Multinomial(n, size_s / n)``, then that
    many rows uniformly inside each segment. By the aggregation property of the multinomial
    the row counts are exactly ``Multinomial(n, 1/n, ..., 1/n)``, as with n uniform draws over
    the whole table, but every gather reads a cache-resident slice instead of missing cache
    on a random row of a table that does not fit (the gathers were 60% of the time).
    """
    c, n = table.shape
    out = np.zeros((count, c))
    seg_rows = _SEGMENT_ROWS
    if n <= seg_rows:
        per_draw = max(1, _DRAW_ELEMENTS // n)
        for start in range(0, count, per_draw):
            k = min(per_draw, count - start)
            index = rng.integers(0, n, size=k * n, dtype=np.intp)
            gathered = np.take(table, index, axis=1).reshape(c, k, n)
            out[start : start + k] = gathered.sum(axis=2).T
        return out
    n_seg = -(-n // seg_rows)
    bounds = (np.arange(n_seg + 1) * n) // n_seg
    shares = np.diff(bounds) / n
    per_draw = max(1, _DRAW_ELEMENTS // seg_rows)
    for start in range(0, count, per_draw):
        k = min(per_draw, count - start)
        counts = rng.multinomial(n, shares, size=k)  # (k, S) rows per resample and segment
        block = out[start : start + k]
        for s in range(n_seg):
            per_resample = counts[:, s]
            total = int(per_resample.sum())
            if total == 0:
                continue
            index = rng.integers(bounds[s], bounds[s + 1], size=total, dtype=np.intp)
            gathered = np.take(table, index, axis=1)  # (c, total), resample after resample
            starts = np.cumsum(per_resample) - per_resample
            hit = per_resample > 0  # reduceat needs strictly increasing starts
            if hit.all():
                block += np.add.reduceat(gathered, starts, axis=1).T
            else:
                block[hit] += np.add.reduceat(gathered, starts[hit], axis=1).T
    return out


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the CPUs this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
