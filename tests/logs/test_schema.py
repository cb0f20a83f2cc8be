"""The decision-log writer: formats, refusals, atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from campaignrl.agents.baselines import make_baseline
from campaignrl.logs import read_logs
from campaignrl.logs.schema import (
    BOOL_OUTCOME_COLUMNS,
    OUTCOME_COLUMNS,
    REQUIRED_COLUMNS,
    write_logs,
)
from campaignrl.rollout import run_policy


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    res = run_policy(
        "retail",
        make_baseline("random"),
        n_customers=50,
        horizon=4,
        seed=0,
        epsilon=0.1,
        record=True,
        policy_version="random+eps0.1",
    )
    assert res.log is not None
    return res.log


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_required_columns_are_the_documented_ones_in_order():
    assert REQUIRED_COLUMNS == (
        "decision_id",
        "timestamp",
        "customer_id",
        "episode_id",
        "step",
        "action",
        "propensity",
        "reward",
        "policy_version",
    )


def test_outcome_columns_are_the_documented_ones_in_order():
    assert OUTCOME_COLUMNS == ("opened", "purchased", "basket_value", "unsubscribed", "churned")
    assert set(BOOL_OUTCOME_COLUMNS) == set(OUTCOME_COLUMNS) - {"basket_value"}
    assert not set(OUTCOME_COLUMNS) & set(REQUIRED_COLUMNS)
    import campaignrl.logs.schema as schema

    assert "OUTCOME_COLUMNS" in schema.__all__
    assert schema.__doc__ is not None and all(f"``{c}``" in schema.__doc__ for c in OUTCOME_COLUMNS)


def test_a_simulated_log_has_the_outcome_columns_after_the_required_ones(log):
    columns = list(log.columns)
    n = len(REQUIRED_COLUMNS)
    assert tuple(columns[:n]) == REQUIRED_COLUMNS
    assert tuple(columns[n : n + len(OUTCOME_COLUMNS)]) == OUTCOME_COLUMNS
    for col in BOOL_OUTCOME_COLUMNS:
        assert log[col].dtype == bool
    assert log["basket_value"].dtype == "float64"


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_outcome_columns_survive_the_writer_and_the_reader(log, tmp_path, suffix):
    out = write_logs(log, tmp_path / f"log{suffix}")
    back = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    for col in BOOL_OUTCOME_COLUMNS:
        assert back[col].dtype == bool  # CSV writes True/False, which reads back as booleans
    data = read_logs(out)
    assert data.outcomes is not None
    for col in OUTCOME_COLUMNS:
        # pandas writes the shortest repr that reads back as the same float64: exact
        assert data.outcomes[col].tolist() == log[col].tolist()


def test_parquet_round_trip(log, tmp_path):
    out = write_logs(log, tmp_path / "log.parquet")
    assert out == tmp_path / "log.parquet"
    assert _listing(tmp_path) == ["log.parquet"]  # no temp file left beside it
    pd.testing.assert_frame_equal(pd.read_parquet(out), log)


def test_csv_round_trip(log, tmp_path):
    out = write_logs(log, tmp_path / "log.csv")
    assert out == tmp_path / "log.csv"
    assert _listing(tmp_path) == ["log.csv"]
    back = pd.read_csv(out, parse_dates=["timestamp"])
    assert list(back.columns) == list(log.columns)
    # CSV does not keep dtypes (float32 features come back float64): compare values.
    pd.testing.assert_frame_equal(back, log, check_dtype=False, rtol=1e-6)


def test_upper_case_suffix_and_str_path(log, tmp_path):
    out = write_logs(log, str(tmp_path / "LOG.PARQUET"))
    assert out == tmp_path / "LOG.PARQUET"
    pd.testing.assert_frame_equal(pd.read_parquet(out), log)


def test_creates_missing_folders(log, tmp_path):
    out = write_logs(log, tmp_path / "a" / "b" / "log.parquet")
    assert out.is_file()


def test_overwrites_an_existing_log(log, tmp_path):
    target = tmp_path / "log.parquet"
    write_logs(log.head(3), target)
    write_logs(log, target)
    assert len(pd.read_parquet(target)) == len(log)
    assert _listing(tmp_path) == ["log.parquet"]


def test_written_file_has_the_usual_permissions(log, tmp_path):
    """A log is a normal file: readable by whoever the umask lets read files (as ``open``
    would create it), not private to the writer."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    out = write_logs(log, tmp_path / "log.parquet")
    got, usual = (oct(stat.S_IMODE(os.stat(p).st_mode)) for p in (out, plain))
    assert got == usual


@pytest.mark.parametrize("name", ["log.txt", "log", "log.json", "log.parquet.gz", "log.csv.bak"])
def test_refuses_a_wrong_suffix_naming_out(log, tmp_path, name):
    with pytest.raises(ValueError, match=r"`out` must end in \.parquet or \.csv, got .*" + name):
        write_logs(log, tmp_path / name)
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_refuses_a_frame_missing_a_required_column_naming_it(log, tmp_path, column):
    with pytest.raises(ValueError, match=rf"missing required column.*'{column}'"):
        write_logs(log.drop(columns=[column]), tmp_path / "log.parquet")
    assert _listing(tmp_path) == []


def test_missing_columns_are_all_named(log, tmp_path):
    with pytest.raises(ValueError, match=r"\['propensity', 'reward'\]"):
        write_logs(log.drop(columns=["reward", "propensity"]), tmp_path / "log.csv")


@pytest.mark.parametrize(
    ("suffix", "method", "exc"),
    [
        (".parquet", "to_parquet", OSError("disk full")),
        (".csv", "to_csv", OSError("disk full")),
        (".parquet", "to_parquet", KeyboardInterrupt()),
    ],
)
def test_failed_write_leaves_no_trace_and_keeps_the_old_file(
    log, tmp_path, monkeypatch, suffix, method, exc
):
    target = tmp_path / f"log{suffix}"
    target.write_bytes(b"the previous log")
    original = getattr(pd.DataFrame, method)

    def half_write_then_fail(self, path, *args, **kwargs):
        Path(path).write_bytes(b"half a log")
        raise exc

    monkeypatch.setattr(pd.DataFrame, method, half_write_then_fail)
    with pytest.raises(type(exc)):
        write_logs(log, target)
    assert _listing(tmp_path) == [target.name]
    assert target.read_bytes() == b"the previous log"
    # And once the fault is gone, writing works.
    monkeypatch.setattr(pd.DataFrame, method, original)
    write_logs(log, target)
    assert _listing(tmp_path) == [target.name]


def test_failed_first_write_leaves_no_file(log, tmp_path, monkeypatch):
    def fail(self, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail)
    with pytest.raises(OSError, match="disk full"):
        write_logs(log, tmp_path / "log.parquet")
    assert _listing(tmp_path) == []
