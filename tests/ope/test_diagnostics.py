"""Importance-weight diagnostics against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from campaignrl.logs.io import LoggedData
from campaignrl.ope import DM, DR, IPS, SNIPS, as_target, diagnose, effective_sample_size, evaluate
from campaignrl.ope.diagnostics import importance_weights, require_support, weight_warnings


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


# --------------------------------------------------------------------------------------------
# Warnings: one set of rules for the Python API, the table and the JSON
# --------------------------------------------------------------------------------------------

_CLEAN = {
    "n_rounds": 10_000,
    "effective_sample_size": 5000.0,
    "mean_weight": 1.0,
    "mean_weight_se": 0.01,
    "unlogged_target_mass": 0.0,
}

WARNING_RULES = [
    ("nothing to say", {}, []),
    ("unlogged mass", {"unlogged_target_mass": 0.25},
     ["the target puts 25.0% of its probability on actions the log never took or did not allow"]),
    ("unlogged mass at the threshold", {"unlogged_target_mass": 1e-3}, []),
    ("ess under 100", {"n_rounds": 5000, "effective_sample_size": 99.0},
     ["effective sample size 99 is under 100 rows"]),
    ("ess 100 of 5000 rows", {"n_rounds": 5000, "effective_sample_size": 100.0}, []),
    ("ess under 1% of rows", {"n_rounds": 1_000_000, "effective_sample_size": 9999.0},
     ["effective sample size 9999 is under 1% of the 1,000,000 rows"]),
    ("mean weight far, many ses", {"mean_weight": 0.8, "mean_weight_se": 0.05},
     ["mean importance weight 0.8 is far from 1 (4 standard errors)"]),
    ("mean weight far, within 3 ses", {"mean_weight": 0.8, "mean_weight_se": 0.1}, []),
    ("mean weight significant, within 0.1", {"mean_weight": 1.05, "mean_weight_se": 0.001}, []),
    ("mean weight with no error", {"mean_weight": 0.5, "mean_weight_se": 0.0},
     ["mean importance weight 0.5 is far from 1 (inf standard errors)"]),
    ("masks ignored", {"masks_ignored": True},
     ["the log has no allowed=<action> columns, but the target decides under action masks"]),
    ("no support", {"supported": False, "effective_sample_size": 0.0, "mean_weight": 0.0},
     ["no logged decision supports the target"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "starts"), [r[1:] for r in WARNING_RULES], ids=[r[0] for r in WARNING_RULES]
)
def test_warning_rules(change, starts):
    warnings = weight_warnings(**{**_CLEAN, **change})
    assert len(warnings) == len(starts), warnings
    for warning, start in zip(warnings, starts, strict=True):
        assert warning.startswith(start), warning


def _log(propensities, actions=None, n_actions=3, **kw) -> LoggedData:
    n = len(propensities)
    return LoggedData(
        actions=np.zeros(n, dtype=int) if actions is None else np.asarray(actions),
        rewards=np.ones(n),
        propensities=np.asarray(propensities, dtype=float),
        action_names=tuple(f"a{k}" for k in range(n_actions)),
        **kw,
    )


def test_the_mean_weight_standard_error_is_cluster_robust():
    rng = np.random.default_rng(0)
    data = _log(rng.uniform(0.2, 1.0, 400), episode_ids=np.repeat(np.arange(100), 4))
    target = np.array([1.0, 0.0, 0.0])
    w = 1.0 / data.propensities
    d = diagnose(data, target)
    sums = np.bincount(data.episode_ids, weights=w - w.mean())
    assert d.mean_weight_se == pytest.approx(np.sqrt(100 / 99 * sums @ sums) / 400)
    flat = diagnose(_log(data.propensities), target)
    assert flat.mean_weight_se == pytest.approx(w.std(ddof=1) / 20)
    assert diagnose(_log([0.5]), target).to_dict()["mean_weight_se"] is None  # one row: unknown


def test_diagnostics_carry_the_warnings_and_evaluate_passes_them_on(bandit):
    full = bandit.data
    data = LoggedData(full.actions[:500], full.rewards[:500], full.propensities[:500],
                      full.action_names)  # fmt: skip
    target = np.zeros(full.n_actions)
    target[3] = 1.0  # a deterministic target on a rarely logged action: a small ESS
    d = diagnose(data, target)
    assert d.warnings and d.warnings[0].startswith("effective sample size")
    result = evaluate(data, target, [IPS()], method="normal")
    assert result.warnings == d.warnings == result.diagnostics.warnings
    assert result.to_dict()["warnings"] == list(d.warnings)
    # the bandit fixture's own target (softmax of the truth) raises nothing
    assert diagnose(bandit.data, bandit.target).warnings == ()


def test_an_overflowing_weight_is_refused_naming_propensity_and_row():
    data = _log([0.5, 0.5, 1e-320, 0.5])
    target = np.array([0.5, 0.25, 0.25])
    match = r"`propensity` at row 2 is 1e-320: the importance weight 0.5 / 1e-320 overflows"
    with pytest.raises(ValueError, match=match):
        diagnose(data, target)
    for estimator in (IPS(), SNIPS()):
        with pytest.raises(ValueError, match=match):
            estimator.estimate_policy_value(data, target)
    # a tiny propensity under a target that never takes the action is harmless
    assert importance_weights(as_target(np.array([0.0, 0.5, 0.5]), data), data)[2] == 0.0


def test_an_unsupported_target_gets_no_estimate():
    # the target only takes action 2, which the log never took: IPS would say 0 [0, 0]
    data = _log([0.5, 0.25, 0.5, 0.8], actions=[0, 1, 1, 0])
    target = np.array([0.0, 0.0, 1.0])
    q = np.ones((4, 3))
    match = r"no logged decision supports the target: it gives probability 0 .* at all 4 rows"
    for estimator in (IPS(), SNIPS(), DM(), DR()):
        with pytest.raises(ValueError, match=match):
            estimator.estimate_interval(data, target, estimated_rewards=q, method="normal")
    with pytest.raises(ValueError, match=match):
        evaluate(data, target, [IPS()], method="normal")
    with pytest.raises(ValueError, match=match):
        require_support(np.zeros(4))
    d = diagnose(data, target)  # the diagnostics still describe the situation
    assert d.effective_sample_size == 0.0 and d.unlogged_target_mass == 1.0
    assert d.warnings[0].startswith("no logged decision supports the target")


@pytest.mark.parametrize("n_bootstrap", [1, 40, 99])
@pytest.mark.parametrize("method", ["studentized", "bootstrap"])
def test_too_few_resamples_are_refused(bandit, method, n_bootstrap):
    with pytest.raises(ValueError, match=rf"`n_bootstrap` must be >= 100 .*got {n_bootstrap}"):
        IPS().estimate_interval(
            bandit.data, bandit.target, method=method, n_bootstrap=n_bootstrap, rng=0
        )
    # normal intervals draw no resamples
    IPS().estimate_interval(bandit.data, bandit.target, method="normal", n_bootstrap=1)
