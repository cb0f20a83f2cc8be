"""Estimators against hand computations, obp's published formulas, and known truths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from campaignrl.logs.io import LoggedData
from campaignrl.ope import DM, DR, ESTIMATORS, IPS, SNIPS, DRos, SwitchDR, TargetPolicy


def _tiny_data(tiny: dict[str, np.ndarray], *, positions: bool = True) -> LoggedData:
    return LoggedData(
        actions=tiny["actions"],
        rewards=tiny["rewards"],
        propensities=tiny["propensities"],
        action_names=("a", "b", "c"),
        positions=tiny["positions"] if positions else None,
    )


def test_ips_and_snips_equal_a_hand_computation():
    # Four rows, two actions, a context-free target (0.3, 0.7); every number written out.
    data = LoggedData(
        actions=np.array([0, 1, 1, 0]),
        rewards=np.array([1.0, 2.0, 0.0, 4.0]),
        propensities=np.array([0.5, 0.25, 0.5, 0.8]),
        action_names=("x", "y"),
    )
    target = np.array([0.3, 0.7])
    # weights: 0.3/0.5 = 0.6, 0.7/0.25 = 2.8, 0.7/0.5 = 1.4, 0.3/0.8 = 0.375
    ips = (0.6 * 1.0 + 2.8 * 2.0 + 1.4 * 0.0 + 0.375 * 4.0) / 4  # = 7.7 / 4
    snips = (0.6 * 1.0 + 2.8 * 2.0 + 1.4 * 0.0 + 0.375 * 4.0) / (0.6 + 2.8 + 1.4 + 0.375)
    assert IPS().estimate_policy_value(data, target) == pytest.approx(1.925, rel=1e-12)
    assert IPS().estimate_policy_value(data, target) == pytest.approx(ips, rel=1e-9)
    assert SNIPS().estimate_policy_value(data, target) == pytest.approx(snips, rel=1e-9)
    assert SNIPS().estimate_policy_value(data, target) == pytest.approx(7.7 / 5.175, rel=1e-9)
    # clipping at 1.5: weights 0.6, 1.5, 1.4, 0.375
    clipped = (0.6 * 1.0 + 1.5 * 2.0 + 0.0 + 0.375 * 4.0) / 4
    assert IPS(lambda_=1.5).estimate_policy_value(data, target) == pytest.approx(clipped, rel=1e-9)


def _obp_by_loops(tiny: dict[str, np.ndarray], tau: float, lam: float) -> dict[str, float]:
    """obp's round rewards (obp/ope/estimators.py), written as plain loops over rows."""
    a, pos, r, ps = tiny["actions"], tiny["positions"], tiny["rewards"], tiny["propensities"]
    pi, q = tiny["target"], tiny["q"]
    n, n_actions = len(a), pi.shape[1]
    rounds: dict[str, list[float]] = {k: [] for k in ESTIMATORS}
    iws, residuals, dms = [], [], []
    for i in range(n):
        iw = pi[i, a[i], pos[i]] / ps[i]
        dm = 0.0
        for b in range(n_actions):
            dm += pi[i, b, pos[i]] * q[i, b, pos[i]]  # np.average(q, weights=pi): pi sums to 1
        q_factual = q[i, a[i], pos[i]]
        iws.append(iw)
        residuals.append(r[i] - q_factual)
        dms.append(dm)
        rounds["ipw"].append(iw * r[i])
        rounds["dm"].append(dm)
        rounds["dr"].append(dm + iw * (r[i] - q_factual))
        switch = 1.0 if iw <= tau else 0.0
        rounds["switch-dr"].append(dm + switch * iw * (r[i] - q_factual))
        shrunk = lam * iw / (iw**2 + lam)
        rounds["dr-os"].append(dm + shrunk * (r[i] - q_factual))
    mean_iw = sum(iws) / n
    for i in range(n):
        rounds["snipw"].append(r[i] * iws[i] / mean_iw)
        rounds["sndr"].append(dms[i] + iws[i] * residuals[i] / mean_iw)
    return {k: sum(v) / n for k, v in rounds.items()}


def _make(name: str, tau: float, lam: float):
    if name == "switch-dr":
        return SwitchDR(tau=tau)
    if name == "dr-os":
        return DRos(lambda_=lam)
    return ESTIMATORS[name]()


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("tau, lam", [(1.5, 2.0), (10.0, 0.5)])
def test_every_estimator_matches_obp_formulas_on_a_worked_multi_slot_example(tiny, name, tau, lam):
    expected = _obp_by_loops(tiny, tau, lam)[name]
    got = _make(name, tau, lam).estimate_policy_value(
        _tiny_data(tiny), tiny["target"], estimated_rewards=tiny["q"]
    )
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_context_free_target_equals_the_same_table_broadcast_per_row(tiny, name):
    data = _tiny_data(tiny)
    table = tiny["target"][3]  # (A, L), one context's probabilities for every row
    dense = np.broadcast_to(table, tiny["target"].shape).copy()
    est = _make(name, 1.5, 2.0)
    free = est.estimate_policy_value(data, table, estimated_rewards=tiny["q"])
    rows = est.estimate_policy_value(data, dense, estimated_rewards=tiny["q"])
    assert free == pytest.approx(rows, rel=1e-12)


