"""One contract test for every decision store backend (SQLite, a real PostgreSQL): no mocks."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from campaignrl.service.records import DecisionRecord, RewardRecord
from campaignrl.service.store import (
    DecisionStore,
    GroupCommitStore,
    PolicyVersionRow,
    StoreCounts,
    UnknownDecisionError,
    open_store,
)

A = 4
"""actions in the test records"""


def decision(
    i: int,
    *,
    event_id: str | None = None,
    customer: str = "c0",
    created_at: float | None = None,
    deferred: bool = False,
    mask: np.ndarray | None = None,
    action: int = 1,
) -> DecisionRecord:
    probabilities = np.array([0.1, 0.2, 0.3, 0.4])
    return DecisionRecord(
        decision_id=f"d{i:04d}",
        event_id=event_id,
        customer_key=customer,
        created_at=float(i) if created_at is None else created_at,
        action=action,
        action_name=f"a{action}",
        propensity=float(probabilities[action]),
        probabilities=probabilities,
        features=np.array([float(i), -0.5]),
        mask=mask,
        policy_version=3,
        deferred=deferred,
        activated_at=None,
    )


class TestDecisionStoreContract:
    """Every backend: the ``store`` fixture is an empty SQLite and an empty PostgreSQL store."""

    def test_is_a_decision_store(self, store: DecisionStore) -> None:
        assert isinstance(store, DecisionStore)
        assert store.counts() == StoreCounts(0, 0, 0, 0, 0)

    def test_round_trip_every_field_bit_exact(self, store: DecisionStore) -> None:
        awkward = np.array([np.pi, -0.0, 5e-324, 1.7976931348623157e308, -1e-300, 0.1 + 0.2])
        probabilities = np.array([0.1, 0.2, 0.3, 0.4]) / 1.0000000000000002
        record = DecisionRecord(
            decision_id="0f" * 16,
            event_id="evt-ü-1",
            customer_key="ab" * 32,
            created_at=1_767_225_600.123456789,
            action=3,
            action_name="pct10@sms",
            propensity=float(probabilities[3]),
            probabilities=probabilities,
            features=awkward,
            mask=np.array([True, False, False, True]),
            policy_version=17,
            deferred=True,
            activated_at=None,
        )
        plain = decision(2)  # no event id, no mask, not deferred
        assert store.add_decisions([record, plain]) == [record, plain]
        for original in (record, plain):
            back = store.get_decision(original.decision_id)
            assert back == original
            for name in ("probabilities", "features"):
                got, want = getattr(back, name), getattr(original, name)
                assert got.dtype == np.float64 and got.tobytes() == want.tobytes()
        back = store.get_decision(record.decision_id)
        assert back.mask is not None and back.mask.dtype == np.bool_
        assert back.mask.tolist() == [True, False, False, True]
        assert back.deferred is True and back.activated_at is None
        assert store.get_decision(plain.decision_id).mask is None
        assert store.get_decision(plain.decision_id).activated_at == 2.0

    def test_get_unknown_decision_names_it(self, store: DecisionStore) -> None:
        with pytest.raises(UnknownDecisionError, match="unknown `decision_id`: 'nope'") as info:
            store.get_decision("nope")
        assert isinstance(info.value, KeyError) and info.value.decision_ids == ("nope",)
        assert store.get_decisions(["nope"]) == {}

    def test_activation_times_are_those_of_the_stored_decisions(self, store: DecisionStore) -> None:
        store.add_decisions([decision(1), decision(2, deferred=True), decision(3, deferred=True)])
        store.activate("d0003", 7.25)
        times = store.activation_times(["d0001", "d0002", "d0003", "nope", "d0001"])
        # Not deferred: active when made (created_at 1.0); deferred: None until activated.
        assert times == {"d0001": 1.0, "d0002": None, "d0003": 7.25}
        assert store.activation_times([]) == {}

    def test_same_event_id_returns_the_first_decision_and_stores_once(
        self, store: DecisionStore
    ) -> None:
        first = decision(1, event_id="e1")
        assert store.add_decisions([first]) == [first]
        retry = decision(2, event_id="e1")  # the service made a new decision on the retry
        other = decision(3, event_id="e2")
        assert store.add_decisions([retry, other]) == [first, other]
        # twice in one batch: the second gets the first
        again = store.add_decisions([decision(4, event_id="e3"), decision(5, event_id="e3")])
        assert [r.decision_id for r in again] == ["d0004", "d0004"]
        assert store.counts().decisions == 3  # d1, d3, d4: d2 and d5 were never stored
        assert store.get_decisions(["d0002", "d0005"]) == {}

    def test_two_threads_racing_one_event_id_store_one_row(self, store: DecisionStore) -> None:
        barrier = threading.Barrier(2)
        results: list[DecisionRecord] = []
        errors: list[BaseException] = []

        def post(i: int) -> None:
            try:
                barrier.wait()
                results.extend(store.add_decisions([decision(i, event_id="race")]))
            except BaseException as error:  # surfaced below
                errors.append(error)

        threads = [threading.Thread(target=post, args=(i,)) for i in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(results) == 2 and results[0] == results[1]
        assert store.counts().decisions == 1

    def test_duplicate_decision_id_is_refused(self, store: DecisionStore) -> None:
        store.add_decisions([decision(1)])
        with pytest.raises(ValueError, match="`decision_id` already stored"):
            store.add_decisions([decision(1, created_at=9.0)])
        assert store.get_decision("d0001").created_at == 1.0

    def test_activation(self, store: DecisionStore) -> None:
        store.add_decisions([decision(1, deferred=True), decision(2)])
        assert store.counts().pending_activation == 1
        assert store.activate("d0001", 10.0).activated_at == 10.0
        assert store.activate("d0001", 20.0).activated_at == 10.0  # the first activation stays
        assert store.activate("d0002", 30.0).activated_at == 2.0  # active since it was made
        assert store.counts() == StoreCounts(2, 1, 0, 0, 0)
        with pytest.raises(UnknownDecisionError, match="'d9999'"):
            store.activate("d9999", 1.0)
        with pytest.raises(ValueError, match="`at` must be finite"):
            store.activate("d0001", float("nan"))

    def test_rewards_in_order_of_arrival(self, store: DecisionStore) -> None:
        store.add_decisions([decision(1), decision(2)])
        rewards = [
            RewardRecord("d0001", 3.0, 20.0),
            RewardRecord("d0001", 1.5, 10.0),
            RewardRecord("d0002", -2.0, 15.0, late=True),
            RewardRecord("d0001", 7.0, 10.0),  # same time as 1.5: storage order breaks the tie
        ]
        assert store.add_rewards(rewards) == rewards
        assert store.rewards_for("d0001") == [rewards[1], rewards[3], rewards[0]]
        assert store.rewards_for("d0002") == [rewards[2]]
        assert store.rewards_for("d0003") == []
        assert store.counts() == StoreCounts(2, 0, 0, 4, 1)

    def test_rewards_of_one_time_keep_their_order_across_statements(
        self, store: DecisionStore
    ) -> None:
        # 123 rewards go in several multi-row INSERTs (50, 50, 10, 10, 1, 1, 1); the ids
        # still count up in posting order, which rewards_for reads after received_at.
        store.add_decisions([decision(1)])
        rewards = [
            RewardRecord("d0001", float(i), 7.0, outcomes={"opened": True} if i == 60 else None)
            for i in range(123)
        ]
        assert store.add_rewards(rewards) == rewards
        assert store.rewards_for("d0001") == rewards

    def test_reward_outcomes_round_trip(self, store: DecisionStore) -> None:
        store.add_decisions([decision(1), decision(2)])
        rewards = [
            RewardRecord("d0001", 1.0, 1.0),  # none reported: NULLs, read back as None
            RewardRecord(
                "d0001",
                2.0,
                2.0,
                outcomes={
                    "opened": True,
                    "purchased": True,
                    "basket_value": 0.1 + 0.2,  # 0.30000000000000004: bit exact
                    "unsubscribed": False,  # False is stored as False, not as NULL
                    "churned": False,
                },
            ),
            RewardRecord("d0002", 3.0, 3.0, late=True, outcomes={"purchased": False}),
            RewardRecord("d0002", 4.0, 4.0, outcomes={"basket_value": 0.0, "churned": True}),
        ]
        assert store.add_rewards(rewards) == rewards
        back = store.rewards_for("d0001") + store.rewards_for("d0002")
        assert back == rewards
        assert back[0].outcomes is None
        assert back[1].outcomes is not None
        assert dict(back[1].outcomes) == {
            "opened": True,
            "purchased": True,
            "basket_value": 0.30000000000000004,
            "unsubscribed": False,
            "churned": False,
        }
        assert [type(v) for v in back[1].outcomes.values()] == [bool, bool, float, bool, bool]
        assert back[2].outcomes is not None and dict(back[2].outcomes) == {"purchased": False}
        rows = list(store.iter_active(activated_until=10.0, steps=True))
        assert [r.rewards for r in rows] == [tuple(rewards[:2]), tuple(rewards[2:])]

    def test_unknown_decision_in_a_reward_batch_stores_nothing(self, store: DecisionStore) -> None:
        store.add_decisions([decision(1)])
        batch = [RewardRecord("d0001", 1.0, 5.0), RewardRecord("ghost", 1.0, 5.0)]
        with pytest.raises(UnknownDecisionError, match="unknown `decision_id`: 'ghost'"):
            store.add_rewards(batch)
        assert store.counts().rewards == 0

    def test_closed_counts(self, store: DecisionStore) -> None:
        store.add_decisions([decision(i) for i in (1, 2, 3)] + [decision(4, deferred=True)])
        store.add_rewards(
            [RewardRecord("d0001", 1.0, 1.5), RewardRecord("d0002", 1.0, 9.0, late=True)]
        )
        # activated at or before 2: d1 (rewarded), d2 (only a late reward: unrewarded)
        assert store.closed_counts(2.0) == (2, 1)
        assert store.closed_counts(100.0) == (3, 2)  # d3 too; d4 is not activated
        store.activate("d0004", 50.0)
        assert store.closed_counts(100.0) == (4, 3)
        assert store.closed_counts(0.5) == (0, 0)

    def test_iter_active_bounds_steps_and_pages(self, store: DecisionStore) -> None:
        records = [
            decision(1, customer="x"),
            decision(2, customer="y"),
            decision(3, customer="x"),
            decision(4, customer="x", deferred=True),
            decision(5, customer="y"),
        ]
        store.add_decisions(records)
        store.add_rewards([RewardRecord("d0003", 4.0, 3.5)])
        for steps in (True, False):
            rows = list(store.iter_active(activated_until=100.0, page_size=2, steps=steps))
            assert [r.record.decision_id for r in rows] == ["d0001", "d0002", "d0003", "d0005"]
            # the rank within the customer's decisions, d0004 (not active) included
            assert [r.step for r in rows] == ([0, 0, 1, 1] if steps else [None] * 4)
            assert rows[2].rewards == (RewardRecord("d0003", 4.0, 3.5),)
            assert rows[0].rewards == ()
        store.activate("d0004", 60.0)
        for steps in (True, False):
            rows = list(
                store.iter_active(
                    activated_until=100.0, activated_after=3.0, page_size=1, steps=steps
                )
            )
            assert [(r.record.decision_id, r.step) for r in rows] == (
                [("d0004", 2), ("d0005", 1)] if steps else [("d0004", None), ("d0005", None)]
            )
        rows = list(store.iter_active(activated_until=3.0, created_since=2.0, steps=True))
        assert [(r.record.decision_id, r.step) for r in rows] == [("d0002", 0), ("d0003", 1)]

    def test_steps_break_ties_by_id_and_survive_paging(self, store: DecisionStore) -> None:
        # Same created_at: the decision id decides the rank. Customers interleave across the
        # pages, and the steps count decisions outside the bounds (created before `since`).
        records = [
            decision(i, customer=f"c{i % 3}", created_at=float(i // 4)) for i in range(1, 25)
        ]
        store.add_decisions(records[::-1])  # stored out of order: the rank is not the rowid
        rows = list(
            store.iter_active(activated_until=100.0, created_since=2.0, page_size=5, steps=True)
        )
        expected: dict[str, int] = {}
        seen: dict[str, int] = {}
        for r in sorted(records, key=lambda r: (r.created_at, r.decision_id)):
            expected[r.decision_id] = seen.get(r.customer_key, 0)
            seen[r.customer_key] = expected[r.decision_id] + 1
        assert [r.record.decision_id for r in rows] == [f"d{i:04d}" for i in range(8, 25)]
        assert [r.step for r in rows] == [expected[r.record.decision_id] for r in rows]
        assert rows[-1].step == 7  # d0024: c0 has d0003, d0006, ..., d0021 before it

    def test_no_index_on_customer_key(self, store_url: str) -> None:
        # A keyed hash as an index key costs a random page per insert; nothing reads it.
        open_store(store_url).close()
        old_index = "CREATE INDEX decisions_customer ON decisions (customer_key, created_at)"
        if store_url.startswith("sqlite"):
            path = store_url[len("sqlite:///") :]
            catalog = "SELECT name FROM sqlite_master WHERE type = 'index'"
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute(old_index)  # as stores laid out by earlier versions have it
                conn.commit()
            open_store(store_url).close()  # opening drops it
            with contextlib.closing(sqlite3.connect(path)) as conn:
                names = {row[0] for row in conn.execute(catalog)}
        else:
            import psycopg

            catalog = "SELECT indexname FROM pg_indexes WHERE tablename = 'decisions'"
            with psycopg.connect(store_url, autocommit=True) as conn:
                conn.execute(old_index)
            open_store(store_url).close()
            with psycopg.connect(store_url, autocommit=True) as conn:
                names = {row[0] for row in conn.execute(catalog)}
        assert "decisions_customer" not in names
        assert "decisions_created" in names

    def test_policy_versions(self, store: DecisionStore) -> None:
        assert store.policy_versions() == []
        row = store.add_policy_version(2, ["no_contact", "a@b"], ["x", "y"], at=5.0)
        assert row == PolicyVersionRow(2, ("no_contact", "a@b"), ("x", "y"), 5.0)
        assert store.add_policy_version(2, ["no_contact", "a@b"], ["x", "y"], at=9.0) == row
        store.add_policy_version(1, ["no_contact", "a@b"], ["x", "y"], at=1.0)
        assert [v.version for v in store.policy_versions()] == [1, 2]
        with pytest.raises(ValueError, match="policy version 2 is registered with actions"):
            store.add_policy_version(2, ["no_contact", "c@d"], ["x", "y"], at=9.0)

    def test_reopen_keeps_everything(self, store_url: str) -> None:
        first = open_store(store_url)
        first.add_decisions([decision(1, event_id="e")])
        first.add_rewards([RewardRecord("d0001", 2.0, 3.0)])
        first.close()
        again = open_store(store_url)  # the schema already exists: created once
        try:
            assert again.get_decision("d0001") == decision(1, event_id="e")
            assert again.counts() == StoreCounts(1, 0, 0, 1, 0)
        finally:
            again.close()

    def test_kill_9_loses_no_acknowledged_record(self, store_url: str) -> None:
        acknowledged = _write_until_killed(store_url, at_least=25)
        store = open_store(store_url)
        try:
            counts = store.counts()
            assert counts.decisions >= acknowledged and counts.rewards >= acknowledged
            ids = [f"k{i}" for i in range(acknowledged)]
            assert set(store.get_decisions(ids)) == set(ids)
            assert all(store.rewards_for(i) for i in ids)
        finally:
            store.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from campaignrl.service.records import DecisionRecord, RewardRecord
    from campaignrl.service.store import open_store

    store = open_store(sys.argv[1])
    i = 0
    while True:
        store.add_decisions([DecisionRecord(
            f"k{i}", f"e{i}", "c", float(i), 0, "no_contact", 1.0, [1.0], [float(i)], None, 1,
            False, None)])
        store.add_rewards([RewardRecord(f"k{i}", 1.0, float(i) + 0.5)])
        i += 1
        print(i, flush=True)  # acknowledged: both calls returned
    """
)


