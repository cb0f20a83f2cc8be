"""Sampling actions from probability tables, with exact propensities."""

from __future__ import annotations

import numpy as np

from campaignrl._checks import check_scalar

__all__ = ["epsilon_mix", "greedy_probabilities", "sample_actions", "uniform_probabilities"]

_FEW_ROWS = 128
"""up to this many rows :func:`sample_actions` sums with one ``np.add.accumulate``, beyond
it with one ``np.add`` per action (measured, 13 and 19 actions: 18 against 39 us at 10 rows,
26 against 32 us at 100, about even at 200, 114 against 74 us at 1,000)"""


def uniform_probabilities(masks: np.ndarray) -> np.ndarray:
    """Uniform over each row's allowed actions.

    Examples:
        >>> uniform_probabilities(np.array([[True, False, True]]))
        array([[0.5, 0. , 0.5]])
    """
    m = masks.astype(np.float64)
    return m / m.sum(axis=1, keepdims=True)


def greedy_probabilities(scores: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """One-hot on each row's best allowed action (ties go to the lowest index).

    Examples:
        >>> greedy_probabilities(np.array([[1.0, 3.0, 2.0]]), np.array([[True, False, True]]))
        array([[0., 0., 1.]])
    """
    best = np.where(masks, scores, -np.inf).argmax(axis=1)
    out = np.zeros(scores.shape, dtype=np.float64)
    out[np.arange(scores.shape[0]), best] = 1.0
    return out


def epsilon_mix(probs: np.ndarray, masks: np.ndarray, epsilon: float) -> np.ndarray:
    """``(1 - epsilon) * probs + epsilon * uniform(allowed)``.

    Examples:
        >>> epsilon_mix(np.array([[1.0, 0.0, 0.0]]), np.ones((1, 3), bool), 0.3)
        array([[0.8, 0.1, 0.1]])
    """
    check_scalar(epsilon, "epsilon", (int, float), min_val=0.0, max_val=1.0)
    if epsilon == 0.0:
        return probs
    return (1.0 - epsilon) * probs + epsilon * uniform_probabilities(masks)


def sample_actions(probs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one action per row by inverse CDF; return actions and their exact probabilities.

    A zero-probability action is never drawn: the first cumulative sum that exceeds
    ``u * total`` always ends on an action with positive mass.

    Examples:
        >>> a, p = sample_actions(np.array([[0.0, 1.0], [0.25, 0.75]]), np.random.default_rng(0))
        >>> a[0], p[0]
        (np.int64(1), np.float64(1.0))
    """
    n, n_actions = probs.shape
    if n == 1 and probs.dtype == np.float64 and n_actions > 1:
        return _sample_one(probs, rng)
    return _sample_rows(probs, rng, accumulate=n <= _FEW_ROWS)


def _sample_rows(
    probs: np.ndarray, rng: np.random.Generator, *, accumulate: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_actions` with numpy; ``accumulate``: running sums in one call."""
    n, n_actions = probs.shape
    # Column-major, so that each action's column is one contiguous row of ``cols``: every step
    # below is then a vector operation over all rows at once (np.cumsum along the short action
    # axis is not vectorized across rows). The sums run action by action, in index order,
    # whatever layout ``probs`` came in: the same draws for the same probabilities.
    cols = np.asfortranarray(probs, dtype=np.float64).T
    # Row by row of ``cols``: sequential, in action order, for two rows or more; a single
    # row is one contiguous run, which numpy sums pairwise (measured: 40% of random rows of
    # 19 actions differ in the last bit from the sequential sum). Draws stay exact either way.
    total = np.add.reduce(cols, axis=0)
    u = rng.random(n)
    u *= total
    # cum[j] = probs[:, 0] + ... + probs[:, j]; the last running sum is the total, always above u.
    if accumulate:
        # One accumulate: per row the same additions in the same order as the loop below,
        # in one call instead of one per action (cheaper for a few rows; slower for many,
        # as numpy runs it row by row along the strided action axis).
        cum = np.add.accumulate(cols[:-1], axis=0)
    else:
        cum = np.empty((max(n_actions - 1, 0), n))
        if n_actions > 1:
            cum[0] = cols[0]
        for j in range(1, n_actions - 1):
            np.add(cum[j - 1], cols[j], out=cum[j])
    below = cum <= u
    if n_actions <= 256:
        # Counting in uint8 (at most 255 running sums) spares the bool-to-int64 cast.
        actions = np.add.reduce(below.view(np.uint8), axis=0, dtype=np.uint8).astype(np.int64)
    else:
        actions = below.sum(axis=0, dtype=np.int64)
    return actions, probs[np.arange(n), actions]


def _sample_one(probs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_actions` of one float64 row of two actions or more, in plain Python.

    A dozen numpy calls on arrays of one row cost more than the arithmetic: the same
    operations on Python floats (IEEE doubles, so the same roundings), the total from the
    same numpy reduction, the same uniform from the generator.
    """
    cols = np.asfortranarray(probs).T
    # The very reduction of _sample_rows (pairwise for one row, not a running sum).
    total = float(np.add.reduce(cols, axis=0)[0])
    u = float(rng.random(1)[0]) * total
    row = cols[:, 0].tolist()
    running = row[0]
    action = 1 if running <= u else 0
    for p in row[1:-1]:
        running += p
        if running <= u:
            action += 1
    return np.array([action], dtype=np.int64), np.array([row[action]])
