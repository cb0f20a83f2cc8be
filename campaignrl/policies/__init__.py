"""Framework-free policies (numpy inference), their artifacts, and sampling."""

from __future__ import annotations

from campaignrl.policies.artifacts import (
    POLICY_KINDS,
    PolicyArtifactError,
    load_policy,
    read_manifest,
    save_policy,
)
from campaignrl.policies.base import Exploration, Policy, masked_softmax
from campaignrl.policies.kinds import ConstantPolicy, MLPPolicy, TabularPolicy
from campaignrl.policies.linear import LinearPolicy
from campaignrl.policies.sampling import (
    epsilon_mix,
    greedy_probabilities,
    sample_actions,
    uniform_probabilities,
)
from campaignrl.policies.thompson import (
    BetaThompsonPolicy,
    GaussianThompsonPolicy,
    ThompsonPolicy,
    beta_argmax_probabilities,
    gaussian_argmax_probabilities,
)

__all__ = [
    "POLICY_KINDS",
    "BetaThompsonPolicy",
    "ConstantPolicy",
    "Exploration",
    "GaussianThompsonPolicy",
    "LinearPolicy",
    "MLPPolicy",
    "Policy",
    "PolicyArtifactError",
    "TabularPolicy",
    "ThompsonPolicy",
    "beta_argmax_probabilities",
    "epsilon_mix",
    "gaussian_argmax_probabilities",
    "greedy_probabilities",
    "load_policy",
    "masked_softmax",
    "read_manifest",
    "sample_actions",
    "save_policy",
    "uniform_probabilities",
]
