"""``fit_simulator``: decision logs -> the :class:`~campaignrl.simulators.WorldSpec` they came from.

Every parameter is estimated in the form :mod:`campaignrl.simulators.core` uses it:

==========================  ===================================================================
segments, shares            K-Means on each customer's features at the first decision (RFM,
                            the other logged context), channel consents (from the masks) and
                            outcome rates, standardized; ``auto`` K by silhouette
tastes, ``offer_tastes``    truncated SVD of the customer x offer score matrix (the logged
                            ``affinity=<offer>`` scores if present, else smoothed
                            conversion-after-open rates: segment centres only),
                            whitened per segment
organic rate, penalty       MLE on periods without an opened message
open rates, fatigue         MLE on contacts: ``open[s, c] exp(-fs[s] F) winback^[lapsing]``,
sensitivity, win-back       lapse threshold by profile likelihood
conversion, discount        MLE on opened messages: ``p_org + (1 - p_org) cc[c] sigmoid(.)``
sensitivity, affinity
weight, channel conversion
basket median and sigma     lognormal MLE (mean and sd of log basket, offer multiplier removed)
margin                      profit / basket on purchases without a redeemed offer
fatigue decay               least squares of ``F' = decay F + weight[c]`` on the logged fatigue
opt-out base, segment       MLE on contacts: ``base[c] mult[s] (1 + slope F)`` (multipliers
multipliers, slope          normalized to a send-weighted mean of 1)
churn base, slope           MLE on periods without purchase (capped linear hazard)
contact cap and window      the (cap, window) that best reproduces the logged masks
recency range, frequency    quantiles and Poisson mean of the first decision's RFM
consent multipliers         share of consenting customers / the catalog's consent rate
==========================  ===================================================================

Parameters the log cannot identify keep the :class:`WorldSpec` default and are listed in
:attr:`FittedSimulator.notes` (``discount_sensitivity_noise`` and ``churn_max`` always).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from campaignrl._checks import check_scalar
from campaignrl._progress import progress_bar
from campaignrl.catalog import Catalog, default_catalog
from campaignrl.simulators.fit.data import Trajectories, load_frame, prepare
from campaignrl.simulators.fit.estimators import (
    fit_churn,
    fit_conversion,
    fit_open,
    fit_organic,
    fit_response_product,
    fit_unsubscribe,
)
from campaignrl.simulators.fit.segments import Tastes, cluster, factorize
from campaignrl.simulators.spec import SegmentSpec, WorldSpec

__all__ = ["FittedSimulator", "fit_simulator"]

LAPSE_GRID: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 20, 26)
"""lapse thresholds (periods without purchase) the profile likelihood tries"""
_FREQ_HALF, _MON_HALF = 5.0, 100.0
"""the observation's frequency and monetary scales (campaignrl.envs.observation)"""
_LOGGED_SCORES = "logged affinity scores"
"""the taste source when the log carries the recommender's ``affinity=<offer>`` scores"""
_SMOOTHING = 5.0
"""pseudo-opens of the segment's rate mixed into each customer's conversion rate"""


@dataclass(frozen=True)
class FittedSimulator:
    """A world fitted from logs, with the per-customer results and what the fit could not do.

    ``spec`` is an ordinary :class:`WorldSpec`: a :class:`CustomerSimulator` runs it exactly
    as it runs a preset.
    """

    spec: WorldSpec
    """the fitted world"""
    customer_ids: np.ndarray
    """(E,) customer id of each fitted trajectory (str)"""
    segment: np.ndarray
    """(E,) fitted segment of each trajectory"""
    tastes: np.ndarray
    """(E, K) fitted taste vector of each trajectory"""
    profile: list[dict[str, Any]]
    """one record per segment: size, RFM, consent and observed rates by channel"""
    notes: tuple[str, ...]
    """parameters not identifiable from this log, and what the fit did instead"""
    diagnostics: dict[str, Any] = field(default_factory=dict)
    """how K and the lapse threshold were chosen, rows used per estimator, settings"""

    def profile_frame(self) -> pd.DataFrame:
        """The segment profile as a table."""
        return pd.DataFrame(self.profile)


