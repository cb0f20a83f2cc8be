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
    features = [c for c in log.columns[9:] if c not in mask_cols]
    assert data.feature_names == tuple(features)
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
    ("reward inf", _set("reward", np.inf), "reward", "must be a finite number: row 7 has inf"),
    ("reward nan", _set("reward", np.nan), "reward", "must be a finite number: row 7"),
    ("reward text", _set("reward", "lots"), "reward", "row 7 has 'lots'"),
    ("feature nan", _set("recency", np.nan), "recency", "must be a finite number: row 7"),
    ("feature inf", _set("fatigue", -np.inf), "fatigue", "row 7 has -inf"),
    # CSV reads n/a as a null
    ("feature text", _set("monetary", "n/a"), "monetary", "row 7 has ('n/a'|nan)"),
    ("duplicate decision id", _duplicate_id, "decision_id", "must be unique: row 7 .* row 2"),
    ("decision id missing", _set("decision_id", None), "decision_id", "must not be missing"),
    ("position negative", _set("position", -1), "position", "non-negative integers: row 7"),
    ("position fractional", _set("position", 1.5), "position", "row 7 has 1.5"),
    ("step negative", _set("step", -3), "step", "non-negative integers: row 7 has -3"),
    ("step fractional", _set("step", 0.5), "step", "row 7 has 0.5"),
    ("episode missing", _set("episode_id", None), "episode_id", "must not be missing: row 7"),
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
        ({"propensities": np.array([0.5, 0.0])}, ValueError, r"`propensities` must be in \(0, 1\]"),
        ({"action_names": ()}, ValueError, "`action_names` must name at least one action"),
        ({"features": np.zeros((2, 2))}, ValueError, "`feature_names` must name the 2"),
        ({"feature_names": ("x",)}, ValueError, "`feature_names` must be empty"),
        ({"positions": np.array([0, -1])}, ValueError, "`positions` must be >= 0, got -1"),
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
