"""Draw docs/world.png: the segment model, the recommendation model, fatigue, and why it's an MDP.

python docs/world_figure.py [--out docs/world.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from campaignrl.agents import make_baseline
from campaignrl.rollout import run_policy
from campaignrl.simulators import CustomerSimulator, get_world


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("world.png"))
    args = parser.parse_args()
    retail, fatigue = get_world("retail"), get_world("fatigue")
    w = retail.arrays()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))

    # (a) segment model: who the customers are
    ax = axes[0, 0]
    names = retail.segment_names
    weekly = w.organic_rate * w.basket_mean * retail.margin_rate
    x = np.arange(len(names))
    ax.bar(x - 0.2, w.share, 0.4, label="share of customers", color="#4c72b0")
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, weekly, 0.4, label="organic margin / week ($)", color="#dd8452")
    ax.set_xticks(x, names)
    ax.set_ylabel("share of customers")
    ax2.set_ylabel("organic margin per week ($)")
    ax.set_title("(a) segment model: five archetypes")
    # Headroom above the tallest bars holds the legend, so it covers none of them.
    ax.set_ylim(0, 1.35 * float(w.share.max()))
    ax2.set_ylim(0, 1.35 * float(weekly.max()))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper center", ncol=2, fontsize=8)

    # (b) recommendation model: conversion after opening, segment x offer
    ax = axes[0, 1]
    sim = CustomerSimulator(retail, 20_000, 26)
    sim.reset(np.random.default_rng(0))
    st = sim.state
    offers = [o.name for o in retail.catalog.offers]
    grid = np.array([st.conversion_prob[st.segment == s].mean(axis=0) for s in range(len(names))])
    im = ax.imshow(grid * 100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(offers)), offers)
    ax.set_yticks(range(len(names)), names)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(
                j, i, f"{100 * grid[i, j]:.1f}", ha="center", va="center", color="w", fontsize=8
            )
    fig.colorbar(im, ax=ax, label="% who buy after opening (email)")
    ax.set_title("(b) recommendation model: sigmoid(base + taste.offer + discount)")

    # (c) dynamics: fatigue lowers opens and raises opt-outs
    ax = axes[1, 0]
    ax2 = ax.twinx()
    f = np.linspace(0, 8, 100)
    for spec, style in ((retail, "-"), (fatigue, "--")):
        fs = spec.arrays().fatigue_sensitivity[names.index("bargain")]
        ax.plot(
            f, np.exp(-fs * f), style, color="#4c72b0", label=f"open-rate multiplier, {spec.name}"
        )
        unsub = 100 * spec.unsubscribe_base[0] * (1 + spec.unsubscribe_fatigue_slope * f)
        ax2.plot(f, unsub, style, color="#c44e52", label=f"email opt-out % per send, {spec.name}")
    ax.set_xlabel("fatigue F  (F' = decay F + channel weight; email 1, SMS 1.5, push 0.7)")
    ax.set_ylabel("open-rate multiplier (bargain segment)")
    ax2.set_ylabel("email opt-out per send (%)")
    # The curves fill the lower 70%; the legend has the band above them to itself.
    ax.set_ylim(0, 1.45)
    ax.set_yticks(np.linspace(0, 1, 6))
    top = ax2.get_ylim()[1]
    ax2.set_ylim(0, 1.45 * top)
    ax2.set_yticks(np.arange(0, top + 1e-9, 0.5))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center", ncol=2)
    ax.set_title("(c) dynamics: fatigue lowers response, raises opt-outs")
    ax.grid(alpha=0.3)

    # (d) why it is an MDP: greedy loses to restraint in the fatigue world
    ax = axes[1, 1]
    for name in ("myopic-oracle", "restrained-oracle", "no-contact"):
        res = run_policy("fatigue", make_baseline(name), n_customers=20_000, horizon=26, seed=0)
        s = res.summary()
        ax.plot(
            np.arange(1, res.reward_per_period.shape[0] + 1),
            np.cumsum(res.reward_per_period),
            label=f"{name}: {s['value_per_customer']:.1f} [{s['ci95'][0]:.1f}, {s['ci95'][1]:.1f}]",
        )
    ax.set_xlabel("week")
    ax.set_ylabel("cumulative profit per customer ($)")
    ax.legend(fontsize=8, title="fatigue world, 20,000 customers (95% CI)", loc="upper left")
    ax.set_title("(d) profit over a campaign: greedy is not optimal")
    ax.grid(alpha=0.3)

    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
