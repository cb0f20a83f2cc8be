r"""A streamable cluster bootstrap: hashed buckets of customers and hashed Poisson weights.

A log too big for memory cannot be resampled row by row. The Poisson bootstrap
(Hanley & MacGibbon, "Creating non-parametric bootstrap samples using Poisson frequencies",
Computer Methods and Programs in Biomedicine 83, 2006; Chamandy, Muralidharan, Najmi & Naidu,
"Estimating Uncertainty for Massive Data Streams", Google, 2012) replaces the multinomial
counts of a resample of ``C`` clusters by independent ``Poisson(1)`` counts, one per cluster
and resample: they need no knowledge of ``C`` and are drawn independently for every cluster,
so the resample can be built while streaming.

Two hashes make it independent of how the rows are partitioned or ordered:

* every row goes to the bucket ``k = h(cluster id) mod M`` (``M`` = :data:`N_BUCKETS`, a
  power of two). A bucket is a fixed, pseudo-random group of whole clusters (customers), so
  resampling buckets is a cluster bootstrap with coarser clusters: the rows of a customer
  always move together, and buckets are exchangeable. Each estimate only needs per-bucket
  sums ``S_k`` of its per-row terms (plus the row counts ``n_k``), which combine exactly
  across batches, files and machines;
* the count of bucket ``k`` in resample ``b`` is ``W_bk = F^{-1}(u(seed, b, k))``, the
  ``Poisson(1)`` quantile of a uniform taken from a 64-bit hash of ``(seed, b, k)``: a
  deterministic function of its arguments, not of the order in which buckets are visited.

A resample's estimate of ``V = sum(d)/n + sum(u)/sum(v)`` (see
:class:`~campaignrl.ope.intervals.RoundTerms`) is then

.. math::
    V^*_b = \frac{\sum_k W_{bk} S^d_k}{\sum_k W_{bk} n_k}
          + \frac{\sum_k W_{bk} S^u_k}{\sum_k W_{bk} S^v_k},

one ``(B, M) x (M, c)`` matrix product for all ``B`` resamples and ``c`` sum columns; the
interval is the ``alpha/2`` and ``1 - alpha/2`` quantiles of ``V^*`` (percentile bootstrap).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

__all__ = [
    "N_BUCKETS",
    "hash_ids",
    "mix64",
    "poisson_replicates",
    "poisson_weights",
    "uniform_of",
]

N_BUCKETS = 1 << 16
"""default number of buckets ``M``: with 1,000 resamples the weight matrix is 65M counts,
made in slices; with 1M customers a bucket holds about 15 of them"""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_RESAMPLES_PER_SLICE = 32
"""resamples whose ``(B, M)`` weights are made at once (32 x 65536 x 8 bytes = 16 MiB)"""
_RESAMPLES_PER_HASH = 4
"""resamples whose hashes are made at once (4 x 65536 x 8 bytes = 2 MiB: in cache)"""
_POISSON_CDF = np.cumsum([math.exp(-1.0) / math.factorial(k) for k in range(18)])
"""the ``Poisson(1)`` CDF at 0..17 (the tail beyond 17 is below 1e-16)"""
_POISSON_THRESHOLDS = [np.uint64(min(c * 2.0**64, 2.0**64 - 2048)) for c in _POISSON_CDF]
"""``F(k) 2^64`` as integers: a hash ``h`` draws ``k`` when ``F(k-1) <= h / 2^64 < F(k)``"""
_HEAD = 3
"""thresholds compared on every hash; the rest only on the ``1 - F(2)`` = 8% beyond ``F(2)``"""


def mix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: a bijective 64-bit mix with full avalanche (uint64 arrays).

    Reference: Steele, Lea & Flood, "Fast Splittable Pseudorandom Number Generators",
    OOPSLA 2014 (the ``mix64`` of ``SplittableRandom``, with Stafford's variant 13 constants).

    Examples:
        >>> int(mix64(np.array([0], dtype=np.uint64))[0]) == int(mix64(np.zeros(1, np.uint64))[0])
        True
    """
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def uniform_of(h: np.ndarray) -> np.ndarray:
    """Uniforms in [0, 1) from 64-bit hashes (their top 53 bits)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def hash_ids(column: pa.Array | pa.ChunkedArray, salt: int, name: str) -> np.ndarray:
    """A 64-bit hash of every id in ``column`` (integers or strings), keyed by ``salt``.

    The hash of an id depends on its value only (and on ``salt``): not on the batch, file or
    row it sits in. Strings are hashed over their UTF-8 bytes, eight at a time, with their
    length; integers over their 64-bit value.

    Raises:
        ValueError: On a missing id or a column that is neither integer nor text, naming
            ``name``.
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.null_count:
        raise ValueError(f"column `{name}` must not have missing values, got {arr.null_count}")
    key = mix64(np.array([salt], dtype=np.uint64))[0]
    t = arr.type
    if pa.types.is_dictionary(t):
        return hash_ids(arr.dictionary, salt, name)[arr.indices.to_numpy(zero_copy_only=False)]
    if pa.types.is_integer(t):
        values = arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        return mix64(values.view(np.uint64) ^ key)
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
        arr = arr.cast(pa.large_binary())
        t = arr.type
    if not (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    ):
        raise ValueError(f"column `{name}` must hold integer or text ids, got {t}")
    large = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
    buffers = arr.buffers()
    n = len(arr)
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if large else np.int32)
    offsets = offsets[arr.offset : arr.offset + n + 1].astype(np.int64)
    starts, lengths = offsets[:-1], np.diff(offsets)
    width = int(lengths.max()) if n else 0
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0)
    # Padding so that 8-byte reads past a string's end stay inside the buffer.
    data = np.concatenate([data[: int(offsets[-1]) if n else 0], np.zeros(8, np.uint8)])
    h = mix64(lengths.astype(np.uint64) ^ key)
    if n and int(lengths.min()) == width:
        # Fixed-width ids (as simulate writes them): one (n, width) byte matrix, no gathers.
        chars = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
        first = int(offsets[0])
        chars[:, :width] = data[first : first + n * width].reshape(n, width)
        for word in chars.view("<u8").T:
            h = mix64(h ^ word)
        return h
    lane = np.arange(8)
    for start in range(0, width, 8):
        idx = starts[:, None] + (start + lane)[None, :]  # type: ignore[operator]
        inside = (start + lane)[None, :] < lengths[:, None]
        chunk = np.where(inside, data[np.minimum(idx, data.shape[0] - 1)], 0).astype(np.uint8)
        word = np.ascontiguousarray(chunk).view("<u8")[:, 0]
        # Only a string's own words enter its hash: the same id hashes alike in any batch,
        # whatever the longest id next to it.
        h = np.where(lengths > start, mix64(h ^ word), h)
    return h


