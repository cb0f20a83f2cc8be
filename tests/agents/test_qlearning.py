import numpy as np
import pytest

from campaignrl.agents.base import Transition
from campaignrl.agents.qlearning import QLearningAgent, QLearningConfig

FEATURES = ("segment=all", "recency", "fatigue", "reachable=email", "cap_used", "periods_left")
ACTIONS = ("no_contact", "content@email")
HORIZON = 8


class FatigueMDP:
    """Greedy is wrong here: a tired customer still pays 0.3 for a contact, now, but resting
    one period (0) brings back a rested customer worth 1 per contact.

    rested: contact -> r = 1, tired; rest -> r = 0, rested
    tired:  contact -> r = 0.3, tired; rest -> r = 0, rested
    Optimal from rested over 8 periods: contact at t = 0, 2, 4, 6 (4 x 1), rest between, and
    contact the tired customer in the last period (0.3): 4.3. Greedy (always contact):
    1 + 7 * 0.3 = 3.1.
    """

    def obs(self, tired: np.ndarray, t: int) -> np.ndarray:
        n = tired.shape[0]
        out = np.zeros((n, len(FEATURES)))
        out[:, 0] = 1.0
        out[:, 2] = np.where(tired, 0.8, 0.0)  # F / (1 + F) with F = 4 when tired
        out[:, 3] = 1.0
        out[:, 5] = (HORIZON - t) / HORIZON
        return out

    def step(self, tired: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        contact = actions == 1
        reward = np.where(contact, np.where(tired, 0.3, 1.0), 0.0)
        return reward, contact


def train(agent: QLearningAgent, episodes: int, n: int, rng: np.random.Generator) -> None:
    mdp = FatigueMDP()
    masks = np.ones((n, 2), dtype=bool)
    for _ in range(episodes):
        tired = np.zeros(n, dtype=bool)
        for t in range(HORIZON):
            obs = mdp.obs(tired, t)
            actions, props = agent.act(obs, masks)
            reward, tired_next = mdp.step(tired, actions)
            reward = reward + 0.1 * rng.standard_normal(n)
            done = np.full(n, t == HORIZON - 1)
            next_obs = mdp.obs(tired_next, t + 1)
            agent.update(Transition(obs, masks, actions, props, reward, next_obs, masks, done))
            tired = tired_next


def greedy_return(agent: QLearningAgent) -> float:
    mdp, policy = FatigueMDP(), agent.policy()
    tired, total = np.zeros(1, dtype=bool), 0.0
    for t in range(HORIZON):
        a = policy.scores(mdp.obs(tired, t)).argmax(axis=1)
        r, tired = mdp.step(tired, a)
        total += float(r[0])
    return total


def test_qlearning_solves_an_mdp_where_greedy_is_wrong():
    config = QLearningConfig(epsilon_start=1.0, epsilon_end=0.1, exploration_fraction=0.5)
    agent = QLearningAgent(
        FEATURES, ACTIONS, config, total_timesteps=200 * 400 * HORIZON, rng=np.random.default_rng(0)
    )
    train(agent, episodes=200, n=400, rng=np.random.default_rng(1))
    mdp, policy = FatigueMDP(), agent.policy()
    # rest when tired (greedy would contact), contact when rested, contact in the last period
    for t in range(HORIZON - 1):
        tired_obs = mdp.obs(np.array([True]), t)
        rested_obs = mdp.obs(np.array([False]), t)
        assert policy.scores(tired_obs).argmax() == 0, f"contacts a tired customer at t={t}"
        assert policy.scores(rested_obs).argmax() == 1, f"rests a rested customer at t={t}"
    assert policy.scores(mdp.obs(np.array([True]), HORIZON - 1)).argmax() == 1
    assert greedy_return(agent) == pytest.approx(4.3)


def test_terminal_targets_do_not_bootstrap():
    agent = QLearningAgent(
        FEATURES, ACTIONS, QLearningConfig(), total_timesteps=10, rng=np.random.default_rng(0)
    )
    agent.q[:] = 100.0  # a bootstrapped target would carry this
    mdp = FatigueMDP()
    obs = mdp.obs(np.zeros(4, dtype=bool), HORIZON - 1)
    masks = np.ones((4, 2), dtype=bool)
    actions = np.array([1, 1, 1, 1])
    rewards = np.array([1.0, 1.0, 1.0, 1.0])
    agent.update(
        Transition(obs, masks, actions, np.ones(4), rewards, obs, masks, np.ones(4, dtype=bool))
    )
    s = agent._table.states(obs[:1])[0]
    # first visit: the step size is count / visits = 1, so Q becomes the mean target, 1
    assert agent.q[s, 1] == pytest.approx(1.0)
    assert agent.q[s, 0] == 100.0


def test_epsilon_decays_linearly_then_stays():
    cfg = QLearningConfig(epsilon_start=1.0, epsilon_end=0.1, exploration_fraction=0.5)
    agent = QLearningAgent(
        FEATURES, ACTIONS, cfg, total_timesteps=1000, rng=np.random.default_rng(0)
    )
    assert agent.epsilon == 1.0
    agent.timesteps = 250
    assert agent.epsilon == pytest.approx(0.55)
    agent.timesteps = 900
    assert agent.epsilon == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"gamma": 1.5}, r"`gamma` must be <= 1.0, got 1.5"),
        ({"n_step": 0}, r"`n_step` must be >= 1, got 0"),
        ({"learning_rate_floor": 0.0}, r"`learning_rate_floor` must be > 0.0, got 0.0"),
        ({"epsilon_end": -0.1}, r"`epsilon_end` must be >= 0.0, got -0.1"),
        ({"exploration_fraction": 2.0}, r"`exploration_fraction` must be <= 1.0, got 2.0"),
    ],
)
def test_bad_qlearning_config_is_refused_by_name(changes, match):
    with pytest.raises(ValueError, match=match):
        QLearningConfig(**changes)


