"""Maximum-likelihood estimators of the simulator's response and dynamics parameters.

Each estimator fits one event of :mod:`campaignrl.simulators.core` in the exact functional form
the simulator draws it with, by maximizing the Bernoulli log-likelihood
``l(theta) = sum_i y_i log p_i(theta) + (1 - y_i) log(1 - p_i(theta))`` with L-BFGS-B (box
constraints keep every parameter in the range :class:`~campaignrl.simulators.WorldSpec`
accepts). Gradients are analytic: ``dl/dp = (y - p) / (p (1 - p))``, chained through the
model. Reference: Nocedal & Wright, *Numerical Optimization* (2006), ch. 7 (L-BFGS); the
log-likelihood is that of a generalized linear model with a non-canonical link (McCullagh &
Nelder, *Generalized Linear Models*, 1989, ch. 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

__all__ = [
    "ChurnFit",
    "ConversionFit",
    "OpenFit",
    "OrganicFit",
    "ProductFit",
    "UnsubscribeFit",
    "fit_churn",
    "fit_conversion",
    "fit_open",
    "fit_organic",
    "fit_response_product",
    "fit_unsubscribe",
]

_EPS = 1e-9


def _bernoulli(p: np.ndarray, k: np.ndarray, m: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative binomial log-likelihood and its ``d/dp`` for ``k`` successes in ``m`` trials.

    ``-l = -sum k log p + (m - k) log(1 - p)``; ``-dl/dp = -(k - m p) / (p (1 - p))``. Rows
    with equal covariates are pooled into one (``k``, ``m``) cell first: the likelihood is the
    same and the optimizer touches thousands of cells instead of a million rows.
    """
    p = np.clip(p, _EPS, 1.0 - _EPS)
    nll = -float(np.sum(k * np.log(p) + (m - k) * np.log1p(-p)))
    return nll, -(k - m * p) / (p * (1.0 - p))


def _round_affinity(affinity: np.ndarray) -> np.ndarray:
    """Affinities to 0.01: a log-odds error of at most 0.005 x the weight, and rows pool."""
    return np.round(affinity, 2)