def fit_simulator(
    logs: str | os.PathLike[str] | pd.DataFrame,
    customers: str | os.PathLike[str] | pd.DataFrame | None = None,
    feedback: str | os.PathLike[str] | pd.DataFrame | None = None,
    *,
    segments: int | str = "auto",
    seed: int = 0,
    catalog: Catalog | None = None,
    name: str = "fitted",
    min_rows_per_action: int = 30,
    n_topics: int = 5,
    progress: bool = False,
) -> FittedSimulator:
    """Fit a customer simulator from decision logs.

    Args:
        logs: Decision log (DataFrame, ``.parquet`` or ``.csv``) in the schema of
            :mod:`campaignrl.logs.schema`, with ``allowed=<action>`` masks, the RFM context
            features and, best, the outcome columns (``opened``, ``purchased``,
            ``basket_value``, ``unsubscribed``, ``churned``).
        customers: Optional customer table (``customer_id`` and numeric columns) joined into
            the segmentation.
        feedback: Optional feedback text (``customer_id``, ``text``); its topic features join
            the segmentation.
        segments: Number of segments, or ``"auto"`` (silhouette over K = 2..8).
        seed: Seed of K-Means, the SVD and the silhouette sample.
        catalog: The offers and channels the log's actions name (their costs and incentives
            are not in a log). Default: :func:`~campaignrl.catalog.default_catalog`.
        name: Name of the fitted world.
        min_rows_per_action: Fewest rows of each action the fit accepts.
        n_topics: Topics extracted from ``feedback``.
        progress: Show a progress bar.

    Raises:
        ValueError: If the log cannot support a fit (see
            :func:`campaignrl.simulators.fit.data.prepare`) or an argument is invalid.
    """
    if segments != "auto":
        check_scalar(segments, "segments", int, min_val=1, max_val=50)
    check_scalar(seed, "seed", int, min_val=0)
    check_scalar(min_rows_per_action, "min_rows_per_action", int, min_val=1)
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string, got {name!r}")
    catalog = catalog if catalog is not None else default_catalog()
    if not isinstance(catalog, Catalog):
        raise TypeError(f"`catalog` must be a Catalog, got {type(catalog).__name__}")

    with progress_bar("fitting a simulator", 6, progress) as advance:
        traj = prepare(load_frame(logs), catalog, min_rows_per_action=min_rows_per_action)
        advance(1)
        notes = list(traj.notes)
        fatigue = _fatigue(traj, notes)
        purchased = _purchased(traj, notes)
        alive = traj.alive()
        extra_cols, extra = _customer_extras(traj, customers, feedback, n_topics, seed, notes)
        cols, x = _customer_features(traj, purchased)
        if extra is not None:
            cols, x = cols + extra_cols, np.hstack([x, extra])
        if isinstance(segments, int) and segments > traj.n_episodes:
            raise ValueError(
                f"`segments` must be at most the number of customers ({traj.n_episodes}), "
                f"got {segments}"
            )
        seg_fit = cluster(x, cols, segments, seed)
        labels, seg_names = _name_segments(traj, seg_fit.labels, seg_fit.k)
        n_seg = len(seg_names)
        seg = labels[traj.episode]
        advance(1)

        scores, score_source = _score_matrix(traj, labels, n_seg, purchased, notes)
        tastes = factorize(scores, labels, n_seg, seed)
        if score_source != _LOGGED_SCORES:
            # A customer's own response rates rest on a handful of opens: their spread is
            # mostly binomial noise, and a world drawing that spread as taste overstates
            # heterogeneity (measured: the ranking of policies broke down). Segment centres
            # only; taste_noise 0.
            notes.append(
                "tastes from response rates: each customer's spread around the segment centre "
                "is mostly noise at a few opens per customer, so the fitted world uses segment "
                "taste centres only (taste_noise 0)"
            )
            tastes = Tastes(
                tastes.segment_mean[labels],
                tastes.offer,
                tastes.segment_mean,
                0.0,
                tastes.explained,
            )
        offer = traj.offer
        row_aff = np.einsum(
            "ik,ik->i", tastes.customer[traj.episode], tastes.offer[np.maximum(offer, 0)]
        )
        advance(1)

        result = _fit_response(traj, seg, n_seg, fatigue, purchased, alive, row_aff, notes)
        advance(1)
        decay = _fatigue_decay(traj, fatigue, notes)
        cap, window = _contact_cap(traj)
        start = _initial_state(traj, labels, n_seg)
        advance(1)

    counts = np.bincount(labels, minlength=n_seg)
    shares = counts / counts.sum()
    shares = shares / shares.sum()
    consent = start["consent"]
    base_consent = np.array([c.consent_rate for c in catalog.channels])
    seg_specs = []
    for s in range(n_seg):
        mult = tuple(
            float(consent[s, c] / base_consent[c]) if base_consent[c] > 0 else 1.0
            for c in range(catalog.n_channels)
        )
        seg_specs.append(
            SegmentSpec(
                name=seg_names[s],
                share=float(shares[s]),
                organic_rate=float(np.clip(result["organic"][s], 0.0, 1.0)),
                basket_median=float(np.exp(result["basket_mu"][s])),
                basket_sigma=float(np.clip(result["basket_sigma"][s], 1e-3, 3.0)),
                open_rates=tuple(float(v) for v in np.clip(result["open"][s], 0.0, 1.0)),
                conversion_logit=float(np.clip(result["logit"][s], -20.0, 20.0)),
                discount_sensitivity=float(max(result["ds"][s], 0.0)),
                fatigue_sensitivity=float(max(result["fs"][s], 0.0)),
                churn_base=float(np.clip(result["churn_base"][s], 0.0, 1.0)),
                recency_range=start["recency"][s],
                frequency_mean=float(start["frequency"][s]),
                taste_mean=tuple(float(v) for v in tastes.segment_mean[s]),
                consent_multipliers=mult,
                unsubscribe_multiplier=float(result["unsub_mult"][s]),
            )
        )
    spec = WorldSpec(
        name=name,
        segments=tuple(seg_specs),
        offer_tastes=tuple(tuple(float(v) for v in row) for row in tastes.offer),
        catalog=catalog,
        taste_noise=float(tastes.noise),
        affinity_weight=float(result["affinity_weight"]),
        margin_rate=float(np.clip(result["margin"], 0.0, 1.0)),
        fatigue_decay=float(np.clip(decay, 0.0, 0.999)),
        fatigue_organic_penalty=float(result["penalty"]),
        channel_conversion=tuple(float(v) for v in np.clip(result["cc"], 0.0, 1.0)),
        unsubscribe_base=tuple(float(v) for v in np.clip(result["unsub_base"], 0.0, 1.0)),
        unsubscribe_fatigue_slope=float(result["unsub_slope"]),
        lapse_after=int(result["lapse_after"]),
        winback_open_factor=float(np.clip(result["winback"], 0.0, 1.0)),
        churn_slope=float(np.clip(result["churn_slope"], 0.0, 1.0)),
        contact_cap=int(cap),
        cap_window=int(window),
    )
    if "unsub_counts" in result:
        sends, events = result["unsub_counts"]
        for j in np.flatnonzero((sends > 0) & (events == 0)):
            # the maximum-likelihood multiplier of a segment without opt-outs is ~0: say so
            # rather than invent a prior (3 / sends bounds its rate at 95%: the rule of three)
            notes.append(
                f"segment {seg_names[j]!r} had no opt-out in {int(sends[j])} sends: its "
                f"opt-out multiplier is {spec.segments[j].unsubscribe_multiplier:.2g} (the log "
                f"allows up to ~{3.0 / sends[j]:.2g} opt-outs per send)"
            )
    notes.append(
        "discount_sensitivity_noise (spread of price sensitivity within a segment) and "
        "churn_max (cap of the churn hazard) are not identified by a log: kept at the "
        f"defaults {spec.discount_sensitivity_noise} and {spec.churn_max}"
    )
    profile = _profile(traj, seg, labels, seg_names, start, fatigue, purchased, alive)
    diagnostics = {
        "rows": traj.n,
        "customers": traj.n_episodes,
        "periods": int(np.unique(traj.step).size),
        "segments": {
            "k": seg_fit.k,
            "chosen_by": "given" if segments != "auto" else "silhouette (max over K=2..8)",
            "silhouette": {str(k): v for k, v in seg_fit.scores.items()},
            "columns": list(seg_fit.columns),
        },
        "tastes": {
            "source": score_source,
            "rank": int(tastes.offer.shape[1]),
            "explained": tastes.explained,
        },
        "rows_used": result["rows_used"],
        "settings": {
            "segments": segments,
            "seed": seed,
            "min_rows_per_action": min_rows_per_action,
            "n_topics": n_topics,
        },
    }
    return FittedSimulator(
        spec=spec,
        customer_ids=traj.customer_ids,
        segment=labels,
        tastes=tastes.customer,
        profile=profile,
        notes=tuple(notes),
        diagnostics=diagnostics,
    )


