"""Every agent through the same checks: learn, act, policy parity, artifacts."""

import numpy as np
import pytest
from float_bounds import assert_within_bound, mlp_probability_bound

from campaignrl.agents.bandits import BanditAgent, BanditConfig
from campaignrl.agents.base import TrainingResult
from campaignrl.agents.qlearning import QLearningAgent, QLearningConfig
from campaignrl.agents.registry import make_agent
from campaignrl.envs import CampaignVectorEnv
from campaignrl.policies import MLPPolicy, PolicyArtifactError, load_policy, save_policy

AGENTS = [
    "epsilon-greedy",
    "ucb1",
    "thompson",
    "linucb",
    "lingreedy",
    "lints",
    "qlearning",
    "ppo",
    "ppo-relu",
]
N_TRAIN = 200


def make_agent_on_env(name: str):
    """A fresh agent built on its env (the env reaches every agent at construction)."""
    env = CampaignVectorEnv(N_TRAIN, world="fatigue", horizon=6)
    names, actions = env.encoder.feature_names, env.action_names
    rng = np.random.default_rng(11)
    if name.startswith("ppo"):
        from campaignrl.agents.ppo import PPOAgent, PPOConfig

        activation = "relu" if name == "ppo-relu" else "tanh"
        ppo = PPOConfig(n_steps=6, batch_size=600, n_epochs=1, activation=activation)
        return PPOAgent(env, ppo, seed=3, rng=rng), N_TRAIN * 6
    total = N_TRAIN * 6 * 3
    if name == "qlearning":
        q = QLearningConfig(exploration_fraction=0.2)
        agent = QLearningAgent(names, actions, q, total_timesteps=total, rng=rng, env=env, seed=5)
        return agent, total
    bandit = BanditConfig(algorithm=name, alpha=0.5)
    return BanditAgent(names, actions, bandit, rng, env=env, seed=5), total


def make_trained_agent(name: str):
    agent, total = make_agent_on_env(name)
    result = agent.learn(total)
    assert isinstance(result, TrainingResult)
    return agent, total, result


@pytest.fixture(scope="module", params=AGENTS)
def trained(request):
    agent, total, result = make_trained_agent(request.param)
    return request.param, agent, total, result


@pytest.fixture(scope="module")
def observations():
    env = CampaignVectorEnv(10_000, world="fatigue", horizon=6)
    env.reset(seed=21)
    env.step(np.random.default_rng(0).integers(0, 19, 10_000))  # some fatigue and caps
    env.step(np.random.default_rng(1).integers(0, 19, 10_000))
    return env.observe(), env.action_masks()


def test_act_returns_actions_with_their_exact_probabilities(trained, observations):
    _, agent, _, _ = trained
    obs, masks = observations
    probs = agent.probabilities(obs, masks)
    assert probs.shape == masks.shape
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert (probs[~masks] == 0).all()
    actions, props = agent.act(obs, masks)
    assert actions.shape == props.shape == (obs.shape[0],)
    assert masks[np.arange(obs.shape[0]), actions].all()
    np.testing.assert_allclose(props, probs[np.arange(obs.shape[0]), actions], rtol=1e-12)


def test_exported_policy_matches_the_live_agent_after_save_and_load(
    trained, observations, tmp_path
):
    name, agent, _, _ = trained
    obs, masks = observations
    path = save_policy(agent.policy(), tmp_path / name, training={"agent": name})
    loaded = load_policy(path)
    live = agent.probabilities(obs, masks)
    if isinstance(loaded, MLPPolicy):
        # PPO: torch's float32 network against numpy's, each on its own kernels. Both are
        # within float_bounds' bound of the exact probabilities (its dot-product bound holds
        # for any summation order; torch's tanh, exp and log-normalization add less than the
        # bound's allowance for numpy's 3-ulp exp), so within twice it of each other.
        _, bound = mlp_probability_bound(loaded, obs, masks)
        assert_within_bound(loaded.probabilities(obs, masks), live, 2.0 * bound)
    else:
        # The same float64 (or float32-with-float64-check) code live and loaded: equal up
        # to float64 rounding.
        np.testing.assert_allclose(loaded.probabilities(obs, masks), live, atol=1e-12, rtol=0)
    assert loaded.feature_names == agent.feature_names
    assert loaded.action_names == agent.action_names


def test_tampered_export_is_refused(trained, tmp_path):
    name, agent, _, _ = trained
    path = save_policy(agent.policy(), tmp_path / name)
    weights = path / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PolicyArtifactError, match="does not match its sha256"):
        load_policy(path)


def test_learn_trains_the_whole_budget_in_whole_campaigns(trained):
    _, _, total, result = trained
    curve = result.learning_curve
    # N_TRAIN customers x 6 periods per campaign; budgets are whole campaigns here
    assert result.timesteps == total
    assert len(curve) == total // (N_TRAIN * 6)
    assert curve["timesteps"].tolist() == [N_TRAIN * 6 * (k + 1) for k in range(len(curve))]
    assert np.isfinite(curve["value_per_customer"].to_numpy(dtype=float)).all()
    assert result.seconds > 0


def test_same_seed_learns_the_same_policy(trained, observations):
    name, agent, total, _ = trained
    again, _ = make_agent_on_env(name)
    again.learn(total)
    obs, masks = observations
    # same seeds, same process, same kernels: bit-identical
    np.testing.assert_array_equal(
        again.policy().probabilities(obs, masks), agent.policy().probabilities(obs, masks)
    )


def test_learn_goes_through_make_agent_for_every_learner():
    """make_agent gives every learner its env: learn(budget) needs nothing else."""
    for name, params in (("ucb1", {}), ("qlearning", {}), ("ppo", {"n_steps": 4, "n_epochs": 1})):
        env = CampaignVectorEnv(50, world="fatigue", horizon=4)
        agent = make_agent(name, env, params=params, total_timesteps=400, seed=2)
        assert agent.env is env
        result = agent.learn(400)
        assert result.timesteps == 400 and len(result.learning_curve) == 2


def test_an_online_agent_without_env_says_how_to_give_one():
    env = CampaignVectorEnv(10, world="fatigue", horizon=2)
    names, actions = env.encoder.feature_names, env.action_names
    agent = BanditAgent(names, actions, BanditConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"no env to learn on: pass `env`"):
        agent.learn(20)
    other = BanditAgent((*names, "x"), actions, BanditConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"`env` must have the agent's features and actions"):
        other.set_env(env, seed=0)
