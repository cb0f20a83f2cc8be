"""The sweep plot: an agent's value with its 95% interval against each swept setting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: runs on servers and CI without a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from campaignrl._fs import ordinary_mode

__all__ = ["plot_sweep"]


def _numeric(values: pd.Series) -> np.ndarray | None:
    """The values as floats, or ``None`` if any is not a number (bools, names, lists)."""
    out = []
    for v in values:
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.number):
            return None
        out.append(float(v))
    return np.asarray(out)


def plot_sweep(
    table: pd.DataFrame,
    settings: Sequence[str],
    path: str | Path,
    title: str,
    *,
    log_settings: Sequence[str] = (),
) -> Path:
    """One panel per swept setting: each trial's value per customer and 95% interval.

    Numeric settings go on a numeric axis (logarithmic for ``log_settings``, e.g. those
    drawn ``loguniform``, and when all are positive and span a factor of 100 or more, as
    learning rates do); others (true/false, names, lists) are
    categories in the order first seen. Trials that vary other settings too share an x
    position, so every trial is a point; the best trial (``best``) is drawn in orange.
    Failed trials (no value) are left out.

    Args:
        table: One agent's rows of ``sweep.csv`` (``value_per_customer``, ``ci95_low``,
            ``ci95_high``, ``best`` and a column per setting).
        settings: The swept settings of that agent.
        path: The PNG to write (atomically).
        title: The figure title.
        log_settings: Settings to show on a logarithmic axis (if all their values are > 0).
    """
    done = table.dropna(subset=["value_per_customer"])
    n = max(1, len(settings))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], settings or ["trial"], strict=True):
        x_raw = done[name]
        x = _numeric(x_raw)
        if x is None:
            labels = list(dict.fromkeys(str(v) for v in x_raw))
            x = np.array([labels.index(str(v)) for v in x_raw], dtype=float)
            ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
        elif len(x) and x.min() > 0 and (name in log_settings or x.max() / x.min() >= 100):
            ax.set_xscale("log")
        y = done.value_per_customer.to_numpy(float)
        lo = done.ci95_low.to_numpy(float)
        hi = done.ci95_high.to_numpy(float)
        best = done.best.to_numpy(bool)
        for mask, color, label in ((~best, "tab:blue", "trial"), (best, "tab:orange", "best")):
            if mask.any():
                ax.errorbar(
                    x[mask],
                    y[mask],
                    yerr=[y[mask] - lo[mask], hi[mask] - y[mask]],
                    fmt="o",
                    color=color,
                    capsize=3,
                    label=label,
                )
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("profit per customer (95% CI)")
    axes[0][-1].legend(loc="best", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fig.savefig(tmp, dpi=110, format="png")
        tmp.chmod(ordinary_mode())
        tmp.replace(out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out
