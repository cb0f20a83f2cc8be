"""The vectorized customer simulator: one numpy core for every environment face.

Each period (one week), for every customer, in this order:

1. The action is checked against the rules of the world (consent, opt-outs, contact cap);
   a disallowed action is executed as ``no_contact`` (and reported in ``StepResult.masked``).
2. Organic purchase with chance ``organic * exp(-penalty * F)`` (0 once churned).
3. A contact on channel ``c`` is opened with chance
   ``open[seg, c] * exp(-fatigue_sensitivity * F) * (winback if lapsing)``.
4. An opened offer ``o`` converts a customer who was not buying anyway with chance
   ``channel_conversion[c] * sigmoid(conversion_logit + affinity_weight * taste . offer_o
   + discount_sens * 10 * incentive_o)``;
   a customer who opened and buys redeems the offer, organic buyers included (cannibalization).
5. Basket ``~ lognormal(mu_seg, sigma_seg)``, scaled by the offer's multiplier when redeemed.
   Reward = ``margin * basket - redeemed * (discount * basket + fixed) - channel cost``.
6. A send opts the customer out of its channel with chance
   ``unsub[c] * unsub_mult[seg] * (1 + slope * F)`` (the segment multiplier is 1 in presets).
7. Fatigue ``F' = decay * F + weight[c]``; recency, frequency and monetary value update;
   a customer who did not buy churns with chance
   ``min(churn_max, churn_base + churn_slope * max(0, recency - lapse_after))``.

``F`` is the fatigue before this period's contact. :meth:`CustomerSimulator.expected_reward`
computes the exact expectation of step 5's reward from the same probabilities.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from campaignrl._checks import check_scalar
from campaignrl.simulators.spec import WorldArrays, WorldSpec

__all__ = ["CustomerSimulator", "CustomerState", "StepResult"]

_FREQUENCY_DECAY = 1.0 - 1.0 / 52.0
"""frequency counts purchases over roughly the past year (52 weekly periods)"""
_MONETARY_WEIGHT = 0.3
"""weight of the newest basket in the running average basket value"""


@dataclass
class CustomerState:
    """Traits and dynamic state of ``n`` customers (arrays over customers)."""

    segment: np.ndarray
    """(n,) segment index"""
    consent: np.ndarray
    """(n, C) channel consents (static)"""
    affinity: np.ndarray
    """(n, O) taste . offer: the matrix-factorization affinity (static)"""
    conversion_prob: np.ndarray
    """(n, O) chance of buying after opening each offer (static)"""
    recency: np.ndarray
    """(n,) periods since the last purchase"""
    frequency: np.ndarray
    """(n,) purchases over about the past year"""
    monetary: np.ndarray
    """(n,) running average basket value"""
    fatigue: np.ndarray
    """(n,) marketing fatigue"""
    unsubscribed: np.ndarray
    """(n, C) opted out of a channel"""
    churned: np.ndarray
    """(n,) gone for good (hidden: not in the observation)"""
    contact_log: np.ndarray
    """(W, n) whether a contact was made in each of the last W periods (ring buffer)"""
    contacts_in_window: np.ndarray
    """(n,) contacts made in the last W periods"""
    t: int = 0
    """periods elapsed"""

    @property
    def n(self) -> int:
        """Number of customers."""
        return int(self.segment.shape[0])

    def recent_contacts(self) -> np.ndarray:
        """(n,) contacts in the last ``W - 1`` periods: what a contact now adds to.

        The window that ends with this period holds those periods and this one, so a contact
        is allowed while this count is below the cap.
        """
        return self.contacts_in_window - self.contact_log[self.t % self.contact_log.shape[0]]

    def copy(self) -> CustomerState:
        """A deep copy (arrays copied)."""
        return copy.deepcopy(self)


@dataclass(frozen=True)
class StepResult:
    """What happened to each customer in one period."""

    reward: np.ndarray
    """(n,) profit: margin on purchases minus offer and contact costs"""
    action: np.ndarray
    """(n,) the action actually executed (0 where the requested one was masked)"""
    masked: np.ndarray
    """(n,) the requested action was not allowed and was executed as no contact"""
    opened: np.ndarray
    """(n,) the contact was opened"""
    purchased: np.ndarray
    """(n,) a purchase happened (organic or converted)"""
    basket: np.ndarray
    """(n,) value of this period's basket (times the offer's multiplier when redeemed), 0.0
    without a purchase"""
    redeemed: np.ndarray
    """(n,) the offer was redeemed"""
    unsubscribed: np.ndarray
    """(n,) opted out of the contact's channel this period"""
    churned: np.ndarray
    """(n,) churned this period"""