def test_switch_dr_and_dros_reach_dr_and_dm_at_their_extremes(tiny):
    data, target, q = _tiny_data(tiny), tiny["target"], tiny["q"]
    dr = DR().estimate_policy_value(data, target, estimated_rewards=q)
    dm = DM().estimate_policy_value(data, target, estimated_rewards=q)
    assert SwitchDR(tau=1e9).estimate_policy_value(
        data, target, estimated_rewards=q
    ) == pytest.approx(dr)
    assert SwitchDR(tau=1e-9).estimate_policy_value(
        data, target, estimated_rewards=q
    ) == pytest.approx(dm)
    assert DRos(lambda_=1e12).estimate_policy_value(
        data, target, estimated_rewards=q
    ) == pytest.approx(dr, rel=1e-6)
    assert DRos(lambda_=1e-12).estimate_policy_value(
        data, target, estimated_rewards=q
    ) == pytest.approx(dm, rel=1e-6)


def test_dm_and_dr_with_the_true_reward_function_recover_the_truth(big_bandit):
    b = big_bandit
    # With q_hat = q, DM is the conditional truth exactly; DR adds a mean-zero correction.
    conditional = float((b.target * b.q_true).sum(axis=1).mean())
    dm = DM().estimate_policy_value(b.data, b.target, estimated_rewards=b.q_true)
    assert dm == pytest.approx(conditional, rel=1e-12)
    assert dm == pytest.approx(b.truth, rel=0.02)
    est = DR().estimate_interval(b.data, b.target, estimated_rewards=b.q_true, method="normal")
    assert est.value == pytest.approx(b.truth, rel=0.02)
    assert est.ci_low <= b.truth <= est.ci_high


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_is_close_to_the_truth_on_a_large_log(big_bandit, name):
    b = big_bandit
    # A reward model that is right on average but noisy per action: DR-family must correct it.
    noise = np.random.default_rng(7).normal(0.0, 0.1, size=b.q_true.shape[1])
    q_hat = b.q_true + noise
    value = _make(name, 20.0, 5.0).estimate_policy_value(b.data, b.target, estimated_rewards=q_hat)
    tolerance = 0.25 if name == "dm" else 0.05  # DM inherits the model's bias
    assert value == pytest.approx(b.truth, rel=tolerance)


def test_snips_is_invariant_to_scaling_all_propensities(bandit):
    d = bandit.data
    scaled = LoggedData(d.actions, d.rewards, d.propensities * 0.37, d.action_names)
    base = SNIPS().estimate_policy_value(d, bandit.target)
    assert SNIPS().estimate_policy_value(scaled, bandit.target) == pytest.approx(base, rel=1e-12)
    # IPS is not: it scales by 1 / 0.37.
    ips = IPS().estimate_policy_value(d, bandit.target)
    assert IPS().estimate_policy_value(scaled, bandit.target) == pytest.approx(ips / 0.37)


def test_single_slot_log_accepts_a_2d_reward_matrix(tiny):
    data = _tiny_data(tiny, positions=False)
    target, q = tiny["target"][:, :, 0], tiny["q"][:, :, 0]
    w = target[np.arange(6), tiny["actions"]] / tiny["propensities"]
    dm = (target * q).sum(axis=1)
    expected = float(np.mean(dm + w * (tiny["rewards"] - q[np.arange(6), tiny["actions"]])))
    assert DR().estimate_policy_value(data, target, estimated_rewards=q) == pytest.approx(expected)
    # A context-free (A,) target on a multi-slot log applies at every position.
    multi = _tiny_data(tiny)
    flat = np.array([0.2, 0.5, 0.3])
    v1 = IPS().estimate_policy_value(multi, flat)
    v2 = IPS().estimate_policy_value(multi, np.stack([flat, flat], axis=1))
    assert v1 == pytest.approx(v2)


@pytest.mark.parametrize(
    "factory, err, match",
    [
        (lambda: IPS(lambda_=-1.0), ValueError, "`lambda_` must be > 0.0, got -1.0"),
        (lambda: IPS(lambda_=0), ValueError, "`lambda_` must be > 0.0, got 0"),
        (lambda: IPS(lambda_="1"), TypeError, "`lambda_` must be of type int or float"),
        (lambda: IPS(lambda_=math.inf), ValueError, "`lambda_` must be finite"),
        (lambda: SwitchDR(tau=0.0), ValueError, "`tau` must be > 0.0, got 0.0"),
        (lambda: SwitchDR(tau=math.nan), ValueError, "`tau` must be finite"),
        (lambda: SwitchDR(tau=True), TypeError, "`tau` must be of type int or float, got bool"),
        (lambda: DRos(lambda_=-2), ValueError, "`lambda_` must be > 0.0, got -2"),
        (lambda: DRos(lambda_=math.inf), ValueError, "`lambda_` must be finite"),
        (lambda: SwitchDR(), TypeError, "tau"),  # required: no default collapses it to DR/DM
        (lambda: DRos(), TypeError, "lambda_"),
    ],
)
def test_invalid_hyperparameters_are_refused(factory, err, match):
    with pytest.raises(err, match=match):
        factory()


def test_estimators_are_frozen_and_named_like_obp():
    with pytest.raises(AttributeError):
        SwitchDR(tau=2.0).tau = 3.0  # type: ignore[misc]
    assert {k: v.estimator_name for k, v in ESTIMATORS.items()} == {
        "dm": "dm",
        "ipw": "ipw",
        "snipw": "snipw",
        "dr": "dr",
        "sndr": "sndr",
        "switch-dr": "switch-dr",
        "dr-os": "dr-os",
    }
    assert TargetPolicy(np.array([1.0])).n_actions == 1
