"""Several estimators at once: common random numbers and the JSON shape."""

from __future__ import annotations

import json

import numpy as np
import pytest

from campaignrl.ope import DR, IPS, SNIPS, Evaluation, evaluate


def test_every_estimator_sees_the_same_resamples(bandit):
    result = evaluate(bandit.data, bandit.target, [IPS(), IPS(lambda_=1e9)], n_bootstrap=100, rng=5)
    first, second = result.estimates
    assert (first.ci_low, first.ci_high) == (second.ci_low, second.ci_high)
    again = evaluate(bandit.data, bandit.target, [IPS(), IPS(lambda_=1e9)], n_bootstrap=100, rng=5)
    assert again == result


def test_the_json_shape_is_the_cli_one(bandit):
    result = evaluate(
        bandit.data,
        bandit.target,
        [IPS(), SNIPS(), DR()],
        estimated_rewards=bandit.q_true,
        method="normal",
    )
    assert isinstance(result, Evaluation)
    payload = json.loads(json.dumps(result.to_dict()))
    assert [e["estimator"] for e in payload["estimates"]] == ["ipw", "snipw", "dr"]
    assert set(payload["diagnostics"]) >= {"effective_sample_size", "max_weight"}


@pytest.mark.parametrize(
    "estimators, err, match",
    [
        ([], ValueError, "`estimators` must hold at least one"),
        ([IPS(), "dr"], TypeError, r"`estimators\[1\]` must be an off-policy estimator"),
    ],
)
def test_bad_estimator_lists_are_refused(bandit, estimators, err, match):
    with pytest.raises(err, match=match):
        evaluate(bandit.data, bandit.target, estimators)


def test_a_generator_seeds_the_run(bandit):
    a = evaluate(bandit.data, bandit.target, [IPS()], n_bootstrap=50, rng=np.random.default_rng(1))
    b = evaluate(bandit.data, bandit.target, [IPS()], n_bootstrap=50, rng=np.random.default_rng(1))
    assert a == b
