"""Importance-weight diagnostics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from campaignrl.logs.io import LoggedData
from campaignrl.ope import IPS, diagnose, effective_sample_size


def test_effective_sample_size_is_kish():
    w = np.array([0.5, 1.0, 2.0, 0.0])
    assert effective_sample_size(w) == pytest.approx(3.5**2 / (0.25 + 1.0 + 4.0))
    assert effective_sample_size(np.zeros(3)) == 0.0


def test_diagnostics_by_hand():
    data = LoggedData(
        actions=np.array([0, 1, 1, 0, 2]),
        rewards=np.zeros(5),
        propensities=np.array([0.5, 0.25, 0.5, 0.8, 0.1]),
        action_names=("x", "y", "z", "never"),
    )
    target = np.array([0.3, 0.5, 0.1, 0.1])
    w = [0.3 / 0.5, 0.5 / 0.25, 0.5 / 0.5, 0.3 / 0.8, 0.1 / 0.1]
    d = diagnose(data, target)
    assert d.n_rounds == 5
    assert d.effective_sample_size == pytest.approx(sum(w) ** 2 / sum(x * x for x in w))
    assert d.max_weight == pytest.approx(2.0)
    assert d.mean_weight == pytest.approx(sum(w) / 5)
    assert d.unlogged_target_mass == pytest.approx(0.1)  # action "never" is never logged
    assert IPS().diagnose(data, target) == d
    assert set(d.to_dict()) == {
        "n_rounds",
        "effective_sample_size",
        "max_weight",
        "mean_weight",
        "unlogged_target_mass",
        "mean_weight_se",
        "warnings",
    }


def test_unlogged_mass_counts_actions_the_logged_masks_did_not_allow():
    # Every action is logged somewhere, but not every action was allowed at every decision.
    masks = np.array(
        [
            [True, True, False],  # row 0: "z" not allowed
            [False, True, True],  # row 1: "x" not allowed
            [True, True, True],
            [True, False, False],  # row 3: only "x"
        ]
    )
    data = LoggedData(
        actions=np.array([0, 1, 2, 0]),
        rewards=np.zeros(4),
        propensities=np.array([0.5, 0.5, 1 / 3, 1.0]),
        action_names=("x", "y", "z"),
        masks=masks,
    )
    target = np.array([0.2, 0.3, 0.5])
    # rows: 0.5 (z), 0.2 (x), 0.0, 0.3 + 0.5 (y, z): mean 1.5 / 4
    assert diagnose(data, target).unlogged_target_mass == pytest.approx(0.375)
    # the same log without masks: every action is logged somewhere, no unsupported mass
    unmasked = LoggedData(data.actions, data.rewards, data.propensities, data.action_names)
    assert diagnose(unmasked, target).unlogged_target_mass == 0.0
    # a per-row target that respects the masks has none either
    per_row = np.where(masks, 1.0, 0.0) / masks.sum(axis=1, keepdims=True)
    assert diagnose(data, per_row).unlogged_target_mass == 0.0


def test_on_policy_evaluation_has_full_effective_sample_size(bandit):
    # The target equal to the logging policy: every weight is 1.
    d = bandit.data
    per_row = np.zeros((d.n_rounds, d.n_actions))
    per_row[np.arange(d.n_rounds), d.actions] = d.propensities
    rest = (1.0 - d.propensities) / (d.n_actions - 1)
    mask = per_row == 0
    per_row[mask] = np.repeat(rest, d.n_actions - 1)
    diag = diagnose(d, per_row)
    assert diag.effective_sample_size == pytest.approx(d.n_rounds)
    assert diag.max_weight == pytest.approx(1.0)