# ---------------------------------------------------------------------- observed state
def _fatigue(traj: Trajectories, notes: list[str]) -> np.ndarray:
    """(n,) fatigue ``F`` before each decision.

    Decoded from the ``fatigue`` feature (``F / (1 + F)``), else rebuilt from the contact
    history with the catalog's weights.
    """
    if "fatigue" in traj.features:
        x = np.clip(traj.features["fatigue"], 0.0, 1.0 - 1e-6)
        return x / (1.0 - x)
    notes.append(
        "the log has no `fatigue` feature: fatigue is rebuilt from each customer's contacts "
        "(fatigue 0 at the first logged period) with fatigue_decay = 0.6, the default "
        "(the decay itself is not fitted)"
    )
    weights = np.r_[0.0, [c.fatigue_weight for c in traj.catalog.channels]]
    w = weights[traj.channel + 1]
    out = np.zeros(traj.n)
    pos = traj.episode_index()
    for i in range(1, int(pos.max()) + 1 if traj.n else 0):
        rows = np.flatnonzero(pos == i)
        out[rows] = 0.6 * out[rows - 1] + w[rows - 1]
    return out


def _purchased(traj: Trajectories, notes: list[str]) -> np.ndarray:
    """(n,) bought this period: the ``purchased`` column, else a reward above the send cost."""
    if traj.has("purchased"):
        return traj.outcomes["purchased"].astype(bool)
    cost = np.r_[0.0, [c.cost_per_contact for c in traj.catalog.channels]][traj.channel + 1]
    notes.append(
        "the log has no `purchased` column: a purchase is read as a reward above minus the "
        "contact's cost (a redeemed offer that cost more than its margin reads as no purchase)"
    )
    return traj.reward > -cost + 1e-9


