"""Plots of results people compare: values with intervals, profit over the campaign."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: runs on servers and CI without a display

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "plot_learning_curves",
    "plot_policy_comparison",
    "pool_over_seeds",
    "value_axis_limits",
]


def value_axis_limits(
    low: Sequence[float] | np.ndarray, high: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """Axis limits for value bars: every interval in view and zero, the bars' baseline.

    A bar's length is its value only if the axis starts at zero; zooming on the intervals
    (as this plot once did) makes a 2% difference look like a factor of two.

    Examples:
        >>> value_axis_limits([36.0, 29.0], [38.0, 31.0])
        (0.0, 39.9)
        >>> value_axis_limits([-12.0], [6.0])
        (-12.9, 6.9)
    """
    lo = min(0.0, float(np.min(low)))
    hi = max(0.0, float(np.max(high)))
    pad = 0.05 * max(hi - lo, 1e-9)
    return (lo - pad if lo < 0 else 0.0, hi + pad if hi > 0 else 0.0)


def plot_policy_comparison(
    names: Sequence[str],
    values: Sequence[float],
    ci_low: Sequence[float | None],
    ci_high: Sequence[float | None],
    reward_per_period: Sequence[np.ndarray],
    path: str | Path,
    title: str,
) -> Path:
    """Value per customer with 95% intervals (left) and cumulative profit by period (right).

    The bars start at zero (their length is the value) and each is labelled with its value
    and interval, so close values stay readable; the axis says the unit and the campaign
    length (the length of ``reward_per_period``).

    Args:
        names: Policy names.
        values: Mean value per customer of each policy.
        ci_low: Lower ends of the 95% intervals.
        ci_high: Upper ends of the 95% intervals.
        reward_per_period: For each policy, mean profit per customer in each period.
        path: PNG file to write.
        title: Figure title.

    Returns:
        The path written.
    """
    lengths = {len(names), len(values), len(ci_low), len(ci_high), len(reward_per_period)}
    if len(lengths) != 1:
        raise ValueError(
            "`names`, `values`, `ci_low`, `ci_high` and `reward_per_period` must have the same "
            f"length, got {len(names)}, {len(values)}, {len(ci_low)}, {len(ci_high)}, "
            f"{len(reward_per_period)}"
        )
    order = np.argsort(values)
    fig, (ax_v, ax_c) = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 2.5))
    y = np.arange(len(names))
    vals = np.asarray(values, dtype=np.float64)[order]
    # An undefined interval (one customer) is drawn as a bar without error bars.
    low = np.asarray([np.nan if v is None else v for v in ci_low], dtype=np.float64)[order]
    high = np.asarray([np.nan if v is None else v for v in ci_high], dtype=np.float64)[order]
    low = np.where(np.isfinite(low), low, vals)
    high = np.where(np.isfinite(high), high, vals)
    ax_v.barh(y, vals, xerr=[vals - low, high - vals], color="#4c72b0", ecolor="black", capsize=3)
    ax_v.axvline(0.0, color="black", linewidth=0.8)
    ax_v.set_yticks(y, [names[i] for i in order])
    weeks = len(reward_per_period[0]) if len(reward_per_period) else 0
    ax_v.set_xlabel(f"profit per customer over {weeks} weeks ($), 95% interval")
    ax_v.set_xlim(*value_axis_limits(low, high))
    span = ax_v.get_xlim()[1] - ax_v.get_xlim()[0]
    for k in range(len(vals)):
        interval = "" if low[k] == high[k] else f" [{low[k]:.2f}, {high[k]:.2f}]"
        inside = vals[k] >= 0.45 * ax_v.get_xlim()[1] if vals[k] > 0 else False
        ax_v.text(
            vals[k] / 2 if inside else max(high[k], 0.0) + 0.01 * span,
            y[k],
            f"{vals[k]:.2f}{interval}",
            va="center",
            ha="center" if inside else "left",
            fontsize=8,
            color="white" if inside else "black",
        )
    for i in order[::-1]:
        ax_c.plot(np.arange(1, weeks + 1), np.cumsum(reward_per_period[i]), label=names[i])
    ax_c.set_xlabel("week")
    ax_c.set_ylabel("cumulative profit per customer ($)")
    # Outside the axes, so no curve is ever hidden behind it.
    ax_c.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax_c.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


_POOLED_COLUMNS = ["agent", "timesteps", "mean", "low", "high", "n_seeds"]


def pool_over_seeds(curves: Any, column: str) -> Any:
    """Mean of ``column`` over seeds at each agent and timestep, with a 95% band.

    The band is the t interval of the mean across seeds, ``mean -+ t_{0.975, n-1} sd /
    sqrt(n)`` (``sd`` with ``n - 1``); with one seed there is none (NaN). Rows where
    ``column`` is NaN are left out.

    Args:
        curves: DataFrame with ``agent``, ``seed``, ``timesteps`` and ``column``.
        column: The value to pool (``value_per_customer``, ``eval_value``).

    Returns:
        DataFrame with ``agent``, ``timesteps``, ``mean``, ``low``, ``high``, ``n_seeds``,
        agents in order of first appearance, timesteps increasing.

    Examples:
        >>> import pandas as pd
        >>> frame = pd.DataFrame(
        ...     {"agent": "a", "seed": [0, 1], "timesteps": 10, "value_per_customer": [1.0, 3.0]}
        ... )
        >>> pool_over_seeds(frame, "value_per_customer").round(3).to_dict("records")
        [{'agent': 'a', 'timesteps': 10, 'mean': 2.0, 'low': -10.706, 'high': 14.706, 'n_seeds': 2}]
    """
    import pandas as pd
    from scipy import stats

    missing = [c for c in ("agent", "seed", "timesteps", column) if c not in curves]
    if missing:
        raise ValueError(f"`curves` is missing column(s) {missing}")
    rows = curves.dropna(subset=[column])
    if not len(rows):
        return pd.DataFrame(columns=_POOLED_COLUMNS)
    grouped = rows.groupby(["agent", "timesteps"], sort=False)[column]
    pooled = grouped.agg(mean="mean", sd="std", n_seeds="count").reset_index()
    n = pooled["n_seeds"].to_numpy()
    t = np.where(n > 1, stats.t.ppf(0.975, np.maximum(n - 1, 1)), np.nan)
    half = t * pooled["sd"].to_numpy() / np.sqrt(n)
    pooled["low"] = pooled["mean"] - half
    pooled["high"] = pooled["mean"] + half
    order = {agent: k for k, agent in enumerate(rows["agent"].unique())}
    pooled = pooled.sort_values(
        ["agent", "timesteps"], key=lambda c: c.map(order) if c.name == "agent" else c
    )
    return pooled[_POOLED_COLUMNS].reset_index(drop=True)


def plot_learning_curves(
    curves: Any, path: str | Path, title: str, *, periods: int | None = None
) -> Path:
    """Learning curves per agent against training customer-steps, pooled over seeds.

    Each agent is one line, the mean over seeds, with a band: the 95% interval of that mean
    across seeds (:func:`pool_over_seeds`). With evaluation columns (``eval_value``,
    ``eval_ci95_low``, ``eval_ci95_high``, see :mod:`campaignrl.agents.evaluation`) the left
    panel shows the policy so far on a fixed population; with a single seed its band is that
    evaluation's own 95% interval. The right (or only) panel shows each training campaign's
    profit, exploration and a new population each time included. One legend, below the
    panels, names the agents.

    Args:
        curves: DataFrame with ``agent``, ``seed``, ``timesteps``, ``value_per_customer`` and
            optionally the evaluation columns.
        path: PNG file to write.
        title: Figure title.
        periods: Campaign length in weeks, for the axis label (default: "the campaign").
    """
    evals = curves.dropna(subset=["eval_value"]) if "eval_value" in curves else curves.iloc[:0]
    panels = 2 if len(evals) else 1
    fig, axes = plt.subplots(1, panels, figsize=(8 * panels, 5.0), squeeze=False)
    ax_eval, ax_train = (axes[0, 0], axes[0, 1]) if panels == 2 else (None, axes[0, 0])
    agents = list(curves["agent"].unique()) if len(curves) else []
    colors = {agent: f"C{k % 10}" for k, agent in enumerate(agents)}
    n_seeds = int(curves["seed"].nunique()) if len(curves) else 0
    if ax_eval is not None:
        pooled = pool_over_seeds(evals, "eval_value")
        if n_seeds <= 1:  # one seed: the band is the evaluation's own interval
            own = evals.groupby(["agent", "timesteps"], sort=False)[
                ["eval_ci95_low", "eval_ci95_high"]
            ].mean()
            keys = list(zip(pooled["agent"], pooled["timesteps"], strict=True))
            pooled["low"] = own["eval_ci95_low"].reindex(keys).to_numpy()
            pooled["high"] = own["eval_ci95_high"].reindex(keys).to_numpy()
        _draw_pooled(ax_eval, pooled, colors, "o-")
        band = "95% interval of the evaluation" if n_seeds <= 1 else "95% band across seeds"
        ax_eval.set_title(f"policy so far on a fixed evaluation population ({band})", fontsize=10)
    if len(curves):
        _draw_pooled(ax_train, pool_over_seeds(curves, "value_per_customer"), colors, "-")
    else:
        ax_train.text(
            0.5, 0.5, "no learner trained", ha="center", va="center", transform=ax_train.transAxes
        )
    seeds = f"mean of {n_seeds} seeds, 95% band" if n_seeds > 1 else "one seed"
    ax_train.set_title(
        f"training campaigns (new customers, exploration included; {seeds})", fontsize=10
    )
    campaign = f"{periods} weeks" if periods is not None else "the campaign"
    for ax in axes[0]:
        ax.set_xlabel("training customer-steps")
        ax.set_ylabel(f"profit per customer over {campaign} ($)")
        ax.grid(alpha=0.3)
    if agents:
        handles = [plt.Line2D([], [], color=colors[a], label=str(a)) for a in agents]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(agents), 6), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0.0, 0.08 if agents else 0.0, 1.0, 1.0))
    return _save(fig, path, layout=False)


def _draw_pooled(ax: Any, pooled: Any, colors: dict[Any, str], style: str) -> None:
    """One mean line per agent with its band (where there is one)."""
    for agent, group in pooled.groupby("agent", sort=False):
        x = group["timesteps"].to_numpy(dtype=np.float64)
        ax.plot(x, group["mean"], style, color=colors[agent], label=str(agent), markersize=4)
        low, high = group["low"].to_numpy(np.float64), group["high"].to_numpy(np.float64)
        if np.isfinite(low).any():
            ax.fill_between(x, low, high, color=colors[agent], alpha=0.2, linewidth=0)


def _save(fig: Any, path: str | Path, *, layout: bool = True) -> Path:
    """Write ``fig`` as a PNG (creating the folder) and free it."""
    if layout:
        fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
