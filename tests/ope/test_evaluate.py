"""Several estimators at once: common random numbers and the JSON shape."""

from __future__ import annotations

import json

import numpy as np
import pytest

from campaignrl.logs.io import LoggedData
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
    a = evaluate(bandit.data, bandit.target, [IPS()], n_bootstrap=100, rng=np.random.default_rng(1))
    b = evaluate(bandit.data, bandit.target, [IPS()], n_bootstrap=100, rng=np.random.default_rng(1))
    assert a == b


def test_logs_with_episodes_get_cluster_robust_intervals_by_default(bandit):
    # The same log, its 2,000 rows grouped into 100 episodes of 20.
    base = bandit.data
    episodes = LoggedData(
        base.actions,
        base.rewards,
        base.propensities,
        base.action_names,
        features=base.features,
        feature_names=base.feature_names,
        episode_ids=np.repeat(np.arange(100), 20),
    )
    kw = {"estimated_rewards": bandit.q_true, "method": "normal"}
    auto = evaluate(episodes, bandit.target, [IPS(), SNIPS(), DR()], **kw)
    rows = evaluate(episodes, bandit.target, [IPS(), SNIPS(), DR()], cluster="row", **kw)
    plain = evaluate(base, bandit.target, [IPS(), SNIPS(), DR()], **kw)
    for a, r, p in zip(auto.estimates, rows.estimates, plain.estimates, strict=True):
        assert (a.cluster, r.cluster, p.cluster) == ("episode", "row", "row")
        assert a.value == r.value == p.value
        assert (r.ci_low, r.ci_high) == (p.ci_low, p.ci_high)
        # cluster-robust: the half-width is sqrt(C/(C-1) sum E_c^2) / n, not sd/sqrt(n)
        terms = {"ipw": IPS(), "snipw": SNIPS(), "dr": DR()}[a.estimator].round_terms(
            episodes, bandit.target, estimated_rewards=bandit.q_true
        )
        e = np.bincount(episodes.episode_ids, weights=terms.influence())
        half = 1.959964 * np.sqrt(100 / 99 * e @ e) / 2000
        assert a.ci_high - a.value == pytest.approx(half, rel=1e-6)
    with pytest.raises(ValueError, match="`cluster` is 'episode' but the log has no episode_id"):
        IPS().estimate_interval(base, bandit.target, cluster="episode")
    with pytest.raises(ValueError, match=r"`cluster`.*'customer'"):
        IPS().estimate_interval(episodes, bandit.target, cluster="customer")


def test_progress_is_reported_once_per_estimator(bandit):
    calls: list[int] = []
    evaluate(bandit.data, bandit.target, [IPS(), SNIPS()], method="normal", progress=calls.append)
    assert calls == [1, 1]