def _customer_features(
    traj: Trajectories, purchased: np.ndarray
) -> tuple[tuple[str, ...], np.ndarray]:
    """Per customer: first context, consent and observed rates.

    The first decision's context (RFM and the other static features), channel consent and
    the observed purchase and open rates.
    """
    skip = {"fatigue", "cap_used", "periods_left"}
    names = [n for n in traj.features if n not in skip and not n.startswith("reachable=")]
    first = traj.first
    cols: list[np.ndarray] = [traj.features[n][first] for n in names]
    consent = _consent(traj)
    cat = traj.catalog
    names += [f"consent={c.name}" for c in cat.channels]
    cols += [consent[:, c].astype(np.float64) for c in range(cat.n_channels)]
    e = traj.n_episodes
    periods = np.bincount(traj.episode, minlength=e)
    names.append("purchase_rate")
    cols.append(np.bincount(traj.episode, purchased, minlength=e) / np.maximum(periods, 1))
    if traj.has("opened"):
        sent = np.bincount(traj.episode, traj.contacted, minlength=e)
        opens = np.bincount(traj.episode, traj.outcomes["opened"], minlength=e)
        overall = opens.sum() / max(sent.sum(), 1)
        names.append("open_rate")
        cols.append((opens + overall) / (sent + 1.0))  # one pseudo-send: no contact, no NaN
    return tuple(names), np.column_stack(cols)


def _consent(traj: Trajectories) -> np.ndarray:
    """(E, C) channel consent: the channel was allowed at some decision of the customer."""
    cat = traj.catalog
    out = np.zeros((traj.n_episodes, cat.n_channels), dtype=bool)
    chan_of = np.asarray(cat.channel_of)
    for c in range(cat.n_channels):
        allowed = traj.masks[:, chan_of == c].any(axis=1)
        out[:, c] = np.bincount(traj.episode, allowed, minlength=traj.n_episodes) > 0
    return out