def poisson_weights(seed: int, start: int, stop: int, n_buckets: int) -> np.ndarray:
    """``(stop - start, n_buckets)`` ``Poisson(1)`` counts of resamples ``start..stop-1``.

    ``W[b, k] = F^{-1}(u)`` with ``u`` the uniform of ``mix64(mix64(mix64(seed) ^ b) ^ k)``
    and ``F`` the ``Poisson(1)`` CDF: the same counts whatever slice they are made in. The
    inverse CDF counts the thresholds ``F(0), F(1), ...`` (scaled to 2^64) that the hash
    reaches, on the integers (no conversion to float).

    Examples:
        >>> w = poisson_weights(0, 0, 50, 4096)
        >>> round(float(w.mean()), 1), round(float(w.var()), 1)
        (1.0, 1.0)
        >>> bool((poisson_weights(0, 10, 12, 4096) == w[10:12]).all())
        True
    """
    key = mix64(np.array([seed], dtype=np.uint64))[0]
    rows = mix64(np.arange(start, stop, dtype=np.uint64) ^ key)
    h = rows[:, None] ^ np.arange(n_buckets, dtype=np.uint64)[None, :]
    _mix64_inplace(h)
    counts = np.zeros(h.shape, dtype=np.uint8)
    for threshold in _POISSON_THRESHOLDS[: _HEAD - 1]:
        counts += h >= threshold
    # Thresholds ascend, so a hash below F(_HEAD - 1) reaches none of the later ones: those
    # are counted on the 8% of hashes beyond it only (the same counts, a third of the work).
    beyond = h >= _POISSON_THRESHOLDS[_HEAD - 1]
    counts += beyond
    flat = np.flatnonzero(beyond)
    tail = h.reshape(-1)[flat]
    extra = np.zeros(tail.shape, dtype=np.uint8)
    for threshold in _POISSON_THRESHOLDS[_HEAD:]:
        extra += tail >= threshold
    counts.reshape(-1)[flat] += extra
    return counts.astype(np.float64)


def _mix64_inplace(z: np.ndarray) -> None:
    """:func:`mix64` of a large uint64 array, in place (no temporaries of its size but one)."""
    tmp = np.empty_like(z)
    z += _GOLDEN
    np.right_shift(z, np.uint64(30), out=tmp)
    z ^= tmp
    z *= _M1
    np.right_shift(z, np.uint64(27), out=tmp)
    z ^= tmp
    z *= _M2
    np.right_shift(z, np.uint64(31), out=tmp)
    z ^= tmp


def poisson_replicates(
    sums: np.ndarray, seed: int, n_resamples: int, workers: int = 1
) -> np.ndarray:
    """``(n_resamples, c)`` resampled column totals ``W @ sums`` for ``sums`` ``(M, c)``.

    The weights are made :data:`_RESAMPLES_PER_SLICE` resamples at a time, so memory stays
    at a few MiB per thread whatever ``n_resamples`` is. ``workers`` threads make the slices
    (numpy releases the GIL); each slice's rows are the same whatever thread makes them.
    """
    n_buckets = sums.shape[0]
    out = np.empty((n_resamples, sums.shape[1]))

    def fill(start: int) -> None:
        stop = min(n_resamples, start + _RESAMPLES_PER_SLICE)
        weights = np.empty((stop - start, n_buckets))
        # Hashed a few resamples at a time: the hashing's passes then stay in the CPU's cache
        # (4x faster than over the whole slice); the product keeps the slice's shape.
        for first in range(start, stop, _RESAMPLES_PER_HASH):
            last = min(stop, first + _RESAMPLES_PER_HASH)
            weights[first - start : last - start] = poisson_weights(seed, first, last, n_buckets)
        out[start:stop] = weights @ sums

    starts = range(0, n_resamples, _RESAMPLES_PER_SLICE)
    if workers <= 1 or len(starts) == 1:
        for start in starts:
            fill(start)
        return out
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fill, starts))
    return out