def test_qlearning_needs_the_campaign_features():
    with pytest.raises(ValueError, match="needs observation features"):
        QLearningAgent(("x",), ACTIONS, QLearningConfig(), 10, np.random.default_rng(0))


TASTE_FEATURES = ("segment=all", "fatigue", "affinity=a", "affinity=b", "periods_left")
TASTE_ACTIONS = ("no_contact", "a@email", "b@email")


def taste_world_return(best_offer: bool) -> float:
    """Known answer: each customer buys only the offer they like most (reward 1, else 0).

    Without ``best_offer`` the state cannot tell the two tastes apart, so the best it can do is
    one offer for everyone: half the customers buy. With it, everyone buys.
    """
    cfg = QLearningConfig(
        gamma=0.0,
        best_offer=best_offer,
        recency_weeks=(),
        reach_and_cap=False,
        exploration_fraction=0.5,
        epsilon_end=0.0,
    )
    agent = QLearningAgent(
        TASTE_FEATURES, TASTE_ACTIONS, cfg, total_timesteps=40 * 500, rng=np.random.default_rng(3)
    )
    rng = np.random.default_rng(4)
    masks = np.ones((500, 3), dtype=bool)

    def draw() -> tuple[np.ndarray, np.ndarray]:
        likes_b = rng.random(500) < 0.5
        obs = np.zeros((500, len(TASTE_FEATURES)))
        obs[:, 0] = 1.0
        obs[:, 2] = np.where(likes_b, 0.1, 0.6)
        obs[:, 3] = np.where(likes_b, 0.7, 0.2)
        obs[:, 4] = 1.0
        return obs, likes_b

    for _ in range(40):
        obs, likes_b = draw()
        actions, props = agent.act(obs, masks)
        reward = (actions == np.where(likes_b, 2, 1)).astype(float)
        done = np.ones(500, dtype=bool)
        agent.update(Transition(obs, masks, actions, props, reward, obs, masks, done))
    obs, likes_b = draw()
    chosen = agent.policy().scores(obs).argmax(axis=1)
    return float((chosen == np.where(likes_b, 2, 1)).mean())


def test_best_offer_state_lets_qlearning_match_offers_to_tastes():
    assert taste_world_return(best_offer=True) == 1.0
    assert 0.35 < taste_world_return(best_offer=False) < 0.65


