"""Off-policy evaluation: bandit and sequential estimators, targets, models, intervals."""

from __future__ import annotations

from campaignrl.ope.base import BaseOffPolicyEstimator
from campaignrl.ope.diagnostics import diagnose, effective_sample_size
from campaignrl.ope.estimators import DM, DR, ESTIMATORS, IPS, SNDR, SNIPS, DRos, SwitchDR
from campaignrl.ope.evaluate import Evaluation, evaluate
from campaignrl.ope.intervals import (
    RoundTerms,
    bootstrap_interval,
    bootstrap_values,
    normal_interval,
    studentized_interval,
)
from campaignrl.ope.policy_target import load_policy_target, policy_target
from campaignrl.ope.records import Diagnostics, Estimate
from campaignrl.ope.reward_model import CrossFittedRewardModel
from campaignrl.ope.sequential import (
    FQE,
    PDIS,
    SEQUENTIAL_ESTIMATORS,
    WPDIS,
    BaseSequentialEstimator,
    FittedQEvaluation,
    QEstimates,
    SequentialDR,
)
from campaignrl.ope.target import TargetPolicy, as_target

__all__ = [
    "DM",
    "DR",
    "ESTIMATORS",
    "FQE",
    "IPS",
    "PDIS",
    "SEQUENTIAL_ESTIMATORS",
    "SNDR",
    "SNIPS",
    "WPDIS",
    "BaseOffPolicyEstimator",
    "BaseSequentialEstimator",
    "CrossFittedRewardModel",
    "DRos",
    "Diagnostics",
    "Estimate",
    "Evaluation",
    "FittedQEvaluation",
    "QEstimates",
    "RoundTerms",
    "SequentialDR",
    "SwitchDR",
    "TargetPolicy",
    "as_target",
    "bootstrap_interval",
    "bootstrap_values",
    "diagnose",
    "effective_sample_size",
    "evaluate",
    "load_policy_target",
    "normal_interval",
    "policy_target",
    "studentized_interval",
]
