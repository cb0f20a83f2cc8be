"""The service's stored records: one decision, one reward (the shared contract of the store)."""

from __future__ import annotations

import math
import operator
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from campaignrl.logs.schema import BOOL_OUTCOME_COLUMNS, OUTCOME_COLUMNS

__all__ = ["MAX_BASKET_VALUE", "DecisionRecord", "RewardRecord", "check_outcomes"]

MAX_BASKET_VALUE = 1e12
"""largest ``basket_value`` accepted (``read_logs``' bound: sums over a decision stay finite)"""


def _finite(value: Any, name: str) -> float:
    """``value`` as a finite float, refusing bools, non-numbers and NaN/inf by ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    return number


def _vector(value: Any, name: str, dtype: type) -> np.ndarray:
    """A read-only 1-D copy of ``value`` as ``dtype``, refusing other shapes by ``name``."""
    array: np.ndarray = np.array(value, dtype=dtype, copy=True)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be a 1D array, got {array.ndim}D array")
    if dtype is np.float64 and not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite, got {array.tolist()!r}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class DecisionRecord:
    """One row of the decisions table.

    Arrays are copied into read-only ``float64`` (``bool`` for ``mask``) vectors. A decision
    that is not deferred is active from the moment it is made: when ``activated_at`` is
    ``None`` and ``deferred`` is false, ``activated_at`` is set to ``created_at``. Two records
    are equal when every field is, arrays compared bit for bit.

    Raises:
        TypeError: If a number is not a number (``bool`` is refused) or a name is not a string.
        ValueError: If a field is out of range (named in the message): ``propensity`` outside
            (0, 1], ``action`` outside the probability vector, a mask of another length or
            that forbids ``action``, or non-finite values.
    """

    decision_id: str
    """32 hex digits from the service (a UUIDv7: time-ordered, see runtime._decision_ids)"""
    event_id: str | None
    """the client's idempotency key (unique when not ``None``)"""
    customer_key: str
    """HMAC-SHA256 hex of the raw customer id (privacy.py); raw ids are never stored"""
    created_at: float
    """unix seconds UTC"""
    action: int
    """flat action index (0 = no_contact)"""
    action_name: str
    """the action's name, ``no_contact`` or ``<offer>@<channel>``"""
    propensity: float
    """probability of ``action`` under the served policy, in (0, 1]"""
    probabilities: np.ndarray
    """(A,) float64, the full probability vector served"""
    features: np.ndarray
    """(d,) float64 in the manifest's feature order"""
    mask: np.ndarray | None
    """(A,) bool, what was allowed, if the caller passed masks"""
    policy_version: int
    """the version of the policy that decided"""
    deferred: bool
    """whether the decision waits for an activation before it counts"""
    activated_at: float | None
    """unix seconds UTC; ``None`` while a deferred decision is not activated"""

    def __post_init__(self) -> None:
        for name in ("decision_id", "customer_key", "action_name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise TypeError(f"`{name}` must be a non-empty str, got {value!r}")
        if self.event_id is not None and (not isinstance(self.event_id, str) or not self.event_id):
            raise TypeError(f"`event_id` must be a non-empty str or None, got {self.event_id!r}")
        if not isinstance(self.deferred, (bool, np.bool_)):
            raise TypeError(f"`deferred` must be a bool, got {self.deferred!r}")
        set_ = object.__setattr__  # frozen: normalise the fields once, here
        set_(self, "deferred", bool(self.deferred))
        set_(self, "created_at", _finite(self.created_at, "created_at"))
        for name in ("action", "policy_version"):
            value = getattr(self, name)
            if isinstance(value, bool):
                raise TypeError(f"`{name}` must be an int, got bool {value!r}")
            try:
                set_(self, name, operator.index(value))
            except TypeError:
                raise TypeError(
                    f"`{name}` must be an int, got {type(value).__name__} {value!r}"
                ) from None
        propensity = _finite(self.propensity, "propensity")
        if not 0.0 < propensity <= 1.0:
            raise ValueError(f"`propensity` must be in (0, 1], got {self.propensity!r}")
        set_(self, "propensity", propensity)
        probabilities = _vector(self.probabilities, "probabilities", np.float64)
        set_(self, "probabilities", probabilities)
        set_(self, "features", _vector(self.features, "features", np.float64))
        if not 0 <= self.action < probabilities.size:
            raise ValueError(
                f"`action` must index `probabilities` (0..{probabilities.size - 1}), "
                f"got {self.action}"
            )
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.dtype != np.bool_:
                raise TypeError(f"`mask` must be a bool array, got dtype {mask.dtype}")
            mask = _vector(mask, "mask", np.bool_)
            if mask.size != probabilities.size:
                raise ValueError(
                    f"`mask` must have one entry per action ({probabilities.size}), got {mask.size}"
                )
            if not mask[self.action]:
                raise ValueError(
                    f"`mask` must allow the logged `action` {self.action}, it does not"
                )
            set_(self, "mask", mask)
        if self.activated_at is None:
            if not self.deferred:
                set_(self, "activated_at", self.created_at)
        else:
            set_(self, "activated_at", _finite(self.activated_at, "activated_at"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DecisionRecord):
            return NotImplemented
        scalars = (
            "decision_id",
            "event_id",
            "customer_key",
            "created_at",
            "action",
            "action_name",
            "propensity",
            "policy_version",
            "deferred",
            "activated_at",
        )
        if any(getattr(self, n) != getattr(other, n) for n in scalars):
            return False
        if (self.mask is None) != (other.mask is None):
            return False
        pairs = [(self.probabilities, other.probabilities), (self.features, other.features)]
        if self.mask is not None and other.mask is not None:
            pairs.append((self.mask, other.mask))
        return all(a.shape == b.shape and a.tobytes() == b.tobytes() for a, b in pairs)

    @property
    def active(self) -> bool:
        """Whether the decision counts for learning and OPE (made, or activated if deferred)."""
        return self.activated_at is not None


def check_outcomes(outcomes: Any, name: str = "outcomes") -> Mapping[str, bool | float] | None:
    """``outcomes`` checked and frozen: a read-only mapping in schema order, or ``None``.

    Keys are among :data:`~campaignrl.logs.schema.OUTCOME_COLUMNS` (any subset: an absent
    key, or one whose value is ``None``, was not reported); the four flags are bools
    (``1`` is refused) and ``basket_value`` a finite number in [0, :data:`MAX_BASKET_VALUE`]
    (``True`` is refused). A basket above 0 with ``purchased`` False is refused: by the
    schema's definition there is no basket without a purchase. Nothing reported -> ``None``.

    Raises:
        TypeError: If ``outcomes`` is not a mapping or a value has the wrong type (named).
        ValueError: If a key is unknown (named) or a value is out of range.

    Examples:
        >>> dict(check_outcomes({"purchased": True, "opened": None, "basket_value": 12}))
        {'purchased': True, 'basket_value': 12.0}
        >>> check_outcomes({"opened": 1})
        Traceback (most recent call last):
        ...
        TypeError: `outcomes['opened']` must be a bool, got int 1
    """
    if outcomes is None:
        return None
    if not isinstance(outcomes, Mapping):
        raise TypeError(
            f"`{name}` must be a mapping of outcome to value or None, "
            f"got {type(outcomes).__name__} {outcomes!r}"
        )
    unknown = [key for key in outcomes if key not in OUTCOME_COLUMNS]
    if unknown:
        raise ValueError(
            f"`{name}` keys must be among {list(OUTCOME_COLUMNS)}, got unknown {unknown!r}"
        )
    checked: dict[str, bool | float] = {}
    for key in OUTCOME_COLUMNS:  # schema order: equal reports compare (and hash) equal
        value = outcomes.get(key)
        if value is None:
            continue
        where = f"{name}[{key!r}]"
        if key in BOOL_OUTCOME_COLUMNS:
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"`{where}` must be a bool, got {type(value).__name__} {value!r}")
            checked[key] = bool(value)
        else:
            number = _finite(value, where)
            if not 0.0 <= number <= MAX_BASKET_VALUE:
                raise ValueError(f"`{where}` must be in [0, {MAX_BASKET_VALUE:g}], got {value!r}")
            checked[key] = number
    if checked.get("purchased") is False and checked.get("basket_value", 0.0) > 0.0:
        raise ValueError(
            f"`{name}['basket_value']` must be 0 when `purchased` is False, "
            f"got {checked['basket_value']!r}"
        )
    return types.MappingProxyType(checked) if checked else None


@dataclass(frozen=True)
class RewardRecord:
    """One reward posted for a decision, with the outcomes the client reported alongside.

    Raises:
        TypeError: If ``decision_id`` is not a non-empty string, a number is not a number or
            an outcome has the wrong type (see :func:`check_outcomes`).
        ValueError: If ``reward`` or ``received_at`` is not finite, or an outcome is unknown
            or out of range.
    """

    decision_id: str
    """the decision the reward is for"""
    reward: float
    """the observed reward (profit)"""
    received_at: float
    """unix seconds UTC"""
    late: bool = False
    """arrived after the decision's wait window closed (kept, counted, never trained on)"""
    outcomes: Mapping[str, bool | float] | None = None
    """what the decision led to, as far as this reward reports it: a read-only mapping of
    some of ``opened``, ``purchased``, ``basket_value``, ``unsubscribed``, ``churned``
    (:data:`~campaignrl.logs.schema.OUTCOME_COLUMNS`), or ``None`` when it reports none.
    An absent key is unknown, never False."""

    def __post_init__(self) -> None:
        if not isinstance(self.decision_id, str) or not self.decision_id:
            raise TypeError(f"`decision_id` must be a non-empty str, got {self.decision_id!r}")
        if not isinstance(self.late, (bool, np.bool_)):
            raise TypeError(f"`late` must be a bool, got {self.late!r}")
        object.__setattr__(self, "late", bool(self.late))
        object.__setattr__(self, "reward", _finite(self.reward, "reward"))
        object.__setattr__(self, "received_at", _finite(self.received_at, "received_at"))
        object.__setattr__(self, "outcomes", check_outcomes(self.outcomes))

    def __hash__(self) -> int:  # the outcomes mapping is not hashable: hash its items
        items = None if self.outcomes is None else tuple(self.outcomes.items())
        return hash((self.decision_id, self.reward, self.received_at, self.late, items))