def _customer_extras(
    traj: Trajectories,
    customers: Any,
    feedback: Any,
    n_topics: int,
    seed: int,
    notes: list[str],
) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Numeric columns of the customer table and feedback topic features, per trajectory."""
    names: list[str] = []
    blocks: list[np.ndarray] = []
    if customers is not None:
        table = load_frame(customers, "customers")
        if "customer_id" not in table.columns:
            raise ValueError("`customers` must have a customer_id column")
        numeric = [
            c
            for c in table.columns
            if c != "customer_id" and pd.api.types.is_numeric_dtype(table[c])
        ]
        if not numeric:
            raise ValueError("`customers` has no numeric column to segment on")
        table = table.drop_duplicates("customer_id").set_index(table["customer_id"].astype(str))
        joined = table.reindex(traj.customer_ids)[numeric].astype(np.float64)
        unknown = int(joined.isna().all(axis=1).sum())
        if unknown:
            notes.append(
                f"{unknown} customers of the log are not in `customers`: column means used"
            )
        joined = joined.fillna(joined.mean()).fillna(0.0)
        names += [f"customer:{c}" for c in numeric]
        blocks.append(joined.to_numpy())
    if feedback is not None:
        from campaignrl.simulators.fit.feedback import topic_features

        table = load_frame(feedback, "feedback")
        topics, summary = topic_features(table, traj.customer_ids, n_topics=n_topics, seed=seed)
        topics = np.asarray(topics, dtype=np.float64)
        notes.extend(f"feedback: {line}" for line in summary.describe())
        names += [f"topic{t}" for t in range(topics.shape[1])]
        blocks.append(topics)
    if not blocks:
        return (), None
    return tuple(names), np.hstack(blocks)


def _name_segments(
    traj: Trajectories, labels: np.ndarray, k: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Name and order the clusters.

    A cluster is named after the logged ``segment=<name>`` most of its members carry (if the
    log has such columns and the match is one to one), ordered as those columns; else
    ``segment0..`` by decreasing size.
    """
    seg_cols = [n for n in traj.features if n.startswith("segment=")]
    counts = np.bincount(labels, minlength=k)
    if seg_cols:
        onehot = np.column_stack([traj.features[c][traj.first] for c in seg_cols])
        votes = np.zeros((k, len(seg_cols)))
        np.add.at(votes, labels, onehot)
        best = votes.argmax(axis=1)
        purity = votes.max(axis=1) / np.maximum(counts, 1)
        if np.unique(best).size == k and np.all(purity >= 0.5):
            order = np.argsort(best, kind="stable")
            relabel = np.empty(k, dtype=np.int64)
            relabel[order] = np.arange(k)
            names = tuple(seg_cols[best[j]].removeprefix("segment=") for j in order)
            return relabel[labels], names
    order = np.argsort(-counts, kind="stable")
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    return relabel[labels], tuple(f"segment{i}" for i in range(k))


def _score_matrix(
    traj: Trajectories, labels: np.ndarray, n_seg: int, purchased: np.ndarray, notes: list[str]
) -> tuple[np.ndarray, str]:
    """(E, O) customer x offer scores to factorize, and where they came from.

    The logged ``affinity=<offer>`` features (the recommender's scores, ``tanh(a / 2)``) are
    decoded to ``a = 2 artanh(x)``; without them, each customer's conversion-after-open rate
    per offer, shrunk towards the segment's rate with ``_SMOOTHING`` pseudo-opens, in log-odds.
    """
    cat = traj.catalog
    aff_cols = [f"affinity={o.name}" for o in cat.offers]
    if all(c in traj.features for c in aff_cols):
        x = np.column_stack([traj.features[c][traj.first] for c in aff_cols])
        return 2.0 * np.arctanh(np.clip(x, -0.999999, 0.999999)), _LOGGED_SCORES
    notes.append(
        "the log has no affinity=<offer> scores: tastes are factorized from smoothed "
        "conversion-after-open rates per customer and offer (sparse; weaker than scores)"
    )
    e, n_off = traj.n_episodes, cat.n_offers
    resp = traj.outcomes["opened"].astype(bool) if traj.has("opened") else traj.contacted
    rows = resp & traj.contacted
    idx = traj.episode[rows] * n_off + traj.offer[rows]
    tries = np.bincount(idx, minlength=e * n_off).reshape(e, n_off)
    wins = np.bincount(idx, purchased[rows], minlength=e * n_off).reshape(e, n_off)
    seg_tries = np.zeros((n_seg, n_off))
    seg_wins = np.zeros((n_seg, n_off))
    np.add.at(seg_tries, labels, tries)
    np.add.at(seg_wins, labels, wins)
    prior = (seg_wins + 0.5) / (seg_tries + 1.0)
    rate = (wins + _SMOOTHING * prior[labels]) / (tries + _SMOOTHING)
    return np.log(rate / (1.0 - rate)), "smoothed conversion-after-open rates"


