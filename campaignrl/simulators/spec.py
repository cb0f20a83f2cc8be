"""The ground truth of a customer world: segments, tastes, response and dynamics parameters."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from campaignrl._checks import check_scalar
from campaignrl.catalog import Catalog, default_catalog

__all__ = ["SegmentSpec", "WorldArrays", "WorldSpec"]


@dataclass(frozen=True)
class SegmentSpec:
    """One customer archetype of the segment model. Rates are per period (one week)."""

    name: str
    """archetype name, e.g. ``loyal``"""
    share: float
    """share of the population in this segment"""
    organic_rate: float
    """chance of buying in a period with no marketing at all"""
    basket_median: float
    """median basket value (lognormal), in currency units"""
    basket_sigma: float
    """log-scale spread of the basket value (right-skewed)"""
    open_rates: tuple[float, ...]
    """chance a contact is opened, one per channel, for a rested customer"""
    conversion_logit: float
    """log-odds of buying after opening a plain offer with zero affinity"""
    discount_sensitivity: float
    """log-odds lift per 10 points of perceived incentive (a 20% discount adds 2x this)"""
    fatigue_sensitivity: float
    """how fast fatigue lowers the open rate: ``open * exp(-fatigue_sensitivity * fatigue)``"""
    churn_base: float
    """chance per period of leaving for good while active"""
    recency_range: tuple[int, int]
    """initial periods since the last purchase, drawn uniformly in ``[lo, hi]``"""
    frequency_mean: float
    """mean purchases in the past year at the start (Poisson)"""
    taste_mean: tuple[float, ...]
    """centre of the segment's latent taste vectors (recommendation model)"""
    consent_multipliers: tuple[float, ...] | None = None
    """per-channel multiplier of the catalog consent rate; ``None`` means all ones"""
    unsubscribe_multiplier: float = 1.0
    """multiplier of the world's opt-out chance for this segment's customers:
    ``unsubscribe_base[c] * unsubscribe_multiplier * (1 + slope * F)`` (1 in the presets;
    fitted worlds estimate it, since audiences differ in how readily they opt out)"""

    def validate(self, where: str, n_channels: int, n_latent: int) -> None:
        """Raise ``ValueError`` naming ``where.<field>`` for the first bad value."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`{where}.name` must be a non-empty string, got {self.name!r}")
        _check_probability(self.share, f"{where}.share")
        _check_probability(self.organic_rate, f"{where}.organic_rate")
        check_scalar(
            self.basket_median,
            f"{where}.basket_median",
            (int, float),
            min_val=0.0,
            min_inclusive=False,
        )
        check_scalar(
            self.basket_sigma, f"{where}.basket_sigma", (int, float), min_val=0.0, max_val=3.0
        )
        check_scalar(
            self.conversion_logit,
            f"{where}.conversion_logit",
            (int, float),
            min_val=-20.0,
            max_val=20.0,
        )
        check_scalar(
            self.discount_sensitivity, f"{where}.discount_sensitivity", (int, float), min_val=0.0
        )
        check_scalar(
            self.fatigue_sensitivity, f"{where}.fatigue_sensitivity", (int, float), min_val=0.0
        )
        _check_probability(self.churn_base, f"{where}.churn_base")
        check_scalar(self.frequency_mean, f"{where}.frequency_mean", (int, float), min_val=0.0)
        _check_vector(self.open_rates, f"{where}.open_rates", n_channels, 0.0, 1.0)
        _check_vector(self.taste_mean, f"{where}.taste_mean", n_latent, None, None)
        if self.consent_multipliers is not None:
            _check_vector(
                self.consent_multipliers, f"{where}.consent_multipliers", n_channels, 0.0, None
            )
        check_scalar(
            self.unsubscribe_multiplier,
            f"{where}.unsubscribe_multiplier",
            (int, float),
            min_val=0.0,
        )
        lo_hi = self.recency_range
        if (
            not isinstance(lo_hi, (tuple, list))
            or len(lo_hi) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in lo_hi)
            or not 0 <= lo_hi[0] <= lo_hi[1]
        ):
            raise ValueError(
                f"`{where}.recency_range` must be two integers 0 <= lo <= hi, got {lo_hi!r}"
            )


@dataclass(frozen=True)
class WorldSpec:
    """Every ground-truth parameter of a simulated customer world.

    The dynamics these parameters drive are written once, in
    :mod:`campaignrl.simulators.core`; the README explains them with a figure.
    """

    name: str
    """preset or user name of the world"""
    segments: tuple[SegmentSpec, ...]
    """the segment model: customer archetypes and their shares"""
    offer_tastes: tuple[tuple[float, ...], ...]
    """latent vector of each offer (rows follow ``catalog.offers``); affinity = taste . offer"""
    catalog: Catalog = field(default_factory=default_catalog)
    """offers and channels, with their costs"""
    taste_noise: float = 0.6
    """standard deviation of a customer's taste around the segment's centre"""
    affinity_weight: float = 1.0
    """log-odds of buying per unit of affinity"""
    discount_sensitivity_noise: float = 0.3
    """log-scale spread of each customer's discount sensitivity around the segment's"""
    margin_rate: float = 0.35
    """gross margin on the basket value, before offer costs"""
    fatigue_decay: float = 0.6
    """share of fatigue left after one period: ``F' = decay * F + weight(channel)``"""
    fatigue_organic_penalty: float = 0.0
    """how fatigue lowers organic purchases: ``organic * exp(-penalty * F)`` (annoyance)"""
    channel_conversion: tuple[float, ...] = (1.0, 0.45, 0.8)
    """per channel, multiplier of the chance that an opened message converts (an SMS is read
    by nearly everyone but acted on less often than an opened email)"""
    unsubscribe_base: tuple[float, ...] = (0.002, 0.012, 0.010)
    """chance per send of opting out of that channel, for a rested customer, per channel"""
    unsubscribe_fatigue_slope: float = 0.3
    """opt-out chance grows as ``base * (1 + slope * F)``"""
    lapse_after: int = 8
    """periods without purchase after which a customer counts as lapsing"""
    winback_open_factor: float = 0.5
    """multiplier of the open rate for lapsing customers (win-back sends open about half)"""
    churn_slope: float = 0.002
    """extra churn chance per period of inactivity beyond ``lapse_after``"""
    churn_max: float = 0.2
    """cap on the churn chance per period"""
    contact_cap: int = 3
    """most contacts a customer may get in any ``cap_window`` consecutive periods"""
    cap_window: int = 4
    """length of the rolling window of the contact cap, in periods"""

    def __post_init__(self) -> None:
        if not isinstance(self.catalog, Catalog):
            raise TypeError(
                f"`WorldSpec.catalog` must be a Catalog, got {type(self.catalog).__name__}"
            )
        object.__setattr__(self, "segments", tuple(self.segments))
        object.__setattr__(self, "offer_tastes", tuple(tuple(r) for r in self.offer_tastes))
        object.__setattr__(self, "unsubscribe_base", tuple(self.unsubscribe_base))
        object.__setattr__(self, "channel_conversion", tuple(self.channel_conversion))
        self.validate()

    @property
    def n_latent(self) -> int:
        """Dimension of the latent taste space."""
        return len(self.offer_tastes[0]) if self.offer_tastes else 0

    @property
    def segment_names(self) -> tuple[str, ...]:
        """Segment names, in index order."""
        return tuple(s.name for s in self.segments)

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first invalid field."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`WorldSpec.name` must be a non-empty string, got {self.name!r}")
        cat = self.catalog
        if len(self.segments) == 0:
            raise ValueError("`WorldSpec.segments` must hold at least one SegmentSpec, got none")
        if len(self.offer_tastes) != cat.n_offers:
            raise ValueError(
                f"`WorldSpec.offer_tastes` must have one row per offer ({cat.n_offers}), "
                f"got {len(self.offer_tastes)}"
            )
        k = len(self.offer_tastes[0])
        if k == 0:
            raise ValueError(
                "`WorldSpec.offer_tastes` rows must have at least one dimension, got 0"
            )
        for i, row in enumerate(self.offer_tastes):
            _check_vector(row, f"WorldSpec.offer_tastes[{i}]", k, None, None)
        for i, seg in enumerate(self.segments):
            if not isinstance(seg, SegmentSpec):
                raise TypeError(
                    f"`WorldSpec.segments[{i}]` must be a SegmentSpec, got {type(seg).__name__}"
                )
            seg.validate(f"WorldSpec.segments[{i}]", cat.n_channels, k)
        names = [s.name for s in self.segments]
        if len(set(names)) != len(names):
            raise ValueError(f"`WorldSpec.segments` names must be unique, got {names}")
        total = math.fsum(s.share for s in self.segments)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"`WorldSpec.segments` shares must sum to 1, got {total:.6g}")
        check_scalar(self.taste_noise, "WorldSpec.taste_noise", (int, float), min_val=0.0)
        check_scalar(self.affinity_weight, "WorldSpec.affinity_weight", (int, float), min_val=0.0)
        check_scalar(
            self.discount_sensitivity_noise,
            "WorldSpec.discount_sensitivity_noise",
            (int, float),
            min_val=0.0,
            max_val=2.0,
        )
        _check_probability(self.margin_rate, "WorldSpec.margin_rate")
        check_scalar(
            self.fatigue_decay,
            "WorldSpec.fatigue_decay",
            (int, float),
            min_val=0.0,
            max_val=1.0,
            max_inclusive=False,
        )
        check_scalar(
            self.fatigue_organic_penalty,
            "WorldSpec.fatigue_organic_penalty",
            (int, float),
            min_val=0.0,
        )
        _check_vector(
            self.channel_conversion, "WorldSpec.channel_conversion", cat.n_channels, 0.0, 1.0
        )
        _check_vector(self.unsubscribe_base, "WorldSpec.unsubscribe_base", cat.n_channels, 0.0, 1.0)
        check_scalar(
            self.unsubscribe_fatigue_slope,
            "WorldSpec.unsubscribe_fatigue_slope",
            (int, float),
            min_val=0.0,
        )
        check_scalar(self.lapse_after, "WorldSpec.lapse_after", int, min_val=1)
        _check_probability(self.winback_open_factor, "WorldSpec.winback_open_factor")
        _check_probability(self.churn_slope, "WorldSpec.churn_slope")
        _check_probability(self.churn_max, "WorldSpec.churn_max")
        check_scalar(self.cap_window, "WorldSpec.cap_window", int, min_val=1, max_val=52)
        check_scalar(
            self.contact_cap, "WorldSpec.contact_cap", int, min_val=1, max_val=self.cap_window
        )

    def replace(self, **changes: Any) -> WorldSpec:
        """A copy with ``changes`` applied and validated (``dataclasses.replace``)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown WorldSpec field(s) {unknown}; fields are {sorted(known)}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: the simulator's parameter set, shared by fitted simulators."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["catalog"] = self.catalog.to_dict()
        out["segments"] = [asdict(s) for s in self.segments]
        for seg in out["segments"]:
            # Written only when it is not 1: a world without per-segment opt-out (every
            # preset) keeps the JSON it had before the field existed, so the manifests and
            # checksums of artifacts written earlier still match; from_dict reads 1 back.
            if seg["unsubscribe_multiplier"] == 1.0:
                del seg["unsubscribe_multiplier"]
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldSpec:
        """Inverse of :meth:`to_dict`; refuses unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown WorldSpec field(s) {unknown}")
        kwargs = dict(data)
        if "catalog" in kwargs:
            kwargs["catalog"] = Catalog.from_dict(kwargs["catalog"])
        segs = []
        for seg in kwargs.get("segments", []):
            seg = dict(seg)
            for key in ("open_rates", "taste_mean", "recency_range", "consent_multipliers"):
                if seg.get(key) is not None:
                    seg[key] = tuple(seg[key])
            segs.append(SegmentSpec(**seg))
        kwargs["segments"] = tuple(segs)
        return cls(**kwargs)

    def arrays(self) -> WorldArrays:
        """The parameters as numpy arrays indexed by segment, offer and channel."""
        return WorldArrays.from_spec(self)


