"""Simulated log datasets: rows independent of chunking, prefixes, atomic writes, refusals."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from campaignrl.agents.baselines import make_baseline
from campaignrl.logs.scaled import (
    MANIFEST_NAME,
    block_seed,
    dataset_parts,
    read_dataset_manifest,
    read_log_dataset,
    remove_dead_work_folders,
    simulate_block,
    simulate_dataset,
)
from campaignrl.rollout import run_policy

BLOCK = 16
"""block size of the tests (the default, 10,000, is too slow for unit tests)"""
PERIODS = 3


def _simulate(out: Path, customers: int, chunk: int, **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "world": "retail",
        "policy": make_baseline("random"),
        "customers": customers,
        "periods": PERIODS,
        "seed": 7,
        "chunk_customers": chunk,
        "block_customers": BLOCK,
        "epsilon": 0.1,
        "progress": False,
    }
    args.update(kwargs)
    return simulate_dataset(out, **args)


def _rows(path: Path) -> pd.DataFrame:
    """The dataset's rows in part order, as pandas."""
    return pd.concat([pq.read_table(p).to_pandas() for p in dataset_parts(path)], ignore_index=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 customers = 3 whole blocks and one of 2 customers, one block per part."""
    out = tmp_path_factory.mktemp("ref") / "logs"
    _simulate(out, 50, BLOCK)
    return out


@pytest.mark.parametrize("chunk_blocks", [2, 3])
def test_same_rows_whatever_the_chunking(
    reference: Path, tmp_path: Path, chunk_blocks: int
) -> None:
    out = tmp_path / "logs"
    info = _simulate(out, 50, chunk_blocks * BLOCK)
    pd.testing.assert_frame_equal(_rows(out), _rows(reference))
    # one part per chunk of whole blocks, one row group per block (one block in memory)
    assert info.parts == math.ceil(4 / chunk_blocks)
    groups = [pq.ParquetFile(p).num_row_groups for p in dataset_parts(out)]
    assert groups == [min(chunk_blocks, 4 - i * chunk_blocks) for i in range(info.parts)]


def test_one_block_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A part of 4 blocks never holds more than the block being written and the next."""
    from campaignrl.logs import scaled

    alive: set[int] = set()
    most = 0
    build = scaled._block_table

    def tracked(run: Any, block: int) -> Any:
        nonlocal most
        table = build(run, block)
        alive.add(block)
        weakref.finalize(table, alive.discard, block)
        most = max(most, len(alive))
        return table

    monkeypatch.setattr(scaled, "_block_table", tracked)
    info = _simulate(tmp_path / "logs", 4 * BLOCK, 4 * BLOCK)
    assert info.parts == 1 and info.rows == 4 * BLOCK * PERIODS
    assert most <= 2


def test_ray_address_without_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'campaignrl\[ray\]'"):
        _simulate(tmp_path / "logs", 20, BLOCK, ray_address="local")
    assert os.listdir(tmp_path) == []


def test_chunk_rounded_up_to_whole_blocks(tmp_path: Path, reference: Path) -> None:
    info = _simulate(tmp_path / "logs", 50, BLOCK + 1)
    assert info.manifest["chunk_customers"] == 2 * BLOCK
    assert info.parts == 2
    pd.testing.assert_frame_equal(_rows(tmp_path / "logs"), _rows(reference))


def test_blocks_are_run_policy_campaigns(reference: Path) -> None:
    """Known answer: block b is run_policy seeded by SeedSequence([seed, b]), ids renamed."""
    rows = _rows(reference)
    for block in (0, 3):
        log = run_policy(
            "retail",
            make_baseline("random"),
            n_customers=BLOCK,
            horizon=PERIODS,
            seed=block_seed(7, block),
            epsilon=0.1,
            record=True,
        ).log
        assert log is not None
        keep = 50 - block * BLOCK if block == 3 else BLOCK
        log = log[np.tile(np.arange(BLOCK) < keep, PERIODS)].reset_index(drop=True)
        mine = rows[rows["customer_id"].str[4:].astype(int) // BLOCK == block]
        mine = mine.reset_index(drop=True)
        for column in ("step", "action", "propensity", "reward", "allowed=pct10@sms"):
            np.testing.assert_array_equal(mine[column].to_numpy(), log[column].to_numpy())
        numbers = block * BLOCK + np.tile(np.arange(keep), PERIODS)
        expected = [f"s7-c{i:010d}" for i in numbers]
        assert mine["customer_id"].tolist() == expected
        assert mine["episode_id"].tolist() == [e.replace("-c", "-e") for e in expected]
        pairs = zip(expected, mine["step"].tolist(), strict=True)
        assert mine["decision_id"].tolist() == [f"{c}-t{t}" for c, t in pairs]


def test_prefix_of_a_larger_run(reference: Path, tmp_path: Path) -> None:
    """The first 40 customers of the 50-customer run are the 40-customer run (mid-block)."""
    small = tmp_path / "small"
    _simulate(small, 40, 2 * BLOCK)
    big = _rows(reference)
    number = big["customer_id"].str[4:].astype(int)
    expected = big[number < 40].reset_index(drop=True)
    pd.testing.assert_frame_equal(_rows(small), expected)
    # a whole number of blocks: the very first rows of the larger run
    whole = tmp_path / "whole"
    _simulate(whole, 2 * BLOCK, BLOCK)
    pd.testing.assert_frame_equal(_rows(whole), big.iloc[: 2 * BLOCK * PERIODS])
    # another seed gives other rows: the comparisons above can fail
    other = tmp_path / "other"
    _simulate(other, 40, 2 * BLOCK, seed=8)
    assert not np.array_equal(_rows(other)["reward"], expected["reward"])


def test_manifest_and_readers(reference: Path) -> None:
    manifest = read_dataset_manifest(reference)
    assert manifest["rows"] == 50 * PERIODS
    assert manifest["customers"] == 50 and manifest["blocks"] == 4
    assert manifest["block_customers"] == BLOCK and manifest["seed"] == 7
    assert manifest["world"] == "retail" and manifest["policy_version"] == "random"
    assert [p["customers"] for p in manifest["parts"]] == [16, 16, 16, 2]
    assert [p["first_customer"] for p in manifest["parts"]] == [0, 16, 32, 48]
    assert (reference / "_SUCCESS").is_file()
    # pyarrow.dataset reads the folder as one table, skipping _manifest.json and _SUCCESS
    table = ds.dataset(reference, format="parquet").to_table()
    assert table.num_rows == 50 * PERIODS
    assert table.schema.names == [name for name, _ in manifest["schema"]]
    assert len(table.column("decision_id").unique()) == table.num_rows
    data = list(read_log_dataset(reference))
    assert [d.n_rounds for d in data] == [p["rows"] for p in manifest["parts"]]
    assert data[0].n_actions == 19 and data[0].masks is not None


def test_refuses_existing_folder_unless_overwrite(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "logs"
    _simulate(out, 20, BLOCK, seed=1)
    before = (out / MANIFEST_NAME).read_text()
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        _simulate(out, 20, BLOCK, seed=2)
    assert (out / MANIFEST_NAME).read_text() == before
    _simulate(out, 20, BLOCK, seed=2, overwrite=True)
    assert read_dataset_manifest(out)["seed"] == 2
    assert sorted(os.listdir(tmp_path)) == ["logs"]  # the replaced dataset is gone

    # --overwrite never deletes a folder that is not a dataset, nor a file
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a campaignrl log dataset"):
        _simulate(mine, 20, BLOCK, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep"
    (tmp_path / "file").write_text("keep")
    with pytest.raises(FileExistsError, match="is not a folder"):
        _simulate(tmp_path / "file", 20, BLOCK, overwrite=True)


BAD_ARGUMENTS = [
    ({"customers": 0}, ValueError, "`customers` must be >= 1, got 0"),
    ({"customers": -5}, ValueError, "`customers` must be >= 1, got -5"),
    ({"customers": 10**11}, ValueError, "`customers` must be <= 10000000000"),
    ({"customers": 2.0}, TypeError, "`customers` must be of type int, got float 2.0"),
    ({"chunk_customers": 0}, ValueError, "`chunk_customers` must be >= 1, got 0"),
    ({"chunk_customers": 1.5}, TypeError, "`chunk_customers` must be of type int"),
    ({"chunk_customers": True}, TypeError, "`chunk_customers` must be of type int, got bool"),
    ({"block_customers": 0}, ValueError, "`block_customers` must be >= 1, got 0"),
    ({"periods": 0}, ValueError, "`periods` must be >= 1, got 0"),
    ({"seed": -1}, ValueError, "`seed` must be >= 0, got -1"),
    ({"epsilon": 1.5}, ValueError, "`epsilon` must be <= 1.0, got 1.5"),
    ({"ray_address": " "}, ValueError, "`ray_address` must be 'local', 'auto' or a cluster"),
    ({"policy_version": ""}, ValueError, "`policy_version` must be a non-empty string"),
    ({"policy": object()}, TypeError, "`policy` must have a probabilities"),
    ({"world": 3}, TypeError, "`world` must be a preset name or a WorldSpec, got int"),
]


@pytest.mark.parametrize(("change", "error", "message"), BAD_ARGUMENTS)
def test_bad_arguments(
    tmp_path: Path, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    args: dict[str, Any] = {"customers": 20, "chunk": BLOCK}
    args.update(change)
    with pytest.raises(error, match=_escape(message)):
        _simulate(tmp_path / "logs", args.pop("customers"), args.pop("chunk"), **args)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("out", [".", "..", "sub/..", "/"])
def test_refuses_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="`out_dir` must be a new folder, not the current one"):
        _simulate(Path(out), 20, BLOCK, overwrite=True)
    assert os.listdir(tmp_path) == [] and Path.cwd() == tmp_path


def _escape(text: str) -> str:
    import re

    return re.escape(text)


class _FailsAtBlock:
    """A random policy that raises in its third block (each block calls it once per period)."""

    name = "failing"

    def __init__(self) -> None:
        self.calls = 0
        self.inner = make_baseline("random")

    def probabilities(self, obs: np.ndarray, masks: np.ndarray, sim: Any) -> np.ndarray:
        self.calls += 1
        if self.calls > 2 * PERIODS:
            raise RuntimeError("the policy failed in block 2")
        return self.inner.probabilities(obs, masks, sim)


@pytest.mark.parametrize("existing", [False, True])
def test_nothing_half_written_on_failure(tmp_path: Path, existing: bool) -> None:
    out = tmp_path / "logs"
    if existing:
        _simulate(out, 20, BLOCK)
    before = sorted(os.listdir(tmp_path))
    manifest = (out / MANIFEST_NAME).read_text() if existing else None
    with pytest.raises(RuntimeError, match="failed in block 2"):
        _simulate(out, 64, BLOCK, policy=_FailsAtBlock(), overwrite=True)
    # no dataset, no hidden temporary folder; a dataset being replaced is untouched
    assert sorted(os.listdir(tmp_path)) == before
    if existing:
        assert (out / MANIFEST_NAME).read_text() == manifest
    else:
        assert not out.exists()


def _work(tmp_path: Path, tail: str, host: str, pid: int) -> Path:
    folder = tmp_path / f".logs.{tail}"
    folder.mkdir()
    (folder / "part-000000.parquet").write_bytes(b"x" * 10)
    (folder / ".owner").write_text(json.dumps({"host": host, "pid": pid}))
    return folder


def test_a_killed_runs_folder_goes_at_the_next_run(tmp_path: Path) -> None:
    # a pid that surely no longer exists: a child that has exited and been reaped
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = _work(tmp_path, "dead0000", socket.gethostname(), child.pid)
    live = _work(tmp_path, "live0000", socket.gethostname(), os.getpid())
    remote = _work(tmp_path, "remote00", "another-host", child.pid)
    unmarked = tmp_path / ".logs.unmarked"
    unmarked.mkdir()
    other_name = _work(tmp_path, "x" * 8, socket.gethostname(), child.pid).rename(
        tmp_path / ".logsx.abcdefgh"
    )
    assert remove_dead_work_folders(tmp_path / "logs") == [dead]
    assert not dead.exists()
    assert live.exists() and remote.exists() and unmarked.exists() and other_name.exists()
    # simulate does it before it starts, and leaves only the dataset behind
    _simulate(tmp_path / "logs", 20, BLOCK)
    assert not (tmp_path / "logs" / ".owner").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["logs", live.name, remote.name, unmarked.name, other_name.name]
    )


def test_unfinished_folder_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "part-000000.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="not a finished campaignrl log dataset"):
        read_dataset_manifest(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        read_dataset_manifest(tmp_path / "part-000000.parquet")


def test_simulate_block_checks_its_block() -> None:
    with pytest.raises(ValueError, match="`block` must be <= 3, got 4"):
        simulate_block(
            "retail",
            make_baseline("random"),
            block=4,
            customers=50,
            periods=PERIODS,
            seed=7,
            block_customers=BLOCK,
        )
    table = simulate_block(
        "retail",
        make_baseline("random"),
        block=3,
        customers=50,
        periods=PERIODS,
        seed=7,
        epsilon=0.1,
        block_customers=BLOCK,
    )
    assert table.num_rows == 2 * PERIODS


def test_ray_tasks_write_the_same_files(reference: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        object_store_memory=100 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        info = _simulate(tmp_path / "logs", 50, BLOCK, ray_address="local")
        # a task that fails: its error reaches the caller, and nothing is left behind
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/
        with pytest.raises(RuntimeError, match="failed in block 2"):
            failing = _FailsAtBlock()
            _simulate(tmp_path / "failed", 64, 4 * BLOCK, policy=failing, ray_address="local")
        assert sorted(os.listdir(tmp_path)) == ["logs"]
    finally:
        ray.shutdown()
    # sha256 of every part equal: the very same bytes, not only the same rows
    local = read_dataset_manifest(reference)["parts"]
    assert [p["sha256"] for p in info.manifest["parts"]] == [p["sha256"] for p in local]
    pd.testing.assert_frame_equal(_rows(tmp_path / "logs"), _rows(reference))
    assert json.loads((tmp_path / "logs" / MANIFEST_NAME).read_text())["rows"] == 50 * PERIODS
