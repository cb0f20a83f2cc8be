import numpy as np
import pytest

from campaignrl.agents.bandits import BANDIT_ALGORITHMS, BanditAgent, BanditConfig
from campaignrl.policies import LinearPolicy, TabularPolicy


@pytest.mark.parametrize("algorithm", ["epsilon-greedy", "ucb1", "linucb", "lingreedy"])
def test_bandit_finds_the_best_arm_of_each_segment(algorithm, segment_world, bandit_runner):
    agent = BanditAgent(
        segment_world.feature_names,
        segment_world.action_names,
        BanditConfig(algorithm=algorithm, epsilon=0.1, alpha=0.5),
        np.random.default_rng(0),
    )
    bandit_runner(agent, segment_world, periods=30, n=600, seed=1)
    obs = np.zeros((3, 4))
    obs[np.arange(3), np.arange(3)] = 1.0
    obs[:, 3] = 0.5
    greedy = agent.policy().scores(obs).argmax(axis=1)
    np.testing.assert_array_equal(greedy, segment_world.means.argmax(axis=1))


@pytest.mark.parametrize("algorithm", ["linucb", "lingreedy"])
def test_linear_bandit_learns_a_context_dependent_best_action(
    algorithm, linear_world, bandit_runner
):
    agent = BanditAgent(
        linear_world.feature_names,
        linear_world.action_names,
        BanditConfig(algorithm=algorithm, epsilon=0.1, alpha=0.2, per_segment=False),
        np.random.default_rng(0),
    )
    bandit_runner(agent, linear_world, periods=40, n=500, seed=2)
    obs = linear_world.observe(5000, np.random.default_rng(9))
    best = (obs @ linear_world.theta.T).argmax(axis=1)
    chosen = agent.policy().scores(obs).argmax(axis=1)
    assert (chosen == best).mean() > 0.95
    assert len(np.unique(best)) == 4  # the answer really depends on the context


def test_bandit_warmup_is_uniform_and_propensities_are_exact(segment_world, bandit_runner):
    agent = BanditAgent(
        segment_world.feature_names,
        segment_world.action_names,
        BanditConfig(algorithm="lingreedy", epsilon=0.2, warmup_periods=2),
        np.random.default_rng(3),
    )
    rng = np.random.default_rng(4)
    obs, _ = segment_world.observe(50, rng)
    masks = rng.random((50, 5)) < 0.6
    masks[:, 0] = True
    actions, props = agent.act(obs, masks)
    np.testing.assert_allclose(props, 1.0 / masks.sum(axis=1))
    bandit_runner(agent, segment_world, periods=3, n=300, seed=5)
    probs = agent.probabilities(obs, masks)
    actions, props = agent.act(obs, masks)
    np.testing.assert_array_equal(props, probs[np.arange(50), actions])
    assert (probs[~masks] == 0).all()
    # greedy + epsilon: the best allowed action has 1 - eps + eps/k, the others eps/k
    k = masks.sum(axis=1)
    np.testing.assert_allclose(np.sort(probs, axis=1)[:, -1], 0.8 + 0.2 / k)


def test_policy_kinds_follow_the_algorithm(segment_world, bandit_runner):
    names, actions = segment_world.feature_names, segment_world.action_names
    for algorithm, kind in (("ucb1", TabularPolicy), ("linucb", LinearPolicy)):
        agent = BanditAgent(
            names, actions, BanditConfig(algorithm=algorithm), np.random.default_rng(0)
        )
        bandit_runner(agent, segment_world, periods=2, n=100, seed=0)
        assert isinstance(agent.policy(), kind)


def test_linucb_policy_scores_equal_mabwiser_expectations(linear_world, bandit_runner):
    agent = BanditAgent(
        linear_world.feature_names,
        linear_world.action_names,
        BanditConfig(algorithm="linucb", alpha=0.7, per_segment=False),
        np.random.default_rng(0),
    )
    bandit_runner(agent, linear_world, periods=3, n=200, seed=1)
    obs = linear_world.observe(50, np.random.default_rng(2))
    expected = agent.mabs[0].predict_expectations(obs)
    table = np.array([[row[a] for a in range(4)] for row in expected])
    np.testing.assert_allclose(agent.policy().scores(obs), table, rtol=1e-9, atol=1e-9)


def test_ucb1_table_equals_mabwiser_expectations(segment_world, bandit_runner):
    agent = BanditAgent(
        segment_world.feature_names,
        segment_world.action_names,
        BanditConfig(algorithm="ucb1", alpha=1.0),
        np.random.default_rng(0),
    )
    bandit_runner(agent, segment_world, periods=3, n=300, seed=1)
    obs = np.eye(4)[:3]
    scores = agent.policy().scores(obs)
    for s, mab in enumerate(agent.mabs):
        exp = mab.predict_expectations()
        np.testing.assert_allclose(scores[s], [exp[a] for a in range(5)], rtol=1e-12)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"algorithm": "thompsonx"}, "`algorithm` must be one of"),
        ({"epsilon": 1.5}, r"`epsilon` must be <= 1.0, got 1.5"),
        ({"alpha": -1.0}, r"`alpha` must be >= 0.0, got -1.0"),
        ({"l2_lambda": 0.0}, r"`l2_lambda` must be > 0.0, got 0.0"),
        ({"warmup_periods": 0}, r"`warmup_periods` must be >= 1, got 0"),
    ],
)
def test_bad_bandit_config_is_refused_by_name(changes, match):
    with pytest.raises(ValueError, match=match):
        BanditConfig(**changes)


def test_context_free_bandit_needs_segment_columns():
    with pytest.raises(ValueError, match="segment=<name>"):
        BanditAgent(
            ("x1", "x2"), ("a", "b"), BanditConfig(algorithm="ucb1"), np.random.default_rng(0)
        )


def test_every_algorithm_is_listed():
    assert set(BANDIT_ALGORITHMS) == {"epsilon-greedy", "ucb1", "linucb", "lingreedy"}
