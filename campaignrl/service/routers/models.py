"""Request and response models, built for one policy's features and actions.

Input is strict: unknown keys are refused (``extra="forbid"``), a number must be a JSON number
(``true`` and ``"1.5"`` are not), finite (Python's JSON reader accepts ``NaN`` and
``Infinity``, and ``1e400`` reads as infinity: all refused) and within bounds that keep the
service's sums finite; strings must be valid Unicode without control characters (they reach
the store and the logs). Every refusal is a 422 naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic.json_schema import JsonDict

from campaignrl.service.records import MAX_BASKET_VALUE

__all__ = [
    "DECISION_ID_PATTERN",
    "MAX_ABS_FEATURE",
    "MAX_ABS_REWARD",
    "MAX_CUSTOMER_ID_CHARS",
    "MAX_EVENT_ID_CHARS",
    "ApiModels",
    "DecisionBatchOut",
    "DecisionId",
    "DecisionOut",
    "ErrorOut",
    "HealthOut",
    "OutcomesIn",
    "OutcomesOut",
    "PolicyOut",
    "RewardBatchOut",
    "RewardIn",
    "RewardOut",
    "ValidationErrorOut",
    "build_models",
    "reward_batch_model",
]

MAX_ABS_FEATURE = 1e9
"""largest feature magnitude accepted: ``z z^T`` of online learning stays far from overflow"""
MAX_ABS_REWARD = 1e12
"""largest reward magnitude accepted: sums of a decision's rewards stay finite"""
DECISION_ID_PATTERN = r"^[0-9a-f]{32}$"
"""a decision id as the service makes them: 32 hex digits of a UUIDv7 (time-ordered)"""

NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"
"""text without control characters (PostgreSQL text cannot hold NUL; logs stay one line)"""


def _clean_text(value: str) -> str:
    """Refuse strings the store cannot hold: lone surrogates.

    Control characters are refused by the schema's ``pattern``, where clients can see it.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


MAX_CUSTOMER_ID_CHARS = 256
"""longest customer id accepted (characters)"""
MAX_EVENT_ID_CHARS = 128
"""longest event id (idempotency key) accepted (characters)"""

# A string only: "42" for a numeric id. One type keeps every 422 simple, and a JSON number
# would lose digits beyond 2^53 in many clients before it reached the hash.
CustomerId = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=MAX_CUSTOMER_ID_CHARS, pattern=NO_CONTROL),
    AfterValidator(_clean_text),
]
EventId = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=MAX_EVENT_ID_CHARS, pattern=NO_CONTROL),
    AfterValidator(_clean_text),
]
DecisionId = Annotated[str, Field(strict=True, pattern=DECISION_ID_PATTERN)]
Feature = Annotated[
    float,
    Field(strict=True, allow_inf_nan=False, ge=-MAX_ABS_FEATURE, le=MAX_ABS_FEATURE),
]
Reward = Annotated[
    float, Field(strict=True, allow_inf_nan=False, ge=-MAX_ABS_REWARD, le=MAX_ABS_REWARD)
]

_STRICT = ConfigDict(extra="forbid", strict=True)


class ErrorOut(BaseModel):
    """An error: what went wrong, in one sentence."""

    detail: str


class ValidationItem(BaseModel):
    """One refused field."""

    loc: list[str | int]
    """where: ``["body", "features", "recency"]``"""
    msg: str
    """what is wrong"""
    type: str
    """a machine-readable kind (pydantic's, or ``decision_input``, ``policy_refused``)"""


class ValidationErrorOut(BaseModel):
    """A 422: every refused field."""

    detail: list[ValidationItem]


Flag = Annotated[bool, Field(strict=True)]
Basket = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0.0, le=MAX_BASKET_VALUE)]

_BASKET_WITHOUT_PURCHASE: JsonDict = {
    "required": ["purchased", "basket_value"],
    "properties": {
        "purchased": {"const": False},
        "basket_value": {"type": "number", "exclusiveMinimum": 0},
    },
}
"""the one combination refused, stated in the schema (``not``) where clients can see it"""


class OutcomesIn(BaseModel):
    """What the decision led to, as far as this reward knows: any subset of the outcomes.

    An absent (or ``null``) outcome is not reported: unknown, never false. Exported per
    decision over its on-time rewards (``campaignrl logs export``).
    """

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"not": _BASKET_WITHOUT_PURCHASE}
    )
    opened: Flag | None = Field(None, description="the contact was opened (read)")
    purchased: Flag | None = Field(None, description="the customer bought (this period)")
    basket_value: Basket | None = Field(
        None, description="value of the basket bought; 0 without a purchase"
    )
    unsubscribed: Flag | None = Field(None, description="opted out of the contacted channel")
    churned: Flag | None = Field(None, description="left for good")

    @model_validator(mode="after")
    def _no_basket_without_purchase(self) -> OutcomesIn:
        if self.purchased is False and self.basket_value is not None and self.basket_value > 0:
            raise ValueError(
                f"`basket_value` must be 0 when `purchased` is false, got {self.basket_value!r}"
            )
        return self

    def reported(self) -> dict[str, bool | float] | None:
        """The outcomes given (``null`` ones left out), or ``None`` if none is."""
        return self.model_dump(exclude_none=True) or None