def _write_until_killed(url: str, *, at_least: int) -> int:
    """Run a writer process, ``kill -9`` it once it acknowledged ``at_least`` pairs; the count
    it had acknowledged (as read from its output) when it was killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged = 0
    deadline = time.monotonic() + 60.0
    try:
        assert child.stdout is not None
        while acknowledged < at_least and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acknowledged = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        _, stderr = child.communicate(timeout=30)
    assert acknowledged >= at_least, f"the writer stopped early: {stderr}"
    assert child.returncode == -signal.SIGKILL
    return acknowledged


# ------------------------------------------------------------------------ backend specifics


def test_sqlite_arrays_are_raw_little_endian_bytes(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    store = open_store(f"sqlite:///{path}")
    store.add_decisions([decision(1, mask=np.array([False, True, True, False]))])
    store.close()
    with sqlite3.connect(path) as conn:
        probabilities, features, mask = conn.execute(
            "SELECT probabilities, features, mask FROM decisions"
        ).fetchone()
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert probabilities == np.array([0.1, 0.2, 0.3, 0.4], dtype="<f8").tobytes()
    assert features == np.array([1.0, -0.5], dtype="<f8").tobytes()
    assert mask == bytes([0, 1, 1, 0])
    assert journal == "wal"


def test_encode_array_gives_plain_little_endian_bytes() -> None:
    # Its one-tobytes fast path (native float64, bool) matches the plain conversion.
    from campaignrl.service.store import encode_array

    values = np.array([0.25, -1.5, 3e300, 0.0, -0.0, 5e-324])
    for array in [values, values[::2], values.astype(">f8"), values[::-2].astype(">f8")]:
        assert encode_array(array) == array.astype("<f8").tobytes(), array
    for mask in [np.array([True, False, True]), np.array([True, False, True, False])[::2]]:
        assert encode_array(mask) == mask.astype(np.uint8).tobytes(), mask
    assert encode_array(None) is None
    assert encode_array(values[::2]) == np.array([0.25, 3e300, -0.0], dtype="<f8").tobytes()


@pytest.mark.parametrize("native", [False, True])
def test_decision_params_are_the_rows_of_the_records(native: bool) -> None:
    # Whatever path encodes them (one dtype for all, mixed dtypes, masks on some rows), the
    # values bound are each record's fields in column order, arrays by encode_array, and
    # a nullable column is left out only when it is NULL in every row.
    from campaignrl.service.store import _DECISION_COLUMNS, _decision_params, encode_array

    allowed = np.array([True, True, False, True])
    big_endian = decision(3)
    object.__setattr__(big_endian, "features", big_endian.features.astype(">f8"))
    batches = [
        [decision(1), decision(2)],
        [decision(1, mask=allowed, event_id="e1"), decision(2), big_endian],
        [decision(1, deferred=True), decision(2, deferred=True, mask=allowed)],
    ]
    for records in batches:
        columns, values = _decision_params(records, native=native)
        expected = [
            [encode_array(v) if isinstance(v, np.ndarray) or c == "mask" else v for c, v in
             ((c, getattr(r, c)) for c in _DECISION_COLUMNS)]
            for r in records
        ]  # fmt: skip
        kept = [
            j
            for j, c in enumerate(_DECISION_COLUMNS)
            if any(row[j] is not None for row in expected)
        ]
        assert columns == tuple(_DECISION_COLUMNS[j] for j in kept)
        flat = [row[j] for row in expected for j in kept]
        assert values == flat
        for got, want in zip(values, flat, strict=True):
            if native and isinstance(want, bool):
                assert type(got) is int
            elif native and isinstance(want, bytes):
                assert type(got) is bytearray
            else:
                assert type(got) is type(want)


def test_sqlite_new_files_have_small_pages_existing_ones_keep_theirs(tmp_path: Path) -> None:
    # A commit writes whole pages to the WAL: new files get 2048-byte pages. A file laid out
    # with other pages keeps them (SQLite cannot change them under WAL) and still works.
    from campaignrl.service.sqlite_store import SQLiteStore

    new = SQLiteStore(tmp_path / "new.db")
    new.add_decisions([decision(1)])
    new.close()
    old = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(old)) as conn:
        conn.execute("PRAGMA page_size=8192")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE other (x INTEGER)")
    store = SQLiteStore(old)
    store.add_decisions([decision(2)])
    assert store.get_decision(decision(2).decision_id) == decision(2)
    store.close()
    sizes = {}
    for path in (tmp_path / "new.db", old):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            sizes[path.name] = conn.execute("PRAGMA page_size").fetchone()[0]
    assert sizes == {"new.db": 2048, "old.db": 8192}


def _plans_of_iter_active(store: DecisionStore, **bounds: float) -> list[str]:
    """The SQLite query plans of the statements one ``iter_active`` call runs."""
    statements: list[str] = []
    conn = store._connection()  # type: ignore[attr-defined]
    conn.set_trace_callback(statements.append)
    try:
        list(store.iter_active(page_size=2, **bounds))
    finally:
        conn.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert selects, statements
    return [
        " | ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {s}").fetchall())
        for s in selects
        if "FROM decisions" in s
    ]


def test_sqlite_full_scans_walk_the_created_index(tmp_path: Path) -> None:
    # A full read (no lower activation bound) must page along (created_at, decision_id):
    # through the activation index every page sorted all activated rows again (quadratic).
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    store.add_decisions([decision(i) for i in range(5)])
    full = _plans_of_iter_active(store, activated_until=100.0)
    assert full and all("decisions_created" in p and "TEMP B-TREE" not in p for p in full), full
    recent = _plans_of_iter_active(store, activated_until=100.0, activated_after=3.0)
    assert recent and all("decisions_activated" in p for p in recent), recent
    store.close()


def test_sqlite_store_refuses_another_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(
        ValueError, match="has schema version '99'; this campaignrl reads versions 1 to 2"
    ):
        open_store(f"sqlite:///{path}")


# -------------------------------------------------------------------- layout upgrades

_V1_TABLES = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE decisions (
        decision_id TEXT PRIMARY KEY, event_id TEXT UNIQUE, customer_key TEXT NOT NULL,
        created_at {real} NOT NULL, action INTEGER NOT NULL, action_name TEXT NOT NULL,
        propensity {real} NOT NULL, probabilities {blob} NOT NULL, features {blob} NOT NULL,
        mask {blob}, policy_version INTEGER NOT NULL, deferred {boolean} NOT NULL,
        activated_at {real})""",
    "CREATE INDEX decisions_created ON decisions (created_at, decision_id)",
    "CREATE INDEX decisions_activated ON decisions (activated_at)",
    """CREATE TABLE rewards (
        id {serial}, decision_id TEXT NOT NULL REFERENCES decisions (decision_id),
        reward {real} NOT NULL, received_at {real} NOT NULL, late {boolean} NOT NULL)""",
    "CREATE INDEX rewards_decision ON rewards (decision_id, received_at)",
    """CREATE TABLE policy_versions (version INTEGER PRIMARY KEY, action_names TEXT NOT NULL,
        feature_names TEXT NOT NULL, registered_at {real} NOT NULL)""",
]
"""the tables as campaignrl laid them out at schema version 1 (before the outcome columns),
frozen here: stores made then must keep opening"""

