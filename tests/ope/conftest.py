"""Synthetic bandit logs whose true policy values are known exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from campaignrl.logs.io import LoggedData


@dataclass(frozen=True, eq=False)
class Bandit:
    """A logged bandit world: contexts are one of a few types with known probabilities."""

    data: LoggedData
    target: np.ndarray  # (n, A) target probabilities per row
    q_true: np.ndarray  # (n, A) exact expected reward per row and action
    truth: float  # the target's exact value over the context distribution


def make_bandit(
    n: int, seed: int, *, n_actions: int = 5, n_types: int = 4, epsilon: float = 0.3
) -> Bandit:
    """Contexts of ``n_types`` kinds; Bernoulli rewards; epsilon-greedy logging.

    World parameters are fixed (seed 12345); ``seed`` only draws the log.
    """
    world = np.random.default_rng(12345)
    type_probs = world.dirichlet(np.ones(n_types))
    q_table = world.uniform(0.05, 0.6, size=(n_types, n_actions))  # P(reward=1 | type, a)
    # Logging: epsilon-greedy around a poor guess; target: softmax of the truth.
    guess = world.permutation(n_actions)[:n_types] % n_actions
    logging = np.full((n_types, n_actions), epsilon / n_actions)
    logging[np.arange(n_types), guess] += 1.0 - epsilon
    scores = np.exp(8.0 * q_table)
    target_table = scores / scores.sum(axis=1, keepdims=True)
    truth = float(type_probs @ (target_table * q_table).sum(axis=1))

    rng = np.random.default_rng(seed)
    types = rng.choice(n_types, size=n, p=type_probs)
    cum = logging[types].cumsum(axis=1)
    actions = (rng.random((n, 1)) < cum).argmax(axis=1)
    rewards = (rng.random(n) < q_table[types, actions]).astype(np.float64)
    data = LoggedData(
        actions=actions,
        rewards=rewards,
        propensities=logging[types, actions],
        action_names=tuple(f"a{k}" for k in range(n_actions)),
        features=np.eye(n_types)[types],
        feature_names=tuple(f"type{k}" for k in range(n_types)),
    )
    return Bandit(data, target_table[types], q_table[types], truth)


@pytest.fixture(scope="session")
def bandit() -> Bandit:
    """2,000 logged decisions (the contract tests' log)."""
    return make_bandit(2000, seed=0)


@pytest.fixture(scope="session")
def big_bandit() -> Bandit:
    """50,000 logged decisions (accuracy checks)."""
    return make_bandit(50_000, seed=1)


@pytest.fixture(scope="session")
def tiny() -> dict[str, np.ndarray]:
    """A fixed six-row log with three actions and two positions, written out by hand."""
    return {
        "actions": np.array([0, 1, 2, 1, 0, 2]),
        "positions": np.array([0, 1, 0, 0, 1, 1]),
        "rewards": np.array([1.0, 0.0, 2.5, 1.0, 0.5, -1.0]),
        "propensities": np.array([0.5, 0.25, 0.2, 0.4, 0.1, 0.8]),
        # pi_e(a | x_i, position) for every row, action, position: rows sum to 1 over actions.
        "target": np.array(
            [
                [[0.6, 0.2], [0.3, 0.3], [0.1, 0.5]],
                [[0.2, 0.1], [0.5, 0.8], [0.3, 0.1]],
                [[0.0, 0.4], [0.25, 0.4], [0.75, 0.2]],
                [[0.1, 0.3], [0.8, 0.3], [0.1, 0.4]],
                [[1.0, 0.9], [0.0, 0.05], [0.0, 0.05]],
                [[0.4, 0.0], [0.4, 0.5], [0.2, 0.5]],
            ]
        ),
        # q_hat(x_i, a, position)
        "q": np.array(
            [
                [[0.9, 0.7], [0.2, 0.1], [0.4, 0.3]],
                [[0.3, 0.2], [0.5, 0.1], [1.0, 0.8]],
                [[1.5, 1.0], [0.0, 0.2], [2.0, 1.7]],
                [[0.6, 0.4], [0.7, 0.6], [0.1, 0.0]],
                [[0.8, 0.3], [0.2, 0.2], [0.5, 0.5]],
                [[0.0, -0.2], [0.3, 0.1], [-0.5, -0.8]],
            ]
        ),
    }


@pytest.fixture(scope="session")
def bandit_factory():
    """``make_bandit`` itself, for tests that draw many logs."""
    return make_bandit
