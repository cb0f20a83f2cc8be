"""The fidelity report of a fitted simulator: how far the fitted world is from the logs.

``fidelity_report(fitted, logs, out_dir)`` writes ``report.md`` and three PNG figures:

1. observed vs simulated rates (open, conversion after open, opt-out per send, organic
   purchase on no-contact periods) per segment, channel, offer and segment x channel, with
   95% Wilson intervals on both sides and the relative difference; the simulated side is the
   fitted world run under the logging policy (given, or cloned from the log) on five times
   the log's customers (at most 200,000, at least the log's), as many periods: its own noise
   is then small beside the observed side's;
2. two-sample Kolmogorov-Smirnov scores of the basket value (purchases), recency and
   frequency between the observed and the simulated log, with their ECDFs;
3. each policy's value in the fitted world beside its off-policy estimate (DR and SNIPS with
   intervals) from the same logs, and the Spearman rank correlation of the two columns: the
   ranking check a user can run without knowing the true world;
4. each segment's top feedback topics and words, if feedback text was given;
5. what the fit could not do (the fit's own notes) and what the report assumed.

The observed side never reads the log's ``segment=<name>`` columns (a simulated log's true
segments; a real log has none): a logged customer's segment is the fit's assignment
(:attr:`FittedSimulator.segment`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: runs on servers and CI without a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from campaignrl._checks import check_choice, check_scalar
from campaignrl._fs import ordinary_mode
from campaignrl._progress import progress_bar
from campaignrl.envs.observation import ObservationEncoder
from campaignrl.logs.io import LoggedData, read_logs
from campaignrl.logs.schema import MASK_PREFIX, REQUIRED_COLUMNS, mask_column
from campaignrl.simulators.core import CustomerSimulator
from campaignrl.simulators.fit.data import OUTCOMES, RFM_FEATURES, load_frame
from campaignrl.simulators.fit.fitting import FittedSimulator

__all__ = [
    "DEFAULT_POLICIES",
    "RATES",
    "ClonedLoggingPolicy",
    "FidelityReport",
    "fidelity_report",
    "ks_scores",
    "observed_rates",
    "spearman",
    "wilson_interval",
]

DEFAULT_POLICIES: tuple[str, ...] = ("random", "no-contact", "static-best", "rfm-rules", "myopic")
"""policies ranked by default: four baselines and the fitted world's myopic policy"""
RATES: tuple[str, ...] = ("open", "conversion", "optout", "organic")
"""the rates compared: opens / sends, purchases / opens, opt-outs / sends, purchases /
no-contact periods"""
WITHIN = 0.10
"""relative difference below which a simulated rate counts as matching the observed one"""
_Z95 = float(stats.norm.ppf(0.975))
_FREQ_HALF, _MON_HALF = 5.0, 100.0
"""the observation's frequency and monetary scales (campaignrl.envs.observation)"""
FIGURES: tuple[str, ...] = ("rates.png", "distributions.png", "policies.png")
"""the figures a report writes beside ``report.md``"""


