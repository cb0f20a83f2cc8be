"""The streamable Poisson bootstrap's weights: the inverse CDF by its definition, any slicing."""

from __future__ import annotations

import numpy as np
import pytest

from campaignrl.ope.bootstrap import (
    _POISSON_THRESHOLDS,
    mix64,
    poisson_replicates,
    poisson_weights,
)


def reference_weights(seed: int, start: int, stop: int, n_buckets: int) -> np.ndarray:
    """``W[b, k]``: how many of the thresholds ``F(0), F(1), ...`` the hash reaches."""
    key = mix64(np.array([seed], dtype=np.uint64))[0]
    rows = mix64(np.arange(start, stop, dtype=np.uint64) ^ key)
    h = mix64(rows[:, None] ^ np.arange(n_buckets, dtype=np.uint64)[None, :])
    thresholds = np.array(_POISSON_THRESHOLDS, dtype=np.uint64)
    return np.searchsorted(thresholds, h, side="right").astype(np.float64)


@pytest.mark.parametrize(("seed", "start", "stop"), [(0, 0, 16), (9, 5, 12), (2**40, 31, 33)])
def test_weights_are_the_inverse_poisson_cdf_of_the_hash(seed: int, start: int, stop: int) -> None:
    got = poisson_weights(seed, start, stop, 1 << 15)
    assert np.array_equal(got, reference_weights(seed, start, stop, 1 << 15))


def test_weights_reach_the_rare_tail() -> None:
    # 16 x 2^15 = 524,288 draws: P(W >= 7) = 8.3e-5, so about 44 draws of 7 or more, which
    # only the tail thresholds (counted on the hashes beyond F(2)) can give.
    w = poisson_weights(0, 0, 16, 1 << 15)
    assert np.array_equal(w, reference_weights(0, 0, 16, 1 << 15))
    assert int((w >= 7).sum()) > 10


@pytest.mark.parametrize("n_resamples", [1, 33, 70])
def test_replicates_are_the_weights_times_the_sums_for_any_workers(n_resamples: int) -> None:
    sums = np.random.default_rng(1).normal(size=(2048, 5))
    serial = poisson_replicates(sums, 7, n_resamples)
    for workers in (2, 3):
        assert np.array_equal(poisson_replicates(sums, 7, n_resamples, workers), serial)
    weights = poisson_weights(7, 0, n_resamples, 2048)
    # Each entry sums 2048 products: in any order it errs by at most
    # 2048 * eps * sum |w s| (Higham, "Accuracy and Stability of Numerical Algorithms", 3.1).
    bound = 2048 * np.finfo(float).eps * (np.abs(weights) @ np.abs(sums))
    assert np.all(np.abs(serial - weights @ sums) <= bound)
