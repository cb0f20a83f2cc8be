"""Plots of results people compare: values with intervals, profit over the campaign."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: runs on servers and CI without a display

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_learning_curves", "plot_policy_comparison"]


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
    ax_v.set_yticks(y, [names[i] for i in order])
    ax_v.set_xlabel("profit per customer over the campaign (95% interval)")
    # Zoom on the intervals (bars from 0 would hide the differences), keeping all in view.
    span_lo, span_hi = float(low.min()), float(high.max())
    pad = 0.05 * max(span_hi - span_lo, 1e-9)
    ax_v.set_xlim(span_lo - pad, span_hi + pad)
    for i in order[::-1]:
        ax_c.plot(np.cumsum(reward_per_period[i]), label=names[i])
    ax_c.set_xlabel("period (week)")
    ax_c.set_ylabel("cumulative profit per customer")
    ax_c.legend(fontsize=8)
    ax_c.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def plot_learning_curves(curves: Any, path: str | Path, title: str) -> Path:
    """Learning curves per agent against training customer-steps.

    With evaluation columns (``eval_value``, ``eval_ci95_low``, ``eval_ci95_high``, see
    :mod:`campaignrl.agents.evaluation`) the left panel shows the policy so far on a fixed
    population: the mean over seeds with the seeds' mean 95% interval as a band. The right
    (or only) panel shows each training campaign's profit, one line per seed, exploration and
    a new population each time included.

    Args:
        curves: DataFrame with ``agent``, ``seed``, ``timesteps``, ``value_per_customer`` and
            optionally the evaluation columns.
        path: PNG file to write.
        title: Figure title.
    """
    evals = curves.dropna(subset=["eval_value"]) if "eval_value" in curves else curves.iloc[:0]
    panels = 2 if len(evals) else 1
    fig, axes = plt.subplots(1, panels, figsize=(8 * panels, 4.5), squeeze=False)
    ax_eval, ax_train = (axes[0, 0], axes[0, 1]) if panels == 2 else (None, axes[0, 0])
    agents = curves["agent"].unique() if len(curves) else []
    colors = {agent: f"C{k % 10}" for k, agent in enumerate(agents)}
    if ax_eval is not None:
        for agent, group in evals.groupby("agent", sort=False):
            mean = group.groupby("timesteps")[
                ["eval_value", "eval_ci95_low", "eval_ci95_high"]
            ].mean()
            x = mean.index.to_numpy()
            ax_eval.plot(x, mean["eval_value"], "o-", color=colors[agent], label=str(agent))
            ax_eval.fill_between(
                x, mean["eval_ci95_low"], mean["eval_ci95_high"], color=colors[agent], alpha=0.15
            )
        ax_eval.set_title("policy so far on a fixed evaluation population (95% band)")
        ax_eval.set_ylabel("profit per customer over the campaign")
        ax_eval.legend(fontsize=8)
    if len(curves):
        for agent, group in curves.groupby("agent", sort=False):
            # one colour per agent, one line per seed
            for i, (_, run) in enumerate(group.groupby("seed")):
                ax_train.plot(
                    run["timesteps"],
                    run["value_per_customer"],
                    color=colors[agent],
                    alpha=0.8,
                    label=str(agent) if i == 0 else None,
                )
        ax_train.legend(fontsize=8)
    else:
        ax_train.text(
            0.5, 0.5, "no learner trained", ha="center", va="center", transform=ax_train.transAxes
        )
    ax_train.set_title("training campaigns (new customers, exploration included)")
    for ax in axes[0]:
        ax.set_xlabel("training customer-steps")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("profit per customer over the campaign")
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (creating the folder) and free it."""
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
