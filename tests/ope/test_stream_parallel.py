"""Streamed OPE spread over runs of row groups and threads: the very same results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_info

from campaignrl.logs.schema import mask_column
from campaignrl.ope import DR, IPS, SNIPS, stream
from campaignrl.ope.commands import _one_thread
from campaignrl.ope.stream import _bools, _units, evaluate_stream
from campaignrl.policies.base import Exploration
from campaignrl.policies.linear import LinearPolicy

ACTIONS = ("no_contact", "a1", "a2", "a3")
FEATURES = ("x0", "x1")
TARGET = LinearPolicy(
    FEATURES,
    ACTIONS,
    np.random.default_rng(3).normal(size=(len(ACTIONS), len(FEATURES))),
    exploration=Exploration(kind="softmax", epsilon=0.1),
)


def write_log(folder: Path, n_files: int, rows: int, row_group: int) -> Path:
    """``n_files`` files of ``rows`` decisions (customers of 4 decisions), in row groups."""
    folder.mkdir()
    rng = np.random.default_rng(11)
    for k in range(n_files):
        x = rng.normal(size=(rows, len(FEATURES)))
        masks = rng.random((rows, len(ACTIONS))) < 0.8
        masks[:, 0] = True  # no_contact is always allowed
        logging = masks / masks.sum(axis=1, keepdims=True)
        actions = (rng.random((rows, 1)) < logging.cumsum(axis=1)).argmax(axis=1)
        columns = {
            "customer_id": pa.array([f"c{k}-{i // 4}" for i in range(rows)]),
            "action": pa.array(np.asarray(ACTIONS)[actions]),
            "propensity": logging[np.arange(rows), actions],
            "reward": x[:, 0] * (actions == 1) + rng.normal(size=rows),
            **{f: x[:, j] for j, f in enumerate(FEATURES)},
            **{mask_column(a): masks[:, j] for j, a in enumerate(ACTIONS)},
        }
        pq.write_table(pa.table(columns), folder / f"part-{k}.parquet", row_group_size=row_group)
    return folder


def run(folder: Path, workers: int) -> dict[str, Any]:
    result = evaluate_stream(
        folder,
        TARGET,
        [IPS(), SNIPS(), DR()],
        reward_model=Ridge(alpha=1.0),
        model_sample=900,
        n_bootstrap=200,
        n_buckets=256,
        batch_rows=128,
        workers=workers,
    )
    return result.to_dict()


def test_runs_and_workers_give_the_very_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Files of 7 row groups of 300 rows, read in batches of 128 (each row group: 128, 128,
    # 44): whole files, runs of 2 row groups (600 rows) or 1, over 1 or 3 threads. The
    # batches and the order of every addition are the same, so the results are equal to the
    # last bit (==, no tolerance), as with the work spread by files.
    folder = write_log(tmp_path / "log", n_files=3, rows=2100, row_group=300)
    monkeypatch.setattr(stream, "UNIT_ROWS", 10**9)
    by_file = run(folder, workers=1)
    outcomes = []
    for unit_rows in (600, 1):
        monkeypatch.setattr(stream, "UNIT_ROWS", unit_rows)
        outcomes += [run(folder, workers=1), run(folder, workers=3)]
    for outcome in outcomes:
        assert outcome == by_file
    values = [e["value"] for e in by_file["estimates"]]
    assert all(np.isfinite(values)) and len(set(values)) == 3


def test_units_are_runs_of_whole_row_groups_per_file() -> None:
    files = [Path("a.parquet"), Path("b.parquet"), Path("c.parquet")]
    units = _units(files, [(300, 300, 300, 100), (1000,), ()], unit_rows=600)
    got = [(u.path.name, u.row_groups, u.first_row, u.n_rows, u.last) for u in units]
    assert got == [
        ("a.parquet", (0, 1), 0, 600, False),
        ("a.parquet", (2, 3), 600, 400, True),
        ("b.parquet", (0,), 0, 1000, True),
        ("c.parquet", (), 0, 0, True),  # an empty file keeps its place
    ]
    assert [u.file_index for u in units] == [0, 0, 1, 2]


@pytest.mark.parametrize("offset", [0, 1, 7, 8, 13])
def test_bools_unpack_sliced_bitmaps(offset: int) -> None:
    values = np.random.default_rng(offset).random(300) < 0.5
    for length in (0, 1, 9, 64, 300 - offset):
        column = pa.array(values).slice(offset, length)
        got = _bools(column)
        assert got.dtype == bool
        assert np.array_equal(got, values[offset : offset + length])


def test_reward_model_fits_on_one_thread(tmp_path: Path) -> None:
    seen: list[int] = []

    class Recording(Ridge):
        def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
            seen.extend(pool["num_threads"] for pool in threadpool_info())
            return super().fit(X, y, sample_weight)

    folder = write_log(tmp_path / "log", n_files=1, rows=800, row_group=400)
    evaluate_stream(
        folder, TARGET, [DR()], reward_model=Recording(), n_bootstrap=100, n_buckets=256
    )
    assert seen and set(seen) == {1}


def test_campaignrl_ope_fits_on_one_thread() -> None:
    with _one_thread():
        pools = threadpool_info()
    assert pools and {pool["num_threads"] for pool in pools} == {1}
