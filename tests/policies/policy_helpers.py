"""Helpers shared by the policy test modules (pytest puts this folder on ``sys.path``).

The tests run with ``--import-mode=importlib``, so one test module cannot import another; the
helpers more than one of them needs live here instead. Not a test module: no ``test_`` prefix.
"""

from __future__ import annotations

import numpy as np


def numbered_names(prefix: str, k: int) -> list[str]:
    """``k`` names: ``prefix0``, ``prefix1``, ... ``prefix{k-1}``."""
    return [f"{prefix}{i}" for i in range(k)]


def random_masks(rng: np.random.Generator, n: int, a: int, p_allowed: float = 0.5) -> np.ndarray:
    """Random boolean masks, each row keeping at least one allowed action."""
    m = rng.random((n, a)) < p_allowed
    m[np.arange(n), rng.integers(0, a, n)] = True
    return m


def random_spd_inverse(rng: np.random.Generator, a: int, k: int) -> np.ndarray:
    """``(a, k, k)`` inverses of ``I + X^T X``, as a ridge fit would give."""
    out = np.empty((a, k, k))
    for i in range(a):
        x = rng.normal(size=(3 * k, k))
        out[i] = np.linalg.inv(np.eye(k) + x.T @ x)
    return out