# ---------------------------------------------------------------------- response and dynamics
def _fit_response(
    traj: Trajectories,
    seg: np.ndarray,
    n_seg: int,
    fatigue: np.ndarray,
    purchased: np.ndarray,
    alive: np.ndarray,
    affinity: np.ndarray,
    notes: list[str],
) -> dict[str, Any]:
    cat = traj.catalog
    n_ch = cat.n_channels
    contacted = traj.contacted
    channel = np.maximum(traj.channel, 0)
    offer = np.maximum(traj.offer, 0)
    recency = traj.recency()
    out: dict[str, Any] = {"rows_used": {}}
    has_open = traj.has("opened")
    opened = traj.outcomes["opened"].astype(bool) if has_open else np.zeros(traj.n, dtype=bool)

    # Organic purchases: periods where nothing was opened (opening and organic buying are
    # drawn independently, so a contact that was not opened tells the organic rate too).
    rows = alive & ~opened if has_open else alive & ~contacted
    org = fit_organic(seg[rows], fatigue[rows], purchased[rows], n_seg)
    out.update(organic=org.organic, penalty=org.penalty)
    out["rows_used"]["organic"] = org.n_rows

    # Basket: lognormal MLE on purchases, the redeemed offer's multiplier removed.
    buy = alive & purchased
    if traj.has("basket_value"):
        basket = traj.outcomes["basket_value"]
        buy = buy & (basket > 0)
        mult = np.array([o.basket_multiplier for o in cat.offers])
        if not has_open:  # who redeemed is unknown: baskets of customers not contacted only
            buy = buy & ~contacted
        logb = np.log(basket[buy]) - np.where(opened[buy], np.log(mult[offer[buy]]), 0.0)
        sb = seg[buy]
        k = np.maximum(np.bincount(sb, minlength=n_seg), 1)
        mu = np.bincount(sb, logb, minlength=n_seg) / k
        var = np.bincount(sb, (logb - mu[sb]) ** 2, minlength=n_seg) / k
        out.update(basket_mu=mu, basket_sigma=np.sqrt(var))
        # margin: profit = margin * basket on purchases without a redeemed offer
        # profit = margin * basket where no offer was redeemed (not opened; without `opened`,
        # not contacted)
        plain = buy & ~opened if has_open else buy & ~contacted
        cost = np.r_[0.0, [c.cost_per_contact for c in cat.channels]][traj.channel + 1]
        out["margin"] = float(
            np.sum(traj.reward[plain] + cost[plain]) / max(np.sum(basket[plain]), 1e-12)
        )
        out["rows_used"]["basket"] = int(buy.sum())
    else:
        notes.append(
            "the log has no `basket_value`: margin_rate is kept at 0.35 and the basket "
            "(lognormal) is read from profit / margin on purchases without a redeemed offer"
        )
        plain = buy & ~opened & ~contacted & (traj.reward > 0)
        logb = np.log(traj.reward[plain] / 0.35)
        sb = seg[plain]
        k = np.maximum(np.bincount(sb, minlength=n_seg), 1)
        mu = np.bincount(sb, logb, minlength=n_seg) / k
        var = np.bincount(sb, (logb - mu[sb]) ** 2, minlength=n_seg) / k
        out.update(basket_mu=mu, basket_sigma=np.sqrt(var), margin=0.35)

    p_org_all = org.organic[seg] * np.exp(-org.penalty * fatigue)
    send = alive & contacted
    inc = np.array([o.incentive for o in cat.offers])
    if has_open:
        op = fit_open(
            seg[send],
            channel[send],
            fatigue[send],
            recency[send],
            opened[send],
            n_seg,
            n_ch,
            LAPSE_GRID,
        )
        out.update(
            open=op.open_rates,
            fs=op.fatigue_sensitivity,
            winback=op.winback,
            lapse_after=op.lapse_after,
        )
        out["rows_used"]["open"] = op.n_rows
        conv_rows = alive & opened
        cv = fit_conversion(
            seg[conv_rows],
            channel[conv_rows],
            affinity[conv_rows],
            inc[offer[conv_rows]],
            p_org_all[conv_rows],
            purchased[conv_rows],
            n_seg,
            n_ch,
        )
    else:
        notes.append(
            "the log has no `opened` column: open and conversion rates are not separately "
            "identifiable; open rates are set to 1 and the response model fits their product "
            "(with its fatigue and win-back effects); an organic buyer who gets a message is "
            "then counted as redeeming it, which overstates the cost of offers to organic buyers"
        )
        pr = fit_response_product(
            seg[send],
            channel[send],
            affinity[send],
            inc[offer[send]],
            p_org_all[send],
            fatigue[send],
            recency[send],
            purchased[send],
            n_seg,
            n_ch,
            LAPSE_GRID,
        )
        cv = pr.conversion
        out.update(
            open=np.ones((n_seg, n_ch)),
            fs=pr.fatigue_sensitivity,
            winback=pr.winback,
            lapse_after=pr.lapse_after,
        )
    out.update(
        logit=cv.conversion_logit,
        ds=cv.discount_sensitivity,
        affinity_weight=cv.affinity_weight,
        cc=cv.channel_conversion,
    )
    out["rows_used"]["conversion"] = cv.n_rows

    if traj.has("unsubscribed"):
        un = fit_unsubscribe(
            channel[send],
            fatigue[send],
            traj.outcomes["unsubscribed"][send],
            n_ch,
            seg=seg[send],
            n_seg=n_seg,
        )
        out.update(unsub_base=un.base, unsub_slope=un.slope, unsub_mult=un.multiplier)
        out["unsub_counts"] = (
            np.bincount(seg[send], minlength=n_seg),
            np.bincount(seg[send], traj.outcomes["unsubscribed"][send], minlength=n_seg),
        )
        out["rows_used"]["unsubscribe"] = un.n_rows
    else:
        notes.append(
            "the log has no `unsubscribed` column: opt-out rates are not fitted; "
            "unsubscribe_base and unsubscribe_fatigue_slope keep the WorldSpec defaults"
        )
        base = (0.002, 0.012, 0.010)  # the WorldSpec defaults (email, SMS, push)
        out.update(
            unsub_base=np.array(base[:n_ch] + (base[-1],) * max(0, n_ch - len(base))),
            unsub_slope=0.3,
            unsub_mult=np.ones(n_seg),
        )

    if traj.has("churned"):
        quiet = alive & ~purchased
        ch = fit_churn(
            seg[quiet],
            recency[quiet] + 1.0,
            int(out["lapse_after"]),
            0.2,
            traj.outcomes["churned"][quiet],
            n_seg,
        )
        out.update(churn_base=ch.base, churn_slope=ch.slope)
        out["rows_used"]["churn"] = ch.n_rows
    else:
        notes.append(
            "the log has no `churned` column: churn is hidden in a log (a churned customer only "
            "stops buying); churn_base keeps 0.005 and churn_slope 0.002"
        )
        out.update(churn_base=np.full(n_seg, 0.005), churn_slope=0.002)
    return out


