"""The policy comparison plot."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

import campaignrl.plots as plots
from campaignrl.plots import plot_policy_comparison

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def kept_figures(monkeypatch):
    """Figures the plot function closes, kept open so the test can inspect the axes."""
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    yield figures
    monkeypatch.undo()
    for fig in figures:
        plots.plt.close(fig)


def test_writes_a_non_empty_png(tmp_path):
    path = tmp_path / "sub" / "values.png"
    out = plot_policy_comparison(
        ["random", "no-contact", "myopic-oracle"],
        [37.4, 30.1, 43.5],
        [36.4, 29.0, 42.4],
        [38.4, 31.2, 44.6],
        [np.full(26, 1.4), np.full(26, 1.1), np.full(26, 1.7)],
        path,
        "retail: 20,000 customers, 26 weeks, seed 0",
    )
    assert out == path
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 5_000
    image = mpimg.imread(path)
    height, width = image.shape[:2]
    assert width == 12 * 110  # figsize 12 inches at 110 dpi
    assert height > 200
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas


def test_accepts_a_str_path_and_one_policy(tmp_path):
    out = plot_policy_comparison(
        ["random"], [1.0], [0.5], [1.5], [np.array([0.5, 0.5])], str(tmp_path / "one.png"), "t"
    )
    assert out.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize(
    ("values", "lows", "highs"),
    [
        ([40.0, 30.0], [38.0, 29.0], [42.0, 31.0]),  # all positive
        ([-10.0, 5.0], [-12.0, 4.0], [-8.0, 6.0]),  # a policy that loses money
        ([-3.0, -1.0], [-4.0, -2.0], [-2.0, 0.0]),  # all negative
    ],
)
def test_every_interval_is_shown_in_full(tmp_path, kept_figures, values, lows, highs):
    plot_policy_comparison(
        ["a", "b"],
        values,
        lows,
        highs,
        [np.ones(4), np.ones(4)],
        tmp_path / "v.png",
        "t",
    )
    left, right = kept_figures[0].axes[0].get_xlim()
    assert left <= min(lows), (left, min(lows))
    assert right >= max(highs), (right, max(highs))


def _curves(with_eval: bool):
    rows = []
    for agent in ("ucb1", "ppo"):
        for seed in (0, 1):
            for k in range(5):
                row = {"agent": agent, "seed": seed, "timesteps": 100 * (k + 1)}
                row["value_per_customer"] = 30.0 + k + seed
                if with_eval:
                    value = np.nan if k % 2 else 31.0 + k
                    row |= {
                        "eval_value": value,
                        "eval_ci95_low": value - 1,
                        "eval_ci95_high": value + 1,
                    }
                rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("with_eval", "panels"), [(True, 2), (False, 1)])
def test_learning_curves_add_the_evaluation_panel_when_there_are_evaluations(
    tmp_path, kept_figures, with_eval, panels
):
    plots.plot_learning_curves(_curves(with_eval), tmp_path / "c.png", "t")
    (fig,) = kept_figures
    axes = fig.get_axes()
    assert len(axes) == panels
    train_lines = axes[-1].get_lines()
    assert len(train_lines) == 4  # one per agent and seed
    if with_eval:
        eval_lines = axes[0].get_lines()
        assert len(eval_lines) == 2  # one per agent: the mean over seeds
        x, y = eval_lines[0].get_data()
        np.testing.assert_array_equal(x, [100, 300, 500])  # evaluated points only
        np.testing.assert_array_equal(y, [31.0, 33.0, 35.0])