@dataclass(frozen=True)
class WorldArrays:
    """Numpy view of a :class:`WorldSpec`, laid out for vectorized dynamics."""

    share: np.ndarray  # (S,)
    organic_rate: np.ndarray  # (S,)
    basket_mu: np.ndarray  # (S,) log of the median
    basket_sigma: np.ndarray  # (S,)
    basket_mean: np.ndarray  # (S,) exp(mu + sigma^2 / 2)
    open_rate: np.ndarray  # (S, C)
    consent_prob: np.ndarray  # (S, C)
    conversion_logit: np.ndarray  # (S,)
    discount_sensitivity: np.ndarray  # (S,)
    fatigue_sensitivity: np.ndarray  # (S,)
    churn_base: np.ndarray  # (S,)
    recency_lo: np.ndarray  # (S,)
    recency_hi: np.ndarray  # (S,)
    frequency_mean: np.ndarray  # (S,)
    taste_mean: np.ndarray  # (S, K)
    offer_taste: np.ndarray  # (O, K)
    offer_discount: np.ndarray  # (O,)
    offer_fixed_cost: np.ndarray  # (O,)
    offer_multiplier: np.ndarray  # (O,)
    offer_incentive: np.ndarray  # (O,)
    channel_cost: np.ndarray  # (C,)
    channel_fatigue: np.ndarray  # (C,)
    channel_conversion: np.ndarray  # (C,)
    unsubscribe_base: np.ndarray  # (C,)
    unsubscribe_multiplier: np.ndarray  # (S,)
    action_offer: np.ndarray  # (A,) -1 for no contact
    action_channel: np.ndarray  # (A,) -1 for no contact

    @classmethod
    def from_spec(cls, spec: WorldSpec) -> WorldArrays:
        """Lay out ``spec`` as arrays."""
        segs = spec.segments
        cat = spec.catalog
        n_c = cat.n_channels

        def seg(attr: str) -> np.ndarray:
            return np.array([getattr(s, attr) for s in segs], dtype=np.float64)

        mu = np.log(seg("basket_median"))
        sigma = seg("basket_sigma")
        consent = np.array([c.consent_rate for c in cat.channels])
        mult = np.array(
            [
                s.consent_multipliers if s.consent_multipliers is not None else (1.0,) * n_c
                for s in segs
            ]
        )
        return cls(
            share=seg("share"),
            organic_rate=seg("organic_rate"),
            basket_mu=mu,
            basket_sigma=sigma,
            basket_mean=np.exp(mu + 0.5 * sigma**2),
            open_rate=np.array([s.open_rates for s in segs], dtype=np.float64),
            consent_prob=np.clip(consent[None, :] * mult, 0.0, 1.0),
            conversion_logit=seg("conversion_logit"),
            discount_sensitivity=seg("discount_sensitivity"),
            fatigue_sensitivity=seg("fatigue_sensitivity"),
            churn_base=seg("churn_base"),
            recency_lo=np.array([s.recency_range[0] for s in segs], dtype=np.int64),
            recency_hi=np.array([s.recency_range[1] for s in segs], dtype=np.int64),
            frequency_mean=seg("frequency_mean"),
            taste_mean=np.array([s.taste_mean for s in segs], dtype=np.float64),
            offer_taste=np.array(spec.offer_tastes, dtype=np.float64),
            offer_discount=np.array([o.discount_rate for o in cat.offers], dtype=np.float64),
            offer_fixed_cost=np.array([o.fixed_cost for o in cat.offers], dtype=np.float64),
            offer_multiplier=np.array([o.basket_multiplier for o in cat.offers], dtype=np.float64),
            offer_incentive=np.array([o.incentive for o in cat.offers], dtype=np.float64),
            channel_cost=np.array([c.cost_per_contact for c in cat.channels], dtype=np.float64),
            channel_fatigue=np.array([c.fatigue_weight for c in cat.channels], dtype=np.float64),
            channel_conversion=np.array(spec.channel_conversion, dtype=np.float64),
            unsubscribe_base=np.array(spec.unsubscribe_base, dtype=np.float64),
            unsubscribe_multiplier=seg("unsubscribe_multiplier"),
            action_offer=np.asarray(cat.offer_of),
            action_channel=np.asarray(cat.channel_of),
        )


def _check_probability(value: Any, name: str) -> None:
    check_scalar(value, name, (int, float), min_val=0.0, max_val=1.0)


def _check_vector(values: Any, name: str, length: int, lo: float | None, hi: float | None) -> None:
    if not isinstance(values, (tuple, list)) or len(values) != length:
        got = len(values) if isinstance(values, (tuple, list)) else type(values).__name__
        raise ValueError(f"`{name}` must be a sequence of {length} numbers, got {got}: {values!r}")
    for i, v in enumerate(values):
        check_scalar(v, f"{name}[{i}]", (int, float), min_val=lo, max_val=hi)