def _fatigue_decay(traj: Trajectories, fatigue: np.ndarray, notes: list[str]) -> float:
    """Fatigue decay by least squares over consecutive decisions.

    ``F_{t+1} - weight[c_t] = decay * F_t``, so ``decay = sum F_t (F_{t+1} - w_t) / sum F_t^2``.
    """
    if "fatigue" not in traj.features:
        return 0.6
    nxt = np.r_[(np.diff(traj.episode) == 0) & (np.diff(traj.step) == 1), False]
    i = np.flatnonzero(nxt & (fatigue > 1e-6))
    if i.size == 0:
        notes.append("no customer was logged with fatigue in two consecutive periods: decay 0.6")
        return 0.6
    weights = np.r_[0.0, [c.fatigue_weight for c in traj.catalog.channels]]
    target = fatigue[i + 1] - weights[traj.channel[i] + 1]
    return float(np.sum(fatigue[i] * target) / np.sum(fatigue[i] ** 2))


def _contact_cap(traj: Trajectories, max_window: int = 12) -> tuple[int, int]:
    """The contact cap and its window, from the masks.

    The (cap, window) whose rule "a contact is allowed while the contacts of the last
    ``window - 1`` periods are below ``cap``" agrees with the most logged masks; ties are
    broken by the ``cap_used`` feature when the log has it.

    Only decisions where some channel was open to the customer (consented, not opted out:
    the channel is allowed at this or a later decision) say anything about the cap.
    """
    e = traj.n_episodes
    t_max = int(traj.step.max()) + 1
    sent = np.zeros((e, t_max + 1))
    sent[traj.episode, traj.step + 1] = traj.contacted
    before = np.cumsum(sent, axis=1)  # before[:, t] = contacts in steps < t
    chan_of = np.asarray(traj.catalog.channel_of)
    any_allowed = np.asarray(traj.masks[:, 1:].any(axis=1))
    # a channel is still open at a decision if allowed then or later in the episode
    open_later = np.zeros(traj.n, dtype=bool)
    for c in range(traj.catalog.n_channels):
        allowed = np.asarray(traj.masks[:, chan_of == c].any(axis=1), dtype=np.int64)
        rev = np.asarray(np.cumsum(allowed[::-1]), dtype=np.int64)[::-1]  # here or later
        last = np.r_[traj.first[1:], traj.n]  # one past each episode's last row
        after_episode = np.r_[rev, 0][last][traj.episode]
        open_later |= (rev - after_episode) > 0
    rows = open_later
    capped = ~any_allowed[rows]
    ep, st = traj.episode[rows], traj.step[rows]
    # A cap that never binds fits the masks equally for many (cap, window): the logged
    # ``cap_used`` feature (recent contacts / cap) then tells them apart, since policies
    # read it (rfm-rules counts contacts with it).
    used = traj.features.get("cap_used")
    best, best_score = (1, 1), (-1.0, -np.inf)
    for window in range(1, min(max_window, t_max) + 1):
        recent = before[ep, st] - before[ep, np.maximum(st - window + 1, 0)]
        for cap in range(1, window + 1):
            agree = float(np.mean((recent >= cap) == capped))
            match = -float(np.mean(np.abs(recent / cap - used[rows]))) if used is not None else 0.0
            score = (round(agree, 12), match)
            if score > best_score:
                best, best_score = (cap, window), score
    return best


