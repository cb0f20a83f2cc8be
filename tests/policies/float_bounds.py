"""Rounding-error bounds for the float32 paths, so tests hold on every CPU and BLAS kernel.

float32 results differ between machines: OpenBLAS picks its sgemm kernel from the CPU (its
blocking sets the summation order, FMA or not the roundings) and numpy dispatches its float32
``exp`` to the widest SIMD level found. A tolerance read off one machine's result fails on
another. The bounds here hold for every summation order and kernel:

* a dot product of ``n`` float32 terms, summed in any order, with or without FMA, is within
  ``gamma_n sum_i |a_i b_i|`` of the exact one, ``gamma_n = n u / (1 - n u)``, ``u = 2^-24``
  (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., eq. 3.5); rounding each
  operand first adds ``u`` per operand: ``(1 + u)(1 + gamma_n) <= 1 + gamma_{n+1}``;
* numpy's float32 ``exp`` is within ``EXP32_ULPS`` units in the last place of the correctly
  rounded value on every SIMD target (the figure its own ``test_umath_accuracy.py`` asserts),
  so within ``EXP32_ULPS + 1/2`` of the exact one, a relative error below ``(EXP32_ULPS +
  1/2) 2^-23``; ``+``, ``-``, ``*``, ``/`` round correctly (``u``).

Not a test module (no ``test_`` prefix); pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from campaignrl.policies import MLPPolicy

__all__ = [
    "EXP32_ULPS",
    "U32",
    "U64",
    "assert_within_bound",
    "gamma",
    "mlp_logit_bound",
    "mlp_probability_bound",
    "softmax32_bound",
]

U32 = 2.0**-24
"""float32 unit roundoff"""
U64 = 2.0**-53
"""float64 unit roundoff"""
EXP32_ULPS = 3
"""numpy's float32 ``exp``: at most 3 ulps from the correctly rounded value, every SIMD path
(``numpy/_core/tests/data/umath-validation-set-exp.csv``, ulperrortol 3 for float32)"""
_EXP32_REL = (EXP32_ULPS + 0.5) * 2.0**-23 * 1.001
"""relative error of float32 ``exp`` (an ulp is at most ``2^-23`` of a normal value), with
room for the second-order terms of the products of ``(1 + delta)`` factors below"""


def gamma(n: int | np.ndarray, u: float = U32) -> float | np.ndarray:
    """``gamma_n = n u / (1 - n u)``: relative error bound of ``n`` chained roundings."""
    return n * u / (1.0 - n * u)


def mlp_logit_bound(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    activation: str,
) -> tuple[np.ndarray, np.ndarray]:
    """float64 logits of the network, and a bound on ``MLPPolicy``'s float32 logits' error.

    Follows :meth:`MLPPolicy._logits` layer by layer, with ``e`` the bound on the error of the
    layer's input ``h`` (``u |x|`` for the float32 cast of float64 features):

    * Pre-activation ``a = W^T h + b``: float32 computes one dot product of ``n + 1`` terms
      (the bias against a row of ones) on float32-rounded weights and the input it has,
      within ``e`` of ``h``; so ``|a~ - a| <= gamma_{n+2} M + |W|^T e`` with ``M`` the sum of
      the terms' magnitudes. For ``tanh`` the policy folds ``tanh(a) = 2 s - 1``, ``s = 1 /
      (1 + exp(-2 a))``: a layer after a ``tanh`` one takes ``s`` against ``2 W`` and ``b -
      W^T 1`` (the scalings by 2 are exact), so ``M = 2 |W|^T s + |b - W^T 1|``; otherwise
      ``M = |W|^T |h| + |b|``. The error in ``s`` is half that in ``tanh``: ``|2 W|^T |s~ -
      s| = |W|^T e`` either way.
    * ``relu`` is 1-Lipschitz and exact in floating point: ``e' = |a~ - a|``.
    * ``tanh``: ``|tanh(a~) - tanh(a)| <= L |a~ - a|``, ``L`` the largest ``1 - tanh^2`` on
      ``[a - err, a + err]`` (its condition: saturated units pass on almost nothing). The
      float32 ``s~ = fl(1 / fl(1 + fl(exp(z))))`` has relative error ``_EXP32_REL + 2 u``
      (``exp`` then two roundings), so ``tanh`` gets ``2 s`` times that; ``exp`` overflowing
      to ``inf`` or giving a subnormal moves ``s`` by less than ``2^-125``.
    * The float64 reference (this function's or a plain loop) and the float64 folding of the
      biases add ``2 gamma^{64}_{n+2}`` of the magnitudes per layer, ~1e-9 of the float32
      terms.

    Args:
        x: ``(n, d)`` features (float64, or float32 to skip the cast's rounding).
        weights: The network's weight matrices, ``(in, out)`` each.
        biases: Its bias vectors.
        activation: ``tanh`` or ``relu``.

    Returns:
        ``(logits, bound)``, both ``(n, A)``: float64 logits and the bound on ``|float32
        logits - logits|``.
    """
    h = np.asarray(x, dtype=np.float64)
    e = np.zeros_like(h) if np.asarray(x).dtype == np.float32 else U32 * np.abs(h)
    last = len(weights) - 1
    for i, (w_in, b_in) in enumerate(zip(weights, biases, strict=True)):
        w = np.asarray(w_in, dtype=np.float64)
        b = np.asarray(b_in, dtype=np.float64)
        aw, n = np.abs(w), w.shape[0]
        if activation == "tanh" and i > 0:
            s_hi = np.clip((1.0 + h + e) / 2.0, 0.0, 1.0)  # bounds s~ = (1 + t~) / 2
            mags = 2.0 * s_hi @ aw + np.abs(b - w.sum(axis=0))
        else:
            mags = (np.abs(h) + e) @ aw + np.abs(b)
        a = h @ w + b
        err = gamma(n + 2) * mags + e @ aw
        err += 2.0 * gamma(n + 2, U64) * (mags + (np.abs(h) + e) @ aw + np.abs(b) + aw.sum(axis=0))
        if i == last:
            return a, err
        if activation == "relu":
            h, e = np.maximum(a, 0.0), err
            continue
        t = np.tanh(a)
        lip = 1.0 - np.tanh(np.maximum(np.abs(a) - err, 0.0)) ** 2
        s_hi = np.minimum((1.0 + t) / 2.0 + lip * err / 2.0, 1.0)
        h = t
        e = lip * err + 2.0 * s_hi * (_EXP32_REL + 2.0 * U32) + 2.0**-125 + 4.0 * U64
    raise ValueError("`weights` must not be empty")


def softmax32_bound(
    logits: np.ndarray, err: np.ndarray, masks: np.ndarray, temperature: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``masked_softmax`` and a bound on its error when computed from float32 scores.

    The float32 scores ``l~`` are within ``err`` of the exact ``l``. The softmax shifts by a
    row's best float32 score ``m`` (a constant per row, on which the exact softmax does not
    depend), divides by the temperature ``T`` (before or after the shift), exponentiates in
    float32 and normalizes in float64. Each exponent ``d~_a`` differs from ``(l_a - m) / T``
    by at most ``err_a / T`` plus the roundings of the shift and the division, ``u |d_a|``
    each, and ``u (|l_a| + |m|) / T`` when the division comes first; ``lambda_a`` is that
    plus ``exp``'s relative error, so ``e~_a = e_a exp(theta_a)``, ``|theta_a| <= lambda_a``.
    Then ``p~_a / p_a = exp(theta_a) / sum_b p_b exp(theta_b)``, within ``exp(+-r_a)`` for
    ``r_a = lambda_a + mu / (1 - mu)``, ``mu = sum_b p_b expm1(lambda_b)`` (the sum's share:
    a far-behind action's large ``lambda`` weighs its tiny ``p``); the float64 sum and
    division add ``gamma^{64}_{A+1}``. The bound is ``p_a expm1(r_a) + A 2^-80``: the
    absolute term covers exponentials below ``2^-126``, with less relative precision (each
    within ``2^-147`` against an allowed sum of at least ``2^-62``, see below), and actions
    more than ``104 T`` behind (``e^-104 < 2^-149``: float32 gives 0 or the least subnormal),
    left out of ``lambda``.

    The shift is the best over all actions, or over the allowed ones in rows whose allowed
    exponentials sum below ``2^-60``: the first gives the larger ``|d_a|`` and is used unless
    the row is certainly among the second (exact sum below ``2^-62``).

    Args:
        logits: ``(n, A)`` exact scores ``l``.
        err: ``(n, A)`` bound on the float32 scores' error.
        masks: ``(n, A)`` allowed actions.
        temperature: The softmax temperature ``T``.

    Returns:
        ``(probabilities, bound)``, both ``(n, A)``.
    """
    t = float(temperature)
    worst = err.max(axis=1, keepdims=True)
    best_all = logits.max(axis=1, keepdims=True)
    best_allowed = np.where(masks, logits, -np.inf).max(axis=1, keepdims=True)
    with np.errstate(under="ignore"):
        q = np.where(masks, np.exp((logits - best_allowed) / t), 0.0)
        total = q.sum(axis=1, keepdims=True)
        q /= total
        total_all = total * np.exp((best_allowed - best_all) / t)
    best = np.where(total_all < 2.0**-62, best_allowed, best_all)
    shift = (np.abs(logits - best) + 2.0 * worst) / t  # bounds |d~_a|
    lam = err / t + 2.0 * U32 * shift * (1.0 + 4.0 * U32) + _EXP32_REL
    if t != 1.0:
        lam += U32 * (np.abs(logits) + np.abs(best) + 2.0 * worst) / t
    negligible = ~masks | (np.abs(logits - best_allowed) - 2.0 * worst > 104.0 * t)
    lam = np.where(negligible, 0.0, lam)
    mu = (q * np.expm1(lam)).sum(axis=1, keepdims=True)
    r = lam + mu / (1.0 - mu) + 2.0 * gamma(masks.shape[1] + 1, U64)
    return q, np.where(masks, q * np.expm1(r) + masks.shape[1] * 2.0**-80, 0.0)


def mlp_probability_bound(
    pol: MLPPolicy, x: np.ndarray, masks: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact probabilities of an :class:`MLPPolicy` and a bound on its float32 results' error.

    Softmax exploration: ``1 - epsilon`` times :func:`softmax32_bound` of the logits and
    :func:`mlp_logit_bound`'s bound on them, plus the float64 roundings of the epsilon
    mixing. Greedy: the float32 argmax is the exact one where the best allowed logit
    leads the next by more than the sum of their bounds; there the bound is float64's, in the
    other rows 1 (either may win).

    Returns:
        ``(probabilities, bound)``, both ``(n, A)``.
    """
    x = np.asarray(x)
    n, n_a = x.shape[0], pol.n_actions
    m = np.ones((n, n_a), dtype=bool) if masks is None else np.asarray(masks, dtype=bool)
    logits, err = mlp_logit_bound(x, pol.weights, pol.biases, pol.activation)
    ex = pol.exploration
    k = m.sum(axis=1, keepdims=True)
    spread = np.where(m, ex.epsilon / k, 0.0)
    if ex.kind == "softmax":
        q, soft = softmax32_bound(logits, err, m, ex.temperature)
        bound = (1.0 - ex.epsilon) * soft
    else:
        allowed = np.where(m, logits, -np.inf)
        best = allowed.argmax(axis=1)
        q = np.zeros((n, n_a))
        q[np.arange(n), best] = 1.0
        lead = allowed[np.arange(n), best][:, None] - allowed
        margin = err[np.arange(n), best][:, None] + err
        clear = ((lead > margin) | (np.arange(n_a) == best[:, None]) | ~m).all(axis=1)
        bound = np.where(clear[:, None], 0.0, 1.0) * np.ones((n, n_a))
    probs = (1.0 - ex.epsilon) * q + spread
    return probs, bound + 4.0 * U64 * (1.0 + probs)


def assert_within_bound(got: np.ndarray, expected: np.ndarray, bound: np.ndarray) -> None:
    """Every ``|got - expected| <= bound``, else an AssertionError with the worst entry."""
    diff = np.abs(np.asarray(got, dtype=np.float64) - expected)
    over = diff > bound
    if over.any():
        i = np.unravel_index(np.argmax(np.where(over, diff / bound, 0.0)), diff.shape)
        raise AssertionError(
            f"{over.sum()} of {diff.size} entries beyond the error bound; worst at {i}: got "
            f"{got[i]!r}, expected {expected[i]!r}, difference {diff[i]:.3g} > bound {bound[i]:.3g}"
        )
