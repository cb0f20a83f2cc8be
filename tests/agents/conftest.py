import numpy as np
import pytest

from campaignrl.agents.base import Agent, Transition


class SegmentBanditWorld:
    """Known answer: each segment has one best action; rewards = mean + Gaussian noise."""

    feature_names = ("segment=a", "segment=b", "segment=c", "x")
    action_names = ("no_contact", "a1", "a2", "a3", "a4")

    def __init__(self, noise: float = 1.0) -> None:
        self.means = np.array(
            [
                [0.0, 1.0, 0.2, 0.1, 0.0],  # segment a: a1
                [0.0, 0.1, 0.2, 1.5, 0.3],  # segment b: a3
                [0.5, 0.0, 0.1, 0.0, 0.2],  # segment c: no contact
            ]
        )
        self.noise = noise

    def observe(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        seg = rng.integers(0, 3, n)
        obs = np.zeros((n, 4))
        obs[np.arange(n), seg] = 1.0
        obs[:, 3] = rng.random(n)
        return obs, seg

    def reward(self, seg: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.means[seg, actions] + self.noise * rng.standard_normal(seg.shape[0])


class LinearBanditWorld:
    """Known answer: reward = x . theta_a + noise; the best action varies with x."""

    feature_names = ("segment=only", "x1", "x2", "x3")
    action_names = ("no_contact", "a1", "a2", "a3")

    def __init__(self) -> None:
        self.theta = np.array(
            [
                [0.5, 0.0, 0.0, 0.0],
                [0.0, 2.0, -1.0, 0.0],
                [0.0, -1.0, 2.0, 0.0],
                [0.0, 0.0, 0.0, 2.0],
            ]
        )

    def observe(self, n: int, rng: np.random.Generator) -> np.ndarray:
        obs = rng.random((n, 4))
        obs[:, 0] = 1.0
        return obs

    def reward(self, obs: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean = np.einsum("nd,nd->n", obs, self.theta[actions])
        return mean + 0.5 * rng.standard_normal(obs.shape[0])


def bandit_transition(obs, masks, actions, props, rewards) -> Transition:
    n = obs.shape[0]
    return Transition(obs, masks, actions, props, rewards, obs, masks, np.zeros(n, dtype=bool))


def run_bandit(agent: Agent, world, periods: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(periods):
        if isinstance(world, SegmentBanditWorld):
            obs, seg = world.observe(n, rng)
        else:
            obs = world.observe(n, rng)
        masks = np.ones((n, len(world.action_names)), dtype=bool)
        actions, props = agent.act(obs, masks)
        if isinstance(world, SegmentBanditWorld):
            rewards = world.reward(seg, actions, rng)
        else:
            rewards = world.reward(obs, actions, rng)
        agent.update(bandit_transition(obs, masks, actions, props, rewards))


@pytest.fixture
def segment_world() -> SegmentBanditWorld:
    return SegmentBanditWorld()


@pytest.fixture
def linear_world() -> LinearBanditWorld:
    return LinearBanditWorld()


@pytest.fixture
def bandit_runner():
    return run_bandit
