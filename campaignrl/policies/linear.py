"""Linear policy scores: ridge (LinGreedy) and upper-confidence (LinUCB) per action."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np

from campaignrl._checks import check_array
from campaignrl.policies.artifacts import (
    config_keys,
    config_names,
    config_number,
    register_policy_kind,
)
from campaignrl.policies.base import Exploration, Policy, SavedArrays

__all__ = ["LinearPolicy", "check_covariances"]

_FEW_ROWS = 256
"""up to this many rows, greedy probabilities of a policy without a bonus (``alpha = 0``)
come from float64 scores directly: measured faster than the float32 pass and its check
(20 features, 19 actions: 0.10 against 0.19 ms for 100 rows, even at about 300)"""
_FEW_ROWS_BONUS = 32
"""the same with a bonus (``alpha > 0``): the float64 pass gathers an ``(A + A k, k)``
weight block per row, so the float32 pass wins from about 50 rows (0.36 against 0.28 ms at
64 rows, 2.5 against 0.56 ms at 256)"""


def check_covariances(a_inv: np.ndarray, name: str = "a_inv") -> None:
    """Refuse ``(A, k, k)`` blocks that are not symmetric positive semi-definite (to rounding).

    Symmetric: ``|a - a^T| <= 1e-6 max|a|`` per block. Positive semi-definite: a Cholesky
    factorization of ``(a + a^T) / 2 + 1e-9 max|a| I`` succeeds, i.e. no eigenvalue is below
    ``-1e-9 max|a|`` (the rounding of an inverse design matrix stays far inside that).

    Raises:
        ValueError: Naming ``name``, the action and the asymmetry or the lowest eigenvalue.
    """
    if a_inv.size == 0:
        return
    scale = np.abs(a_inv).max(axis=(1, 2))
    asym = np.abs(a_inv - a_inv.transpose(0, 2, 1)).max(axis=(1, 2))
    bad = np.flatnonzero(asym > 1e-6 * np.maximum(scale, 1e-300))
    if bad.size:
        a = int(bad[0])
        raise ValueError(
            f"`{name}` must be symmetric, got |{name} - {name}^T| = {asym[a]:.3g} for action {a}"
        )
    sym = 0.5 * (a_inv + a_inv.transpose(0, 2, 1))
    jitter = (1e-9 * np.maximum(scale, 1e-300))[:, None, None] * np.eye(a_inv.shape[1])
    try:  # Cholesky succeeds iff the smallest eigenvalue is above -jitter: 4x cheaper than eigh
        np.linalg.cholesky(sym + jitter)
    except np.linalg.LinAlgError:
        lowest = np.linalg.eigvalsh(sym)[:, 0]
        a = int(np.argmin(lowest / np.maximum(scale, 1e-300)))
        raise ValueError(
            f"`{name}` must be positive semi-definite, got eigenvalue {lowest[a]:.3g} for "
            f"action {a}"
        ) from None


class _GroupBlock(NamedTuple):
    """One group's part of a :class:`LinearPolicy` with ``interact_with``."""

    active: np.ndarray
    """(k,) feature columns that can be non-zero in this group's rows"""
    beta: np.ndarray
    """(A, k) coefficients on them"""
    factor_t: np.ndarray | None
    """(A k, k) stacked ``F_a^T`` with ``F_a F_a^T`` the block of ``A_a^{-1}``, or ``None``"""


class _Greedy32(NamedTuple):
    """A grouped :class:`LinearPolicy` laid out for greedy argmaxes in float32."""

    groups: np.ndarray | slice
    """the ``G`` group columns"""
    shared: np.ndarray | slice
    """the ``k - 1`` feature columns active in every group (all but the group columns)"""
    weights: np.ndarray
    """(G, A + A k, k) float64 per group: ``beta``, then ``F^T`` rows ``j``-major
    (row ``A + j A + a`` is column ``j`` of ``F_a``), on ``shared`` then the group's weight"""
    weights32: np.ndarray
    """``weights`` in float32"""
    scale: np.ndarray
    """(G,) float32 ``max_a (|beta_a| + 1.6 alpha || |F_a| ||_2)``, for the error bound"""
    size_floor: np.float32
    """``sqrt(k 2^-126)``: how far a float32 ``|z|`` can fall short through underflow"""
    group_code: np.ndarray
    """(G, 1) uint16 ``256 + g``: summed over a row's non-zero group columns, the count of
    them (high byte) and, when it is one, the group (low byte)"""
    action_index: np.ndarray
    """(A, 1) uint8 ``0 .. A - 1``"""