class CustomerSimulator:
    """A population of customers living in a :class:`WorldSpec`, stepped in lockstep.

    Args:
        spec: The world.
        n_customers: Population size.
        horizon: Periods in an episode (the campaign's calendar).

    Examples:
        >>> from campaignrl.simulators import get_world
        >>> sim = CustomerSimulator(get_world("retail"), n_customers=4, horizon=3)
        >>> sim.reset(np.random.default_rng(0))
        >>> sim.expected_reward().shape
        (4, 19)
        >>> res = sim.step(np.zeros(4, dtype=np.int64), np.random.default_rng(1))
        >>> res.reward.shape, sim.t, sim.done
        ((4,), 1, False)
    """

    def __init__(self, spec: WorldSpec, n_customers: int, horizon: int) -> None:
        if not isinstance(spec, WorldSpec):
            raise TypeError(f"`spec` must be a WorldSpec, got {type(spec).__name__}")
        check_scalar(n_customers, "n_customers", (int, np.integer), min_val=1)
        check_scalar(horizon, "horizon", (int, np.integer), min_val=1)
        self.spec = spec
        self.arrays: WorldArrays = spec.arrays()
        self.n_customers = int(n_customers)
        self.horizon = int(horizon)
        self.n_actions = spec.catalog.n_actions
        self._state: CustomerState | None = None

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> CustomerState:
        """The current state; raises if :meth:`reset` was never called."""
        if self._state is None:
            raise RuntimeError("call reset(rng) before using the simulator")
        return self._state

    @property
    def t(self) -> int:
        """Periods elapsed in the episode."""
        return self.state.t

    @property
    def done(self) -> bool:
        """Whether the calendar has run out (``t == horizon``)."""
        return self.state.t >= self.horizon

    def reset(self, rng: np.random.Generator) -> None:
        """Draw a fresh population: segments, consents, tastes and initial RFM state."""
        w, n, spec = self.arrays, self.n_customers, self.spec
        seg = rng.choice(len(w.share), size=n, p=w.share)
        consent = rng.random((n, w.open_rate.shape[1])) < w.consent_prob[seg]
        taste = w.taste_mean[seg] + spec.taste_noise * rng.standard_normal((n, spec.n_latent))
        # Mean-preserving lognormal noise: customers of a segment differ in price sensitivity.
        s = spec.discount_sensitivity_noise
        disc_sens = w.discount_sensitivity[seg] * np.exp(s * rng.standard_normal(n) - 0.5 * s * s)
        affinity = taste @ w.offer_taste.T
        logit = (
            w.conversion_logit[seg, None]
            + spec.affinity_weight * affinity
            + disc_sens[:, None] * 10.0 * w.offer_incentive[None, :]
        )
        recency = rng.integers(w.recency_lo[seg], w.recency_hi[seg] + 1)
        frequency = rng.poisson(w.frequency_mean[seg]).astype(np.float64)
        monetary = np.exp(w.basket_mu[seg] + 0.5 * w.basket_sigma[seg] * rng.standard_normal(n))
        self._state = CustomerState(
            segment=seg,
            consent=consent,
            affinity=affinity,
            conversion_prob=1.0 / (1.0 + np.exp(-logit)),
            recency=recency.astype(np.int64),
            frequency=frequency,
            monetary=monetary,
            fatigue=np.zeros(n),
            unsubscribed=np.zeros_like(consent),
            churned=np.zeros(n, dtype=bool),
            contact_log=np.zeros((spec.cap_window, n), dtype=bool),
            contacts_in_window=np.zeros(n, dtype=np.int64),
            t=0,
        )

    # ------------------------------------------------------------------ rules
    def reachable(self) -> np.ndarray:
        """(n, C) channels a customer may be contacted on now (consent, no opt-out, under cap)."""
        st = self.state
        return st.consent & ~st.unsubscribed & self._under_cap()[:, None]

    def action_masks(self) -> np.ndarray:
        """(n, A) allowed actions; ``no_contact`` is always allowed. Never random."""
        reach = self.reachable()
        masks = np.empty((self.n_customers, self.n_actions), dtype=bool)
        masks[:, 0] = True
        masks[:, 1:] = np.tile(reach, self.spec.catalog.n_offers)
        return masks

    def _allowed(self, actions: np.ndarray) -> np.ndarray:
        st = self.state
        ch = np.maximum(self.arrays.action_channel[actions], 0)
        rows = np.arange(st.n)
        ok = st.consent[rows, ch] & ~st.unsubscribed[rows, ch] & self._under_cap()
        return ok | (actions == 0)

    def _under_cap(self) -> np.ndarray:
        """(n,) a contact now keeps every window of ``cap_window`` periods within the cap."""
        return self.state.recent_contacts() < self.spec.contact_cap

    # ------------------------------------------------------------------ response model
    def _base_probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """Organic purchase chance (n,) and the open-rate multiplier (n,) for this period."""
        st, w, spec = self.state, self.arrays, self.spec
        alive = ~st.churned
        fatigue = st.fatigue
        p_org = w.organic_rate[st.segment] * alive
        if spec.fatigue_organic_penalty > 0.0:
            p_org = p_org * np.exp(-spec.fatigue_organic_penalty * fatigue)
        open_mult = np.exp(-w.fatigue_sensitivity[st.segment] * fatigue) * alive
        lapsing = st.recency >= spec.lapse_after
        open_mult = np.where(lapsing, open_mult * spec.winback_open_factor, open_mult)
        return p_org, open_mult

    def expected_reward(self, actions: np.ndarray | None = None) -> np.ndarray:
        """Exact expected immediate profit of actions in the current state.

        ``E[r | a=(o, c)] = -cost_c + (1 - p_open) p_org m E[b]
        + p_open (p_org + (1 - p_org) p_conv) ((m - d_o) k_o E[b] - f_o)`` with margin ``m``,
        ``p_conv`` the offer's conversion chance times the channel's multiplier,
        discount ``d_o``, basket multiplier ``k_o``, fixed cost ``f_o`` and
        ``E[b] = exp(mu + sigma^2 / 2)``; ``E[r | no contact] = p_org m E[b]``. A masked
        action is executed as no contact, so its value is the no-contact value.

        Args:
            actions: ``(n,)`` actions, or ``None`` for every action.

        Returns:
            ``(n,)`` for given actions, else ``(n, A)``.
        """
        st, w, spec = self.state, self.arrays, self.spec
        p_org, open_mult = self._base_probabilities()
        e_basket = w.basket_mean[st.segment]
        plain = spec.margin_rate * e_basket
        acts = np.arange(1, self.n_actions)
        o, c = w.action_offer[acts], w.action_channel[acts]
        p_open = w.open_rate[st.segment][:, c] * open_mult[:, None]  # (n, A-1)
        p_conv = st.conversion_prob[:, o] * w.channel_conversion[c][None, :]
        p_buy = p_org[:, None] + (1.0 - p_org[:, None]) * p_conv
        redeemed_value = (
            (spec.margin_rate - w.offer_discount[o])[None, :] * w.offer_multiplier[o][None, :]
        ) * e_basket[:, None] - w.offer_fixed_cost[o][None, :]
        out = np.empty((st.n, self.n_actions))
        out[:, 0] = p_org * plain
        out[:, 1:] = (
            -w.channel_cost[c][None, :]
            + (1.0 - p_open) * (p_org * plain)[:, None]
            + p_open * p_buy * redeemed_value
        )
        out = np.where(self.action_masks(), out, out[:, :1])
        if actions is None:
            return out
        actions = self._check_actions(actions)
        return out[np.arange(st.n), actions]

    # ------------------------------------------------------------------ dynamics
    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions)
        if a.shape != (self.n_customers,):
            raise ValueError(f"`actions` must have shape ({self.n_customers},), got {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            if not (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a))):
                raise ValueError(f"`actions` must be integers, got dtype {a.dtype}")
            a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= self.n_actions):
            bad = int(a[(a < 0) | (a >= self.n_actions)][0])
            raise ValueError(f"`actions` must be in [0, {self.n_actions - 1}], got {bad}")
        return a.astype(np.int64, copy=False)

    def step(self, actions: np.ndarray, rng: np.random.Generator) -> StepResult:
        """Advance every customer one period under ``actions`` (see the module docstring)."""
        if self.done:
            raise RuntimeError(f"the episode is over (t = horizon = {self.horizon}); call reset")
        requested = self._check_actions(actions)
        st, w, spec = self.state, self.arrays, self.spec
        n = st.n
        rows = np.arange(n)

        allowed = self._allowed(requested)
        act = np.where(allowed, requested, 0)
        contacted = act > 0
        o = np.maximum(w.action_offer[act], 0)
        c = np.maximum(w.action_channel[act], 0)
        seg = st.segment
        fatigue = st.fatigue

        p_org, open_mult = self._base_probabilities()
        p_open = w.open_rate[seg, c] * open_mult * contacted
        p_conv = st.conversion_prob[rows, o] * w.channel_conversion[c]

        u = rng.random((5, n))
        opened = u[0] < p_open
        organic = u[1] < p_org
        purchased = organic | (opened & (u[2] < p_conv))
        redeemed = opened & purchased

        buyers = np.flatnonzero(purchased)
        z = rng.standard_normal(buyers.size)
        basket = np.exp(w.basket_mu[seg[buyers]] + w.basket_sigma[seg[buyers]] * z)
        red_b = redeemed[buyers]
        ob = o[buyers]
        basket = np.where(red_b, basket * w.offer_multiplier[ob], basket)
        profit_b = spec.margin_rate * basket - red_b * (
            w.offer_discount[ob] * basket + w.offer_fixed_cost[ob]
        )
        reward = np.where(contacted, -w.channel_cost[c], 0.0)
        reward[buyers] += profit_b
        basket_all = np.zeros(n)
        basket_all[buyers] = basket

        alive = ~st.churned
        # x * 1.0 == x exactly: worlds whose segment multipliers are all 1 (the presets) draw
        # the same opt-outs as before the multiplier existed.
        p_unsub = (
            w.unsubscribe_base[c]
            * w.unsubscribe_multiplier[seg]
            * (1.0 + spec.unsubscribe_fatigue_slope * fatigue)
        )
        unsub = contacted & alive & (u[3] < p_unsub)
        st.unsubscribed[rows[unsub], c[unsub]] = True

        st.recency = np.where(purchased, 0, st.recency + 1)
        st.frequency = st.frequency * _FREQUENCY_DECAY + purchased
        st.monetary[buyers] += _MONETARY_WEIGHT * (basket - st.monetary[buyers])
        st.fatigue = spec.fatigue_decay * fatigue + np.where(contacted, w.channel_fatigue[c], 0.0)

        hazard = w.churn_base[seg] + spec.churn_slope * np.maximum(0, st.recency - spec.lapse_after)
        churn = alive & ~purchased & (u[4] < np.minimum(hazard, spec.churn_max))
        st.churned |= churn

        slot = st.t % spec.cap_window
        st.contacts_in_window += contacted.astype(np.int64) - st.contact_log[slot]
        st.contact_log[slot] = contacted
        st.t += 1
        return StepResult(
            reward=reward,
            action=act,
            masked=~allowed,
            opened=opened,
            purchased=purchased,
            basket=basket_all,
            redeemed=redeemed,
            unsubscribed=unsub,
            churned=churn,
        )
