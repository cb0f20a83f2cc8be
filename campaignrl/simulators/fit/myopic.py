"""The myopic oracle of a fitted world, as a deployable policy that reads only the observation.

The ``myopic-oracle`` baseline reads the simulator's hidden state; this policy computes the
same expected immediate profit as :meth:`CustomerSimulator.expected_reward` from a
:class:`WorldSpec` (typically a fitted one) and the observation alone: segment (one-hot,
matched by name), recency, fatigue and the recommendation scores. So it can run in the world
it came from and in any other world whose observation has those features (the true world the
logs came from), which is how a fitted world's best greedy policy is checked against the truth.
Churn is hidden, so every customer is treated as active, and each customer's price
sensitivity is the segment's mean.
"""

from __future__ import annotations

import numpy as np

from campaignrl.policies.sampling import greedy_probabilities
from campaignrl.simulators.core import CustomerSimulator
from campaignrl.simulators.spec import WorldSpec

__all__ = ["SpecMyopicPolicy"]


class SpecMyopicPolicy:
    """Greedy on the expected immediate profit under ``spec``, from observed features.

    Args:
        spec: The world whose parameters score the actions.
        fatigue_threshold: If given, contact only customers whose fatigue is at most this
            (the ``restrained-oracle`` rule); ``None`` for the plain myopic choice.
    """

    def __init__(self, spec: WorldSpec, fatigue_threshold: float | None = None) -> None:
        if not isinstance(spec, WorldSpec):
            raise TypeError(f"`spec` must be a WorldSpec, got {type(spec).__name__}")
        self.spec = spec
        self.arrays = spec.arrays()
        self.fatigue_threshold = fatigue_threshold
        self.name = "spec-myopic" if fatigue_threshold is None else "spec-restrained"

    def describe(self) -> str:
        """Name for reports."""
        extra = (
            "" if self.fatigue_threshold is None else f" (fatigue <= {self.fatigue_threshold:g})"
        )
        return f"{self.name} of {self.spec.name}{extra}"

    def expected_reward(self, obs: np.ndarray, feature_names: tuple[str, ...]) -> np.ndarray:
        """``(n, A)`` expected immediate profit of every action (no masks applied)."""
        spec, w = self.spec, self.arrays
        col = {n: i for i, n in enumerate(feature_names)}
        seg_cols = [n for n in feature_names if n.startswith("segment=")]
        index = {name: i for i, name in enumerate(spec.segment_names)}
        unknown = [c for c in seg_cols if c.removeprefix("segment=") not in index]
        if unknown or not seg_cols:
            raise ValueError(
                f"the observation's segments {seg_cols} do not match the world's "
                f"{list(spec.segment_names)}"
            )
        onehot = obs[:, [col[c] for c in seg_cols]]
        seg = np.array([index[c.removeprefix("segment=")] for c in seg_cols])[onehot.argmax(axis=1)]
        x = np.clip(obs[:, col["fatigue"]].astype(np.float64), 0.0, 1.0 - 1e-6)
        fatigue = x / (1.0 - x)
        recency = np.rint(obs[:, col["recency"]] * 52.0)
        aff_x = np.column_stack([obs[:, col[f"affinity={o.name}"]] for o in spec.catalog.offers])
        affinity = 2.0 * np.arctanh(np.clip(aff_x.astype(np.float64), -0.999999, 0.999999))

        p_org = w.organic_rate[seg] * np.exp(-spec.fatigue_organic_penalty * fatigue)
        open_mult = np.exp(-w.fatigue_sensitivity[seg] * fatigue)
        open_mult = np.where(
            recency >= spec.lapse_after, open_mult * spec.winback_open_factor, open_mult
        )
        logit = (
            w.conversion_logit[seg, None]
            + spec.affinity_weight * affinity
            + w.discount_sensitivity[seg, None] * 10.0 * w.offer_incentive[None, :]
        )
        conv = 1.0 / (1.0 + np.exp(-logit))
        e_basket = w.basket_mean[seg]
        plain = spec.margin_rate * e_basket
        n_actions = spec.catalog.n_actions
        acts = np.arange(1, n_actions)
        o, c = w.action_offer[acts], w.action_channel[acts]
        p_open = w.open_rate[seg][:, c] * open_mult[:, None]
        p_conv = conv[:, o] * w.channel_conversion[c][None, :]
        p_buy = p_org[:, None] + (1.0 - p_org[:, None]) * p_conv
        redeemed = ((spec.margin_rate - w.offer_discount[o]) * w.offer_multiplier[o])[
            None, :
        ] * e_basket[:, None] - w.offer_fixed_cost[o][None, :]
        out = np.empty((obs.shape[0], n_actions))
        out[:, 0] = p_org * plain
        out[:, 1:] = (
            -w.channel_cost[c][None, :]
            + (1.0 - p_open) * (p_org * plain)[:, None]
            + p_open * p_buy * redeemed
        )
        return out

    def probabilities(
        self, obs: np.ndarray, masks: np.ndarray, sim: CustomerSimulator
    ) -> np.ndarray:
        """One-hot on the best allowed action under ``spec`` (the population protocol)."""
        from campaignrl.envs.observation import ObservationEncoder

        names = ObservationEncoder(sim.spec, sim.horizon).feature_names
        allowed = masks
        if self.fatigue_threshold is not None:
            x = np.clip(obs[:, names.index("fatigue")].astype(np.float64), 0.0, 1.0 - 1e-6)
            rested = x / (1.0 - x) <= self.fatigue_threshold
            allowed = masks & (rested[:, None] | (np.arange(masks.shape[1]) == 0)[None, :])
        return greedy_probabilities(self.expected_reward(obs, names), allowed)
