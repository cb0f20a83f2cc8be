"""Targets from exported policies: feature columns looked up by name, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from campaignrl.logs.io import LoggedData
from campaignrl.ope.policy_target import load_policy_target, policy_target
from campaignrl.policies import ConstantPolicy, save_policy


class Echo:
    """A policy whose probabilities reveal the features it was given."""

    feature_names = ("b", "a")
    action_names = ("x", "y")

    def __init__(self) -> None:
        self.seen: np.ndarray | None = None

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        self.seen = features
        p = 1.0 / (1.0 + np.exp(-features[:, 0]))
        return np.column_stack([p, 1.0 - p])


def _log(feature_names: tuple[str, ...]) -> LoggedData:
    return LoggedData(
        actions=np.array([0, 1]),
        rewards=np.array([1.0, 0.0]),
        propensities=np.array([0.5, 0.5]),
        action_names=("x", "y"),
        features=np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        feature_names=feature_names,
    )


def test_features_are_taken_by_name_in_the_policy_order():
    policy = Echo()
    target = policy_target(policy, _log(("a", "c", "b")))
    assert policy.seen is not None and policy.seen.tolist() == [[3.0, 1.0], [6.0, 4.0]]
    assert target.per_row and target.probs.shape == (2, 2)


def test_missing_feature_columns_are_named():
    with pytest.raises(ValueError, match=r"lacks the policy's feature column\(s\) \['b'\]"):
        policy_target(Echo(), _log(("a", "c", "d")))


def test_other_actions_are_refused():
    policy = Echo()
    policy.action_names = ("x", "z")
    with pytest.raises(ValueError, match="are not the log's"):
        policy_target(policy, _log(("a", "b", "c")))


def test_load_from_a_directory(tmp_path):
    policy = ConstantPolicy(("c", "a"), ("x", "y"), np.array([0.0, 1.0]))
    directory = save_policy(policy, tmp_path / "p")
    target = load_policy_target(directory, _log(("a", "b", "c")))
    assert target.probs.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match=r"not a directory|does not exist|no manifest"):
        load_policy_target(tmp_path / "missing", _log(("a", "b", "c")))


def test_logged_masks_make_ips_and_snips_agree_on_simulated_logs():
    """Evaluated under the logged masks, a target puts no mass where the logger could not
    act: the mean importance weight is about 1 and IPS agrees with SNIPS."""
    from campaignrl.agents.baselines import make_baseline
    from campaignrl.logs.io import read_logs
    from campaignrl.ope.estimators import IPS, SNIPS
    from campaignrl.policies import ConstantPolicy, Exploration
    from campaignrl.rollout import run_policy

    log = run_policy(
        "retail", make_baseline("random"), n_customers=4000, horizon=4, seed=3, record=True
    ).log
    data = read_logs(log)
    assert data.masks is not None and not data.masks.all()  # some actions were masked
    target = ConstantPolicy(
        data.feature_names, data.action_names, np.zeros(19), Exploration("softmax")
    )
    masked = policy_target(target, data)
    unmasked = policy_target(
        target, read_logs(log[[c for c in log.columns if not c.startswith("allowed=")]])
    )
    w_masked = masked.factual(data) / data.propensities
    assert abs(w_masked.mean() - 1.0) < 1e-9  # uniform target == uniform logger, row by row
    w_unmasked = unmasked.factual(data) / data.propensities
    assert w_unmasked.mean() < 0.9
    ips = IPS().estimate_policy_value(data, masked)
    snips = SNIPS().estimate_policy_value(data, masked)
    assert ips == pytest.approx(snips, rel=1e-9)


class Masked:
    """A policy that decides under masks (as campaignrl's do): uniform over allowed actions."""

    feature_names = ("a",)
    action_names = ("x", "y")

    def probabilities(self, features: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        allowed = np.ones((features.shape[0], 2), bool) if masks is None else masks
        return allowed / allowed.sum(axis=1, keepdims=True)


def test_a_masked_policy_on_a_log_without_masks_is_marked():
    from campaignrl.ope import TargetPolicy, diagnose

    plain = _log(("a", "b", "c"))
    target = policy_target(Masked(), plain)
    assert target.masks_ignored
    assert any(w.startswith("the log has no allowed=<action> columns") for w in
               diagnose(plain, target).warnings)  # fmt: skip
    assert not policy_target(Echo(), _log(("a", "b", "c"))).masks_ignored  # takes no masks
    masked = LoggedData(
        plain.actions, plain.rewards, plain.propensities, plain.action_names,
        features=plain.features, feature_names=plain.feature_names,
        masks=np.array([[True, False], [True, True]]),
    )  # fmt: skip
    under = policy_target(Masked(), masked)
    assert not under.masks_ignored
    assert under.probs.tolist() == [[1.0, 0.0], [0.5, 0.5]]
    # a policy object given directly: the log's masks reach it too
    direct = TargetPolicy.from_model(Masked(), masked)
    assert direct.probs.tolist() == [[1.0, 0.0], [0.5, 0.5]] and not direct.masks_ignored
    assert TargetPolicy.from_model(Masked(), plain).masks_ignored
