"""The stored records: normalised on construction, bad fields refused by name."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from campaignrl.service.records import DecisionRecord, RewardRecord


def fields(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "decision_id": "d1",
        "event_id": None,
        "customer_key": "ab",
        "created_at": 5.0,
        "action": 1,
        "action_name": "pct10@sms",
        "propensity": 0.25,
        "probabilities": [0.75, 0.25],
        "features": [1.0, 2.0],
        "mask": None,
        "policy_version": 1,
        "deferred": False,
        "activated_at": None,
    }
    values.update(changes)
    return values


def test_normalised_read_only_arrays_and_activation() -> None:
    record = DecisionRecord(**fields(action=np.int64(1), created_at=5))
    assert record.action == 1 and type(record.action) is int
    assert record.created_at == 5.0 and type(record.created_at) is float
    assert record.probabilities.dtype == np.float64 and not record.probabilities.flags.writeable
    assert record.activated_at == 5.0 and record.active  # made, not deferred: active at once
    deferred = DecisionRecord(**fields(deferred=True))
    assert deferred.activated_at is None and not deferred.active


def test_equality_compares_arrays_bit_for_bit() -> None:
    assert DecisionRecord(**fields()) == DecisionRecord(**fields())
    assert DecisionRecord(**fields()) != DecisionRecord(**fields(features=[1.0, 2.0000001]))
    assert DecisionRecord(**fields()) != DecisionRecord(**fields(mask=[True, True]))
    assert DecisionRecord(**fields(features=[0.0])) != DecisionRecord(**fields(features=[-0.0]))


BAD_DECISIONS = [
    ({"propensity": 0.0}, ValueError, r"`propensity` must be in \(0, 1\], got 0.0"),
    ({"propensity": 1.5}, ValueError, r"`propensity` must be in \(0, 1\], got 1.5"),
    ({"propensity": float("nan")}, ValueError, "`propensity` must be finite"),
    ({"propensity": "0.5"}, TypeError, "`propensity` must be a number, got str"),
    ({"action": 2}, ValueError, r"`action` must index `probabilities` \(0..1\), got 2"),
    ({"action": True}, TypeError, "`action` must be an int, got bool"),
    ({"action": 1.0}, TypeError, "`action` must be an int, got float"),
    ({"policy_version": "1"}, TypeError, "`policy_version` must be an int, got str"),
    ({"features": [[1.0]]}, ValueError, "`features` must be a 1D array, got 2D array"),
    ({"features": [np.inf]}, ValueError, "`features` must be finite"),
    ({"mask": [True]}, ValueError, r"`mask` must have one entry per action \(2\), got 1"),
    ({"mask": [1, 1]}, TypeError, "`mask` must be a bool array, got dtype int64"),
    ({"mask": [True, False]}, ValueError, "`mask` must allow the logged `action` 1"),
    ({"decision_id": ""}, TypeError, "`decision_id` must be a non-empty str"),
    ({"event_id": 7}, TypeError, "`event_id` must be a non-empty str or None, got 7"),
    ({"deferred": 1}, TypeError, "`deferred` must be a bool, got 1"),
    ({"created_at": float("inf")}, ValueError, "`created_at` must be finite"),
    ({"activated_at": float("nan")}, ValueError, "`activated_at` must be finite"),
]


@pytest.mark.parametrize(("changes", "error", "message"), BAD_DECISIONS)
def test_bad_decisions(changes: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        DecisionRecord(**fields(**changes))


BAD_REWARDS = [
    ({"decision_id": ""}, TypeError, "`decision_id` must be a non-empty str"),
    ({"reward": float("nan")}, ValueError, "`reward` must be finite"),
    ({"reward": None}, TypeError, "`reward` must be a number, got NoneType"),
    ({"received_at": "now"}, TypeError, "`received_at` must be a number, got str"),
    ({"late": "no"}, TypeError, "`late` must be a bool, got 'no'"),
]


@pytest.mark.parametrize(("changes", "error", "message"), BAD_REWARDS)
def test_bad_rewards(changes: dict[str, Any], error: type, message: str) -> None:
    values: dict[str, Any] = {"decision_id": "d1", "reward": 1.0, "received_at": 2.0, **changes}
    with pytest.raises(error, match=message):
        RewardRecord(**values)


BAD_OUTCOMES = [
    ([("opened", True)], TypeError, "`outcomes` must be a mapping of outcome to value or None"),
    ({"opened": 1}, TypeError, r"`outcomes\['opened'\]` must be a bool, got int 1"),
    ({"churned": "true"}, TypeError, r"`outcomes\['churned'\]` must be a bool, got str 'true'"),
    ({"purchased": np.float64(1.0)}, TypeError, r"`outcomes\['purchased'\]` must be a bool"),
    ({"basket_value": True}, TypeError, r"`outcomes\['basket_value'\]` must be a number, got bool"),
    ({"basket_value": "9"}, TypeError, r"`outcomes\['basket_value'\]` must be a number, got str"),
    ({"basket_value": -0.5}, ValueError, r"`outcomes\['basket_value'\]` must be in \[0, 1e\+12\]"),
    ({"basket_value": 2e12}, ValueError, r"`outcomes\['basket_value'\]` must be in \[0, 1e\+12\]"),
    ({"basket_value": float("nan")}, ValueError, r"`outcomes\['basket_value'\]` must be finite"),
    ({"colour": True, "opened": True}, ValueError, r"keys must be among .* unknown \['colour'\]"),
    ({"purchased": False, "basket_value": 3.0}, ValueError,
     r"`outcomes\['basket_value'\]` must be 0 when `purchased` is False, got 3.0"),
]  # fmt: skip


@pytest.mark.parametrize(("outcomes", "error", "message"), BAD_OUTCOMES)
def test_bad_outcomes(outcomes: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        RewardRecord("d1", 1.0, 2.0, outcomes=outcomes)


def test_outcomes_are_normalised_read_only_and_hashable() -> None:
    given: dict[str, Any] = {
        "churned": np.bool_(False),
        "basket_value": 7,
        "opened": None,
        "purchased": True,
    }
    record = RewardRecord("d1", 1.0, 2.0, outcomes=given)
    assert record.outcomes is not None
    # schema order, numpy and int values converted, None (not reported) left out
    assert list(record.outcomes.items()) == [
        ("purchased", True),
        ("basket_value", 7.0),
        ("churned", False),
    ]
    assert [type(v) for v in record.outcomes.values()] == [bool, float, bool]
    with pytest.raises(TypeError):
        record.outcomes["opened"] = True  # type: ignore[index]
    same = RewardRecord("d1", 1.0, 2.0, outcomes={"purchased": True, "churned": False,
                                                   "basket_value": 7.0})  # fmt: skip
    assert record == same and hash(record) == hash(same)
    assert record != RewardRecord("d1", 1.0, 2.0, outcomes={"purchased": True})
    # nothing reported is no outcomes at all
    assert RewardRecord("d1", 1.0, 2.0, outcomes={}).outcomes is None
    unreported: dict[str, Any] = {"opened": None}
    assert RewardRecord("d1", 1.0, 2.0, outcomes=unreported) == RewardRecord("d1", 1.0, 2.0)
    # a basket of 0 with no purchase is consistent
    zero = RewardRecord("d1", 1.0, 2.0, outcomes={"purchased": False, "basket_value": 0.0})
    assert zero.outcomes is not None and zero.outcomes["basket_value"] == 0.0
