"""Sampling actions from probability tables, with exact propensities."""

from __future__ import annotations

import numpy as np

from campaignrl._checks import check_scalar

__all__ = ["epsilon_mix", "greedy_probabilities", "sample_actions", "uniform_probabilities"]


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
    # Running sums column by column (a vector add per action over all rows) instead of
    # np.cumsum along the short action axis, which numpy does not vectorize across rows.
    total = np.zeros(n)
    for j in range(n_actions):
        total += probs[:, j]
    u = rng.random(n) * total
    cum = np.zeros(n)
    actions = np.zeros(n, dtype=np.int64)
    for j in range(n_actions - 1):  # the last running sum is the total, always above u
        cum += probs[:, j]
        actions += cum <= u
    return actions, probs[np.arange(n), actions]
