"""The contract every bandit estimator passes (one parametrized suite, as Gymnasium does)."""

from __future__ import annotations

import numpy as np
import pytest

from campaignrl.ope import (
    DM,
    DR,
    ESTIMATORS,
    IPS,
    SNDR,
    SNIPS,
    BaseOffPolicyEstimator,
    Diagnostics,
    DRos,
    Estimate,
    SwitchDR,
)

ALL_ESTIMATORS: list[BaseOffPolicyEstimator] = [
    DM(),
    IPS(),
    IPS(lambda_=3.0),
    SNIPS(),
    DR(),
    SNDR(),
    SwitchDR(tau=3.0),
    DRos(lambda_=5.0),
]


def test_the_list_covers_every_registered_estimator():
    assert {type(e) for e in ALL_ESTIMATORS} == set(ESTIMATORS.values())


def _ids(est: BaseOffPolicyEstimator) -> str:
    return repr(est)


@pytest.fixture(scope="module")
def q_hat(bandit) -> np.ndarray:
    # A fixed, slightly wrong reward model (the contract does not depend on its quality).
    return np.clip(bandit.q_true + 0.05, 0.0, 1.0)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=_ids)
@pytest.mark.parametrize("method", ["studentized", "bootstrap", "normal"])
def test_estimate_record_and_interval_bracket_the_value(bandit, q_hat, estimator, method):
    est = estimator.estimate_interval(
        bandit.data,
        bandit.target,
        estimated_rewards=q_hat,
        method=method,
        n_bootstrap=200,
        rng=np.random.default_rng(0),
    )
    assert isinstance(est, Estimate)
    assert est.estimator == estimator.estimator_name
    assert est.method == method and est.alpha == 0.05 and est.n_rounds == bandit.data.n_rounds
    assert all(isinstance(x, float) for x in (est.value, est.ci_low, est.ci_high))
    assert est.ci_low <= est.value <= est.ci_high
    assert est.value == estimator.estimate_policy_value(
        bandit.data, bandit.target, estimated_rewards=q_hat
    )
    assert set(est.to_dict()) >= {"estimator", "value", "ci_low", "ci_high", "method"}


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=_ids)
def test_same_seed_same_interval_and_other_seed_differs(bandit, q_hat, estimator):
    def run(seed: int) -> Estimate:
        return estimator.estimate_interval(
            bandit.data, bandit.target, estimated_rewards=q_hat, n_bootstrap=100, rng=seed
        )

    assert run(3) == run(3)
    assert run(3) != run(4)
    # A Generator and its seed agree.
    via_generator = estimator.estimate_interval(
        bandit.data,
        bandit.target,
        estimated_rewards=q_hat,
        n_bootstrap=100,
        rng=np.random.default_rng(3),
    )
    assert via_generator == run(3)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=_ids)
@pytest.mark.parametrize(
    "bad_shape",
    [(4,), (2000, 4), (1999, 5), (5, 0), (2000, 5, 2, 1), (6, 3)],
)
def test_refuses_mismatched_target_shapes_naming_the_argument(bandit, q_hat, estimator, bad_shape):
    target = np.full(bad_shape, 1.0 / bad_shape[-1] if bad_shape[-1] else 0.0)
    with pytest.raises(ValueError, match=r"`target` must have shape .* got \("):
        estimator.estimate_policy_value(bandit.data, target, estimated_rewards=q_hat)


@pytest.mark.parametrize("estimator", [e for e in ALL_ESTIMATORS if e.needs_reward_model], ids=_ids)
def test_reward_model_estimators_refuse_missing_or_misshapen_predictions(bandit, estimator):
    with pytest.raises(ValueError, match="`estimated_rewards` is required"):
        estimator.estimate_policy_value(bandit.data, bandit.target)
    with pytest.raises(ValueError, match=r"`estimated_rewards` must have shape"):
        estimator.estimate_policy_value(
            bandit.data, bandit.target, estimated_rewards=np.zeros((2000, 4))
        )
    bad = np.zeros((2000, 5))
    bad[7, 2] = np.nan
    with pytest.raises(
        ValueError, match=r"`estimated_rewards` must be finite, got nan at index \(7, 2\)"
    ):
        estimator.estimate_policy_value(bandit.data, bandit.target, estimated_rewards=bad)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=_ids)
@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"alpha": 0.0}, ValueError, "`alpha` must be > 0.0"),
        ({"alpha": 1.0}, ValueError, "`alpha` must be < 1.0"),
        (
            {"method": "jackknife"},
            ValueError,
            "`method` must be one of 'studentized', 'bootstrap', 'normal'",
        ),
        ({"n_bootstrap": 0}, ValueError, "`n_bootstrap` must be >= 1"),
        ({"n_bootstrap": 10.0}, TypeError, "`n_bootstrap` must be of type int"),
        ({"rng": "seed"}, TypeError, "`rng` must be a numpy Generator"),
    ],
)
def test_interval_arguments_are_checked(bandit, q_hat, estimator, kwargs, err, match):
    with pytest.raises(err, match=match):
        estimator.estimate_interval(bandit.data, bandit.target, estimated_rewards=q_hat, **kwargs)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=_ids)
def test_refuses_something_that_is_not_logged_data(bandit, estimator):
    with pytest.raises(TypeError, match="`data` must be LoggedData"):
        estimator.estimate_policy_value({"action": [0]}, bandit.target)


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS, ids=_ids)
def test_diagnostics_are_the_same_for_every_estimator(bandit, estimator):
    diag = estimator.diagnose(bandit.data, bandit.target)
    assert isinstance(diag, Diagnostics)
    assert diag == DM().diagnose(bandit.data, bandit.target)
    assert 0 < diag.effective_sample_size <= bandit.data.n_rounds