def _pool(
    columns: list[np.ndarray], y: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Distinct covariate rows with their success count ``k`` and trial count ``m``."""
    stacked = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    uniq, inverse = np.unique(stacked, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    m = np.bincount(inverse, minlength=uniq.shape[0]).astype(np.float64)
    k = np.bincount(inverse, y.astype(np.float64), minlength=uniq.shape[0])
    return [uniq[:, j] for j in range(uniq.shape[1])], k, m


def _maximize(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    bounds: list[tuple[float, float]],
    scale: float,
) -> tuple[np.ndarray, float]:
    """L-BFGS-B on ``objective / scale`` (the mean keeps tolerances independent of ``n``)."""

    def scaled(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = objective(x)
        return f / scale, g / scale

    # Tight tolerances: rare events (opt-outs, churn) move the mean log-likelihood by ~1e-6.
    # One BLAS thread: L-BFGS-B's small products gain nothing from threads and, on a busy
    # machine, wait for them (measured 4x slower under load).
    with threadpool_limits(limits=1, user_api="blas"):
        res = minimize(
            scaled,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"gtol": 1e-10, "ftol": 1e-14, "maxiter": 2000},
        )
    return np.asarray(res.x, dtype=np.float64), float(res.fun) * scale


@dataclass(frozen=True)
class OrganicFit:
    """Organic purchase: ``p = organic[s] * exp(-penalty * F)``."""

    organic: np.ndarray
    """(S,) chance of buying with no marketing, for a rested customer"""
    penalty: float
    """fatigue's effect on organic buying (``WorldSpec.fatigue_organic_penalty``)"""
    n_rows: int
    """rows used"""


def fit_organic(seg: np.ndarray, fatigue: np.ndarray, y: np.ndarray, n_seg: int) -> OrganicFit:
    """Organic purchase rates per segment and the fatigue penalty, by maximum likelihood.

    Rows are the periods where no message was opened (no contact, or a contact not opened):
    there a purchase is organic only, since opening and organic buying are drawn independently.

    ``log p_i = log organic[s_i] - penalty * F_i``; ``dl/dlog p = (y - p) / (1 - p)``.
    """
    n_rows = int(y.size)
    base = np.array(
        [max(float(y[seg == s].mean()) if np.any(seg == s) else 0.01, 1e-4) for s in range(n_seg)]
    )
    (seg_f, fatigue), k, m = _pool([seg, fatigue], y)
    seg = seg_f.astype(np.int64)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        p = np.exp(x[seg] - x[n_seg] * fatigue)
        nll, dp = _bernoulli(p, k, m)
        g_log = dp * np.clip(p, _EPS, 1 - _EPS)  # d nll / d log p
        grad = np.empty_like(x)
        grad[:n_seg] = np.bincount(seg, g_log, minlength=n_seg)
        grad[n_seg] = -float(np.sum(g_log * fatigue))
        return nll, grad

    x0 = np.r_[np.log(base), 0.0]
    bounds: list[tuple[float, float]] = [(-12.0, 0.0)] * n_seg + [(0.0, 5.0)]
    x, _ = _maximize(objective, x0, bounds, max(n_rows, 1))
    return OrganicFit(np.exp(x[:n_seg]), float(x[n_seg]), n_rows)


@dataclass(frozen=True)
class OpenFit:
    """Opening a message: ``p = open[s, c] * exp(-fs[s] * F) * (winback if lapsing)``."""

    open_rates: np.ndarray
    """(S, C) open rate of a rested, active customer"""
    fatigue_sensitivity: np.ndarray
    """(S,) fatigue's effect on opening"""
    winback: float
    """multiplier of the open rate for lapsing customers"""
    lapse_after: int
    """periods without purchase from which a customer is lapsing"""
    nll: float
    """negative log-likelihood at the optimum"""
    n_rows: int
    """rows used"""


def fit_open(
    seg: np.ndarray,
    channel: np.ndarray,
    fatigue: np.ndarray,
    recency: np.ndarray,
    y: np.ndarray,
    n_seg: int,
    n_channels: int,
    lapse_grid: tuple[int, ...],
) -> OpenFit:
    """Open rates, fatigue sensitivity and the win-back factor, by maximum likelihood.

    ``log p_i = log open[s_i, c_i] - fs[s_i] F_i + log(winback) [recency_i >= L]``; the
    lapse threshold ``L`` is chosen by profile likelihood over ``lapse_grid`` (the
    likelihood is maximized for each ``L`` and the best kept).
    """
    n_rows = int(y.size)
    n_cell = n_seg * n_channels
    cell = seg * n_channels + channel
    rates = np.bincount(cell, y, minlength=n_cell) / np.maximum(
        np.bincount(cell, minlength=n_cell), 1
    )
    # recency matters only through the thresholds: cap it above the largest
    (cell_f, seg_f, fatigue, recency), k, m = _pool(
        [cell, seg, fatigue, np.minimum(recency, max(lapse_grid))], y
    )
    cell, seg = cell_f.astype(np.int64), seg_f.astype(np.int64)
    best: OpenFit | None = None
    for lapse in lapse_grid:
        lapsing = (recency >= lapse).astype(np.float64)

        def objective(x: np.ndarray, lapsing: np.ndarray = lapsing) -> tuple[float, np.ndarray]:
            logp = x[cell] - x[n_cell + seg] * fatigue + x[-1] * lapsing
            p = np.exp(logp)
            nll, dp = _bernoulli(p, k, m)
            g_log = dp * np.clip(p, _EPS, 1 - _EPS)
            grad = np.empty_like(x)
            grad[:n_cell] = np.bincount(cell, g_log, minlength=n_cell)
            grad[n_cell : n_cell + n_seg] = -np.bincount(seg, g_log * fatigue, minlength=n_seg)
            grad[-1] = float(np.sum(g_log * lapsing))
            return nll, grad

        x0 = np.r_[np.log(np.clip(rates, 1e-3, 0.999)), np.zeros(n_seg), np.log(0.7)]
        bounds: list[tuple[float, float]] = (
            [(-12.0, 0.0)] * n_cell + [(0.0, 10.0)] * n_seg + [(-5.0, 0.0)]
        )
        x, nll = _maximize(objective, x0, bounds, max(n_rows, 1))
        fit = OpenFit(
            open_rates=np.exp(x[:n_cell]).reshape(n_seg, n_channels),
            fatigue_sensitivity=x[n_cell : n_cell + n_seg].copy(),
            winback=float(np.exp(x[-1])),
            lapse_after=int(lapse),
            nll=nll,
            n_rows=n_rows,
        )
        if best is None or fit.nll < best.nll - 1e-9:
            best = fit
    if best is None:
        raise ValueError("`lapse_grid` must hold at least one threshold")
    return best


@dataclass(frozen=True)
class ConversionFit:
    """Buying after opening: ``p = p_org + (1 - p_org) cc[c] sigmoid(eta)``."""

    conversion_logit: np.ndarray
    """(S,) log-odds of buying after opening a plain offer with zero affinity"""
    discount_sensitivity: np.ndarray
    """(S,) log-odds per 10 points of incentive"""
    affinity_weight: float
    """log-odds per unit of affinity"""
    channel_conversion: np.ndarray
    """(C,) channel multipliers (the first channel's is fixed at 1: the reference)"""
    n_rows: int
    """rows used"""


def fit_conversion(
    seg: np.ndarray,
    channel: np.ndarray,
    affinity: np.ndarray,
    incentive: np.ndarray,
    p_org: np.ndarray,
    y: np.ndarray,
    n_seg: int,
    n_channels: int,
) -> ConversionFit:
    """Conversion after an opened message, by maximum likelihood (the simulator's form).

    ``eta_i = logit[s_i] + w * affinity_i + ds[s_i] * 10 * incentive_i``,
    ``p_i = p_org,i + (1 - p_org,i) * cc[c_i] * sigmoid(eta_i)`` (a customer who would have
    bought anyway also redeems). ``dp/deta = (1 - p_org) cc sigma (1 - sigma)``,
    ``dp/dcc = (1 - p_org) sigma``. The channel multiplier of channel 0 is fixed at 1: with
    the segment logits free, only ratios between channels are well determined.
    """
    n_rows = int(y.size)
    (seg_f, ch_f, affinity, incentive, p_org), k, m = _pool(
        [seg, channel, _round_affinity(affinity), incentive, p_org], y
    )
    seg, channel = seg_f.astype(np.int64), ch_f.astype(np.int64)
    ten_inc = 10.0 * incentive

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        cc = np.r_[1.0, x[2 * n_seg + 1 :]]
        return x[:n_seg], x[n_seg : 2 * n_seg], float(x[2 * n_seg]), cc

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        logit, ds, w, cc = unpack(x)
        eta = logit[seg] + w * affinity + ds[seg] * ten_inc
        sig = 1.0 / (1.0 + np.exp(-eta))
        q = cc[channel] * sig
        p = p_org + (1.0 - p_org) * q
        nll, dp = _bernoulli(p, k, m)
        d_eta = dp * (1.0 - p_org) * cc[channel] * sig * (1.0 - sig)
        d_cc = dp * (1.0 - p_org) * sig
        grad = np.empty_like(x)
        grad[:n_seg] = np.bincount(seg, d_eta, minlength=n_seg)
        grad[n_seg : 2 * n_seg] = np.bincount(seg, d_eta * ten_inc, minlength=n_seg)
        grad[2 * n_seg] = float(np.sum(d_eta * affinity))
        grad[2 * n_seg + 1 :] = np.bincount(channel, d_cc, minlength=n_channels)[1:]
        return nll, grad

    x0 = np.r_[np.full(n_seg, -2.5), np.full(n_seg, 0.3), 0.5, np.full(n_channels - 1, 0.7)]
    bounds: list[tuple[float, float]] = (
        [(-15.0, 15.0)] * n_seg
        + [(0.0, 5.0)] * n_seg
        + [(0.0, 10.0)]
        + [(1e-3, 1.0)] * (n_channels - 1)
    )
    x, _ = _maximize(objective, x0, bounds, max(n_rows, 1))
    logit, ds, w, cc = unpack(x)
    return ConversionFit(logit.copy(), ds.copy(), w, cc, n_rows)


@dataclass(frozen=True)
class ProductFit:
    """Buying after a send when opens are not logged: open x conversion as one product."""

    conversion: ConversionFit
    """the conversion part, with the open rate folded into it (open rates taken as 1)"""
    fatigue_sensitivity: np.ndarray
    """(S,) fatigue's effect on responding"""
    winback: float
    """multiplier of the response of lapsing customers"""
    lapse_after: int
    """periods without purchase from which a customer is lapsing"""


def fit_response_product(
    seg: np.ndarray,
    channel: np.ndarray,
    affinity: np.ndarray,
    incentive: np.ndarray,
    p_org: np.ndarray,
    fatigue: np.ndarray,
    recency: np.ndarray,
    y: np.ndarray,
    n_seg: int,
    n_channels: int,
    lapse_grid: tuple[int, ...],
) -> ProductFit:
    """Response to a send without logged opens, by maximum likelihood.

    Without ``opened`` a send's purchase chance is ``p_org + (1 - p_org) * open * conv`` and
    only the product ``open * conv`` is identified, so the open rate is taken as 1 and
    ``p_i = p_org,i + (1 - p_org,i) exp(-fs[s_i] F_i) winback^[r_i >= L] cc[c_i]
    sigmoid(eta_i)`` is fitted (``eta`` as in :func:`fit_conversion`; ``L`` by profile
    likelihood). Gradients: ``dp/d(log-multiplier) = (1 - p_org) q`` with ``q`` the product.
    """
    n_rows = int(y.size)
    (seg_f, ch_f, affinity, incentive, p_org, fatigue, recency), k, m = _pool(
        [
            seg,
            channel,
            _round_affinity(affinity),
            incentive,
            p_org,
            fatigue,
            np.minimum(recency, max(lapse_grid)),
        ],
        y,
    )
    seg, channel = seg_f.astype(np.int64), ch_f.astype(np.int64)
    ten_inc = 10.0 * incentive
    n_cc = n_channels - 1
    best: tuple[float, np.ndarray, int] | None = None
    for lapse in lapse_grid:
        lapsing = (recency >= lapse).astype(np.float64)

        def objective(x: np.ndarray, lapsing: np.ndarray = lapsing) -> tuple[float, np.ndarray]:
            logit, ds, w = x[:n_seg], x[n_seg : 2 * n_seg], x[2 * n_seg]
            cc = np.r_[1.0, x[2 * n_seg + 1 : 2 * n_seg + 1 + n_cc]]
            fs, lwb = x[2 * n_seg + 1 + n_cc : -1], x[-1]
            eta = logit[seg] + w * affinity + ds[seg] * ten_inc
            sig = 1.0 / (1.0 + np.exp(-eta))
            reach = np.exp(-fs[seg] * fatigue + lwb * lapsing)
            q = reach * cc[channel] * sig
            p = p_org + (1.0 - p_org) * q
            nll, dp = _bernoulli(p, k, m)
            d_eta = dp * (1.0 - p_org) * reach * cc[channel] * sig * (1.0 - sig)
            d_log = dp * (1.0 - p_org) * q  # d nll / d log(multiplier)
            grad = np.empty_like(x)
            grad[:n_seg] = np.bincount(seg, d_eta, minlength=n_seg)
            grad[n_seg : 2 * n_seg] = np.bincount(seg, d_eta * ten_inc, minlength=n_seg)
            grad[2 * n_seg] = float(np.sum(d_eta * affinity))
            grad[2 * n_seg + 1 : 2 * n_seg + 1 + n_cc] = np.bincount(
                channel, dp * (1.0 - p_org) * reach * sig, minlength=n_channels
            )[1:]
            grad[2 * n_seg + 1 + n_cc : -1] = -np.bincount(seg, d_log * fatigue, minlength=n_seg)
            grad[-1] = float(np.sum(d_log * lapsing))
            return nll, grad

        x0 = np.r_[
            np.full(n_seg, -4.0),
            np.full(n_seg, 0.3),
            0.5,
            np.full(n_cc, 0.7),
            np.zeros(n_seg),
            np.log(0.7),
        ]
        bounds = (
            [(-15.0, 15.0)] * n_seg
            + [(0.0, 5.0)] * n_seg
            + [(0.0, 10.0)]
            + [(1e-3, 1.0)] * n_cc
            + [(0.0, 10.0)] * n_seg
            + [(-5.0, 0.0)]
        )
        x, nll = _maximize(objective, x0, bounds, max(n_rows, 1))
        if best is None or nll < best[0] - 1e-9:
            best = (nll, x, int(lapse))
    if best is None:
        raise ValueError("`lapse_grid` must hold at least one threshold")
    _, x, lapse_after = best
    conv = ConversionFit(
        conversion_logit=x[:n_seg].copy(),
        discount_sensitivity=x[n_seg : 2 * n_seg].copy(),
        affinity_weight=float(x[2 * n_seg]),
        channel_conversion=np.r_[1.0, x[2 * n_seg + 1 : 2 * n_seg + 1 + n_cc]],
        n_rows=n_rows,
    )
    return ProductFit(
        conversion=conv,
        fatigue_sensitivity=x[2 * n_seg + 1 + n_cc : -1].copy(),
        winback=float(np.exp(x[-1])),
        lapse_after=lapse_after,
    )


@dataclass(frozen=True)
class UnsubscribeFit:
    """Opting out of the contacted channel: ``p = base[c] * mult[s] * (1 + slope * F)``."""

    base: np.ndarray
    """(C,) opt-out chance per send for a rested customer of an average segment"""
    slope: float
    """growth of the opt-out chance with fatigue"""
    n_rows: int
    """rows used"""
    multiplier: np.ndarray | None = None
    """(S,) per-segment multipliers, normalized so that their send-weighted mean is 1;
    ``None`` when the fit had no segments"""


def fit_unsubscribe(
    channel: np.ndarray,
    fatigue: np.ndarray,
    y: np.ndarray,
    n_channels: int,
    seg: np.ndarray | None = None,
    n_seg: int = 1,
) -> UnsubscribeFit:
    """Opt-out rates per channel and segment and their fatigue slope, by maximum likelihood.

    ``p_i = base[c_i] mult[s_i] (1 + slope F_i)``, fitted as
    ``log p = log base[c] + log mult[s] + log(1 + slope F)``:
    ``dp/dlog base = dp/dlog mult = p``, ``dp/dslope = base mult F``. The model is a
    log-link binomial GLM with channel and segment main effects (McCullagh & Nelder, 1989,
    sec. 4.3 and 6.5); at the optimum its score equations make each segment's and each
    channel's expected opt-outs equal the observed ones (up to the ``1 - p`` weights), so a
    world simulated from the fit reproduces the log's opt-out rate of every segment.

    Only products ``base[c] mult[s]`` are identified: ``mult[0]`` is held at 1 while
    fitting, then the multipliers are rescaled so that their mean weighted by each
    segment's sends is 1, and ``base`` by the inverse (the likelihood is unchanged). ``base``
    is then the opt-out chance of the log's average send. Without ``seg`` the fit is the
    per-channel model ``base[c] (1 + slope F)`` alone.
    """
    n_rows = int(y.size)
    segmented = seg is not None
    if seg is None:
        seg, n_seg = np.zeros(channel.shape[0], dtype=np.int64), 1
    counts = np.maximum(np.bincount(channel, minlength=n_channels), 1)
    rate = np.clip(np.bincount(channel, y, minlength=n_channels) / counts, 1e-5, 0.5)
    sends = np.bincount(seg, minlength=n_seg).astype(np.float64)
    (ch_f, seg_f, fatigue), k, m = _pool([channel, seg, fatigue], y)
    channel, seg = ch_f.astype(np.int64), seg_f.astype(np.int64)
    n_free = n_seg - 1  # mult[0] = 1: the reference

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        return x[:n_channels], np.r_[0.0, x[n_channels : n_channels + n_free]], float(x[-1])

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        log_base, log_mult, slope = unpack(x)
        scale = np.exp(log_base[channel] + log_mult[seg])
        p = scale * (1.0 + slope * fatigue)
        nll, dp = _bernoulli(p, k, m)
        g_log = dp * np.clip(p, _EPS, 1 - _EPS)  # d nll / d log p
        grad = np.empty_like(x)
        grad[:n_channels] = np.bincount(channel, g_log, minlength=n_channels)
        grad[n_channels : n_channels + n_free] = np.bincount(seg, g_log, minlength=n_seg)[1:]
        grad[-1] = float(np.sum(dp * scale * fatigue))
        return nll, grad

    x0 = np.r_[np.log(rate), np.zeros(n_free), 0.1]
    bounds: list[tuple[float, float]] = (
        [(np.log(1e-7), 0.0)] * n_channels + [(-10.0, 10.0)] * n_free + [(0.0, 20.0)]
    )
    x, _ = _maximize(objective, x0, bounds, max(n_rows, 1))
    log_base, log_mult, slope = unpack(x)
    mult = np.exp(log_mult)
    # send-weighted mean multiplier 1 (segments without sends keep their starting value 1)
    mean = float(np.sum(sends * mult) / sends.sum()) if sends.sum() > 0 else 1.0
    mult = np.where(sends > 0, mult / mean, 1.0)
    base = np.exp(log_base) * mean
    return UnsubscribeFit(base, slope, n_rows, mult if segmented else None)


@dataclass(frozen=True)
class ChurnFit:
    """Churn of a customer who did not buy: ``min(cap, base[s] + slope * max(0, r - L))``."""

    base: np.ndarray
    """(S,) churn chance per period while active"""
    slope: float
    """extra churn per period of inactivity beyond ``L``"""
    n_rows: int
    """rows used"""


def fit_churn(
    seg: np.ndarray,
    recency_after: np.ndarray,
    lapse_after: int,
    cap: float,
    y: np.ndarray,
    n_seg: int,
) -> ChurnFit:
    """Churn hazards by maximum likelihood, the simulator's capped linear form.

    ``h_i = min(cap, base[s_i] + slope * max(0, r_i - L))`` with ``r_i`` the recency after the
    period (the period had no purchase); ``dh/dbase = dh/dslope / excess = 1`` below the cap.
    """
    n_rows = int(y.size)
    excess = np.maximum(0.0, recency_after - lapse_after)
    active = excess == 0
    base0 = [
        max(float(y[(seg == s) & active].mean()) if np.any((seg == s) & active) else 0.005, 1e-5)
        for s in range(n_seg)
    ]
    (seg_f, excess), k, m = _pool([seg, excess], y)
    seg = seg_f.astype(np.int64)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        raw = x[seg] + x[n_seg] * excess
        below = raw < cap
        h = np.minimum(raw, cap)
        nll, dp = _bernoulli(h, k, m)
        dp = dp * below
        grad = np.empty_like(x)
        grad[:n_seg] = np.bincount(seg, dp, minlength=n_seg)
        grad[n_seg] = float(np.sum(dp * excess))
        return nll, grad

    x0 = np.r_[base0, 0.001]
    bounds: list[tuple[float, float]] = [(1e-7, cap)] * n_seg + [(0.0, 1.0)]
    x, _ = _maximize(objective, x0, bounds, max(n_rows, 1))
    return ChurnFit(x[:n_seg].copy(), float(x[n_seg]), n_rows)
