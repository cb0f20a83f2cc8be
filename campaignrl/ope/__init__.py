"""Off-policy evaluation: estimators, target policies, reward models, intervals, diagnostics."""

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
)
from campaignrl.ope.records import Diagnostics, Estimate
from campaignrl.ope.reward_model import CrossFittedRewardModel
from campaignrl.ope.target import TargetPolicy, as_target

__all__ = [
    "DM",
    "DR",
    "ESTIMATORS",
    "IPS",
    "SNDR",
    "SNIPS",
    "BaseOffPolicyEstimator",
    "CrossFittedRewardModel",
    "DRos",
    "Diagnostics",
    "Estimate",
    "Evaluation",
    "RoundTerms",
    "SwitchDR",
    "TargetPolicy",
    "as_target",
    "bootstrap_interval",
    "bootstrap_values",
    "diagnose",
    "effective_sample_size",
    "evaluate",
    "normal_interval",
]