# ---------------------------------------------------------------------- small statistics
def wilson_interval(successes: Any, trials: Any, z: float = _Z95) -> tuple[np.ndarray, np.ndarray]:
    r"""Wilson score interval of binomial proportions (vectorized).

    .. math::
        \frac{\hat p + z^2 / 2n \pm z \sqrt{\hat p (1 - \hat p) / n + z^2 / 4n^2}}{1 + z^2 / n}

    Unlike the normal (Wald) interval it stays inside [0, 1] and keeps its coverage for rates
    near 0, such as opt-outs per send. NaN where ``trials`` is 0.

    Reference: E. B. Wilson, "Probable inference, the law of succession, and statistical
    inference", JASA 22 (1927) 209-212; the same as
    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.

    Examples:
        >>> lo, hi = wilson_interval(8, 10)
        >>> round(float(lo), 4), round(float(hi), 4)
        (0.4902, 0.9433)
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        center = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return center - half, center + half


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    r"""Spearman rank correlation ``rho`` of two value vectors (``scipy.stats.spearmanr``).

    Without ties, :math:`\rho = 1 - 6 \sum_i d_i^2 / (n (n^2 - 1))` with ``d_i`` the rank
    difference; with ties, the Pearson correlation of the average ranks. NaN for fewer than
    three values (no ranking to check).
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"`a` and `b` must be 1-D of one length, got {x.shape} and {y.shape}")
    if x.size < 3 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def ks_scores(observed: dict[str, np.ndarray], simulated: dict[str, np.ndarray]) -> pd.DataFrame:
    """Two-sample Kolmogorov-Smirnov score of each variable present on both sides.

    ``D = sup_x |F_obs(x) - F_sim(x)|`` and its p-value (``scipy.stats.ks_2samp``, exact for
    small samples, asymptotic otherwise). With hundreds of thousands of rows any difference
    is "significant": read ``D`` (0 = same distribution, 1 = disjoint) first.

    Reference: Hodges, "The significance probability of the Smirnov two-sample test",
    Arkiv foer Matematik 3 (1958).
    """
    rows = []
    for name, obs in observed.items():
        sim = simulated.get(name)
        if sim is None or obs.size == 0 or sim.size == 0:
            continue
        res = stats.ks_2samp(obs, sim)
        rows.append(
            {
                "variable": name,
                "ks_statistic": float(res.statistic),
                "p_value": float(res.pvalue),
                "n_observed": int(obs.size),
                "n_simulated": int(sim.size),
                "mean_observed": float(obs.mean()),
                "mean_simulated": float(sim.mean()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "variable",
            "ks_statistic",
            "p_value",
            "n_observed",
            "n_simulated",
            "mean_observed",
            "mean_simulated",
        ],
    )


# ---------------------------------------------------------------------- rates
def _canonical(frame: pd.DataFrame, segment: np.ndarray, catalog: Any) -> pd.DataFrame:
    """Per logged row: segment, channel, offer and the outcome flags the rates count."""
    actions = frame["action"].astype(str).to_numpy()
    index = {a: i for i, a in enumerate(catalog.action_names)}
    unknown = sorted(set(np.unique(actions)) - set(index))
    if unknown:
        raise ValueError(
            f"column 'action' holds action(s) {unknown[:4]} the fitted world's catalog does "
            f"not have; its actions are {list(catalog.action_names)[:6]}..."
        )
    a = np.array([index[x] for x in actions], dtype=np.int64) if actions.size else np.zeros(0, int)
    channel_names = np.array([""] + [c.name for c in catalog.channels], dtype=object)
    offer_names = np.array([""] + [o.name for o in catalog.offers], dtype=object)
    out = pd.DataFrame(
        {
            "segment": segment,
            "channel": channel_names[np.asarray(catalog.channel_of)[a] + 1],
            "offer": offer_names[np.asarray(catalog.offer_of)[a] + 1],
            "contacted": a > 0,
        }
    )
    for col in ("opened", "purchased", "unsubscribed"):
        if col in frame.columns:
            out[col] = frame[col].to_numpy().astype(bool)
    return out


def observed_rates(rows: pd.DataFrame, *, groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Counts and rates per group of a canonical row table.

    Args:
        rows: One row per decision with ``segment``, ``channel``, ``offer`` (``""`` for no
            contact), ``contacted`` and the outcome flags ``opened``, ``purchased``,
            ``unsubscribed`` (those present).
        groups: Group kinds: ``all``, ``segment``, ``channel``, ``offer``, ``segment x channel``
            (default: all five).

    Returns:
        Long table: ``group`` (kind), ``key``, ``rate``, ``successes``, ``trials``, ``value``.
        ``open`` = opened / sends, ``conversion`` = purchased and opened / opened, ``optout``
        = unsubscribed / sends, ``organic`` = purchased / no-contact periods (``all`` and
        ``segment`` only: it has no channel or offer).
    """
    kinds = tuple(groups or ("all", "segment", "channel", "offer", "segment x channel"))
    for kind in kinds:
        check_choice(kind, "groups", ("all", "segment", "channel", "offer", "segment x channel"))
    sent = rows["contacted"].to_numpy(bool)
    flags = {
        c: rows[c].to_numpy(bool) for c in ("opened", "purchased", "unsubscribed") if c in rows
    }
    out: list[dict[str, Any]] = []
    for kind in kinds:
        if kind == "all":
            keys = pd.Series(np.full(len(rows), "all", dtype=object))
        elif kind == "segment x channel":
            keys = rows["segment"].astype(str) + " x " + rows["channel"].astype(str)
        else:
            keys = rows[kind].astype(str)
        key_arr = keys.to_numpy()
        for key in sorted(pd.unique(key_arr[sent] if kind != "segment" else key_arr)):
            member = key_arr == key
            specs: list[tuple[str, np.ndarray, str]] = []
            if "opened" in flags:
                specs.append(("open", member & sent, "opened"))
                if "purchased" in flags:
                    opened = member & sent & flags["opened"]
                    specs.append(("conversion", opened, "purchased"))
            if "unsubscribed" in flags:
                specs.append(("optout", member & sent, "unsubscribed"))
            if "purchased" in flags and kind in ("all", "segment"):
                specs.append(("organic", member & ~sent, "purchased"))
            for rate, trial_rows, flag in specs:
                n = int(trial_rows.sum())
                k = int(flags[flag][trial_rows].sum())
                out.append(
                    {
                        "group": kind,
                        "key": key,
                        "rate": rate,
                        "successes": k,
                        "trials": n,
                        "value": k / n if n else float("nan"),
                    }
                )
    return pd.DataFrame(out, columns=["group", "key", "rate", "successes", "trials", "value"])


def _compare_rates(observed: pd.DataFrame, simulated: pd.DataFrame) -> pd.DataFrame:
    """Observed beside simulated rates, Wilson intervals, relative difference, within 10%."""
    keys = ["group", "key", "rate"]
    table = observed.merge(simulated, on=keys, how="left", suffixes=("_obs", "_sim"))
    o_lo, o_hi = wilson_interval(table["successes_obs"], table["trials_obs"])
    s_lo, s_hi = wilson_interval(table["successes_sim"], table["trials_sim"])
    obs, sim = table["value_obs"].to_numpy(float), table["value_sim"].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(obs > 0, (sim - obs) / obs, np.nan)
    out = pd.DataFrame(
        {
            "group": table["group"],
            "key": table["key"],
            "rate": table["rate"],
            "observed": obs,
            "observed_low": o_lo,
            "observed_high": o_hi,
            "observed_trials": table["trials_obs"].astype(int),
            "simulated": sim,
            "simulated_low": s_lo,
            "simulated_high": s_hi,
            "simulated_trials": table["trials_sim"].fillna(0).astype(int),
            "rel_diff": rel,
        }
    )
    out["within_10pct"] = np.abs(out["rel_diff"].to_numpy(float)) <= WITHIN
    # Beside the 10% rule: whether the 95% intervals overlap, i.e. whether the difference
    # could be sampling noise of a small group (a rate of 0.3% on 2,000 sends is +-50%).
    out["intervals_overlap"] = (out["observed_low"] <= out["simulated_high"]) & (
        out["simulated_low"] <= out["observed_high"]
    )
    return out


# ---------------------------------------------------------------------- logged observations
def _log_observations(
    frame: pd.DataFrame,
    fitted: FittedSimulator,
    episode: np.ndarray,
    step: np.ndarray,
    masks: np.ndarray,
    horizon: int,
    notes: list[str],
) -> tuple[tuple[str, ...], np.ndarray]:
    """The fitted world's observation of every logged row (its encoder's columns, in order).

    ``segment=<fitted name>`` is the fit's assignment (the log's own ``segment=`` columns are
    never read); ``affinity=<offer>`` the log's scores if it has them, else the fitted tastes'
    ``tanh(taste . offer / 2)``; fatigue, ``reachable=``, ``cap_used`` and ``periods_left``
    the log's when present, else rebuilt from the contact history with the fitted parameters.
    """
    spec = fitted.spec
    cat = spec.catalog
    names = ObservationEncoder(spec, horizon).feature_names
    n = len(frame)
    x = np.zeros((n, len(names)))
    col = {c: i for i, c in enumerate(names)}
    seg = fitted.segment[episode]
    x[np.arange(n), seg] = 1.0
    for c in ("recency", "frequency", "monetary"):
        if c not in frame.columns:
            raise ValueError(f"`logs` is missing the context feature column {c!r}")
        x[:, col[c]] = frame[c].to_numpy(np.float64)
    order = np.lexsort((step, episode))
    first_of = np.r_[True, np.diff(episode[order]) != 0]
    channel = np.asarray(cat.channel_of)[_action_index(frame, cat)]
    rebuilt = []
    if "fatigue" in frame.columns:
        x[:, col["fatigue"]] = frame["fatigue"].to_numpy(np.float64)
    else:
        weights = np.r_[0.0, [c.fatigue_weight for c in cat.channels]]
        f = np.zeros(n)
        prev = 0.0
        for j, i in enumerate(order):  # a short loop over rows in time order
            f[i] = (
                0.0
                if first_of[j]
                else spec.fatigue_decay * prev + weights[channel[order[j - 1]] + 1]
            )
            prev = f[i]
        x[:, col["fatigue"]] = f / (1.0 + f)
        rebuilt.append("fatigue")
    chan_of = np.asarray(cat.channel_of)
    for k, ch in enumerate(cat.channels):
        name = f"reachable={ch.name}"
        if name in frame.columns:
            x[:, col[name]] = frame[name].to_numpy(np.float64)
        else:
            x[:, col[name]] = masks[:, chan_of == k].any(axis=1)
            rebuilt.append(name)
    if "cap_used" in frame.columns:
        x[:, col["cap_used"]] = frame["cap_used"].to_numpy(np.float64)
    else:
        sent = (channel >= 0).astype(np.float64)
        recent = np.zeros(n)
        ep_o, st_o, sent_o = episode[order], step[order], sent[order]
        for lag in range(1, spec.cap_window):
            prev_ok = np.r_[np.zeros(lag, bool), (ep_o[lag:] == ep_o[:-lag])]
            prev_ok &= np.r_[np.zeros(lag, bool), (st_o[lag:] - st_o[:-lag]) < spec.cap_window]
            recent[order] += np.where(prev_ok, np.r_[np.zeros(lag), sent_o[:-lag]], 0.0)
        x[:, col["cap_used"]] = recent / spec.contact_cap
        rebuilt.append("cap_used")
    aff_cols = [f"affinity={o.name}" for o in cat.offers]
    if all(c in frame.columns for c in aff_cols):
        for c in aff_cols:
            x[:, col[c]] = frame[c].to_numpy(np.float64)
    else:
        aff = fitted.tastes @ np.asarray(spec.offer_tastes).T
        x[:, [col[c] for c in aff_cols]] = np.tanh(0.5 * aff)[episode]
        rebuilt.append("affinity=<offer> (from the fitted tastes)")
    if "periods_left" in frame.columns:
        x[:, col["periods_left"]] = frame["periods_left"].to_numpy(np.float64)
    else:
        x[:, col["periods_left"]] = (horizon - step) / horizon
        rebuilt.append("periods_left")
    if rebuilt:
        notes.append(
            "the log lacks the observation column(s) "
            f"{rebuilt}: the policies were evaluated on logged rows with them rebuilt from the "
            "contact history and the fitted parameters"
        )
    return names, x


def _action_index(frame: pd.DataFrame, catalog: Any) -> np.ndarray:
    index = {a: i for i, a in enumerate(catalog.action_names)}
    return np.array([index[a] for a in frame["action"].astype(str)], dtype=np.int64)


class ClonedLoggingPolicy:
    """The logging policy as the log shows it: a decision tree of logged action on context.

    A real log does not ship its logging policy as code; to replay it in the fitted world,
    a ``DecisionTreeClassifier`` (scikit-learn; leaves of at least ``min_leaf`` decisions,
    depth at most ``max_depth``) learns the logged action's frequencies from the fitted
    world's observation of each logged row (rule-based targeting on recency, frequency and
    contacts is what trees cut on). At decision time its leaf frequencies are restricted to
    the allowed actions and renormalized (uniform over the allowed actions where the leaf has
    none of them). The tree is grown on at most ``max_rows`` rows drawn at random (seeded):
    a deep tree on a million rows costs minutes and learns the same rules.
    """

    name = "logging policy (cloned from the log)"

    def __init__(
        self,
        features: np.ndarray,
        actions: np.ndarray,
        n_actions: int,
        seed: int,
        min_leaf: int = 50,
        max_depth: int = 12,
        max_rows: int = 50_000,
    ) -> None:
        from sklearn.tree import DecisionTreeClassifier

        check_scalar(min_leaf, "min_leaf", int, min_val=1)
        check_scalar(max_depth, "max_depth", int, min_val=1)
        check_scalar(max_rows, "max_rows", int, min_val=1)
        self.n_actions = n_actions
        rows = np.arange(features.shape[0])
        if rows.size > max_rows:
            rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
        self.tree = DecisionTreeClassifier(
            min_samples_leaf=min_leaf, max_depth=max_depth, random_state=seed
        )
        self.tree.fit(features[rows], actions[rows])
        self.classes = np.asarray(self.tree.classes_, dtype=np.int64)

    def describe(self) -> str:
        """Name for reports."""
        return self.name

    def probabilities(self, obs: np.ndarray, masks: np.ndarray, sim: Any) -> np.ndarray:
        """Leaf frequencies on the allowed actions (the population protocol)."""
        probs = np.zeros((obs.shape[0], self.n_actions))
        probs[:, self.classes] = self.tree.predict_proba(np.asarray(obs, dtype=np.float64))
        probs *= masks
        total = probs.sum(axis=1, keepdims=True)
        uniform = masks / np.maximum(masks.sum(axis=1, keepdims=True), 1)
        return np.where(total > 0, probs / np.where(total > 0, total, 1.0), uniform)


# ---------------------------------------------------------------------- the report
@dataclass(frozen=True)
class FidelityReport:
    """The tables of a fidelity report and the files written."""

    rates: pd.DataFrame
    """observed vs simulated rates: group, key, rate, observed (+ Wilson low/high, trials),
    simulated (+ low/high, trials), rel_diff, within_10pct"""
    distributions: pd.DataFrame
    """KS score of basket value, recency, frequency: variable, ks_statistic, p_value, ..."""
    policies: pd.DataFrame
    """policy, fitted_value (+ ci), dr / snipw per-customer estimates (+ ci), ess"""
    spearman: dict[str, float]
    """Spearman rho of the fitted-world values against each OPE estimator's"""
    topics: pd.DataFrame | None
    """each segment's top feedback topics and words (``None`` without feedback)"""
    notes: tuple[str, ...]
    """what the fit could not do and what the report assumed"""
    paths: dict[str, Path] = field(default_factory=dict)
    """``report`` (report.md) and each figure, by name"""

    def within(
        self, group: str = "segment", rates: Sequence[str] = ("open", "conversion", "optout")
    ) -> tuple[int, int]:
        """(rows within 10% relative, rows compared) of one group kind and some rates."""
        sel = self.rates[(self.rates["group"] == group) & self.rates["rate"].isin(rates)]
        sel = sel[np.isfinite(sel["rel_diff"].to_numpy(float))]
        return int(sel["within_10pct"].sum()), len(sel)