class _One(NamedTuple):
    """A bonus-free :class:`_Greedy32` as Python values, for one row at a time."""

    groups: list[int]
    """the group columns"""
    shared: list[int]
    """the feature columns active in every group"""
    weights: tuple[np.ndarray, ...]
    """per group, ``weights[[g]]``: its ``(1, A, k)`` block, a contiguous copy"""
    scale: list[float]
    """per group, ``scale`` (float32 values)"""
    size_floor: float
    """``size_floor`` (a float32 value)"""


def _as_slice(columns: np.ndarray) -> np.ndarray | slice:
    """A run of consecutive columns as a slice (a view, no copy), others unchanged."""
    if columns.size and (np.diff(columns) == 1).all():
        return slice(int(columns[0]), int(columns[-1]) + 1)
    return columns


@register_policy_kind
class LinearPolicy(Policy):
    """Per-action linear scores, with an optional upper-confidence bonus (LinUCB).

    ``score_a(x) = z . beta_a + alpha * sqrt(z^T A_a^{-1} z)`` with ``z = phi(x)``; ``alpha = 0``
    gives ridge (LinGreedy) scores. Reference: Li, Chu, Langford, Schapire, "A
    contextual-bandit approach to personalized news article recommendation", WWW 2010.

    ``phi`` is the identity, or with ``interact_with`` (one-hot group columns, e.g. the
    segment's) the outer product ``x (x) onehot``: one linear model per group and action.

    Args:
        beta: ``(A, k)`` ridge coefficients per action (``k`` = width of ``phi(x)``).
        a_inv: ``(A, k, k)`` inverse design matrices, needed when ``alpha > 0``.
        alpha: Width of the confidence bonus.
        interact_with: Names of one-hot feature columns to cross the features with.
    """

    kind = "linear"

    def __init__(
        self,
        feature_names: Sequence[str],
        action_names: Sequence[str],
        beta: np.ndarray,
        *,
        a_inv: np.ndarray | None = None,
        alpha: float = 0.0,
        interact_with: Sequence[str] = (),
        exploration: Exploration | None = None,
    ) -> None:
        super().__init__(tuple(feature_names), tuple(action_names), exploration)
        unknown = [f for f in interact_with if f not in self.feature_names]
        if unknown:
            raise ValueError(f"`interact_with` {unknown} are not among the feature names")
        self.interact_with = tuple(interact_with)
        self._group_cols = np.array(
            [self.feature_names.index(f) for f in self.interact_with], dtype=np.int64
        )
        n_a = self.n_actions
        d = len(self.feature_names) * max(1, len(self.interact_with))
        self.beta = check_array(beta, "beta", shape=(n_a, d))
        self.alpha = float(alpha)
        if self.alpha < 0 or not np.isfinite(self.alpha):
            raise ValueError(f"`alpha` must be a finite number >= 0, got {alpha!r}")
        self.a_inv = None if a_inv is None else check_array(a_inv, "a_inv", shape=(n_a, d, d))
        if self.a_inv is not None:
            # The bonus needs x^T A^{-1} x >= 0, and the per-group path factors A^{-1} with
            # eigh (which reads one triangle): a non-symmetric or indefinite A^{-1} would
            # give silently clipped bonuses that differ between the two paths.
            check_covariances(self.a_inv)
        if self.alpha > 0 and self.a_inv is None:
            raise ValueError("`a_inv` is required when `alpha` > 0")
        # (d, A*d) layout: one BLAS matmul gives x^T A_a^{-1} for every action at once.
        self._a_inv_flat = (
            None if self.a_inv is None else self.a_inv.transpose(1, 0, 2).reshape(d, n_a * d)
        )
        self._blocks = self._group_blocks()
        self._greedy32 = self._greedy32_form()
        self._one = self._one_form()

    def feature_map(self, features: np.ndarray) -> np.ndarray:
        """``phi(x)``: the features, or their outer product with the group one-hot."""
        x = np.asarray(features, dtype=np.float64)
        if not self.interact_with:
            return x
        groups = x[:, self._group_cols]
        width = groups.shape[1] * x.shape[1]
        return (groups[:, :, None] * x[:, None, :]).reshape(x.shape[0], width)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Linear scores plus the confidence bonus."""
        x = np.asarray(features, dtype=np.float64)
        # Group by group pays off for the bonus only: without it one product over phi(x) is
        # faster (measured: 1.65M against 1.35M decisions/s for LinGreedy).
        grouped = self._by_group(x) if self.alpha > 0 else None
        if grouped is not None:
            return grouped
        z = self.feature_map(x)
        out = (self.beta @ z.T).T  # column-major (n, A), see Exploration.probabilities
        if self.alpha > 0 and self.a_inv is not None:
            n, d = z.shape
            quad = np.einsum("nad,nd->na", (z @ self._a_inv_flat).reshape(n, self.n_actions, d), z)
            out = out + self.alpha * np.sqrt(np.maximum(quad, 0.0))
        return out

    def checked_probabilities(self, features: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """``(n, A)`` exact action probabilities of checked inputs (see :meth:`probabilities`).

        Greedy exploration only needs each row's best action: with per-group models it is
        found from float32 scores, and rows whose top two are within the float32 error bound
        are decided again on float64 scores, so the result is the float64 one (see
        :meth:`_greedy_best`).
        """
        x, m = features, np.asfortranarray(masks)
        if self.exploration.kind == "greedy":
            if x.shape[0] == 1 and self._one is not None:
                one = self._greedy_best_one(x, m, self._one)
                if one is not None:
                    return self.exploration.greedy_probabilities(one, m)
            few = x.shape[0] <= (_FEW_ROWS_BONUS if self.alpha > 0 else _FEW_ROWS)
            best = self._greedy_best_few(x, m) if few else self._greedy_best(x, m)
            if best is not None:
                return self.exploration.greedy_probabilities(best, m)
        return self.exploration.probabilities(self.scores(x), m)

    def _greedy32_form(self) -> _Greedy32 | None:
        """The per-group weights on one shared column layout, or ``None``.

        In group ``g``'s rows ``phi(x)`` is ``w x_active`` (``w`` the row's one-hot value) with
        ``x_active`` the non-group columns plus the group's own column, which holds ``w``. Laid
        out as ``[x_shared, w]`` for every group, the rows of all groups form one matrix and
        each group's scores are one matrix product on its slice of it: ``beta`` rows give
        ``beta . x_active`` and ``F^T`` rows give ``y`` with ``|y|^2 = x^T A^{-1} x``.
        """
        blocks = self._blocks
        if blocks is None or (self.alpha > 0 and blocks[0].factor_t is None):
            return None
        if len(blocks) > 255 or self.n_actions > 255:  # counted in 8 bits by _greedy_best
            return None
        n_a, own = self.n_actions, self._group_cols.tolist()
        shared = np.array([c for c in range(len(self.feature_names)) if c not in own])
        k = shared.size + 1
        bonus = self.alpha > 0
        weights = np.zeros((len(blocks), n_a * (1 + k if bonus else 1), k))
        scale = np.zeros(len(blocks))
        for g, block in enumerate(blocks):
            # Column of each of the block's active features in the shared layout.
            where = [
                k - 1 if c == own[g] else int(np.flatnonzero(shared == c)[0])
                for c in block.active.tolist()
            ]
            w_g = weights[g]
            w_g[:n_a, where] = block.beta
            per_action = np.sqrt((block.beta**2).sum(axis=1))
            if bonus and block.factor_t is not None:
                size = block.active.size
                factor = block.factor_t.reshape(n_a, size, size)  # [a, j, i] = F_a[i, j]
                # Row A + j A + a holds column j of F_a.
                w_g[n_a:, where] = factor.transpose(1, 0, 2).reshape(size * n_a, size)
                per_action += 1.6 * self.alpha * np.linalg.norm(np.abs(factor), 2, axis=(1, 2))
            scale[g] = per_action.max()
        # Beyond these the float32 products could underflow or overflow: float64 path.
        if not (2.0**-60 <= scale.min() and scale.max() <= 2.0**60):
            return None
        return _Greedy32(
            _as_slice(self._group_cols),
            _as_slice(shared),
            weights,
            weights.astype(np.float32),
            scale.astype(np.float32),
            np.float32(np.sqrt(k * 2.0**-126)),
            (256 + np.arange(len(blocks), dtype=np.uint16))[:, None],
            np.arange(n_a, dtype=np.uint8)[:, None],
        )

    def _greedy_best(self, x: np.ndarray, masks: np.ndarray) -> np.ndarray | None:
        """Each row's best allowed action, as float64 scores rank them.

        ``None`` when this needs the float64 path: no per-group form, a row in several
        groups, or features whose float32 products could overflow.

        The scores are computed in float32 (twice as fast as float64 matrix products, the
        bulk of LinUCB's cost), from ``z = w x`` (``w`` the row's one-hot value, ``x`` its
        ``k`` active features: ``z`` is ``phi(x)`` on the row's block) as ``beta_a . z + alpha
        |F_a^T z|``. Each float32 score is within ``E = (k + 5) u (|z| + sqrt(k 2^-126))
        scale + (1 + alpha) 2^-50`` of the exact one, ``u = 2^-24`` and ``scale`` from
        :class:`_Greedy32`, whatever the BLAS kernel: a dot product of ``k`` terms summed in
        any order or blocking, with or without FMA, is within ``gamma_k sum_i |a_i b_i|`` of
        the exact one, ``gamma_k = k u / (1 - k u)`` (Higham, *Accuracy and Stability of
        Numerical Algorithms*, eq. 3.5). ``z~`` carries three roundings (``x`` and ``w`` cast
        to float32, their product) and the weights one, so with ``sum_i |beta_ai z_i| <=
        |beta_a| |z|`` the linear part is within ``gamma_{k+4} |beta_a| |z|``. For the bonus
        ``|y~ - F_a^T z| <= gamma_{k+4} || |F_a| ||_2 |z|``; the squares and their sum add
        ``gamma_k`` relative to ``|y|^2`` (half that to ``|y|``), the square root, ``alpha``'s
        rounding and the product ``3 u``: ``(1.5 k + 7) u alpha || |F_a| ||_2 |z|`` to first
        order. The final sum adds ``u |score|``: ``(k + 5) u |beta_a| |z| + (1.5 k + 8) u
        alpha || |F_a| ||_2 |z|`` in all, within ``E``. Squares below ``2^-126`` lose digits,
        or vanish where the CPU flushes them to zero, each by less than ``2^-126``: the
        float32 ``|z|`` falls short by less than ``sqrt(k 2^-126)`` (hence that term: without
        it a row of tiny ``|z|`` in a model of large coefficients was decided on a float32
        argmax that float64 does not give), the bonus by less than ``alpha sqrt(k 2^-126) <=
        alpha 2^-50`` (``k < 2^26``); products below ``2^-126`` are off by less than that each,
        far below ``2^-50``. A row whose two best allowed float32 scores are within ``2 E``
        (times 1.25 for second-order terms and the roundings of ``E`` itself and of the float64
        scores) is scored again in float64 (:meth:`_scores64`); elsewhere the float32 argmax is
        the float64 one.
        """
        form = self._greedy32
        if form is None:
            return None
        xt = x.T  # (d, n): row-major when x is column-major, as observations are
        groups = xt[form.groups]  # (G, n)
        # One uint16 sum down the short group axis (whole-row vector adds): per row the
        # number of non-zero group columns (high byte) and, if one, which (low byte).
        code = np.add.reduce((groups != 0) * form.group_code, axis=0, dtype=np.uint16)
        if (code >= 512).any():
            return None
        which = code.astype(np.uint8)  # the group; 0 for rows in none, whose w is 0
        weight = groups.sum(axis=0)  # each row's single non-zero group value: w
        n, n_a, k = x.shape[0], self.n_actions, form.weights.shape[2]
        # Rows sorted by group (a radix sort on uint8), so each group's rows are one slice.
        order = np.argsort(which, kind="stable")
        z = np.empty((k, n), dtype=np.float32)
        # Values beyond float32's range become inf or NaN here, and fail the check below.
        with np.errstate(over="ignore", invalid="ignore"):
            z[:-1] = np.take(xt[form.shared], order, axis=1, mode="clip")
            w = weight[order].astype(np.float32)
            z[-1] = w
            z *= w
            size = np.sqrt(np.add.reduce(z * z, axis=0))  # |z| per row
            # Squares below 2^-126 lose digits or vanish (flushed to zero on some CPUs' modes):
            # |z| can exceed this by up to sqrt(k 2^-126). Without the term a row of tiny
            # |z| in a large-coefficient model got a near-zero tolerance for float32 errors
            # far above it, and a float32 argmax that float64 does not give.
            size += form.size_floor
            size *= form.scale[which[order]]
        # Float32 must hold every product: squares in the bonus stay below 1e32.
        if not size.max(initial=0.0) <= 1e16:
            return None
        tol = size * np.float32(2.5 * (k + 5) * 2.0**-24)
        tol += np.float32(2.5 * (1.0 + self.alpha) * 2.0**-50)
        out = np.empty((form.weights32.shape[1], n), dtype=np.float32)
        start = 0
        for g, end in enumerate(np.cumsum(np.bincount(which, minlength=form.scale.size))):
            if end > start:
                np.matmul(form.weights32[g], z[:, start:end], out=out[:, start:end])
            start = end
        scores = out[:n_a]  # (A, n), rows in group order
        if self.alpha > 0:
            y = out[n_a:].reshape(k, n_a, n)
            bonus = np.einsum("jan,jan->an", y, y)
            np.sqrt(bonus, out=bonus)
            bonus *= np.float32(self.alpha)
            scores += bonus
        # Masked actions pushed far below any score (|scores| < 1e30 here). Along axis 0 of
        # (A, n) arrays numpy reduces with whole-row vector operations (an argmax along the
        # short action axis is 4x slower). A row is clear when exactly one allowed action
        # scores within ``tol`` of its best: that action is the argmax.
        blocked = ~np.take(masks.T, order, axis=1, mode="clip")
        scores -= blocked * np.float32(1e38)
        close = scores >= scores.max(axis=0) - tol
        flags = close.view(np.uint8)
        near = order[np.add.reduce(flags, axis=0, dtype=np.uint8) != 1]
        best = np.empty(n, dtype=np.intp)
        # Clear rows: the index of their only close action (the sum is only used there).
        best[order] = np.add.reduce(flags * form.action_index, axis=0, dtype=np.uint8)
        if near.size:
            exact = self._scores64(x[near], which[near], weight[near])
            best[near] = np.where(masks[near], exact, -np.inf).argmax(axis=1)
        return best

    def _greedy_best_few(self, x: np.ndarray, masks: np.ndarray) -> np.ndarray | None:
        """:meth:`_greedy_best` for a few rows: float64 scores directly.

        A few: up to :data:`_FEW_ROWS`, or :data:`_FEW_ROWS_BONUS` with a bonus. The float32
        pass and its error bound pay off over many rows; for a few, a dozen numpy calls on
        float64 scores (:meth:`_scores64`, the scores the float32 pass checks its near ties
        with) cost from a fifth (one row) to half (100 rows, no bonus) of the time. The same
        best actions: where the float32 pass decides a row, its two best scores are further
        apart than any rounding of the float64 ones, and it scores every other row with
        :meth:`_scores64` too.
        ``None`` in the same cases (no per-group form, a row in several groups, products
        beyond float32's range), up to the rounding of ``|z|`` at that last bound.
        """
        form = self._greedy32
        if form is None:
            return None
        groups = x[:, form.groups]
        nonzero = groups != 0
        if (nonzero.sum(axis=1) > 1).any():
            return None
        which = nonzero.argmax(axis=1)  # the non-zero group column (0 for rows in none)
        weight = groups[np.arange(x.shape[0]), which]
        if not self._surely_in_range(x, form):
            with np.errstate(over="ignore", invalid="ignore"):
                size = np.hypot(np.linalg.norm(x[:, form.shared], axis=1), weight) * np.abs(weight)
                size = (size + form.size_floor) * form.scale[which]
            if not size.max(initial=0.0) <= 1e16:
                return None
        scores = self._scores64(x, which, weight)
        return np.where(masks, scores, -np.inf).argmax(axis=1)

    @staticmethod
    def _surely_in_range(x: np.ndarray, form: _Greedy32) -> bool:
        """Whether every row's bound of :meth:`_greedy_best_few` is surely met, cheaply.

        With ``M`` the largest ``|x|`` of the batch, a row's ``|z| = hypot(|x_shared|, w)
        |w|`` is at most ``sqrt(k) M^2``, so its size at most ``(sqrt(k) M^2 + floor)
        max(scale)``; with a relative margin far above the roundings of both, that bound
        below ``1e16`` means every row's size computed as numpy does is too: two reductions
        instead of a dozen calls. ``False`` (the rows are measured) otherwise, NaN included.
        """
        if x.size == 0:
            return False
        top = max(float(x.max()), -float(x.min()))
        k = form.weights.shape[2]
        bound = (math.sqrt(k) * top * top + float(form.size_floor)) * float(form.scale.max())
        return bound * (1.0 + 1e-6) <= 1e16

    def _one_form(self) -> _One | None:
        """What :meth:`_greedy_best_one` reads, as Python values.

        ``None`` without a bonus-free per-group form (the one-row path covers that case only).
        """
        form = self._greedy32
        if form is None or self.alpha > 0:
            return None
        return _One(
            np.arange(len(self.feature_names))[form.groups].tolist(),
            np.arange(len(self.feature_names))[form.shared].tolist(),
            tuple(form.weights[[g]] for g in range(form.weights.shape[0])),
            form.scale.astype(np.float64).tolist(),
            float(form.size_floor),
        )

    def _greedy_best_one(self, x: np.ndarray, masks: np.ndarray, one: _One) -> np.ndarray | None:
        """:meth:`_greedy_best_few` of one row without a bonus, mostly in plain Python.

        A few dozen numpy calls on arrays of one row cost more than the arithmetic. The
        same operations: the row's group and weight, then its scores from the same
        ``np.matmul`` of the same ``(1, A, k)`` weights (a copy, as ``weights[which]`` is)
        and ``(1, k, 1)`` column, times the weight as Python floats (IEEE doubles, the same
        products), then the first best allowed one. The float32-range check is estimated in
        Python, well inside the bound (a relative ``1e-9`` margin, far above the estimate's
        rounding); ``None`` (numpy's path decides) beyond that margin, for a row in several
        groups, or inputs other than float64 features and boolean masks.
        """
        if masks.dtype != bool or x.dtype != np.float64:
            return None
        row = x[0].tolist()
        values = [row[c] for c in one.groups]
        nonzero = [v != 0 for v in values]
        if sum(nonzero) > 1:
            return None
        which = nonzero.index(True) if True in nonzero else 0
        weight = values[which]
        shared = [row[c] for c in one.shared]
        # Below 1e100 numpy's |z| cannot overflow (its squares, then their sum, do from about
        # 1e154) and the estimate is within 1e-12 of it, relatively; beyond, numpy decides.
        if not max(map(abs, shared), default=0.0) < 1e100 > abs(weight):
            return None
        size = math.hypot(*shared, weight) * abs(weight)
        size = (size + one.size_floor) * one.scale[which]
        if not size <= 1e16 * (1.0 - 1e-9):
            return None
        shared.append(weight)
        column = np.array(shared).reshape(1, len(shared), 1)
        y = np.matmul(one.weights[which], column)[0, :, 0].tolist()
        best, top = 0, -math.inf
        for a, allowed in enumerate(masks[0].tolist()):
            if allowed:
                score = y[a] * weight
                if score > top or top == -math.inf:
                    best, top = a, score
        return np.array([best], dtype=np.intp)

    def _scores64(self, x: np.ndarray, which: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """float64 scores ``(n, A)`` of rows of known groups and weights, for a few rows.

        The same formula as :meth:`scores` (``w beta . x_active + alpha |w| |F^T x_active|``,
        from the same float64 ``beta`` and ``F``), in one batched product for all the rows:
        a handful of rows cost a few numpy calls instead of a pass per group.
        """
        form = cast(_Greedy32, self._greedy32)
        n, n_a, k = x.shape[0], self.n_actions, form.weights.shape[2]
        xa = np.empty((n, k, 1))
        xa[:, :-1, 0] = np.asarray(x, dtype=np.float64)[:, form.shared]
        w = np.asarray(weight, dtype=np.float64)[:, None]
        xa[:, -1, 0] = w[:, 0]
        y = np.matmul(form.weights[which], xa)[:, :, 0]  # (n, A + A k)
        out = y[:, :n_a] * w
        if self.alpha > 0:
            quad = np.square(y[:, n_a:]).reshape(n, k, n_a).sum(axis=1)
            out += self.alpha * np.abs(w) * np.sqrt(quad)
        return out

    def _group_blocks(self) -> list[_GroupBlock] | None:
        """Each group's own part of the model, when rows live in one group's block only.

        With ``interact_with`` a row's ``phi(x)`` is zero outside its own group's block, and
        inside it the other groups' one-hot columns are zero too, so only the ``k`` remaining
        ("active") columns matter. Per group this keeps ``beta`` on them and, when the bonus is
        given and ``A^{-1}`` is block-diagonal by group (it always is for these features), a
        factor ``A^{-1}_block = F F^T`` (from ``eigh``, safe for semi-definite blocks) so that
        ``z^T A^{-1} z = |F^T x|^2``: one ``(A k) x k`` matrix product per group instead of the
        ``(G d) x (G d)`` quadratic form, G^2 (d/k)^2 times less work.
        """
        if not self.interact_with:
            return None
        g, d0, n_a = len(self.interact_with), len(self.feature_names), self.n_actions
        inv = None
        if self.a_inv is not None:
            inv = self.a_inv.reshape(n_a, g, d0, g, d0)
            off = inv.copy()
            for i in range(g):
                off[:, i, :, i, :] = 0.0
            if np.abs(off).max() > 1e-12 * max(np.abs(self.a_inv).max(), 1.0):
                return None
        beta = self.beta.reshape(n_a, g, d0)
        others = set(self._group_cols.tolist())
        blocks = []
        for i, own in enumerate(self._group_cols.tolist()):
            active = np.array([c for c in range(d0) if c not in others or c == own])
            factor_t = None
            if inv is not None:
                block = inv[:, i, :, i, :][:, active][:, :, active]  # (A, k, k)
                vals, vecs = np.linalg.eigh(block)
                factor = vecs * np.sqrt(np.maximum(vals, 0.0))[:, None, :]
                factor_t = factor.transpose(0, 2, 1).reshape(n_a * active.size, active.size)
            blocks.append(_GroupBlock(active, np.ascontiguousarray(beta[:, i, active]), factor_t))
        return blocks

    def _group_rows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Each row's group and one-hot weight, or ``None`` if a row is in several groups."""
        if self._blocks is None:
            return None
        groups = x[:, self._group_cols]
        nonzero = groups != 0
        if (nonzero.sum(axis=1) > 1).any():
            return None
        which = nonzero.argmax(axis=1)  # the non-zero column, whatever its sign (0 if none)
        return which, groups[np.arange(x.shape[0]), which]

    def _by_group(self, x: np.ndarray) -> np.ndarray | None:
        """Scores computed group by group (see :meth:`_group_blocks`), or ``None``."""
        found = self._group_rows(x)
        if found is None or self._blocks is None:
            return None
        which, weight = found
        xt = x.T  # (d, n): per group the products come out as (A, rows), column-major scores
        out = np.empty((self.n_actions, x.shape[0]))
        for g, block in enumerate(self._blocks):
            rows = np.flatnonzero(which == g)
            if rows.size == 0:
                continue
            xg = xt[np.ix_(block.active, rows)]
            w = weight[rows]
            col = (block.beta @ xg) * w  # z = w x in the row's own block
            if self.alpha > 0 and block.factor_t is not None:
                col += self.alpha * np.abs(w) * np.sqrt(self._squared_norms(block, xg))
            out[:, rows] = col
        return out.T

    def _squared_norms(self, block: _GroupBlock, xg: np.ndarray) -> np.ndarray:
        """``(A, rows)`` values of ``x^T A_a^{-1} x`` for one group's rows ``xg`` ``(k, rows)``."""
        y = block.factor_t @ xg
        y *= y
        k = block.active.size
        return y.reshape(self.n_actions, k, xg.shape[1]).sum(axis=1)

    def _bonus_by_group(self, features: np.ndarray) -> np.ndarray | None:
        """``z^T A^{-1} z`` ``(n, A)`` from the diagonal blocks, or ``None`` if not available."""
        x = np.asarray(features, dtype=np.float64)
        found = self._group_rows(x)
        if found is None or self._blocks is None or self._blocks[0].factor_t is None:
            return None
        which, weight = found
        quad = np.empty((self.n_actions, x.shape[0]))
        for g, block in enumerate(self._blocks):
            rows = np.flatnonzero(which == g)
            if rows.size:
                xg = x.T[np.ix_(block.active, rows)]
                quad[:, rows] = self._squared_norms(block, xg) * weight[rows] ** 2
        return quad.T

    def parameters(self) -> dict[str, np.ndarray]:
        """``beta`` and, with a bonus, ``a_inv``."""
        params = {"beta": self.beta}
        if self.a_inv is not None:
            params["a_inv"] = self.a_inv
        return params

    def config(self) -> dict[str, Any]:
        """``alpha`` and ``interact_with``."""
        return {"alpha": self.alpha, "interact_with": list(self.interact_with)}

    @classmethod
    def saved_arrays(
        cls,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        config: dict[str, Any],
    ) -> SavedArrays:
        """``beta`` ``(A, k)`` and ``a_inv`` ``(A, k, k)`` (optional when ``alpha`` is 0)."""
        alpha, groups = _linear_config(config)
        return linear_shapes(len(feature_names), len(action_names), len(groups), alpha == 0.0)

    @classmethod
    def from_saved(
        cls,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        exploration: Exploration,
        config: dict[str, Any],
        arrays: dict[str, np.ndarray],
    ) -> LinearPolicy:
        """Rebuild from saved arrays."""
        alpha, groups = _linear_config(config)
        return cls(
            feature_names,
            action_names,
            arrays["beta"],
            a_inv=arrays.get("a_inv"),
            alpha=alpha,
            interact_with=groups,
            exploration=exploration,
        )


def _linear_config(config: Any, *extra: str) -> tuple[float, tuple[str, ...]]:
    """A saved linear config's ``alpha`` and ``interact_with``, checked."""
    config_keys(config, ("alpha", *extra), ("interact_with",))
    return config_number(config, "alpha", min_val=0.0), config_names(config, "interact_with")


def linear_shapes(
    n_features: int, n_actions: int, n_groups: int, a_inv_optional: bool
) -> SavedArrays:
    """``beta`` ``(A, k)`` and ``a_inv`` ``(A, k, k)``, ``k = d max(1, G)``."""
    k = n_features * max(1, n_groups)
    return SavedArrays(
        {"beta": (n_actions, k), "a_inv": (n_actions, k, k)},
        frozenset({"a_inv"}) if a_inv_optional else frozenset(),
    )
