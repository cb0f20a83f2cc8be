"""Pieces shared by the Beta and Gaussian argmax quadratures: the panel rule and mask checks."""

from __future__ import annotations

import numpy as np
from numpy.polynomial import legendre

__all__ = ["check_mask_rows", "reference_rule"]


def reference_rule(order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on ``[0, 1]``, and the running-integral matrix.

    ``cumulative[i, j] = integral_0^{x_i} l_j(u) du`` for the Lagrange basis ``l_j`` of the
    nodes: ``cumulative @ f(x)`` integrates the interpolant of ``f`` from 0 to each node.

    Examples:
        >>> nodes, weights, cumulative = reference_rule(3)
        >>> bool(np.allclose(cumulative @ nodes, nodes**2 / 2))  # exact for polynomials
        True
    """
    t, w = legendre.leggauss(order)
    basis = np.linalg.inv(legendre.legvander(t, order - 1))  # column j: l_j in Legendre form
    cumulative = np.empty((order, order))
    for j in range(order):
        antiderivative = legendre.legint(basis[:, j], lbnd=-1.0)
        cumulative[:, j] = legendre.legval(t, antiderivative) / 2.0
    return (t + 1.0) / 2.0, w / 2.0, cumulative


def check_mask_rows(masks: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """``masks`` as booleans of ``shape`` with an allowed action per row (``None``: all)."""
    if masks is None:
        return np.ones(shape, dtype=bool)
    m = np.asarray(masks)
    if m.dtype != bool or m.shape != shape:
        raise ValueError(f"`masks` must be booleans of shape {shape}, got {m.dtype} {m.shape}")
    empty = ~m.any(axis=1)
    if empty.any():
        raise ValueError(f"`masks` allows no action at row {int(np.argmax(empty))}")
    return m