def test_best_offer_needs_affinity_features():
    with pytest.raises(ValueError, match=r"`best_offer` needs at least 2 `affinity=<offer>`"):
        QLearningAgent(
            FEATURES, ACTIONS, QLearningConfig(best_offer=True), 10, np.random.default_rng(0)
        )


def test_state_leaves_out_features_without_edges():
    cfg = QLearningConfig(recency_weeks=(), periods_left_edges=(), reach_and_cap=False)
    agent = QLearningAgent(FEATURES, ACTIONS, cfg, 10, np.random.default_rng(0))
    assert agent._table.state_features == ("segment=all", "fatigue")
    assert agent.q.shape == (2 * 5, 2)


def one_customer_step(agent: QLearningAgent, tired: bool, t: int, action: int, reward: float):
    """Feed one period of one customer of :class:`FatigueMDP`; return (state, next state)."""
    mdp = FatigueMDP()
    obs = mdp.obs(np.array([tired]), t)
    next_obs = mdp.obs(np.array([action == 1]), t + 1)
    masks = np.ones((1, 2), dtype=bool)
    done = np.array([t == HORIZON - 1])
    agent.update(
        Transition(
            obs, masks, np.array([action]), np.ones(1), np.array([reward]), next_obs, masks, done
        )
    )
    return agent._table.states(obs)[0], agent._table.states(next_obs)[0]


def test_n_step_target_sums_rewards_then_bootstraps():
    cfg = QLearningConfig(gamma=0.5, n_step=3)
    agent = QLearningAgent(FEATURES, ACTIONS, cfg, 10, np.random.default_rng(0))
    agent.q[:] = 8.0
    s0, _ = one_customer_step(agent, False, 0, 1, 1.0)
    one_customer_step(agent, True, 1, 0, 2.0)
    assert (agent.q == 8.0).all()  # two periods seen: no target is complete yet
    _, s3 = one_customer_step(agent, False, 2, 1, 4.0)
    # 1 + 0.5 * 2 + 0.25 * 4 + 0.125 * max Q(s3) = 3 + 1; a first visit takes the target
    assert agent.q[s0, 1] == pytest.approx(4.0)
    assert np.count_nonzero(agent.q != 8.0) == 1
    assert agent.q[s3].max() == 8.0


def test_n_step_targets_at_the_campaign_end_are_the_rewards_alone():
    cfg = QLearningConfig(gamma=0.5, n_step=3)
    agent = QLearningAgent(FEATURES, ACTIONS, cfg, 10, np.random.default_rng(0))
    agent.q[:] = 100.0
    s6, _ = one_customer_step(agent, False, HORIZON - 2, 1, 1.0)
    s7, _ = one_customer_step(agent, True, HORIZON - 1, 0, 2.0)
    assert agent.q[s6, 1] == pytest.approx(1.0 + 0.5 * 2.0)
    assert agent.q[s7, 0] == pytest.approx(2.0)
    assert not agent._pending  # a new campaign starts with nothing pending


def test_n_step_qlearning_solves_the_mdp_where_greedy_is_wrong():
    config = QLearningConfig(epsilon_start=1.0, epsilon_end=0.1, exploration_fraction=0.5, n_step=3)
    agent = QLearningAgent(
        FEATURES, ACTIONS, config, total_timesteps=200 * 400 * HORIZON, rng=np.random.default_rng(0)
    )
    train(agent, episodes=200, n=400, rng=np.random.default_rng(1))
    assert greedy_return(agent) == pytest.approx(4.3)


def test_n_step_refuses_a_population_that_changes_mid_campaign():
    agent = QLearningAgent(
        FEATURES, ACTIONS, QLearningConfig(n_step=2), 10, np.random.default_rng(0)
    )
    one_customer_step(agent, False, 0, 1, 1.0)
    mdp = FatigueMDP()
    obs = mdp.obs(np.zeros(2, dtype=bool), 1)
    masks = np.ones((2, 2), dtype=bool)
    step = Transition(
        obs,
        masks,
        np.ones(2, dtype=int),
        np.ones(2),
        np.ones(2),
        obs,
        masks,
        np.zeros(2, dtype=bool),
    )
    with pytest.raises(
        ValueError, match=r"`n_step` 2 needs the same customers .* got 2 rows after 1"
    ):
        agent.update(step)