def fidelity_report(
    fitted: FittedSimulator,
    logs: str | os.PathLike[str] | pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    policies: Sequence[str | tuple[str, Any]] = DEFAULT_POLICIES,
    seed: int = 0,
    simulated_customers: int | None = None,
    logging_policy: Any | None = None,
    feedback: str | os.PathLike[str] | pd.DataFrame | None = None,
    reward_model: str = "hgb",
    progress: bool = True,
) -> FidelityReport:
    """Compare a fitted world with the logs it was fitted on; write ``report.md`` and figures.

    Args:
        fitted: The fitted simulator (:func:`~campaignrl.simulators.fit.fit_simulator` or
            :func:`~campaignrl.simulators.fit.load_fitted`).
        logs: The decision log it was fitted on (DataFrame, ``.parquet`` or ``.csv``).
        out_dir: Folder to write ``report.md``, ``rates.png``, ``distributions.png`` and
            ``policies.png`` into (created if needed; the files are built in a temporary
            folder and moved in only when all of them are written).
        policies: Policies to rank: baseline names (``random``, ``no-contact``,
            ``static-best``, ``rfm-rules``, ``restrained-oracle`` is refused: it reads the
            simulator's hidden state), ``myopic`` (the fitted world's myopic policy), or
            ``(name, policy)`` pairs of population policies that read only the observation.
        seed: Seed of every simulation, of the logging policy's clone, static-best's pilot and
            the reward model's folds.
        simulated_customers: Customers simulated for the rates and the policy values
            (default: the rates on ``min(5 x episodes, 200,000)`` but at least as many as the
            log has episodes, the values on as many as the log has episodes).
        logging_policy: The policy that wrote the log, as a population policy; default: a
            clone learned from the log (:class:`ClonedLoggingPolicy`).
        feedback: The feedback text the fit used (``customer_id``, ``text``), to list each
            segment's top topics.
        reward_model: The DR reward model: ``hgb`` (gradient boosting, as ``campaignrl ope``)
            or ``ridge`` (faster, linear).
        progress: Show progress bars.

    Returns:
        The :class:`FidelityReport`.

    Raises:
        ValueError: On a bad argument (naming it), a log whose customers the fit does not
            know, or a log without the columns a comparison needs.
    """
    if not isinstance(fitted, FittedSimulator):
        raise ValueError(f"`fitted` must be a FittedSimulator, got {type(fitted).__name__}")
    check_scalar(seed, "seed", int, min_val=0)
    if simulated_customers is not None:
        check_scalar(simulated_customers, "simulated_customers", int, min_val=2, max_val=10**7)
    check_choice(reward_model, "reward_model", ("hgb", "ridge"))
    if isinstance(policies, str) or not isinstance(policies, Sequence):
        raise ValueError(
            f"`policies` must be a sequence of names or (name, policy), got {policies!r}"
        )
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out_dir` must be a folder, got the file {str(out)!r}")
    frame = load_frame(logs, "logs")
    missing = [c for c in (*REQUIRED_COLUMNS, *RFM_FEATURES) if c not in frame.columns]
    if missing:
        raise ValueError(f"`logs` is missing column(s) {missing}")
    spec = fitted.spec
    cat = spec.catalog
    notes: list[str] = []

    # The fit's segment of every logged row, by customer id (never the log's segment= columns).
    seg_of = pd.Series(
        np.asarray(fitted.segment), index=pd.Index(np.asarray(fitted.customer_ids).astype(str))
    )
    seg_of = seg_of[~seg_of.index.duplicated()]
    ids = frame["customer_id"].astype(str)
    seg_idx = ids.map(seg_of)
    if seg_idx.isna().any():
        unknown = ids[seg_idx.isna()]
        raise ValueError(
            f"`logs` has {unknown.nunique()} customer(s) the fitted simulator does not know "
            f"(e.g. {unknown.iloc[0]!r}): pass the log the simulator was fitted on"
        )
    seg_idx = seg_idx.to_numpy(np.int64)
    seg_names = np.asarray(spec.segment_names, dtype=object)
    feature_cols = [
        str(c)
        for c in frame.columns
        if c not in set(REQUIRED_COLUMNS) | {"position"} | set(OUTCOMES)
        and not str(c).startswith(MASK_PREFIX)
    ]
    data = read_logs(frame, action_names=cat.action_names, feature_columns=feature_cols)
    if data.episode_ids is None or data.steps is None:
        raise ValueError("`logs` needs the episode_id and step columns")
    if data.masks is None:
        raise ValueError(
            f"`logs` needs the {mask_column(cat.action_names[0])!r}... mask columns (the actions "
            "allowed at each decision), as the fit does"
        )
    episode = np.asarray(data.episode_ids)
    step = np.asarray(data.steps)
    horizon = int(step.max()) + 1
    n_episodes = int(episode.max()) + 1
    # the fit's per-episode arrays, in this log's episode order
    ep_first = pd.Series(np.arange(len(frame))).groupby(episode).first().to_numpy()
    ep_seg = seg_idx[ep_first]
    ep_tastes = _episode_tastes(fitted, ids.to_numpy()[ep_first])
    # the fit seen in this log's episode order (the same log: the same customers)
    view = dataclasses.replace(
        fitted, customer_ids=ids.to_numpy()[ep_first], segment=ep_seg, tastes=ep_tastes
    )
    n_sim = simulated_customers or n_episodes
    # The simulated rates are compared with the observed ones: with as many customers as
    # the log, their own noise equals the log's and a right model missed 10% on rare
    # opt-outs; five times as many (capped, for memory) leaves mostly the log's noise.
    n_rates = simulated_customers or max(n_episodes, min(5 * n_episodes, 200_000))
    missing_outcomes = [
        c for c in ("opened", "purchased", "unsubscribed") if c not in frame.columns
    ]
    if missing_outcomes:
        notes.append(
            f"the log has no {missing_outcomes} column(s): the rates that need them are not "
            "compared"
        )
    if any(str(c).startswith("segment=") for c in frame.columns):
        notes.append(
            "the log's own segment=<name> columns were not read: a logged customer's segment "
            "is the fit's assignment"
        )
    clustered = (fitted.diagnostics or {}).get("segments", {}).get("columns", [])
    if any(str(c).startswith("segment=") for c in clustered):
        notes.append(
            "the fit clustered on the log's segment=<name> columns (a simulated log's true "
            "segments): its segments are then recovered by construction, and these rates "
            "say how well a log with a segment model is fitted, not one without"
        )

    resolved = _resolve_policies(policies, spec, horizon, seed)
    names, x_log = _log_observations(
        frame, view, episode, step, np.asarray(data.masks), horizon, notes
    )
    total_steps = 3 + len(resolved)
    with progress_bar("fidelity report", total_steps, progress) as advance:
        # 1-2. the fitted world under the logging policy
        if logging_policy is None:
            logging_policy = ClonedLoggingPolicy(
                x_log, np.asarray(data.actions), cat.n_actions, seed
            )
            notes.append(
                "the logging policy was not given: the simulated side replays a clone of it "
                "(a decision tree of the logged action on the observation: depth <= 12, "
                "leaves of 50+ decisions, grown on <= 50,000 logged rows)"
            )
        from campaignrl.rollout import mean_ci95, run_policy

        sim_log = run_policy(
            spec,
            logging_policy,
            n_customers=n_rates,
            horizon=horizon,
            seed=seed,
            record=True,
            progress=progress,
        ).log
        if sim_log is None:  # record=True always builds the log
            raise RuntimeError("run_policy(record=True) returned no log")
        sim_seg_cols = [f"segment={s}" for s in spec.segment_names]
        sim_seg = seg_names[sim_log[sim_seg_cols].to_numpy().argmax(axis=1)]
        obs_rows = _canonical(frame, seg_names[seg_idx], cat)
        sim_rows = _canonical(sim_log, sim_seg, cat)
        rates = _compare_rates(observed_rates(obs_rows), observed_rates(sim_rows))
        dist_obs, dist_sim = _marginals(frame), _marginals(sim_log)
        distributions = ks_scores(dist_obs, dist_sim)
        advance(1)

        # 3. policy values in the fitted world and their OPE estimates from the logs
        ope_data = LoggedData(
            actions=data.actions,
            rewards=data.rewards,
            propensities=data.propensities,
            action_names=data.action_names,
            features=x_log,
            feature_names=names,
            episode_ids=data.episode_ids,
            steps=data.steps,
            masks=data.masks,
        )
        q_hat = _reward_predictions(ope_data, reward_model, seed)
        advance(1)
        per_customer = len(frame) / n_episodes
        sim_view = CustomerSimulator(spec, 1, horizon)
        rows = []
        for i, (label, pol) in enumerate(resolved):
            res = run_policy(spec, pol, n_customers=n_sim, horizon=horizon, seed=seed + 1)
            mean, lo, hi = mean_ci95(res.value_per_customer)
            probs = pol.probabilities(x_log, np.asarray(data.masks), sim_view)
            rows.append(
                {
                    "policy": label,
                    "fitted_value": mean,
                    "fitted_low": lo,
                    "fitted_high": hi,
                    **_ope_columns(ope_data, probs, q_hat, per_customer, seed + 2 + i),
                }
            )
            advance(1)
        policy_table = pd.DataFrame(rows)
        rho = {
            est: spearman(policy_table["fitted_value"], policy_table[est])
            for est in ("dr", "snipw")
        }
        notes.append(
            "OPE here is per decision (DR and SNIPS over the logged states, intervals "
            "cluster-robust by customer), scaled to a customer by the log's decisions per "
            f"customer ({per_customer:.3g}): it values each policy's choices in the states the "
            "logging policy reached, not the states the policy would lead to; read it as a "
            "ranking check"
        )
        topics = _topics(feedback, view, seed) if feedback is not None else None
        advance(1)

    report = FidelityReport(
        rates=rates,
        distributions=distributions,
        policies=policy_table,
        spearman=rho,
        topics=topics,
        notes=tuple(fitted.notes) + tuple(notes),
    )
    paths = _write(report, out, dist_obs, dist_sim, spec.name)
    return dataclasses.replace(report, paths=paths)


def _episode_tastes(fitted: FittedSimulator, ids: np.ndarray) -> np.ndarray:
    index = pd.Series(
        np.arange(len(fitted.customer_ids)), index=np.asarray(fitted.customer_ids).astype(str)
    )
    index = index[~index.index.duplicated()]
    return np.asarray(fitted.tastes)[index.reindex(ids.astype(str)).to_numpy(np.int64)]


def _marginals(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Basket value of purchases, recency (weeks) and frequency (purchases) of every row."""
    out: dict[str, np.ndarray] = {}
    if "basket_value" in frame.columns:
        basket = frame["basket_value"].to_numpy(np.float64)
        bought = frame["purchased"].to_numpy(bool) if "purchased" in frame.columns else basket > 0
        out["basket_value"] = basket[bought & (basket > 0)]
    out["recency_weeks"] = np.rint(frame["recency"].to_numpy(np.float64) * 52.0)
    f = np.clip(frame["frequency"].to_numpy(np.float64), 0.0, 1.0 - 1e-9)
    out["frequency"] = np.rint(_FREQ_HALF * f / (1.0 - f))
    return out


def _resolve_policies(
    policies: Sequence[str | tuple[str, Any]], spec: Any, horizon: int, seed: int
) -> list[tuple[str, Any]]:
    from campaignrl.agents.baselines import baseline_names, make_baseline
    from campaignrl.simulators.fit.myopic import SpecMyopicPolicy

    out: list[tuple[str, Any]] = []
    for i, item in enumerate(policies):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            if not callable(getattr(item[1], "probabilities", None)):
                raise ValueError(f"`policies[{i}]` has no probabilities(obs, masks, sim) method")
            out.append(item)
            continue
        if item == "myopic":
            pol: Any = SpecMyopicPolicy(spec)
            out.append((f"myopic ({spec.name})", pol))
            continue
        if not isinstance(item, str) or item not in baseline_names():
            raise ValueError(
                f"`policies[{i}]` must be 'myopic', a baseline name {list(baseline_names())} or "
                f"a (name, policy) pair, got {item!r}"
            )
        pol = make_baseline(item)
        if getattr(pol, "privileged", False):
            raise ValueError(
                f"`policies[{i}]` {item!r} reads the simulator's hidden state: it has no "
                "value on logged rows (use 'myopic', the fitted world's version)"
            )
        pol.fit(spec, horizon, np.random.default_rng(seed))
        out.append((pol.describe(), pol))
    if not out:
        raise ValueError("`policies` must name at least one policy, got none")
    return out


def _reward_predictions(data: LoggedData, kind: str, seed: int) -> np.ndarray:
    from campaignrl.ope.reward_model import CrossFittedRewardModel

    if kind == "ridge":
        from sklearn.linear_model import Ridge

        model: Any = Ridge(alpha=1.0)
    else:
        from sklearn.ensemble import HistGradientBoostingRegressor

        model = HistGradientBoostingRegressor(max_iter=100, random_state=0)
    # Gradient boosting's OpenMP threads spin-wait on a busy 2-core machine: measured 51 s
    # against 2.9 s on one thread for a 12,000-row log.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return CrossFittedRewardModel(model).fit_predict(data, rng=seed)


def _ope_columns(
    data: LoggedData, probs: np.ndarray, q_hat: np.ndarray, scale: float, seed: int
) -> dict[str, float]:
    from campaignrl.ope.estimators import DR, SNIPS
    from campaignrl.ope.evaluate import evaluate
    from campaignrl.ope.target import TargetPolicy

    target = TargetPolicy(np.asarray(probs, dtype=np.float64), per_row=True)
    ev = evaluate(data, target, [DR(), SNIPS()], estimated_rewards=q_hat, method="normal", rng=seed)
    out: dict[str, float] = {}
    for est in ev.estimates:
        name = est.estimator
        out[name] = est.value * scale
        out[f"{name}_low"] = est.ci_low * scale
        out[f"{name}_high"] = est.ci_high * scale
    out["ess"] = ev.diagnostics.effective_sample_size
    return out


def _topics(feedback: Any, fitted: FittedSimulator, seed: int) -> pd.DataFrame:
    from campaignrl.simulators.fit.feedback import segment_topics, topic_features

    settings = fitted.diagnostics.get("settings", {}) if fitted.diagnostics else {}
    n_topics = int(settings.get("n_topics", 5))
    table = load_frame(feedback, "feedback")
    feats, summary = topic_features(
        table, fitted.customer_ids, n_topics=n_topics, seed=int(settings.get("seed", seed))
    )
    return segment_topics(feats, fitted.segment, summary, segment_names=fitted.spec.segment_names)


# ---------------------------------------------------------------------- writing
def _md_table(frame: pd.DataFrame, floats: str = "{:.4g}") -> str:
    def cell(v: Any) -> str:
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v):
                return ""
            return f"{v:,.0f}" if abs(float(v)) >= 1e4 else floats.format(v)
        return str(v)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _markdown(report: FidelityReport, world: str) -> str:
    r = report.rates
    lines = [f"# Fidelity report: {world}", ""]
    lines += ["## 1. Observed vs simulated rates", ""]
    lines.append(
        "Observed: the log, by the fit's segment of each customer. Simulated: the fitted world "
        "under the logging policy, on five times the log's customers (at most 200,000) and as "
        "many periods. 95% Wilson "
        "intervals; `rel_diff` = (simulated - observed) / observed; `within` = |rel_diff| <= 10%; "
        "`CIs overlap`: the two intervals overlap (the gap may be sampling noise)."
    )
    lines.append("")
    for group in ("segment", "all", "channel", "offer", "segment x channel"):
        part = r[r["group"] == group]
        if part.empty:
            continue
        k, n = report.within(group, ("open", "conversion", "optout"))
        lines += [f"### by {group}: {k} of {n} open/conversion/opt-out rates within 10%", ""]
        show = pd.DataFrame(
            {
                group: part["key"],
                "rate": part["rate"],
                "observed": [
                    f"{v:.4f} [{a:.4f}, {b:.4f}]"
                    for v, a, b in zip(
                        part["observed"], part["observed_low"], part["observed_high"], strict=True
                    )
                ],
                "n": part["observed_trials"],
                "simulated": [
                    f"{v:.4f} [{a:.4f}, {b:.4f}]"
                    for v, a, b in zip(
                        part["simulated"],
                        part["simulated_low"],
                        part["simulated_high"],
                        strict=True,
                    )
                ],
                "rel_diff": [f"{v:+.1%}" if np.isfinite(v) else "" for v in part["rel_diff"]],
                "within": part["within_10pct"],
                "CIs overlap": part["intervals_overlap"],
            }
        )
        lines += [_md_table(show), ""]
    lines += ["![rates](rates.png)", "", "## 2. Marginal distributions (two-sample KS)", ""]
    lines.append(
        "D = largest gap between the observed and simulated ECDFs (0: same distribution). "
        "With this many rows any gap is significant: read D first."
    )
    lines += ["", _md_table(report.distributions), "", "![distributions](distributions.png)", ""]
    lines += ["## 3. Policy values: fitted world vs off-policy estimates from the log", ""]
    lines.append(
        "Value per customer over the log's periods. `fitted_value` is simulated in the fitted "
        "world; `dr` and `snipw` are estimated from the logged decisions alone (95% intervals). "
        "If the fitted world is right, both columns rank the policies alike."
    )
    lines += ["", _md_table(report.policies), ""]
    lines += [
        f"Spearman rank correlation, fitted world vs DR: {report.spearman['dr']:.3f}; "
        f"vs SNIPS: {report.spearman['snipw']:.3f}.",
        "",
        "![policies](policies.png)",
        "",
    ]
    if report.topics is not None:
        lines += ["## 4. Feedback topics by segment", "", _md_table(report.topics), ""]
    lines += ["## 5. What could not be fitted, and what this report assumed", ""]
    lines += [f"- {n}" for n in report.notes] or ["- nothing"]
    return "\n".join(lines) + "\n"


def _figure_rates(report: FidelityReport, path: Path) -> None:
    r = report.rates[report.rates["group"].isin(["segment", "channel", "offer"])]
    kinds = [k for k in RATES if (r["rate"] == k).any()]
    fig, axes = plt.subplots(1, max(len(kinds), 1), figsize=(4.2 * max(len(kinds), 1), 4.0))
    axes = np.atleast_1d(axes)
    for ax, rate in zip(axes, kinds, strict=False):
        part = r[r["rate"] == rate]
        for group, marker in (("segment", "o"), ("channel", "s"), ("offer", "^")):
            g = part[part["group"] == group]
            if g.empty:
                continue
            ax.errorbar(
                g["observed"],
                g["simulated"],
                xerr=[g["observed"] - g["observed_low"], g["observed_high"] - g["observed"]],
                yerr=[g["simulated"] - g["simulated_low"], g["simulated_high"] - g["simulated"]],
                fmt=marker,
                ms=4,
                capsize=2,
                label=group,
            )
        hi = float(np.nanmax(np.r_[part["observed_high"], part["simulated_high"], 1e-6])) * 1.05
        grid = np.linspace(0, hi, 2)
        ax.plot(grid, grid, "k-", lw=0.8)
        ax.fill_between(grid, grid * (1 - WITHIN), grid * (1 + WITHIN), color="0.85", label="+-10%")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_title(rate)
        ax.set_xlabel("observed (log)")
        ax.set_ylabel("simulated (fitted world)")
        ax.legend(fontsize=7)
    _save(fig, path)


def _figure_distributions(
    obs: dict[str, np.ndarray], sim: dict[str, np.ndarray], table: pd.DataFrame, path: Path
) -> None:
    names = list(table["variable"]) or ["recency_weeks"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6))
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, names, strict=False):
        for data, label in ((obs.get(name), "observed"), (sim.get(name), "simulated")):
            if data is None or data.size == 0:
                continue
            x = np.sort(data)
            ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", label=label)
        row = table[table["variable"] == name]
        d = f" (KS D={float(row['ks_statistic'].iloc[0]):.3f})" if len(row) else ""
        ax.set_title(name + d)
        ax.set_ylabel("ECDF")
        if name == "basket_value":
            ax.set_xscale("log")
        ax.legend(fontsize=8)
    _save(fig, path)


def _figure_policies(report: FidelityReport, path: Path) -> None:
    p = report.policies
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    for est, marker in (("dr", "o"), ("snipw", "s")):
        ax.errorbar(
            p["fitted_value"],
            p[est],
            xerr=[p["fitted_value"] - p["fitted_low"], p["fitted_high"] - p["fitted_value"]],
            yerr=[p[est] - p[f"{est}_low"], p[f"{est}_high"] - p[est]],
            fmt=marker,
            capsize=3,
            label=f"{est} (Spearman {report.spearman[est]:.2f})",
        )
    for _, row in p.iterrows():
        ax.annotate(
            str(row["policy"]),
            (row["fitted_value"], row["dr"]),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    vals = np.r_[p["fitted_value"], p["dr"], p["snipw"]]
    lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
    pad = 0.1 * max(hi - lo, 1e-6)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k-", lw=0.8)
    ax.set_xlabel("value per customer in the fitted world")
    ax.set_ylabel("off-policy estimate from the log")
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def _write(
    report: FidelityReport,
    out: Path,
    obs: dict[str, np.ndarray],
    sim: dict[str, np.ndarray],
    world: str,
) -> dict[str, Path]:
    """Build every file in a temporary folder beside ``out``; move them in only if all succeed."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _figure_rates(report, tmp / "rates.png")
        _figure_distributions(obs, sim, report.distributions, tmp / "distributions.png")
        _figure_policies(report, tmp / "policies.png")
        (tmp / "report.md").write_text(_markdown(report, world), encoding="utf-8")
        for f in tmp.iterdir():
            os.chmod(f, ordinary_mode())
        if not out.exists():
            os.chmod(tmp, ordinary_mode(directory=True))
            os.replace(tmp, out)
        else:
            for name in (*FIGURES, "report.md"):
                os.replace(tmp / name, out / name)
            tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "report": out / "report.md",
        **{name.removesuffix(".png"): out / name for name in FIGURES},
    }
