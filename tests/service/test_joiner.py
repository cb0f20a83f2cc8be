"""The joiner on a real SQLite store, with a fake clock: values computed by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from campaignrl.logs import read_logs, write_logs
from campaignrl.service.joiner import JoinCounts, Joiner, JoinSettings, aggregate_rewards
from campaignrl.service.records import DecisionRecord, RewardRecord
from campaignrl.service.store import DecisionStore, UnknownDecisionError, open_store

ACTIONS = ("no_contact", "pct10@sms", "pct20@email")
FEATURES = ("recency", "spend")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def decision(
    name: str,
    created_at: float,
    *,
    action: int = 1,
    customer: str = "c1",
    deferred: bool = False,
    mask: list[bool] | None = None,
) -> DecisionRecord:
    probabilities = np.array([0.5, 0.25, 0.25])
    return DecisionRecord(
        decision_id=name,
        event_id=None,
        customer_key=customer,
        created_at=created_at,
        action=action,
        action_name=ACTIONS[action],
        propensity=float(probabilities[action]),
        probabilities=probabilities,
        features=np.array([created_at / 100.0, len(name) * 1.5]),
        mask=None if mask is None else np.array(mask),
        policy_version=2,
        deferred=deferred,
        activated_at=None,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DecisionStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'decisions.db'}")
    yield opened
    opened.close()


def make_joiner(store: DecisionStore, clock: Clock, **settings: object) -> Joiner:
    values: dict[str, object] = {"window_seconds": 10.0, "settle_seconds": 0.0, **settings}
    return Joiner(
        store,
        JoinSettings(**values),  # type: ignore[arg-type]
        action_names=ACTIONS,
        feature_names=FEATURES,
        clock=clock,
    )


def post(joiner: Joiner, clock: Clock, at: float, *pairs: tuple[str, float]) -> None:
    clock.now = at
    joiner.record_rewards(list(pairs))


@pytest.fixture
def scene(store: DecisionStore) -> tuple[DecisionStore, Clock]:
    """d1 (rewarded several times, once late), d2 (no reward), d3 (only a late reward), all made
    at 100 (windows close at 110); d4 deferred, made at 100, rewarded at 105, activated at 200;
    d5 deferred and never activated."""
    clock = Clock(100.0)
    store.add_decisions(
        [
            decision("d1", 100.0),
            decision("d2", 100.0, action=0),
            decision("d3", 100.0, mask=[True, True, False]),
            decision("d4", 100.0, deferred=True, action=2),
            decision("d5", 100.0, deferred=True),
        ]
    )
    joiner = make_joiner(store, clock)
    post(joiner, clock, 101.0, ("d1", 2.0))
    post(joiner, clock, 102.0, ("d1", 1.0))
    post(joiner, clock, 103.0, ("d1", 5.0))
    post(joiner, clock, 105.0, ("d4", 4.0), ("d5", 9.0))  # before activation: not late
    post(joiner, clock, 110.0, ("d1", 0.5))  # exactly at the close: on time
    post(joiner, clock, 111.0, ("d1", 100.0), ("d3", 7.0))  # after the close: late
    clock.now = 200.0
    store.activate("d4", 200.0)
    post(joiner, clock, 209.0, ("d4", 1.0))
    post(joiner, clock, 211.0, ("d4", 50.0))  # late for d4 (closes at 210)
    return store, clock


def test_late_flags_are_stored(scene: tuple[DecisionStore, Clock]) -> None:
    store, _ = scene
    assert [r.late for r in store.rewards_for("d1")] == [False, False, False, False, True]
    assert [r.late for r in store.rewards_for("d3")] == [True]
    assert [r.late for r in store.rewards_for("d4")] == [False, False, True]
    assert [r.late for r in store.rewards_for("d5")] == [False]


@pytest.mark.parametrize(
    ("aggregation", "d1", "d4"),
    [
        ("sum", 2.0 + 1.0 + 5.0 + 0.5, 4.0 + 1.0),
        ("earliest", 2.0, 4.0),
        ("max", 5.0, 4.0),
    ],
)
def test_aggregation_late_and_default_rewards(
    scene: tuple[DecisionStore, Clock], aggregation: str, d1: float, d4: float
) -> None:
    store, clock = scene
    joiner = make_joiner(store, clock, aggregation=aggregation, default_reward=-1.0)
    batch = joiner.joined(until=300.0)
    assert batch.decision_ids == ("d1", "d2", "d3", "d4")  # d5 never activated
    assert batch.rewards.tolist() == [d1, -1.0, -1.0, d4]  # d3 had only a late reward
    assert batch.defaulted.tolist() == [False, True, True, False]
    assert batch.actions.tolist() == [1, 0, 1, 2]
    assert batch.propensities.tolist() == [0.25, 0.5, 0.25, 0.25]
    assert batch.policy_versions.tolist() == [2, 2, 2, 2]
    assert batch.features.shape == (4, 2) and batch.features[0].tolist() == [1.0, 3.0]
    assert batch.masks.tolist() == [[True] * 3, [True] * 3, [True, True, False], [True] * 3]
    assert batch.until == 300.0 and batch.n == 4


def test_only_closed_windows_are_joined_once(scene: tuple[DecisionStore, Clock]) -> None:
    store, clock = scene
    joiner = make_joiner(store, clock)
    assert joiner.joined(until=109.5).n == 0
    first = joiner.joined(until=110.0)  # windows from 100 close at 110
    assert first.decision_ids == ("d1", "d2", "d3")
    assert joiner.joined(until=209.0, since=first.until).n == 0  # d4 closes at 210
    second = joiner.joined(until=210.0, since=first.until)
    assert second.decision_ids == ("d4",)
    assert joiner.joined(until=1e9, since=second.until).n == 0  # d5 never activated


def test_settle_margin_by_default(scene: tuple[DecisionStore, Clock]) -> None:
    store, clock = scene
    joiner = make_joiner(store, clock, settle_seconds=1.0)
    clock.now = 110.5  # d1's window closed at 110, but not yet 1 s ago
    assert joiner.joined().n == 0
    clock.now = 111.0
    batch = joiner.joined()
    assert batch.until == 110.0 and batch.decision_ids == ("d1", "d2", "d3")


def test_counts(scene: tuple[DecisionStore, Clock]) -> None:
    store, clock = scene
    joiner = make_joiner(store, clock)
    assert joiner.counts(now=150.0) == JoinCounts(
        decisions=5, pending_activation=1, rewards=10, late_rewards=3, joined=3, defaulted=2
    )
    clock.now = 500.0
    assert joiner.counts() == JoinCounts(5, 1, 10, 3, 4, 2)


def test_unknown_decision_stores_nothing(store: DecisionStore) -> None:
    clock = Clock(1.0)
    store.add_decisions([decision("d1", 0.0)])
    joiner = make_joiner(store, clock)
    with pytest.raises(UnknownDecisionError, match="unknown `decision_id`: 'ghost'"):
        joiner.record_rewards([("d1", 1.0), ("ghost", 1.0)])
    assert store.counts().rewards == 0


def test_changed_settings_keep_what_is_stored(scene: tuple[DecisionStore, Clock]) -> None:
    store, clock = scene
    wide = make_joiner(store, clock, window_seconds=1000.0)
    # the late flags were fixed at arrival: a wider window does not un-late d1's 100.0
    assert wide.joined(until=1100.0).rewards[0] == 8.5
    assert store.counts().late_rewards == 3


def test_export_logs_round_trips_through_read_logs(
    scene: tuple[DecisionStore, Clock], tmp_path: Path
) -> None:
    store, clock = scene
    store.add_decisions([decision("e1", 150.0, customer="c2")])  # window closes at 160
    joiner = make_joiner(store, clock, default_reward=-1.0)
    frame = joiner.export_logs(until=300.0)
    assert list(frame.columns) == [
        "decision_id",
        "timestamp",
        "customer_id",
        "episode_id",
        "step",
        "action",
        "propensity",
        "reward",
        "policy_version",
        "allowed=no_contact",
        "allowed=pct10@sms",
        "allowed=pct20@email",
        "recency",
        "spend",
    ]
    assert frame["decision_id"].tolist() == ["d1", "d2", "d3", "d4", "e1"]
    assert frame["reward"].tolist() == [8.5, -1.0, -1.0, 5.0, -1.0]
    assert frame["step"].tolist() == [0, 1, 2, 3, 0]  # d5 (step 4) is not active
    assert frame["customer_id"].tolist() == ["c1"] * 4 + ["c2"]
    assert frame["timestamp"].iloc[0] == pd.Timestamp("1970-01-01 00:01:40", tz="UTC")
    assert frame["allowed=pct20@email"].tolist() == [True, True, False, True, True]
    path = write_logs(frame, tmp_path / "logs.parquet")
    data = read_logs(path, action_names=ACTIONS)
    assert data.actions.tolist() == [1, 0, 1, 2, 1]
    assert data.rewards.tolist() == [8.5, -1.0, -1.0, 5.0, -1.0]
    assert data.feature_names == FEATURES
    assert data.features is not None and data.features[4].tolist() == [1.5, 3.0]
    assert data.masks is not None and data.masks[2].tolist() == [True, True, False]
    assert data.steps is not None and data.steps.tolist() == [0, 1, 2, 3, 0]
    assert data.episode_ids is not None and data.episode_ids.tolist() == [0, 0, 0, 0, 1]

    since = joiner.export_logs(since=150.0, until=300.0)
    assert since["decision_id"].tolist() == ["e1"] and since["step"].tolist() == [0]
    assert joiner.export_logs(until=155.0)["decision_id"].tolist() == ["d1", "d2", "d3"]


def test_empty_export_has_the_schema(store: DecisionStore) -> None:
    frame = make_joiner(store, Clock(0.0)).export_logs()
    assert len(frame) == 0 and frame.columns[0] == "decision_id" and "spend" in frame.columns


def test_decision_of_another_action_set_is_refused(store: DecisionStore) -> None:
    store.add_decisions([decision("d1", 0.0)])
    joiner = Joiner(
        store,
        JoinSettings(window_seconds=1.0, settle_seconds=0.0),
        action_names=("no_contact", "other@sms", "pct20@email"),
        feature_names=FEATURES,
    )
    with pytest.raises(ValueError, match="logged action 'pct10@sms' at index 1, but the policy"):
        joiner.joined(until=5.0)


def test_aggregate_rewards_ignores_late_and_empty() -> None:
    late = [RewardRecord("d", 3.0, 1.0, late=True)]
    assert aggregate_rewards(late, "sum") is None
    assert aggregate_rewards([], "max") is None
    with pytest.raises(ValueError, match="`aggregation` must be one of"):
        aggregate_rewards([RewardRecord("d", 1.0, 1.0)], "mean")


BAD_SETTINGS = [
    ({"window_seconds": 0.0}, ValueError, "`window_seconds` must be > 0, got 0.0"),
    ({"window_seconds": -1.0}, ValueError, "`window_seconds` must be >= 0.0, got -1.0"),
    ({"window_seconds": "60"}, TypeError, "`window_seconds` must be of type"),
    ({"aggregation": "mean"}, ValueError, "`aggregation` must be one of .*got 'mean'"),
    ({"default_reward": float("nan")}, ValueError, "`default_reward` must be finite"),
    ({"default_reward": True}, TypeError, "`default_reward` must be of type"),
    ({"settle_seconds": -0.5}, ValueError, "`settle_seconds` must be >= 0.0, got -0.5"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD_SETTINGS)
def test_bad_settings(kwargs: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        JoinSettings(**kwargs)  # type: ignore[arg-type]


BAD_JOINERS = [
    ({"action_names": ()}, "`action_names` must not be empty"),
    ({"feature_names": ("a", "a")}, "`feature_names` must be unique"),
    ({"feature_names": ("step", "x")}, r"`feature_names` must not reuse log schema columns"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_JOINERS)
def test_bad_joiner_arguments(
    store: DecisionStore, kwargs: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"action_names": ACTIONS, "feature_names": FEATURES, **kwargs}
    with pytest.raises(ValueError, match=message):
        Joiner(store, **values)  # type: ignore[arg-type]


def test_from_store_takes_the_names_of_the_newest_version(
    scene: tuple[DecisionStore, Clock],
) -> None:
    store, clock = scene
    with pytest.raises(ValueError, match="the store has no registered policy version"):
        Joiner.from_store(store)
    store.add_policy_version(1, ("no_contact", "old@sms", "pct20@email"), FEATURES, at=1.0)
    store.add_policy_version(2, ACTIONS, FEATURES, at=2.0)
    joiner = Joiner.from_store(store, JoinSettings(settle_seconds=0.0), clock=clock)
    assert joiner.action_names == ACTIONS and joiner.feature_names == FEATURES
    assert joiner.export_logs(until=1e9)["decision_id"].tolist() == ["d1", "d2", "d3", "d4"]


# ---------------------------------------------------------------------------- outcomes

ALL_KNOWN = {"opened": True, "purchased": False, "basket_value": 0.0, "unsubscribed": False,
             "churned": False}  # fmt: skip


def post_outcomes(
    joiner: Joiner, clock: Clock, at: float, decision_id: str, reward: float, **outcomes: Any
) -> None:
    clock.now = at
    joiner.record_rewards([(decision_id, reward)], outcomes=[outcomes or None])


@pytest.fixture
def outcome_scene(store: DecisionStore) -> tuple[DecisionStore, Clock]:
    """o1, o2 (no_contact), o3 made at 100 (windows close at 110), with reported outcomes:
    o1 twice on time and once late, o2 once (no opened, no basket), o3 twice."""
    clock = Clock(100.0)
    store.add_decisions(
        [
            decision("o1", 100.0, customer="a"),
            decision("o2", 100.0, customer="b", action=0),
            decision("o3", 100.0, customer="c", action=2),
        ]
    )
    joiner = make_joiner(store, clock)
    post_outcomes(joiner, clock, 101.0, "o1", 2.0, **ALL_KNOWN)
    post_outcomes(joiner, clock, 105.0, "o1", 3.0, purchased=True, basket_value=12.5)
    post_outcomes(joiner, clock, 112.0, "o1", 50.0, basket_value=100.0, churned=True)  # late
    post_outcomes(joiner, clock, 102.0, "o2", 0.0, purchased=False, unsubscribed=False,
                  churned=True)  # fmt: skip
    post_outcomes(joiner, clock, 103.0, "o3", 1.0, opened=False, purchased=True,
                  basket_value=4.0, unsubscribed=True, churned=False)  # fmt: skip
    post_outcomes(joiner, clock, 104.0, "o3", 1.0, basket_value=6.0)
    return store, clock


# By hand, over the on-time reports. o1: opened any(T) = T; purchased any(F, T) = T; basket
# 0 + 12.5 (the late 100.0 left out); churned F (the late T left out). o2 (no_contact): opened
# F by definition; basket 0 as purchased is F. o3: basket 4 + 6.
EXPECTED_OUTCOMES = {
    "sum": {
        "opened": [True, False, False],
        "purchased": [True, False, True],
        "basket_value": [12.5, 0.0, 10.0],
        "unsubscribed": [False, False, True],
        "churned": [False, True, False],
    },
    "max": {"basket_value": [12.5, 0.0, 6.0], "purchased": [True, False, True]},
    # the first report of each column: o1's purchased F and basket 0 (at 101)
    "earliest": {"basket_value": [0.0, 0.0, 4.0], "purchased": [False, False, True]},
}


@pytest.mark.parametrize("aggregation", ["sum", "max", "earliest"])
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_aggregates_outcomes_and_read_logs_reads_them(
    outcome_scene: tuple[DecisionStore, Clock], tmp_path: Path, aggregation: str, suffix: str
) -> None:
    store, clock = outcome_scene
    frame = make_joiner(store, clock, aggregation=aggregation).export_logs(until=300.0)
    assert frame["decision_id"].tolist() == ["o1", "o2", "o3"]
    # after the required columns, in schema order, before the masks
    assert list(frame.columns[9:15]) == [
        "opened",
        "purchased",
        "basket_value",
        "unsubscribed",
        "churned",
        "allowed=no_contact",
    ]
    assert frame.attrs["outcomes_left_out"] == {}
    expected = EXPECTED_OUTCOMES[aggregation]
    for column, values in expected.items():
        assert frame[column].tolist() == values, column
    data = read_logs(write_logs(frame, tmp_path / f"logs{suffix}"), action_names=ACTIONS)
    assert data.outcomes is not None
    assert sorted(data.outcomes) == sorted(EXPECTED_OUTCOMES["sum"])
    for column, values in expected.items():
        assert data.outcomes[column].tolist() == values, column
    assert data.outcomes["basket_value"].dtype == np.float64
    assert data.outcomes["churned"].dtype == bool
    # the reward is unchanged by the outcomes: o1's on-time 2 + 3 (sum)
    if aggregation == "sum":
        assert data.rewards.tolist() == [5.0, 0.0, 2.0]


def test_an_outcome_unknown_for_one_decision_is_not_written(
    outcome_scene: tuple[DecisionStore, Clock], tmp_path: Path
) -> None:
    store, clock = outcome_scene
    # o4 (no_contact) has only a late reward, reporting everything: unknown, but its opened
    # is False by definition. o5 has a reward without outcomes (only its reward is known).
    store.add_decisions(
        [decision("o4", 100.0, customer="d", action=0), decision("o5", 100.0, customer="e")]
    )
    joiner = make_joiner(store, clock)
    post_outcomes(joiner, clock, 111.0, "o4", 1.0, **{**ALL_KNOWN, "opened": False})
    post_outcomes(joiner, clock, 101.0, "o5", 1.0)
    frame = joiner.export_logs(until=300.0)
    left_out = "2 of 5 exported decisions have no on-time report of it"
    assert frame.attrs["outcomes_left_out"] == {
        "opened": "1 of 5 exported decisions have no on-time report of it",  # o5 only
        "purchased": left_out,
        "basket_value": left_out,
        "unsubscribed": left_out,
        "churned": left_out,
    }
    assert not set(frame.columns) & set(EXPECTED_OUTCOMES["sum"])
    data = read_logs(write_logs(frame, tmp_path / "l.parquet"), action_names=ACTIONS)
    assert data.outcomes is None and data.rewards.tolist() == [5.0, 0.0, 2.0, 0.0, 1.0]
    # Once o5 reports it, opened is known for every decision: written.
    store.add_rewards([RewardRecord("o5", 0.0, 101.0, outcomes={"opened": True})])
    frame = joiner.export_logs(until=300.0)
    assert frame["opened"].tolist() == [True, False, False, False, True]
    assert "opened" not in frame.attrs["outcomes_left_out"]


def test_outcomes_contradicting_across_rewards_are_not_written(store: DecisionStore) -> None:
    clock = Clock(100.0)
    store.add_decisions([decision("p1", 100.0), decision("p2", 100.0, action=0, customer="b")])
    joiner = make_joiner(store, clock)
    # p1: a basket in one reward, "no purchase" in another (each valid alone)
    post_outcomes(joiner, clock, 101.0, "p1", 1.0, purchased=False, opened=True, churned=False)
    post_outcomes(joiner, clock, 102.0, "p1", 1.0, basket_value=5.0)
    # p2: no_contact reported opened
    post_outcomes(joiner, clock, 103.0, "p2", 1.0, purchased=False, basket_value=0.0,
                  opened=True, churned=False)  # fmt: skip
    frame = joiner.export_logs(until=300.0)
    assert frame.attrs["outcomes_left_out"] == {
        "purchased": "a basket above 0 without a purchase is reported for ['p1']",
        "basket_value": "a basket above 0 without a purchase is reported for ['p1']",
        "opened": "`opened` True is reported for no_contact decisions ['p2']",
    }
    assert frame["churned"].tolist() == [False, False]  # the consistent column is written
    data = read_logs(frame, action_names=ACTIONS)
    assert data.outcomes is not None and list(data.outcomes) == ["churned"]


def test_an_outcome_named_like_a_feature_is_not_written(store: DecisionStore) -> None:
    clock = Clock(100.0)
    store.add_decisions([decision("q1", 100.0)])
    joiner = Joiner(
        store,
        JoinSettings(window_seconds=10.0, settle_seconds=0.0),
        action_names=ACTIONS,
        feature_names=("recency", "churned"),
        clock=clock,
    )
    joiner.record_rewards([("q1", 1.0)], outcomes=[{"churned": True, "opened": True}])
    frame = joiner.export_logs(until=300.0)
    assert frame.attrs["outcomes_left_out"] == {"churned": "a feature of the policy has its name"}
    assert frame["opened"].tolist() == [True]
    assert frame["churned"].tolist() == [1.5 * 2]  # the feature (len("q1") * 1.5)


def test_record_rewards_needs_one_outcome_entry_per_reward(store: DecisionStore) -> None:
    store.add_decisions([decision("r1", 0.0)])
    joiner = make_joiner(store, Clock(1.0))
    with pytest.raises(ValueError, match=r"`outcomes` must have one entry per reward \(2\), got 1"):
        joiner.record_rewards([("r1", 1.0), ("r1", 2.0)], outcomes=[None])
    with pytest.raises(TypeError, match=r"`outcomes\['opened'\]` must be a bool, got int 1"):
        joiner.record_rewards([("r1", 1.0)], outcomes=[{"opened": 1}])
    assert store.counts().rewards == 0