_OUTCOMES = ["opened", "purchased", "basket_value", "unsubscribed", "churned"]


def _make_old_store(store_url: str, version: str) -> None:
    """A store in the version-1 layout, its ``meta`` saying ``version``, holding decision d0001
    with one reward (2.5 at 3.0, on time), written by plain SQL as the old code wrote them."""
    from campaignrl.service.store import _DECISION_COLUMNS, encode_array

    record = decision(1)  # the row layout did not change
    row = [getattr(record, c) for c in _DECISION_COLUMNS]
    row[7:10] = [encode_array(a) for a in row[7:10]]
    if store_url.startswith("sqlite"):
        types = {"real": "REAL", "blob": "BLOB", "boolean": "INTEGER"}
        serial = "INTEGER PRIMARY KEY"
        row[11] = int(row[11])  # deferred, as SQLite stores a flag
        path = store_url[len("sqlite:///") :]
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            for statement in _V1_TABLES:
                conn.execute(statement.format(serial=serial, **types))
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (version,))
            conn.execute(f"INSERT INTO decisions VALUES ({', '.join('?' * len(row))})", row)
            conn.execute("INSERT INTO rewards (decision_id, reward, received_at, late) "
                         "VALUES ('d0001', 2.5, 3.0, 0)")  # fmt: skip
        return
    import psycopg

    types = {"real": "DOUBLE PRECISION", "blob": "BYTEA", "boolean": "BOOLEAN"}
    serial = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    with psycopg.connect(store_url, autocommit=True) as pg:
        for statement in _V1_TABLES:
            pg.execute(statement.format(serial=serial, **types))
        pg.execute("INSERT INTO meta VALUES ('schema_version', %s)", (version,))
        pg.execute(f"INSERT INTO decisions VALUES ({', '.join(['%s'] * len(row))})", row)
        pg.execute("INSERT INTO rewards (decision_id, reward, received_at, late) "
                     "VALUES ('d0001', 2.5, 3.0, false)")  # fmt: skip


