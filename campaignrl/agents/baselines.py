"""Baseline policies every learner is compared with.

``random``            uniform over the allowed actions.
``no-contact``        never send anything.
``static-best``       the one action that earns most when sent to everyone every period,
                      chosen by simulating each action on a pilot population.
``rfm-rules``         a marketer's playbook on recency, frequency and monetary value.
``myopic-oracle``     argmax of the true expected immediate profit (knows the hidden state).
``restrained-oracle`` the myopic oracle's choice, sent only while fatigue is below a threshold;
                      in the ``fatigue`` world it beats the myopic oracle: restraint pays.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from campaignrl._checks import check_choice, check_scalar
from campaignrl.agents.base import MAX_CUSTOMERS
from campaignrl.envs.observation import ObservationEncoder
from campaignrl.policies.sampling import greedy_probabilities, uniform_probabilities
from campaignrl.simulators.core import CustomerSimulator
from campaignrl.simulators.spec import WorldSpec

__all__ = [
    "BASELINES",
    "Baseline",
    "MyopicOracle",
    "NoContact",
    "RandomPolicy",
    "RestrainedOracle",
    "RFMRules",
    "StaticBest",
    "baseline_names",
    "baseline_settings",
    "make_baseline",
]


class Baseline(ABC):
    """A decision rule over a population: action probabilities for every customer.

    Baselines see the observation and masks; the oracles also read the simulator's truth
    (``privileged``), which no deployable policy can.
    """

    name: ClassVar[str]
    privileged: ClassVar[bool] = False

    def fit(self, spec: WorldSpec, horizon: int, rng: np.random.Generator) -> None:  # noqa: B027
        """Prepare on a pilot simulation (only ``static-best`` needs it)."""

    @abstractmethod
    def probabilities(
        self, obs: np.ndarray, masks: np.ndarray, sim: CustomerSimulator
    ) -> np.ndarray:
        """``(n, A)`` action probabilities; zero on masked actions, rows sum to 1."""

    def describe(self) -> str:
        """One line for reports."""
        return self.name


class RandomPolicy(Baseline):
    """Uniform over the allowed actions (no contact included)."""

    name = "random"

    def probabilities(
        self, obs: np.ndarray, masks: np.ndarray, sim: CustomerSimulator
    ) -> np.ndarray:
        """Uniform over ``masks``."""
        return uniform_probabilities(masks)


class NoContact(Baseline):
    """Never contact anyone: the organic baseline."""

    name = "no-contact"

    def probabilities(
        self, obs: np.ndarray, masks: np.ndarray, sim: CustomerSimulator
    ) -> np.ndarray:
        """All mass on action 0."""
        out = np.zeros(masks.shape)
        out[:, 0] = 1.0
        return out


class StaticBest(Baseline):
    """The single action that does best when sent to everyone, every period.

    Each action is simulated on the same pilot population (common random numbers); where the
    chosen action is not allowed (no consent, opt-out, cap) nothing is sent.

    Args:
        pilot_customers: Size of the pilot population.
    """

    name = "static-best"

    def __init__(self, pilot_customers: int = 4000) -> None:
        check_scalar(pilot_customers, "pilot_customers", int, min_val=1, max_val=MAX_CUSTOMERS)
        self.pilot_customers = pilot_customers
        self.action: int | None = None
        self.action_name: str | None = None
        self.pilot_values: np.ndarray | None = None

    def fit(self, spec: WorldSpec, horizon: int, rng: np.random.Generator) -> None:
        """Simulate every constant action on a pilot population; keep the best."""
        seed = int(rng.integers(2**63 - 1))
        values = np.empty(spec.catalog.n_actions)
        sim = CustomerSimulator(spec, self.pilot_customers, horizon)
        for a in range(spec.catalog.n_actions):
            run_rng = np.random.default_rng(seed)
            sim.reset(run_rng)
            actions = np.full(self.pilot_customers, a, dtype=np.int64)
            total = 0.0
            while not sim.done:
                total += float(sim.step(actions, run_rng).reward.sum())
            values[a] = total / self.pilot_customers
        self.pilot_values = values
        self.action = int(values.argmax())
        self.action_name = spec.catalog.action_names[self.action]

    def probabilities(
        self, obs: np.ndarray, masks: np.ndarray, sim: CustomerSimulator
    ) -> np.ndarray:
        """One-hot on the chosen action where allowed, else no contact."""
        if self.action is None:
            raise RuntimeError("static-best must be fit() on a pilot simulation first")
        out = np.zeros(masks.shape)
        allowed = masks[:, self.action]
        out[allowed, self.action] = 1.0
        out[~allowed, 0] = 1.0
        return out

    def describe(self) -> str:
        """Name and chosen action."""
        return f"{self.name} ({self.action_name})"


class RFMRules(Baseline):
    """A marketer's playbook, written down. Reads only the observation.

    By recency (weeks since the last purchase), frequency and monetary value:

    - champions (bought in the last 4 weeks, 8+ purchases a year): ``content`` (no discount
      for people who buy anyway);
    - active (bought in the last 8 weeks): ``points2x``;
    - lapsing (8 to 26 weeks): ``pct20`` win-back; by SMS if consented and average basket
      over $80, else by email;
    - dormant (over 26 weeks): ``pct10``, at most once per cap window;
    - at most two contacts per cap window for everyone; email first, push if email is
      unreachable; nothing if neither.
    """

    name = "rfm-rules"

    def __init__(self) -> None:
        self._encoder: ObservationEncoder | None = None

    def probabilities(
        self, obs: np.ndarray, masks: np.ndarray, sim: CustomerSimulator
    ) -> np.ndarray:
        """Apply the playbook row by row (vectorized)."""
        spec = sim.spec
        if self._encoder is None or self._encoder.spec is not spec:
            self._encoder = ObservationEncoder(spec, sim.horizon)
        names = self._encoder.feature_names
        col = {n: i for i, n in enumerate(names)}
        cat = spec.catalog
        recency_weeks = obs[:, col["recency"]] * 52.0
        f = obs[:, col["frequency"]]
        purchases = 5.0 * f / np.maximum(1.0 - f, 1e-6)
        m = obs[:, col["monetary"]]
        basket = 100.0 * m / np.maximum(1.0 - m, 1e-6)
        contacts = obs[:, col["cap_used"]] * spec.contact_cap

        offer = np.full(obs.shape[0], "pct10", dtype=object)
        offer[recency_weeks <= 8] = "points2x"
        offer[(recency_weeks <= 4) & (purchases >= 8)] = "content"
        lapsing = (recency_weeks > 8) & (recency_weeks <= 26)
        offer[lapsing] = "pct20"
        dormant = recency_weeks > 26
        send = np.where(dormant, contacts < 1, contacts < 2)

        n = obs.shape[0]
        actions = np.zeros(n, dtype=np.int64)
        for name in np.unique(offer):
            rows = offer == name
            email = cat.action_index(f"{name}@email")
            push = cat.action_index(f"{name}@push")
            sms = cat.action_index(f"{name}@sms")
            pick = np.where(masks[:, email], email, np.where(masks[:, push], push, 0))
            if name == "pct20":
                pick = np.where(lapsing & (basket > 80.0) & masks[:, sms], sms, pick)
            actions[rows] = pick[rows]
        actions[~send] = 0
        out = np.zeros(masks.shape)
        out[np.arange(n), actions] = 1.0
        return out


class MyopicOracle(Baseline):
    """Argmax over allowed actions of the true expected immediate profit."""

    name = "myopic-oracle"
    privileged = True

    def probabilities(
        self, obs: np.ndarray, masks: np.ndarray, sim: CustomerSimulator
    ) -> np.ndarray:
        """Greedy on :meth:`CustomerSimulator.expected_reward`."""
        return greedy_probabilities(sim.expected_reward(), masks)


class RestrainedOracle(Baseline):
    """The myopic oracle's action, sent only to customers whose fatigue is low.

    A contact is made only when the observed fatigue ``F`` is at most ``fatigue_threshold``;
    otherwise nothing is sent and the customer rests. With the ``fatigue`` world's decay of
    0.85 and the default threshold of 1, an email goes out about once every five weeks.

    Args:
        fatigue_threshold: Largest fatigue at which a contact is still made.
    """

    name = "restrained-oracle"
    privileged = True

    def __init__(self, fatigue_threshold: float = 1.0) -> None:
        check_scalar(fatigue_threshold, "fatigue_threshold", (int, float), min_val=0.0)
        self.fatigue_threshold = float(fatigue_threshold)

    def probabilities(
        self, obs: np.ndarray, masks: np.ndarray, sim: CustomerSimulator
    ) -> np.ndarray:
        """Myopic choice where rested, no contact elsewhere."""
        rested = sim.state.fatigue <= self.fatigue_threshold
        allowed = masks & (rested[:, None] | (np.arange(masks.shape[1]) == 0)[None, :])
        return greedy_probabilities(sim.expected_reward(), allowed)

    def describe(self) -> str:
        """Name and threshold."""
        return f"{self.name} (fatigue <= {self.fatigue_threshold:g})"


BASELINES: dict[str, type[Baseline]] = {
    cls.name: cls
    for cls in (RandomPolicy, NoContact, StaticBest, RFMRules, MyopicOracle, RestrainedOracle)
}
"""Baseline classes by command-line name."""


def baseline_names() -> tuple[str, ...]:
    """Names accepted by :func:`make_baseline`."""
    return tuple(BASELINES)


def baseline_settings(name: str) -> tuple[str, ...]:
    """The settings (keyword arguments) a baseline takes; most take none."""
    check_choice(name, "policy", baseline_names())
    params = inspect.signature(BASELINES[name].__init__).parameters
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p for p, v in params.items() if p != "self" and v.kind in plain)


def make_baseline(name: str, **kwargs: Any) -> Baseline:
    """A baseline by name, e.g. ``make_baseline("restrained-oracle", fatigue_threshold=0.5)``.

    Raises:
        ValueError: If ``name`` is unknown or a setting is not one the baseline takes.
    """
    settings = baseline_settings(name)
    unknown = sorted(set(kwargs) - set(settings))
    if unknown:
        takes = f"settings are {list(settings)}" if settings else "it takes none"
        raise ValueError(f"unknown setting(s) {unknown} for baseline {name!r}; {takes}")
    return BASELINES[name](**kwargs)