class RewardIn(BaseModel):
    """A reward for a decision."""

    model_config = _STRICT
    decision_id: DecisionId
    reward: Reward
    outcomes: OutcomesIn | None = Field(
        None, description="what the decision led to (any subset); stored with the reward"
    )


class OutcomesOut(BaseModel):
    """The outcomes stored with a reward (those given, ``null`` ones left out)."""

    opened: bool | None = None
    purchased: bool | None = None
    basket_value: float | None = None
    unsubscribed: bool | None = None
    churned: bool | None = None


class RewardOut(BaseModel):
    """A stored reward."""

    decision_id: str
    reward: float
    received_at: float
    """unix seconds UTC"""
    late: bool
    """arrived after the decision's window closed: stored and counted, never joined"""
    outcomes: OutcomesOut | None = None
    """the outcomes stored with it, or ``null`` when none was given"""


class RewardBatchOut(BaseModel):
    """The stored rewards, in the order sent."""

    rewards: list[RewardOut]


class DecisionOut(BaseModel):
    """A decision, logged and committed."""

    decision_id: str
    event_id: str | None
    action: str
    """the action's name: ``no_contact`` or ``<offer>@<channel>``"""
    action_index: int
    """its index in the policy's actions"""
    offer: str | None
    channel: str | None
    propensity: float
    """the exact probability of this action under the served policy and its exploration"""
    policy_version: int
    deferred: bool
    activated: bool
    """whether the decision counts (made, or activated if deferred)"""
    replayed: bool
    """true when ``event_id`` was seen before: this is the first decision for it"""


class DecisionBatchOut(BaseModel):
    """The decisions, in the order asked."""

    decisions: list[DecisionOut]


class PolicyOut(BaseModel):
    """The version serving now."""

    version: int
    kind: str
    history: list[int]
    """versions served, oldest first; the last is this one"""
    feature_names: list[str]
    action_names: list[str]
    manifest: dict[str, Any]
    """the artifact's ``manifest.json``"""


class HealthOut(BaseModel):
    """Liveness or readiness."""

    status: str
    policy_version: int | None = None


@dataclass(frozen=True)
class ApiModels:
    """The models built for one policy."""

    feature_names: tuple[str, ...]
    action_names: tuple[str, ...]
    features: type[BaseModel]
    decision_in: type[BaseModel]
    decision_batch_in: type[BaseModel]
    max_batch: int


def build_models(
    feature_names: tuple[str, ...], action_names: tuple[str, ...], *, max_batch: int
) -> ApiModels:
    """Request models whose ``features`` are exactly ``feature_names``, masks ``action_names``.

    Feature names need not be Python identifiers (``segment=loyal``): each field is ``f<i>``
    with the name as its alias, and error locations show the name.

    Examples:
        >>> m = build_models(("recency", "segment=new"), ("no_contact", "a@email"), max_batch=5)
        >>> sorted(m.features.model_json_schema()["properties"])
        ['recency', 'segment=new']
    """
    fields: dict[str, Any] = {
        f"f{i}": (Feature, Field(alias=name)) for i, name in enumerate(feature_names)
    }
    features = create_model(
        "Features",
        __config__=ConfigDict(extra="forbid", strict=True, populate_by_name=False),
        __doc__="Exactly the policy's features, each a finite number.",
        **fields,
    )
    action = Literal.__getitem__(tuple(action_names))
    n_a = len(action_names)
    mask = (
        Annotated[
            list[Annotated[bool, Field(strict=True)]],
            # at least one allowed action (checked by the decider; stated in the schema)
            Field(min_length=n_a, max_length=n_a, json_schema_extra={"contains": {"const": True}}),
        ]
        | Annotated[list[action], Field(min_length=1, max_length=n_a)]  # type: ignore[valid-type]
        | None
    )
    decision_in = create_model(
        "DecisionIn",
        __config__=_STRICT,
        __doc__="One customer to decide for.",
        customer_id=(CustomerId, Field(description="raw id; stored only as a keyed hash")),
        features=(features, ...),
        event_id=(
            EventId | None,
            Field(None, description="idempotency key: a retry returns the first decision"),
        ),
        deferred=(
            Annotated[bool, Field(strict=True)],
            Field(False, description="counts only once activated (POST .../activate)"),
        ),
        mask=(
            mask,
            Field(
                None,
                description=f"allowed actions: {n_a} booleans in the policy's action order, "
                "or a list of allowed action names; default: all",
            ),
        ),
    )
    decision_batch_in = create_model(
        "DecisionBatchIn",
        __config__=_STRICT,
        __doc__=f"Up to {max_batch} customers, decided by the same policy version.",
        decisions=(list[decision_in], Field(max_length=max_batch)),  # type: ignore[valid-type]
    )
    return ApiModels(
        tuple(feature_names),
        tuple(action_names),
        features,
        decision_in,
        decision_batch_in,
        max_batch,
    )


def reward_batch_model(max_batch: int) -> type[BaseModel]:
    """:class:`RewardBatchIn` with at most ``max_batch`` rewards."""
    return create_model(
        "RewardBatchIn",
        __config__=_STRICT,
        __doc__=f"Up to {max_batch} rewards, stored all together or none of them.",
        rewards=(list[RewardIn], Field(max_length=max_batch)),
    )
