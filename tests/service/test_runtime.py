"""ServiceRuntime's per-request steps: decision ids, records from columns, acknowledgements."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from campaignrl.policies import ConstantPolicy, Exploration, save_policy
from campaignrl.service.decider import DecisionColumns, DecisionInputError
from campaignrl.service.runtime import ServiceRuntime, _decision_ids
from campaignrl.service.settings import ServiceSettings

FEATURES = ("recency", "frequency")
ACTIONS = ("no_contact", "pct10@email", "bundle@sms")
HASH_KEY = "hash-key-0123456789abcdef"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[ServiceRuntime]:
    policy = ConstantPolicy(
        FEATURES, ACTIONS, np.array([0.0, 1.0, 2.0]), Exploration("greedy", epsilon=0.3)
    )
    settings = ServiceSettings(
        hash_key=HASH_KEY,
        policy_dir=save_policy(policy, tmp_path / "policy"),
        seed=0,
        store_url=f"sqlite:///{tmp_path / 'd.db'}",
    )
    opened = ServiceRuntime.open(settings, clock=lambda: 7.0)
    yield opened
    opened.close()


@pytest.mark.parametrize("n", [1, 2, 17])
def test_decision_ids_of_any_count_are_sorted_uuid7s_of_now(n: int) -> None:
    before = time.time_ns() // 1_000_000
    ids = _decision_ids(n)
    after = time.time_ns() // 1_000_000
    assert len(ids) == len(set(ids)) == n and ids == sorted(ids)
    for text in ids:
        value = uuid.UUID(text)
        assert len(text) == 32 and value.version == 7 and value.variant == uuid.RFC_4122
        assert before <= int(text[:12], 16) <= after


def _columns(probs: list[list[float]], actions: list[int]) -> DecisionColumns:
    p = np.array(probs)
    a = np.array(actions, dtype=np.int64)
    return DecisionColumns(
        1, ACTIONS, a, p[np.arange(len(a)), a], p, np.zeros((len(a), 2)), None, [False] * len(a)
    )


@pytest.mark.parametrize(
    ("probs", "actions", "row"),
    [
        ([[0.2, 0.3, 0.5], [np.nan, 0.5, 0.5]], [0, 1], 1),
        ([[0.2, 0.3, 0.5], [np.inf, -np.inf, 0.5]], [0, 2], 1),
        ([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]], [0, 1], 0),  # a zero propensity
        ([[0.2, 0.3, 0.5], [0.2, 0.3, 1.5]], [0, 2], 1),  # above 1
        ([[0.2, 0.3, 0.5], [0.2, np.nan, 0.5]], [0, 1], 1),  # a NaN propensity
    ],
)
def test_records_refuse_the_first_unfit_row_by_field(
    runtime: ServiceRuntime, probs: list[list[float]], actions: list[int], row: int
) -> None:
    columns = _columns(probs, actions)
    with pytest.raises(DecisionInputError, match="non-finite scores") as info:
        runtime._records(["a", "b"], [None, None], [False, False], columns, "batch")
    assert info.value.loc == (row, "features")
    one = _columns(probs[row : row + 1], actions[row : row + 1])
    with pytest.raises(DecisionInputError) as info:
        runtime._records(["a"], [None], [False], one, "single")
    assert info.value.loc == ("features",)


def test_records_of_huge_but_finite_probabilities_pass(runtime: ServiceRuntime) -> None:
    # Only non-finite probabilities and propensities outside (0, 1] are refused.
    columns = _columns([[1e308, 1e308, 0.5], [0.2, 0.3, 0.5]], [2, 2])
    records = runtime._records(["a", "b"], [None, "e"], [False, True], columns, "batch")
    assert [r.propensity for r in records] == [0.5, 0.5]
    assert [r.activated_at for r in records] == [7.0, None]


def test_acknowledged_counts_new_and_replayed_decisions(runtime: ServiceRuntime) -> None:
    columns = _columns([[0.2, 0.3, 0.5]] * 3, [0, 1, 2])
    made = runtime._records(["a", "b", "c"], [None] * 3, [False, True, False], columns, "batch")
    value = runtime.metrics.value
    out = runtime._acknowledged(made, list(made), "batch")
    assert [(r is m, replayed) for (r, replayed), m in zip(out, made, strict=True)] == [
        (True, False)
    ] * 3
    assert value("campaignrl_decisions_total", {"endpoint": "batch", "deferred": "false"}) == 2
    assert value("campaignrl_decisions_total", {"endpoint": "batch", "deferred": "true"}) == 1
    # The store gave back an earlier decision for the second (its event id seen before), and
    # an equal copy of the third.
    earlier = replace(made[1], decision_id="0" * 32)
    copy = replace(made[2])
    out = runtime._acknowledged(made, [made[0], earlier, copy], "single")
    assert [replayed for _, replayed in out] == [False, True, False]
    assert out[1][0] is earlier and out[2][0] is copy
    assert value("campaignrl_decisions_replayed_total") == 1
    assert value("campaignrl_decisions_total", {"endpoint": "single", "deferred": "false"}) == 2
    assert value("campaignrl_decisions_total", {"endpoint": "single", "deferred": "true"}) == 0
    with pytest.raises(ValueError):
        runtime._acknowledged(made, made[:2], "batch")
