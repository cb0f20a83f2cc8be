"""Every agent through the same checks: act, update/learn, policy parity, artifacts."""

import numpy as np
import pytest
from float_bounds import assert_within_bound, mlp_probability_bound

from campaignrl.agents.bandits import BanditAgent, BanditConfig
from campaignrl.agents.qlearning import QLearningAgent, QLearningConfig
from campaignrl.agents.training import train_online
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


def make_trained_agent(name: str):
    env = CampaignVectorEnv(N_TRAIN, world="fatigue", horizon=6)
    names, actions = env.encoder.feature_names, env.action_names
    rng = np.random.default_rng(11)
    if name.startswith("ppo"):
        from campaignrl.agents.ppo import PPOAgent, PPOConfig

        activation = "relu" if name == "ppo-relu" else "tanh"
        config = PPOConfig(n_steps=6, batch_size=600, n_epochs=1, activation=activation)
        agent = PPOAgent(env, config, seed=3, rng=rng)
        agent.learn(N_TRAIN * 6)
        return agent
    if name == "qlearning":
        total = N_TRAIN * 6 * 3
        agent = QLearningAgent(
            names,
            actions,
            QLearningConfig(exploration_fraction=0.2),
            total_timesteps=total,
            rng=rng,
        )
    else:
        agent = BanditAgent(names, actions, BanditConfig(algorithm=name, alpha=0.5), rng)
        total = N_TRAIN * 6 * 3
    train_online(agent, env, total_timesteps=total, seed=5)
    return agent


@pytest.fixture(scope="module", params=AGENTS)
def trained(request):
    return request.param, make_trained_agent(request.param)


@pytest.fixture(scope="module")
def observations():
    env = CampaignVectorEnv(10_000, world="fatigue", horizon=6)
    env.reset(seed=21)
    env.step(np.random.default_rng(0).integers(0, 19, 10_000))  # some fatigue and caps
    env.step(np.random.default_rng(1).integers(0, 19, 10_000))
    return env.observe(), env.action_masks()


def test_act_returns_actions_with_their_exact_probabilities(trained, observations):
    _, agent = trained
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
    name, agent = trained
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
    name, agent = trained
    path = save_policy(agent.policy(), tmp_path / name)
    weights = path / "weights.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PolicyArtifactError, match="does not match its sha256"):
        load_policy(path)
