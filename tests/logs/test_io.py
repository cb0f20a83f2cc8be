"""Reading decision logs: round trips, integer actions, positions, and every refusal."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from campaignrl.agents.baselines import make_baseline
from campaignrl.catalog import default_catalog
from campaignrl.logs import LoggedData, read_logs, write_logs
from campaignrl.logs.schema import OUTCOME_COLUMNS
from campaignrl.rollout import run_policy

ROW = 7
"""the row every malformed case corrupts"""


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    res = run_policy(
        "retail",
        make_baseline("random"),
        n_customers=10,
        horizon=3,
        seed=0,
        epsilon=0.1,
        record=True,
        policy_version="random+eps0.1",
    )
    assert res.log is not None
    return res.log


def _write(frame: pd.DataFrame, fmt: str, tmp_path: Path) -> Any:
    if fmt == "frame":
        return frame
    path = tmp_path / f"log.{fmt}"
    try:
        write_logs(frame, path)
    except Exception as exc:  # e.g. Parquet cannot store a column mixing numbers and text
        pytest.skip(f"{fmt} cannot hold this corruption: {exc}")
    return path


@pytest.mark.parametrize("fmt", ["frame", "csv", "parquet"])
def test_a_simulated_log_round_trips(log, fmt, tmp_path):
    data = read_logs(_write(log, fmt, tmp_path))
    catalog = default_catalog()
    assert isinstance(data, LoggedData)
    assert data.n_rounds == len(log) == 30
    assert data.action_names == catalog.action_names
    np.testing.assert_array_equal(data.actions, catalog.action_indices(list(log["action"])))
    np.testing.assert_allclose(data.propensities, log["propensity"])
    np.testing.assert_allclose(data.rewards, log["reward"])
    mask_cols = [f"allowed={a}" for a in catalog.action_names]
    features = [c for c in log.columns[9:] if c not in mask_cols and c not in OUTCOME_COLUMNS]
    assert data.feature_names == tuple(features)
    # the outcome columns round-trip with their types, and are never features
    assert data.outcomes is not None and tuple(data.outcomes) == OUTCOME_COLUMNS
    for col in OUTCOME_COLUMNS:
        np.testing.assert_array_equal(data.outcomes[col], log[col].to_numpy())
        assert data.outcomes[col].dtype == (np.float64 if col == "basket_value" else bool)
        assert not data.outcomes[col].flags.writeable
    # the allowed actions round-trip, and every logged action was allowed
    assert data.masks is not None
    np.testing.assert_array_equal(data.masks, log[mask_cols].to_numpy(dtype=bool))
    assert data.masks[np.arange(data.n_rounds), data.actions].all()
    assert data.features is not None
    np.testing.assert_allclose(data.features, log[features].to_numpy(dtype=float))
    np.testing.assert_array_equal(data.steps, log["step"])
    # episode codes: equal ids <-> equal codes
    codes = pd.factorize(log["episode_id"])[0]
    np.testing.assert_array_equal(data.episode_ids, codes)
    assert data.positions is None and data.n_positions == 1
    assert data.actions.dtype == np.int64 and data.features.dtype == np.float64
    assert not data.actions.flags.writeable


def test_integer_actions_positions_and_custom_names(tmp_path):
    frame = pd.DataFrame(
        {
            "action": [0, 2, 1, 2],
            "propensity": [0.5, 0.25, 1.0, 0.25],
            "reward": [1.0, 0.0, 0.0, 1.0],
            "position": [0, 1, 2, 1],
            "item_price": [3.0, 1.5, 2.0, 1.5],
        }
    )
    path = tmp_path / "obd.csv"
    frame.to_csv(path, index=False)
    data = read_logs(path, action_names=["i0", "i1", "i2"])
    assert data.actions.tolist() == [0, 2, 1, 2]
    assert data.positions is not None and data.positions.tolist() == [0, 1, 2, 1]
    assert data.n_positions == 3 and data.n_actions == 3
    assert data.feature_names == ("item_price",)
    assert data.episode_ids is None and data.steps is None
    none = read_logs(frame, action_names=["i0", "i1", "i2"], feature_columns=[])
    assert none.features is None and none.feature_names == ()
    # names and integer indices (also as digit strings) may be mixed
    mixed = frame.assign(action=["i0", 2, "1", "i2"])
    assert read_logs(mixed, action_names=["i0", "i1", "i2"]).actions.tolist() == [0, 2, 1, 2]


def test_only_action_propensity_and_reward_are_required():
    frame = pd.DataFrame({"action": ["no_contact"], "propensity": [1.0], "reward": [2.0]})
    data = read_logs(frame)
    assert data.features is None and data.n_rounds == 1
    assert data.outcomes is None  # logs written before the outcome columns stay valid


@pytest.mark.parametrize("column", ["action", "propensity", "reward"])
def test_a_missing_required_column_is_named(log, column):
    with pytest.raises(ValueError, match=rf"missing required column\(s\) \['{column}'\]"):
        read_logs(log.drop(columns=[column]))


def _set(column: str, value: Any):
    def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        if column not in frame.columns:
            frame[column] = 0
        frame[column] = frame[column].astype(object)
        frame.at[ROW, column] = value
        return frame

    return corrupt


def _duplicate_id(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.at[ROW, "decision_id"] = frame.at[2, "decision_id"]
    return frame


def _opened_without_contact(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.at[ROW, "action"] = "no_contact"  # always allowed: the masks still hold
    frame.at[ROW, "opened"] = True
    return frame


def _basket_without_purchase(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.at[ROW, "purchased"] = False
    frame.at[ROW, "basket_value"] = 12.5
    return frame


def _integer_actions(value: Any):
    def corrupt(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame["action"] = default_catalog().action_indices(list(frame["action"]))
        if isinstance(value, float):
            frame["action"] = frame["action"].astype(float)
        frame.at[ROW, "action"] = value
        return frame

    return corrupt


# (case id, corruption, column named, message fragment)
MALFORMED = [
    ("propensity nan", _set("propensity", np.nan), "propensity", r"must be a number in \(0, 1\]"),
    ("propensity zero", _set("propensity", 0.0), "propensity", r"in \(0, 1\]: row 7 has 0.0"),
    ("propensity above one", _set("propensity", 1.5), "propensity", "row 7 has 1.5"),
    ("propensity negative", _set("propensity", -0.2), "propensity", "row 7 has -0.2"),
    ("propensity text", _set("propensity", "high"), "propensity", "row 7 has 'high'"),
    ("propensity missing", _set("propensity", None), "propensity", "row 7 has"),
    ("unknown action", _set("action", "pct99@fax"), "action", "row 7 has 'pct99@fax'"),
    ("action missing", _set("action", None), "action", "must name a known action"),
    ("action index too big", _integer_actions(19), "action", r"index in \[0, 18\]: row 7 has 19"),
    ("action index negative", _integer_actions(-1), "action", "row 7 has -1"),
    ("action index fractional", _integer_actions(2.5), "action", "row 7 has 2.5"),
    (
        "reward inf",
        _set("reward", np.inf),
        "reward",
        r"must be a finite number of magnitude at most 1e\+12: row 7 has inf",
    ),
    (
        "reward nan",
        _set("reward", np.nan),
        "reward",
        r"must be a finite number of magnitude at most 1e\+12: row 7",
    ),
    ("reward text", _set("reward", "lots"), "reward", "row 7 has 'lots'"),
    ("feature nan", _set("recency", np.nan), "recency", "must be a finite number .*: row 7"),
    ("feature inf", _set("fatigue", -np.inf), "fatigue", "row 7 has -inf"),
    # CSV reads n/a as a null
    ("feature text", _set("monetary", "n/a"), "monetary", "row 7 has ('n/a'|nan)"),
    ("duplicate decision id", _duplicate_id, "decision_id", "must be unique: row 7 .* row 2"),
    ("decision id missing", _set("decision_id", None), "decision_id", "must not be missing"),
    (
        "position negative",
        _set("position", -1),
        "position",
        r"slot indices in \[0, 18\] .*: row 7 has -1",
    ),
    ("position fractional", _set("position", 1.5), "position", "row 7 has 1.5"),
    (
        "step negative",
        _set("step", -3),
        "step",
        r"non-negative integers below 2\*\*63: row 7 has -3",
    ),
    ("step fractional", _set("step", 0.5), "step", "row 7 has 0.5"),
    ("episode missing", _set("episode_id", None), "episode_id", "must not be missing: row 7"),
    # outcome columns
    ("opened missing", _set("opened", None), "opened", r"must be a boolean \(true/false or 1/0\)"),
    ("opened two", _set("opened", 2), "opened", "row 7 has '?2'?"),
    ("purchased text", _set("purchased", "yes"), "purchased", "row 7 has 'yes'"),
    ("unsubscribed nan", _set("unsubscribed", np.nan), "unsubscribed", "not missing: row 7"),
    ("churned half", _set("churned", 0.5), "churned", "row 7 has '?0.5'?"),
    (
        "basket negative",
        _set("basket_value", -3.0),
        "basket_value",
        r"must be a finite number in \[0, 1e\+12\]: row 7 has -3.0",
    ),
    ("basket inf", _set("basket_value", np.inf), "basket_value", "row 7 has inf"),
    ("basket missing", _set("basket_value", None), "basket_value", "row 7 has (None|nan)"),
    ("basket text", _set("basket_value", "big"), "basket_value", "row 7 has 'big'"),
    (
        "basket without purchase",
        _basket_without_purchase,
        "basket_value",
        "must be 0 where `purchased` is False: row 7 has 12.5",
    ),
    (
        "opened without contact",
        _opened_without_contact,
        "opened",
        "must be False where `action` is no_contact: row 7 has True",
    ),
]


@pytest.mark.parametrize("fmt", ["frame", "csv", "parquet"])
@pytest.mark.parametrize(
    "corrupt, column, fragment", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_every_malformed_log_is_refused_naming_column_and_row(
    log, fmt, tmp_path, corrupt, column, fragment
):
    source = _write(corrupt(log), fmt, tmp_path)
    with pytest.raises(ValueError) as info:
        read_logs(source)
    message = str(info.value)
    assert f"column `{column}`" in message
    assert f"row {ROW}" in message
    assert re.search(fragment, message), message


def test_the_row_is_counted_in_the_file_not_by_the_frame_index(log):
    frame = log.copy()
    frame.index = frame.index + 1000
    frame["reward"] = frame["reward"].astype(object)
    frame.iloc[ROW, frame.columns.get_loc("reward")] = np.nan
    with pytest.raises(ValueError, match=r"column `reward` .*: row 7 has nan"):
        read_logs(frame)


def test_unusable_sources_and_options_are_refused(log, tmp_path):
    with pytest.raises(ValueError, match=r"`source` must end in .parquet or .csv"):
        read_logs(tmp_path / "log.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_logs(tmp_path / "absent.parquet")
    with pytest.raises(TypeError, match="`source` must be a path or a pandas DataFrame"):
        read_logs(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`feature_columns` not in the log: \['nope'\]"):
        read_logs(log, feature_columns=["nope"])
    with pytest.raises(ValueError, match="`action_names` must be unique"):
        read_logs(log, action_names=["a", "a"])


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (
            {"actions": np.array([0, 3])},
            ValueError,
            r"`actions` must be in \[0, 2\], got 3 at index 1",
        ),
        ({"actions": np.array([0.0, 1.0])}, TypeError, "`actions` must hold integers"),
        ({"actions": np.array([[0, 1]])}, ValueError, "`actions` must be a 1D array"),
        ({"rewards": np.array([0.0])}, ValueError, r"`rewards` must have shape \(2,\)"),
        ({"rewards": np.array([0.0, np.nan])}, ValueError, r"`rewards` must be finite, got nan"),
        (
            {"propensities": np.array([0.5, 0.0])},
            ValueError,
            r"`propensities` must be in \(0, 1\], got 0\.0 at index 1$",
        ),
        ({"action_names": ()}, ValueError, "`action_names` must name at least one action"),
        ({"features": np.zeros((2, 2))}, ValueError, "`feature_names` must name the 2"),
        ({"feature_names": ("x",)}, ValueError, "`feature_names` must be empty"),
        ({"positions": np.array([0, -1])}, ValueError, r"`positions` must be in \[0, 2\], got -1"),
        ({"steps": np.array([0, 1, 2])}, ValueError, r"`steps` must have shape \(2,\)"),
    ],
)
def test_direct_construction_is_checked(kwargs, err, match):
    base: dict[str, Any] = {
        "actions": np.array([0, 1]),
        "rewards": np.array([0.0, 1.0]),
        "propensities": np.array([0.5, 0.5]),
        "action_names": ("a", "b", "c"),
    }
    with pytest.raises(err, match=match):
        LoggedData(**{**base, **kwargs})


def test_arrays_are_frozen_but_the_callers_are_not():
    actions = np.array([0, 1])
    data = LoggedData(actions, np.array([0.0, 1.0]), np.array([0.5, 0.5]), ("a", "b"))
    assert actions.flags.writeable
    with pytest.raises(ValueError):
        data.actions[0] = 1


def _masked_frame() -> pd.DataFrame:
    names = default_catalog().action_names
    frame = pd.DataFrame(
        {
            "action": ["no_contact", "pct10@sms", "content@email"],
            "propensity": [0.5, 0.25, 0.5],
            "reward": [0.0, 1.0, 2.0],
        }
    )
    for a in names:
        frame[f"allowed={a}"] = True
    return frame


def test_mask_columns_become_masks_and_are_not_features():
    frame = _masked_frame().assign(x=[1.0, 2.0, 3.0])
    frame.loc[0, "allowed=pct20@sms"] = False
    data = read_logs(frame)
    assert data.feature_names == ("x",)
    assert data.masks is not None and data.masks.shape == (3, 19)
    assert not data.masks[0, default_catalog().action_index("pct20@sms")]
    assert data.masks.sum() == 3 * 19 - 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda f: f.drop(columns=["allowed=pct20@sms"]), r"missing \['allowed=pct20@sms'\]"),
        (lambda f: f.assign(**{"allowed=bogus": True}), r"\['allowed=bogus'\] name no known"),
        (
            lambda f: f.assign(**{"allowed=pct10@sms": [True, False, True]}),
            r"column `allowed=pct10@sms` must allow the logged action: row 1 has False",
        ),
        (
            lambda f: f.assign(**{"allowed=push": 1}).assign(
                **{"allowed=content@email": [1, 1, 2]}
            ),
            r"name no known|column `allowed=content@email` must be a boolean",
        ),
    ],
)
def test_bad_mask_columns_are_refused_naming_column_and_row(change, match):
    with pytest.raises(ValueError, match=match):
        read_logs(change(_masked_frame()))


# --------------------------------------------------------------------------------------------
# Hostile files: what the suffix does not say, names that mislead, values beyond reason
# --------------------------------------------------------------------------------------------


def _small() -> pd.DataFrame:
    """Ten rows in the schema, with a float64 feature and string ids."""
    return pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(10)],
            "customer_id": [f"c{i}" for i in range(10)],
            "episode_id": [f"e{i // 2}" for i in range(10)],
            "step": [i % 2 for i in range(10)],
            "action": ["no_contact", "pct10@sms"] * 5,
            "propensity": [0.5] * 10,
            "reward": [float(i) for i in range(10)],
            "monetary": np.linspace(0.0, 1.0, 10),
        }
    )


def _csv_with(column: str, text: str):
    """A CSV whose cell (ROW, column) is written as ``text``, verbatim."""

    def build(tmp_path: Path) -> Path:
        frame = _small()
        frame[column] = frame[column].astype(object)
        frame.at[ROW, column] = "@CELL@"
        path = tmp_path / "log.csv"
        path.write_text(frame.to_csv(index=False).replace("@CELL@", text))
        return path

    return build


def _parquet(table_or_frame: Any):
    def build(tmp_path: Path) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "log.parquet"
        value = table_or_frame() if callable(table_or_frame) else table_or_frame
        table = value if isinstance(value, pa.Table) else pa.Table.from_pandas(value)
        pq.write_table(table, path)
        return path

    return build


def _frame(change):
    return lambda tmp_path: change(_small())


def _nested_action_table(values: list[Any]):
    def make() -> Any:
        import pyarrow as pa

        return pa.table({"action": pa.array(values), "propensity": [0.5] * 3, "reward": [1.0] * 3})

    return make


def _file(fmt: str, change):
    def build(tmp_path: Path) -> Path:
        path = tmp_path / f"log.{fmt}"
        frame = change(_small())
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        return path

    return build


def _with(column: str, value: Any, dtype: Any = object, fill: Any = None):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        if fill is not None:
            frame[column] = fill
        frame[column] = frame[column].astype(dtype)
        frame.at[ROW, column] = value
        return frame

    return change


def _bad_utf8_csv(tmp_path: Path) -> Path:
    lines = _small().to_csv(index=False).encode().split(b"\n")
    lines[ROW + 1] = lines[ROW + 1].replace(b",c7,", b",c\xff\xfe7,")  # line ROW + 2
    path = tmp_path / "log.csv"
    path.write_bytes(b"\n".join(lines))
    return path


def _bad_utf8_header(tmp_path: Path) -> Path:
    path = tmp_path / "log.csv"
    path.write_bytes(_small().to_csv(index=False).encode().replace(b"monetary", b"mon\xe9tary"))
    return path


def _duplicate_header_csv(tmp_path: Path) -> Path:
    text = _small().to_csv(index=False).replace("customer_id", "monetary", 1)
    path = tmp_path / "log.csv"
    path.write_text(text)
    return path


def _parquet_bytes_in_csv(tmp_path: Path) -> Path:
    _parquet(_small())(tmp_path)
    path = tmp_path / "log.csv"
    path.write_bytes((tmp_path / "log.parquet").read_bytes())
    return path


def _csv_bytes_in_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "log.parquet"
    path.write_text(_small().to_csv(index=False))
    return path


def _text_file(name: str, content: str):
    def build(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_text(content)
        return path

    return build


def _uint64_step(tmp_path: Path) -> Path:
    frame = _small()
    frame["step"] = frame["step"].astype(np.uint64)
    frame.at[ROW, "step"] = np.uint64(2**63)
    return _parquet(frame)(tmp_path)


HOSTILE = [
    # structure
    ("list action (Parquet)", _parquet(_nested_action_table([["no_contact"]] * 3)),
     r"column `action` must hold single values, not lists or structs: row 0 has \['no_contact'\]"),
    ("struct action (Parquet)", _parquet(_nested_action_table([{"a": 1}] * 3)),
     r"column `action` must hold single values.*: row 0 has \{'a': 1\}"),
    ("list action (frame)", _frame(_with("action", ["no_contact", "pct10@sms"])),
     r"column `action` must hold single values.*: row 7 has \['no_contact', 'pct10@sms'\]"),
    ("list feature (frame)", _frame(_with("monetary", [1.0, 2.0])),
     r"column `monetary` must hold single values.*: row 7 has \[1.0, 2.0\]"),
    ("list propensity (frame)", _frame(_with("propensity", (0.5,))),
     r"column `propensity` must hold single values.*: row 7 has \(0.5,\)"),
    ("boolean propensity (frame)", _frame(lambda f: f.assign(propensity=True)),
     r"column `propensity` must be a number in \(0, 1\], not a boolean: row 0 has True"),
    ("boolean propensity (CSV)", _text_file("log.csv", "action,propensity,reward\n0,true,1\n"),
     r"column `propensity` must be a number in \(0, 1\], not a boolean: row 0 has True"),
    ("one boolean propensity (frame)", _frame(_with("propensity", True)),
     r"column `propensity` .*not a boolean: row 7 has True"),
    ("boolean propensity (Parquet)", _parquet(_small().assign(propensity=True)),
     r"column `propensity` .*not a boolean: row 0 has True"),
    # names
    ("duplicate names (CSV header)", _duplicate_header_csv,
     r"column `monetary` appears twice in '.*log.csv' \(columns 1 and 7, counting from 0\)"),
    ("duplicate names (frame)", _frame(lambda f: f.rename(columns={"customer_id": "monetary"})),
     r"column `monetary` appears twice in the DataFrame \(columns 1 and 7"),
    ("Position", _frame(lambda f: f.assign(Position=0)),
     r"column `Position` is not a schema column: did you mean 'position'\?"),
    ("Reward for reward (CSV)", _file("csv", lambda f: f.rename(columns={"reward": "Reward"})),
     r"column `Reward` is not a schema column: did you mean 'reward'\?"),
    ("Reward beside reward (Parquet)", _file("parquet", lambda f: f.assign(Reward=1.0)),
     r"column `Reward` .*did you mean 'reward'\?"),
    ("STEP with spaces", _frame(lambda f: f.assign(**{" STEP ": 1})),
     r"column ` STEP ` .*did you mean 'step'\?"),
    ("Allowed= mask", _frame(lambda f: f.assign(**{"Allowed=no_contact": True})),
     r"column `Allowed=no_contact` .*did you mean 'allowed=no_contact'\?"),
    ("Churned for churned (Parquet)", _file("parquet", lambda f: f.assign(Churned=False)),
     r"column `Churned` is not a schema column: did you mean 'churned'\?"),
    ("boolean basket (frame)", _frame(lambda f: f.assign(basket_value=False)),
     r"column `basket_value` must be a money amount, not a boolean: row 0 has False"),
    ("null opened (Parquet)", _file("parquet", _with("opened", None, object, fill=False)),
     r"column `opened` must be a boolean \(true/false or 1/0\), not missing: row 7 has None"),
    ("empty opened cell (CSV)", _file("csv", _with("opened", None, object, fill=False)),
     r"column `opened` must be a boolean .*: row 7 has (None|nan)"),
    # integers beyond int64, slots beyond the actions
    ("step 2**63 (CSV)", _csv_with("step", str(2**63)),
     r"column `step` must hold non-negative integers below 2\*\*63: "
     r"row 7 has '9223372036854775808'"),
    ("step 2**64 + 5 (CSV)", _csv_with("step", str(2**64 + 5)),
     r"column `step` .*: row 7 has '18446744073709551621'"),
    ("step 2**63 (uint64 Parquet)", _uint64_step,
     r"column `step` must hold non-negative integers below 2\*\*63: row 7 has 9223372036854775808"),
    ("position 1e12 (frame)", _frame(_with("position", 10**12, np.int64, fill=0)),
     r"column `position` must hold slot indices in \[0, 18\] .*: row 7 has 1000000000000"),
    ("position 19 (CSV)", _file("csv", _with("position", 19, np.int64, fill=0)),
     r"column `position` must hold slot indices in \[0, 18\] .*: row 7 has 19"),
    ("position 1e12 (float Parquet)", _file("parquet", _with("position", 1e12, float, fill=0)),
     r"column `position` .*: row 7 has 1000000000000.0"),
    # encodings and formats
    ("invalid UTF-8 at row 7", _bad_utf8_csv,
     r"column `customer_id` must be UTF-8 text: row 7 \(line 9 of the file, the header being "
     r"line 1\) has b'c\\xff\\xfe7'"),
    ("invalid UTF-8 in the header", _bad_utf8_header,
     r"`source` '.*log.csv' is not UTF-8: line 1 \(the header\) has b'mon\\xe9tary'"),
    ("Parquet bytes in a .csv", _parquet_bytes_in_csv,
     r"`source` '.*log.csv' looks like Parquet, not CSV: rename it to .parquet"),
    ("CSV text in a .parquet", _csv_bytes_in_parquet,
     r"`source` '.*log.parquet' looks like CSV, not Parquet: rename it to .csv"),
    ("NUL bytes in a .csv", _text_file("log.csv", "action,propensity\x00,reward\n"),
     r"is not a text CSV file: byte 17 is NUL"),
    # empty logs
    ("header-only CSV", _text_file("log.csv", "action,propensity,reward\n"),
     r"the log is empty: '.*log.csv' has no rows"),
    ("zero-row Parquet", _file("parquet", lambda f: f.head(0)),
     r"the log is empty: '.*log.parquet' has no rows"),
    ("zero-row frame", _frame(lambda f: f.head(0)), r"the log is empty: the DataFrame has no rows"),
    ("empty CSV file", _text_file("log.csv", ""), r"the log is empty: '.*log.csv' has no header"),
    # magnitudes
    ("feature 1e308 (frame)", _frame(_with("monetary", 1e308, np.float64)),
     r"column `monetary` must be a finite number of magnitude at most 1e\+12: row 7 has 1e\+308"),
    ("feature -1e13 (CSV)", _file("csv", _with("monetary", -1e13, np.float64)),
     r"column `monetary` .*at most 1e\+12: row 7 has -1(e\+13|0{13}\.0)"),
    ("feature 1e308 (Parquet)", _file("parquet", _with("monetary", 1e308, np.float64)),
     r"column `monetary` .*at most 1e\+12: row 7 has 1e\+308"),
    ("reward 1e300 (frame)", _frame(_with("reward", 1e300, np.float64)),
     r"column `reward` .*at most 1e\+12: row 7 has 1e\+300"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "match"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_logs_are_refused_naming_column_row_and_value(tmp_path, build, match):
    source = build(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        read_logs(source)
    message = str(info.value)
    assert "\n" not in message
    assert message.isascii() and message.isprintable(), message  # no raw bytes
    assert len(message) < 400


def test_a_schema_name_in_another_case_is_a_feature_when_asked_for_by_name():
    frame = _small().assign(Position=1.0)
    data = read_logs(frame, feature_columns=["monetary", "Position"])
    assert data.feature_names == ("monetary", "Position")
    assert data.positions is None


def test_unsigned_and_large_valid_steps_are_read_exactly(tmp_path):
    frame = _small()
    frame["step"] = np.array([0, 2**62, 3, 4, 5, 6, 7, 2**63 - 1, 8, 9], dtype=np.uint64)
    data = read_logs(_parquet(frame)(tmp_path))
    assert data.steps is not None and data.steps[7] == 2**63 - 1 and data.steps[1] == 2**62


def test_a_valid_csv_with_a_bom_and_a_header_only_first_line_reads(tmp_path):
    path = tmp_path / "log.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _small().to_csv(index=False).encode())
    assert read_logs(path).n_rounds == 10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"positions": np.array([0, 3])}, r"`positions` must be in \[0, 2\], got 3 at index 1"),
        ({"rewards": np.array([0.0, -2e12])}, r"`rewards` must be at most 1e\+12 in magnitude, "
         r"got -2000000000000.0 at index 1"),
        ({"features": np.array([[0.0, 1.0], [1e308, 0.0]]), "feature_names": ("x", "y")},
         r"`features` must be at most 1e\+12 in magnitude, got 1e\+308 at index \(1, 0\) "
         r"\(column 'x'\)"),
    ],
)  # fmt: skip
def test_direct_construction_bounds_slots_and_magnitudes(kwargs, match):
    base: dict[str, Any] = {
        "actions": np.array([0, 1]),
        "rewards": np.array([0.0, 1.0]),
        "propensities": np.array([0.5, 0.5]),
        "action_names": ("a", "b", "c"),
    }
    with pytest.raises(ValueError, match=match):
        LoggedData(**{**base, **kwargs})


# --------------------------------------------------------------------------------------------
# Outcome columns (optional): what the decision led to
# --------------------------------------------------------------------------------------------


def _outcomes_frame() -> pd.DataFrame:
    """Four decisions with every outcome column, consistent by definition."""
    return pd.DataFrame(
        {
            "action": ["no_contact", "pct10@sms", "content@email", "no_contact"],
            "propensity": [0.5, 0.25, 0.5, 1.0],
            "reward": [0.0, 7.0, -0.001, 4.0],
            "opened": [False, True, True, False],
            "purchased": [False, True, False, True],
            "basket_value": [0.0, 20.0, 0.0, 11.5],
            "unsubscribed": [False, False, True, False],
            "churned": [True, False, False, False],
            "x": [1.0, 2.0, 3.0, 4.0],
        }
    )


def _write_plain(frame: pd.DataFrame, fmt: str, tmp_path: Path) -> Any:
    """``frame`` itself, or written as CSV or Parquet (without the schema's other columns)."""
    if fmt == "frame":
        return frame
    path = tmp_path / f"log.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


EXPECTED_OUTCOMES = {
    "opened": [False, True, True, False],
    "purchased": [False, True, False, True],
    "basket_value": [0.0, 20.0, 0.0, 11.5],
    "unsubscribed": [False, False, True, False],
    "churned": [True, False, False, False],
}


@pytest.mark.parametrize("fmt", ["frame", "csv", "parquet"])
def test_outcome_columns_are_read_and_are_not_features(fmt, tmp_path):
    data = read_logs(_write_plain(_outcomes_frame(), fmt, tmp_path))
    assert data.feature_names == ("x",)
    assert data.outcomes is not None
    assert {k: v.tolist() for k, v in data.outcomes.items()} == EXPECTED_OUTCOMES


@pytest.mark.parametrize(
    "encode",
    [
        lambda v: int(v) if isinstance(v, bool) else v,  # 1/0
        lambda v: str(v).lower() if isinstance(v, bool) else v,  # 'true'/'false'
        lambda v: {True: " TRUE", False: "0"}[v] if isinstance(v, bool) else v,  # mixed text
    ],
    ids=["ints", "lowercase text", "mixed text"],
)
@pytest.mark.parametrize("fmt", ["frame", "csv", "parquet"])
def test_booleans_written_as_1_0_or_text_are_read(encode, fmt, tmp_path):
    frame = _outcomes_frame()
    for col in ("opened", "purchased", "unsubscribed", "churned"):
        frame[col] = [encode(v) for v in frame[col]]
    data = read_logs(_write_plain(frame, fmt, tmp_path))
    assert data.outcomes is not None
    assert {k: v.tolist() for k, v in data.outcomes.items()} == EXPECTED_OUTCOMES


def test_a_log_may_carry_some_outcome_columns_only():
    data = read_logs(_outcomes_frame().drop(columns=["opened", "churned", "purchased"]))
    assert data.outcomes is not None and set(data.outcomes) == {"basket_value", "unsubscribed"}
    # without `purchased` a basket cannot be checked against it; without `opened` nothing is
    assert data.outcomes["basket_value"].tolist() == [0.0, 20.0, 0.0, 11.5]


def test_outcomes_are_read_from_parquet_when_the_features_are_named(tmp_path):
    path = tmp_path / "log.parquet"
    _outcomes_frame().to_parquet(path, index=False)
    data = read_logs(path, feature_columns=["x"])
    assert data.outcomes is not None and set(data.outcomes) == set(OUTCOME_COLUMNS)


def test_the_no_contact_rule_needs_a_no_contact_action():
    # with other action names (an item catalog), index 0 is an item: it may be opened
    frame = _outcomes_frame().assign(action=[0, 1, 2, 0], opened=True)
    data = read_logs(frame, action_names=["i0", "i1", "i2"])
    assert data.outcomes is not None and data.outcomes["opened"].all()


@pytest.mark.parametrize(
    ("outcomes", "err", "match"),
    [
        ({"clicked": np.array([True, False])}, ValueError, r"keys must be .*'clicked'"),
        ({"opened": np.array([1, 0])}, ValueError, r"`outcomes\['opened'\]` must be a boolean"),
        ({"opened": np.array([True])}, ValueError, r"of shape \(2,\), got bool \(1,\)"),
        ({"basket_value": np.array([1.0, -1.0])}, ValueError, r"`outcomes\['basket_value'\]`"),
        ({"basket_value": np.array([1.0, np.nan])}, ValueError, r"`outcomes\['basket_value'\]`"),
        ([("opened", np.array([True, False]))], TypeError, "`outcomes` must be a mapping"),
    ],
)  # fmt: skip
def test_direct_construction_checks_outcomes(outcomes, err, match):
    with pytest.raises(err, match=match):
        LoggedData(np.array([0, 1]), np.zeros(2), np.full(2, 0.5), ("a", "b"), outcomes=outcomes)


def test_direct_outcomes_are_frozen_copies():
    opened, basket = np.array([True, False]), np.array([3.0, 0.0])
    data = LoggedData(
        np.array([0, 1]),
        np.zeros(2),
        np.full(2, 0.5),
        ("a", "b"),
        outcomes={"opened": opened, "basket_value": basket},
    )
    assert data.outcomes is not None
    assert opened.flags.writeable and basket.flags.writeable
    with pytest.raises(ValueError):
        data.outcomes["basket_value"][0] = 1.0
    with pytest.raises(TypeError):
        data.outcomes["churned"] = opened
