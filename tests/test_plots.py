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
    assert len(train_lines) == 2  # one per agent: the mean over seeds
    np.testing.assert_array_equal(train_lines[0].get_data()[1], [30.5, 31.5, 32.5, 33.5, 34.5])
    if with_eval:
        eval_lines = axes[0].get_lines()
        assert len(eval_lines) == 2  # one per agent: the mean over seeds
        x, y = eval_lines[0].get_data()
        np.testing.assert_array_equal(x, [100, 300, 500])  # evaluated points only
        np.testing.assert_array_equal(y, [31.0, 33.0, 35.0])


# ---------------------------------------------------------------------- units, zero, pooling


def test_value_bars_start_at_zero_and_say_the_unit(tmp_path, kept_figures):
    plot_policy_comparison(
        ["a", "b"],
        [40.0, 41.0],
        [39.5, 40.5],
        [40.5, 41.5],
        [np.ones(4), np.ones(4)],
        tmp_path / "v.png",
        "t",
    )
    ax = kept_figures[0].axes[0]
    left, right = ax.get_xlim()
    assert left == 0.0 and right >= 41.5  # the bars' length is the value
    assert ax.get_xlabel() == "profit per customer over 4 weeks ($), 95% interval"
    assert any("41.00 [40.50, 41.50]" in t.get_text() for t in ax.texts)
    legend = kept_figures[0].axes[1].get_legend()
    box = legend.get_window_extent()
    axes_box = kept_figures[0].axes[1].get_window_extent()
    assert box.x0 >= axes_box.x1  # beside the curves, never over them


@pytest.mark.parametrize(
    ("low", "high", "want"),
    [
        ([36.0, 29.0], [38.0, 31.0], (0.0, 39.9)),
        ([-12.0, 4.0], [-8.0, 6.0], (-12.9, 6.9)),
        ([-4.0, -2.0], [-2.0, 0.0], (-4.2, 0.0)),
        ([0.0], [0.0], (0.0, 0.0)),
    ],
)
def test_value_axis_limits_hold_zero_and_every_interval(low, high, want):
    got = plots.value_axis_limits(low, high)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[0] <= 0.0 <= got[1]


def test_pool_over_seeds_hand_values():
    frame = pd.DataFrame(
        {
            "agent": ["b", "b", "b", "a", "a", "b"],
            "seed": [0, 1, 2, 0, 1, 0],
            "timesteps": [10, 10, 10, 10, 10, 20],
            "value_per_customer": [1.0, 2.0, 3.0, 5.0, np.nan, 7.0],
        }
    )
    pooled = plots.pool_over_seeds(frame, "value_per_customer")
    assert list(pooled.columns) == ["agent", "timesteps", "mean", "low", "high", "n_seeds"]
    assert list(zip(pooled.agent, pooled.timesteps, strict=True)) == [
        ("b", 10),
        ("b", 20),
        ("a", 10),
    ]
    # three seeds 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3)
    first = pooled.iloc[0]
    assert first["mean"] == 2.0 and first["n_seeds"] == 3
    np.testing.assert_allclose(
        [first["low"], first["high"]], [2 - 2.484138, 2 + 2.484138], atol=1e-6
    )
    # one seed (the NaN one left out): the mean, no band
    for row in (pooled.iloc[1], pooled.iloc[2]):
        assert row["n_seeds"] == 1 and np.isnan(row["low"]) and np.isnan(row["high"])
    assert pooled.iloc[2]["mean"] == 5.0


def test_pool_over_seeds_names_missing_columns():
    with pytest.raises(ValueError, match=r"`curves` is missing column\(s\) \['seed'\]"):
        plots.pool_over_seeds(pd.DataFrame({"agent": [], "timesteps": [], "v": []}), "v")


def test_learning_curves_band_is_the_seeds_interval_and_legend_is_outside(tmp_path, kept_figures):
    plots.plot_learning_curves(_curves(False), tmp_path / "c.png", "t", periods=26)
    (fig,) = kept_figures
    (ax,) = fig.get_axes()
    assert ax.get_ylabel() == "profit per customer over 26 weeks ($)"
    assert ax.get_legend() is None and len(fig.legends) == 1  # below the panels
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    half = 12.706205 * np.std([30.0, 31.0], ddof=1) / np.sqrt(2)  # t(0.975, 1)
    np.testing.assert_allclose([band.min(), band.max()], [30.5 - half, 34.5 + half], atol=1e-5)