def _layout(store_url: str) -> tuple[str, list[str]]:
    """The stored schema version and the rewards table's columns, read by plain SQL."""
    if store_url.startswith("sqlite"):
        path = store_url[len("sqlite:///") :]
        with contextlib.closing(sqlite3.connect(path)) as conn:
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            stored = version.fetchone()[0]
            columns = [row[1] for row in conn.execute("PRAGMA table_info(rewards)")]
        return stored, columns
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        stored = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        names = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'rewards' ORDER BY ordinal_position"
        ).fetchall()
    assert stored is not None
    return stored[0], [n[0] for n in names]


def test_a_version_1_store_gains_the_outcome_columns(store_url: str) -> None:
    _make_old_store(store_url, "1")
    assert _layout(store_url) == ("1", ["id", "decision_id", "reward", "received_at", "late"])
    store = open_store(store_url)
    try:
        assert _layout(store_url) == (
            "2",
            ["id", "decision_id", "reward", "received_at", "late", *_OUTCOMES],
        )
        assert store.get_decision("d0001") == decision(1)
        # the reward stored before the upgrade reports no outcome (NULL: unknown, not False)
        assert store.rewards_for("d0001") == [RewardRecord("d0001", 2.5, 3.0)]
        new = RewardRecord("d0001", 1.0, 4.0, outcomes={"purchased": True, "basket_value": 9.5})
        store.add_rewards([new])
        assert store.rewards_for("d0001") == [RewardRecord("d0001", 2.5, 3.0), new]
    finally:
        store.close()
    again = open_store(store_url)  # upgraded once: opening again changes nothing
    try:
        assert _layout(store_url)[0] == "2"
        assert again.counts() == StoreCounts(1, 0, 0, 2, 0)
        assert again.rewards_for("d0001")[1] == new
    finally:
        again.close()


