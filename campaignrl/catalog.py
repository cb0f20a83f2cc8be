"""The action catalog: offers, channels, their costs, and the flat action index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from campaignrl._checks import check_scalar

__all__ = [
    "NO_CONTACT",
    "Catalog",
    "Channel",
    "Offer",
    "default_catalog",
]

NO_CONTACT = "no_contact"
"""Name of action 0, which sends nothing."""


@dataclass(frozen=True)
class Offer:
    """An offer and what it costs when a customer redeems it.

    A redeemed offer on a basket of value ``b`` (before the offer) costs
    ``discount_rate * b * basket_multiplier + fixed_cost`` and the basket becomes
    ``b * basket_multiplier``.
    """

    name: str
    """stable identifier, used in action names (``<offer>@<channel>``)"""
    discount_rate: float = 0.0
    """fraction of the basket given back on redemption (0.10 for 10% off)"""
    fixed_cost: float = 0.0
    """cost per redemption independent of the basket (free shipping, in currency units)"""
    basket_multiplier: float = 1.0
    """how the offer scales the basket when redeemed (a bundle raises it)"""
    incentive: float = 0.0
    """value the customer perceives, as a fraction of the basket; what discount sensitivity
    multiplies"""
    description: str = ""
    """one line for people"""

    def __post_init__(self) -> None:
        _check_name(self.name, "Offer.name")
        check_scalar(
            self.discount_rate, "Offer.discount_rate", (int, float), min_val=0.0, max_val=1.0
        )
        check_scalar(self.fixed_cost, "Offer.fixed_cost", (int, float), min_val=0.0)
        check_scalar(
            self.basket_multiplier,
            "Offer.basket_multiplier",
            (int, float),
            min_val=0.0,
            min_inclusive=False,
        )
        check_scalar(self.incentive, "Offer.incentive", (int, float), min_val=0.0, max_val=1.0)


@dataclass(frozen=True)
class Channel:
    """A contact channel and its cost, reach and fatigue weight."""

    name: str
    """stable identifier, used in action names"""
    cost_per_contact: float
    """what one send costs, in currency units"""
    consent_rate: float
    """share of customers who consented to this channel"""
    fatigue_weight: float
    """fatigue one contact on this channel adds (email = 1)"""

    def __post_init__(self) -> None:
        _check_name(self.name, "Channel.name")
        check_scalar(self.cost_per_contact, "Channel.cost_per_contact", (int, float), min_val=0.0)
        check_scalar(
            self.consent_rate, "Channel.consent_rate", (int, float), min_val=0.0, max_val=1.0
        )
        check_scalar(self.fatigue_weight, "Channel.fatigue_weight", (int, float), min_val=0.0)


@dataclass(frozen=True)
class Catalog:
    """Offers x channels, flattened into one ``Discrete(1 + n_offers * n_channels)`` space.

    Action 0 is ``no_contact``; action ``1 + o * n_channels + c`` sends offer ``o`` on
    channel ``c`` and is named ``<offer>@<channel>``.

    Examples:
        >>> cat = default_catalog()
        >>> cat.n_actions
        19
        >>> cat.action_names[1], cat.action_index("pct10@sms")
        ('content@email', 5)
        >>> int(cat.offer_of[5]), int(cat.channel_of[5])
        (1, 1)
    """

    offers: tuple[Offer, ...]
    channels: tuple[Channel, ...]
    action_names: tuple[str, ...] = field(init=False)
    offer_of: np.ndarray = field(init=False, repr=False, compare=False)
    """offer index of every action, -1 for no contact"""
    channel_of: np.ndarray = field(init=False, repr=False, compare=False)
    """channel index of every action, -1 for no contact"""

    def __post_init__(self) -> None:
        if len(self.offers) == 0:
            raise ValueError("`offers` must hold at least one Offer, got none")
        if len(self.channels) == 0:
            raise ValueError("`channels` must hold at least one Channel, got none")
        for label, items in (("offers", self.offers), ("channels", self.channels)):
            names = [item.name for item in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"`{label}` names must be unique, got duplicates {dupes}")
        n_c = len(self.channels)
        names = [NO_CONTACT] + [f"{o.name}@{c.name}" for o in self.offers for c in self.channels]
        offer_of = np.array([-1] + [o for o in range(len(self.offers)) for _ in range(n_c)])
        channel_of = np.array([-1] + [c for _ in range(len(self.offers)) for c in range(n_c)])
        object.__setattr__(self, "offers", tuple(self.offers))
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "action_names", tuple(names))
        object.__setattr__(self, "offer_of", offer_of)
        object.__setattr__(self, "channel_of", channel_of)
        offer_of.setflags(write=False)
        channel_of.setflags(write=False)

    @property
    def n_offers(self) -> int:
        """Number of offers."""
        return len(self.offers)

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.channels)

    @property
    def n_actions(self) -> int:
        """Size of the flat action space, no-contact included."""
        return 1 + self.n_offers * self.n_channels

    def action_index(self, name: str) -> int:
        """Index of the action called ``name``; raises ``ValueError`` naming it if unknown."""
        try:
            return self.action_names.index(name)
        except ValueError:
            raise ValueError(
                f"unknown action {name!r}; actions are {', '.join(self.action_names)}"
            ) from None

    def action_indices(self, names: Sequence[str]) -> np.ndarray:
        """Vectorized :meth:`action_index`."""
        lookup = {n: i for i, n in enumerate(self.action_names)}
        out = np.empty(len(names), dtype=np.int64)
        for row, name in enumerate(names):
            if name not in lookup:
                raise ValueError(f"unknown action {name!r} at row {row}")
            out[row] = lookup[name]
        return out

    def to_dict(self) -> dict[str, object]:
        """Plain-JSON form (for manifests and logs)."""
        return {
            "offers": [vars(o) for o in self.offers],
            "channels": [vars(c) for c in self.channels],
            "action_names": list(self.action_names),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Catalog:
        """Inverse of :meth:`to_dict`."""
        offers = tuple(Offer(**o) for o in data["offers"])  # type: ignore[attr-defined]
        channels = tuple(Channel(**c) for c in data["channels"])  # type: ignore[attr-defined]
        return cls(offers, channels)


def default_catalog() -> Catalog:
    """Six offers on email, SMS and push.

    Channel costs and consent rates follow industry surveys (DESIGN.md, calibration): email
    about $0.001 a send and reachable for most customers, SMS $0.02 and 30-60% of the list,
    push free and 40-60% opted in. SMS is the most intrusive (fatigue weight 1.5).
    """
    offers = (
        Offer("content", description="content only: new arrivals, no incentive"),
        Offer("pct10", discount_rate=0.10, incentive=0.10, description="10% off the basket"),
        Offer("pct20", discount_rate=0.20, incentive=0.20, description="20% off the basket"),
        Offer("freeship", fixed_cost=6.0, incentive=0.08, description="free shipping ($6 to us)"),
        Offer(
            "bundle",
            discount_rate=0.15,
            basket_multiplier=1.6,
            incentive=0.12,
            description="15% off a bundle: larger basket",
        ),
        Offer("points2x", discount_rate=0.04, incentive=0.05, description="double loyalty points"),
    )
    channels = (
        Channel("email", cost_per_contact=0.001, consent_rate=0.92, fatigue_weight=1.0),
        Channel("sms", cost_per_contact=0.02, consent_rate=0.45, fatigue_weight=1.5),
        Channel("push", cost_per_contact=0.0, consent_rate=0.50, fatigue_weight=0.7),
    )
    return Catalog(offers, channels)


def _check_name(name: object, field_name: str) -> None:
    if not isinstance(name, str) or not name or any(ch in name for ch in "@ ,"):
        raise ValueError(
            f"`{field_name}` must be a non-empty string without '@', ',' or spaces, got {name!r}"
        )
