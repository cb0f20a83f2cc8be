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