def test_a_newer_store_is_refused_and_left_untouched(store_url: str) -> None:
    # A layout this campaignrl does not know (version 3): refused before anything is added.
    _make_old_store(store_url, "3")
    with pytest.raises(ValueError, match="has schema version '3'; this campaignrl reads versions"):
        open_store(store_url)
    assert _layout(store_url) == ("3", ["id", "decision_id", "reward", "received_at", "late"])


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    store.close()
    with pytest.raises(RuntimeError, match="is closed"):
        store.counts()


BAD_URLS = [
    ("mysql://db/decisions", "`--store` must be sqlite:///<path> or postgresql://"),
    ("decisions.db", "`--store` must be sqlite:///<path> or postgresql://"),
    ("sqlite://decisions.db", "`--store` must be sqlite:///<path> or postgresql://"),
    ("sqlite:///", "`--store` must name a database file"),
    ("sqlite:///:memory:", "`--store` must name a database file"),
    ("sqlite:////no/such/folder/d.db", "`--store` folder '/no/such/folder'"),
    ("postgresql://nobody:pw@127.0.0.1:1/x", r"`--store` 'postgresql://nobody:\*\*\*@127"),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_open_store_refuses_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)


def test_open_store_refuses_a_non_string() -> None:
    with pytest.raises(TypeError, match="`--store` must be a URL string, got int 5"):
        open_store(5)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ group commit


