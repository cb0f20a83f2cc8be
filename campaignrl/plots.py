"""Plots of results people compare: values with intervals, profit over the campaign."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs on servers and CI without a display

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_policy_comparison"]


def plot_policy_comparison(
    names: Sequence[str],
    values: Sequence[float],
    ci_low: Sequence[float],
    ci_high: Sequence[float],
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
    order = np.argsort(values)
    fig, (ax_v, ax_c) = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 2.5))
    y = np.arange(len(names))
    vals = np.asarray(values)[order]
    lo = vals - np.asarray(ci_low)[order]
    hi = np.asarray(ci_high)[order] - vals
    ax_v.barh(y, vals, xerr=[lo, hi], color="#4c72b0", ecolor="black", capsize=3)
    ax_v.set_yticks(y, [names[i] for i in order])
    ax_v.set_xlabel("profit per customer over the campaign (95% interval)")
    lo_x = float(np.min(np.asarray(ci_low))) * 0.95
    ax_v.set_xlim(left=max(0.0, lo_x) if lo_x > 0 else lo_x)
    for i in order[::-1]:
        ax_c.plot(np.cumsum(reward_per_period[i]), label=names[i])
    ax_c.set_xlabel("period (week)")
    ax_c.set_ylabel("cumulative profit per customer")
    ax_c.legend(fontsize=8)
    ax_c.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
