"""Shared fixtures of the simulator-fit tests: one exploring log of a known world, one fit."""

from __future__ import annotations

import pandas as pd
import pytest

from campaignrl.agents.baselines import make_baseline
from campaignrl.rollout import run_policy
from campaignrl.simulators import get_world
from campaignrl.simulators.fit import FittedSimulator, fit_simulator

FIT_CUSTOMERS = 6_000
FIT_PERIODS = 8


@pytest.fixture(scope="session")
def fit_log() -> pd.DataFrame:
    """6,000 ``retail`` customers x 8 weeks under rfm-rules with 30% exploration."""
    res = run_policy(
        get_world("retail"),
        make_baseline("rfm-rules"),
        n_customers=FIT_CUSTOMERS,
        horizon=FIT_PERIODS,
        seed=11,
        epsilon=0.3,
        record=True,
    )
    assert res.log is not None
    return res.log


@pytest.fixture(scope="session")
def fitted(fit_log: pd.DataFrame) -> FittedSimulator:
    """The fit of :func:`fit_log` with K chosen automatically."""
    return fit_simulator(fit_log, segments="auto", seed=0)