class _Gate:
    """A real store whose first write waits until ``n`` other writers are queued behind it."""

    def __init__(self, store: DecisionStore, n: int) -> None:
        self.store, self.n, self.group, self.opened = store, n, None, False

    def _hold(self) -> None:
        if not self.opened:
            self.opened = True
            deadline = time.monotonic() + 30.0
            while len(self.group._queue) < self.n and time.monotonic() < deadline:  # type: ignore[union-attr]
                time.sleep(0.001)

    def add_decisions(self, records: list[DecisionRecord]) -> list[DecisionRecord]:
        self._hold()
        return self.store.add_decisions(records)

    def add_rewards(self, rewards: list[RewardRecord]) -> list[RewardRecord]:
        self._hold()
        return self.store.add_rewards(rewards)

    def close(self) -> None:
        self.store.close()


def _grouped(tmp_path: Path, waiting: int) -> tuple[GroupCommitStore, DecisionStore]:
    inner = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    gate = _Gate(inner, waiting)
    group = GroupCommitStore(gate)  # type: ignore[arg-type]
    gate.group = group  # type: ignore[assignment]
    return group, inner


def _in_threads(n: int, work: Callable[[int], object]) -> list[object]:
    out: list[object] = [None] * n

    def run(i: int) -> None:
        try:
            out[i] = work(i)
        except Exception as error:
            out[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_group_commit_merges_concurrent_writers(tmp_path: Path) -> None:
    group, inner = _grouped(tmp_path, waiting=7)
    results = _in_threads(8, lambda i: group.add_decisions([decision(2 * i), decision(2 * i + 1)]))
    assert results == [[decision(2 * i), decision(2 * i + 1)] for i in range(8)]
    assert group.commits == 2  # the first writer alone, then the 7 that queued behind it
    assert inner.counts().decisions == 16
    group.close()


def test_group_commit_error_goes_only_to_its_caller(tmp_path: Path) -> None:
    group, inner = _grouped(tmp_path, waiting=5)
    inner.add_decisions([decision(i) for i in range(6)])

    def post(i: int) -> object:
        target = "ghost" if i == 3 else f"d{i:04d}"
        return group.add_rewards([RewardRecord(target, float(i), 1.0)])

    results = _in_threads(6, post)
    assert isinstance(results[3], UnknownDecisionError) and "'ghost'" in str(results[3])
    for i in (0, 1, 2, 4, 5):
        assert results[i] == [RewardRecord(f"d{i:04d}", float(i), 1.0)]
    assert inner.counts().rewards == 5
    group.close()


def test_group_commit_refuses_a_bad_batch_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`max_batch` must be an int >= 1, got 0"):
        GroupCommitStore(open_store(f"sqlite:///{tmp_path / 'd.db'}"), max_batch=0)


def test_decision_ids_are_time_ordered_uuid7s():
    # The decisions table's primary key then grows at its end (a page or two per commit).
    import uuid

    from campaignrl.service.runtime import _decision_ids

    before = time.time_ns() // 1_000_000
    first, second = _decision_ids(500), _decision_ids(500)
    after = time.time_ns() // 1_000_000
    ids = first + second
    assert len(set(ids)) == 1_000 and _decision_ids(0) == []
    assert first == sorted(first) and second == sorted(second)
    assert max(first)[:12] <= min(second)[:12]  # by millisecond across calls
    for text in ids:
        assert len(text) == 32 and text == text.lower()
        value = uuid.UUID(text)
        assert value.version == 7 and value.variant == uuid.RFC_4122
        assert before <= int(text[:12], 16) <= after