def _initial_state(traj: Trajectories, labels: np.ndarray, n_seg: int) -> dict[str, Any]:
    """Per segment: the initial state's distribution.

    Recency range (1st-99th percentile of the first decision's recency),
    Poisson mean of the first frequency (``f = 5 x / (1 - x)``) and consent shares.
    """
    first = traj.first
    rec = traj.recency()[first]
    x = np.clip(traj.features["frequency"][first], 0.0, 1.0 - 1e-9)
    freq = _FREQ_HALF * x / (1.0 - x)
    consent = _consent(traj)
    ranges, means, shares = [], np.zeros(n_seg), np.zeros((n_seg, consent.shape[1]))
    for s in range(n_seg):
        r = rec[labels == s]
        lo, hi = (
            (int(np.floor(np.quantile(r, 0.01))), int(np.ceil(np.quantile(r, 0.99))))
            if r.size
            else (0, 0)
        )
        ranges.append((max(lo, 0), max(hi, lo, 0)))
        means[s] = float(freq[labels == s].mean()) if r.size else 0.0
        shares[s] = consent[labels == s].mean(axis=0) if r.size else 0.0
    return {"recency": ranges, "frequency": means, "consent": shares}


def _profile(
    traj: Trajectories,
    seg: np.ndarray,
    labels: np.ndarray,
    names: tuple[str, ...],
    start: dict[str, Any],
    fatigue: np.ndarray,
    purchased: np.ndarray,
    alive: np.ndarray,
) -> list[dict[str, Any]]:
    """Observed figures per segment (what the report compares the simulator with)."""
    cat = traj.catalog
    first = traj.first
    rec = traj.recency()[first]
    mon_x = np.clip(traj.features["monetary"][first], 0.0, 1.0 - 1e-9)
    monetary = _MON_HALF * mon_x / (1.0 - mon_x)
    out = []
    for s, name in enumerate(names):
        members = labels == s
        rows = seg == s
        rec_s = {
            "segment": name,
            "customers": int(members.sum()),
            "share": float(members.mean()),
            "recency_mean": float(rec[members].mean()) if members.any() else float("nan"),
            "frequency_mean": float(start["frequency"][s]),
            "monetary_mean": float(monetary[members].mean()) if members.any() else float("nan"),
            "purchase_rate_no_contact": _rate(purchased, rows & ~traj.contacted),
        }
        for c, ch in enumerate(cat.channels):
            sent = rows & (traj.channel == c)
            rec_s[f"consent_{ch.name}"] = float(start["consent"][s, c])
            rec_s[f"sends_{ch.name}"] = int(sent.sum())
            if traj.has("opened"):
                opened = traj.outcomes["opened"].astype(bool)
                rec_s[f"open_rate_{ch.name}"] = _rate(opened, sent)
                rec_s[f"conversion_{ch.name}"] = _rate(purchased, sent & opened)
            else:
                rec_s[f"purchase_after_send_{ch.name}"] = _rate(purchased, sent)
            if traj.has("unsubscribed"):
                rec_s[f"optout_rate_{ch.name}"] = _rate(traj.outcomes["unsubscribed"], sent)
        out.append(rec_s)
    return out


def _rate(y: np.ndarray, rows: np.ndarray) -> float:
    k = int(rows.sum())
    return float(np.sum(y[rows]) / k) if k else float("nan")
