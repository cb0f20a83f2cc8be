"""Decision logs at scale: simulation into a partitioned Parquet dataset, in bounded memory.

A dataset is a folder of part files (``part-000000.parquet``, ...) in the decision-log schema
of :mod:`campaignrl.logs.schema`, plus ``_manifest.json`` (what was simulated, the parts, their
rows and sha256, the Arrow schema) and an empty ``_SUCCESS``. ``pyarrow.dataset`` reads the
folder as one table (it skips names that start with ``_`` or ``.``).

The unit of randomness is a *block* of ``block_customers`` customers (10,000 by default):
block ``b`` of a run with seed ``s`` is one :func:`campaignrl.rollout.run_policy` campaign of
``block_customers`` customers seeded by ``SeedSequence([s, b])``, whatever else the run does.
A *chunk* (one part file, one Ray task) is a whole number of blocks, written one Parquet row
group per block, so memory is bounded by two blocks and never grows with the number of
customers, and the rows never depend on the chunking. The last block is simulated whole and
cut to the customers asked for, so customer ``i``'s rows depend only on the seed, the block
size and ``i``: the first ``n`` customers of any larger run are the run of ``n`` customers,
and when ``n`` is a whole number of blocks its rows are the larger run's first rows. Every
episode (one customer's campaign) lies within one row group.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from campaignrl._checks import check_scalar
from campaignrl._fs import TEMP_TAIL, ordinary_mode, write_text_atomic
from campaignrl._progress import progress_bar
from campaignrl.simulators.spec import WorldSpec

if TYPE_CHECKING:
    import pyarrow as pa

    from campaignrl.logs.io import LoggedData
    from campaignrl.rollout import PopulationPolicy

__all__ = [
    "BLOCK_CUSTOMERS",
    "CHUNK_CUSTOMERS",
    "MANIFEST_NAME",
    "MAX_DATASET_CUSTOMERS",
    "LogDatasetInfo",
    "block_seed",
    "check_dataset_out",
    "dataset_parts",
    "read_dataset_manifest",
    "read_log_dataset",
    "simulate_block",
    "simulate_dataset",
]

BLOCK_CUSTOMERS = 10_000
"""customers in one block, the unit of randomness (recorded in the manifest). A round number:
a run of a round number of customers (1M) is then whole blocks, so it is exactly the first rows
of any larger run (the first 10M rows of a 10M-customer, 10-period log are the 1M-customer
log)"""
CHUNK_CUSTOMERS = 250_000
"""default customers per part file and Ray task (25 blocks; 2.5M rows over 10 periods)"""
ID_DIGITS = 10
"""digits of the zero-padded global customer number in ids (``s0-c0000000042``)"""
MAX_DATASET_CUSTOMERS = 10**ID_DIGITS
"""most customers one dataset holds (ids have :data:`ID_DIGITS` digits)"""
MAX_BLOCK_CUSTOMERS = 1 << 20
"""largest block (up to two blocks' logs are held in memory)"""
MANIFEST_NAME = "_manifest.json"
"""the dataset's manifest; written last, so a folder without it is not a finished dataset"""
SUCCESS_NAME = "_SUCCESS"
"""empty marker of a finished dataset (the Hadoop/Spark convention)"""
FORMAT = "campaignrl-log-dataset"
"""``format`` field of the manifest"""
FORMAT_VERSION = 1
"""``format_version`` field of the manifest"""
_ID_COLUMNS = ("decision_id", "customer_id", "episode_id")
"""columns rewritten with global ids"""


def block_seed(seed: int, block: int) -> int:
    """The ``run_policy`` seed of block ``block`` of a run seeded ``seed``.

    ``SeedSequence([seed, block])`` hashes both numbers into independent streams (NumPy's
    recommended way to seed parallel work), so blocks are independent and each is fixed by
    its index alone.

    Examples:
        >>> block_seed(0, 0) == block_seed(0, 0) != block_seed(0, 1)
        True
    """
    check_scalar(seed, "seed", int, min_val=0)
    check_scalar(block, "block", int, min_val=0)
    return int(np.random.SeedSequence([seed, block]).generate_state(1, np.uint64)[0])


@dataclass(frozen=True)
class _Run:
    """Everything a block needs; plain data, shipped to Ray workers as is."""

    world: WorldSpec
    policy: Any
    customers: int
    periods: int
    seed: int
    epsilon: float
    policy_version: str
    block_customers: int


@dataclass(frozen=True)
class LogDatasetInfo:
    """What :func:`simulate_dataset` wrote."""

    path: Path
    """the dataset folder"""
    rows: int
    """decisions written (customers x periods)"""
    customers: int
    """customers simulated"""
    parts: int
    """part files written"""
    manifest: dict[str, Any]
    """the content of ``_manifest.json``"""


def simulate_block(
    world: str | WorldSpec,
    policy: PopulationPolicy,
    *,
    block: int,
    customers: int,
    periods: int,
    seed: int,
    epsilon: float = 0.0,
    policy_version: str | None = None,
    block_customers: int = BLOCK_CUSTOMERS,
) -> pa.Table:
    """The decision log of one block of a dataset run, with global ids, as an Arrow table.

    Args:
        world: Preset name or ``WorldSpec``.
        policy: The logging policy (a stateless :class:`~campaignrl.rollout.PopulationPolicy`:
            its probabilities must depend only on its inputs, or rows would depend on the
            order in which blocks run).
        block: Block index: customers ``block * block_customers`` onwards.
        customers: Customers of the whole run (the last block is cut to them).
        periods: Periods in the campaign.
        seed: Seed of the whole run.
        epsilon: Share of uniform exploration mixed into the policy, in [0, 1].
        policy_version: The ``policy_version`` column (default as in ``run_policy``).
        block_customers: Customers per block.

    Returns:
        The block's rows, ordered by step then customer, in the schema of
        :mod:`campaignrl.logs.schema` (columns as ``run_policy(record=True)`` writes them);
        ids are ``s<seed>-c<customer>-t<step>``, ``s<seed>-c<customer>`` and
        ``s<seed>-e<customer>`` with the global customer number in :data:`ID_DIGITS` digits.
    """
    check_scalar(customers, "customers", int, min_val=1, max_val=MAX_DATASET_CUSTOMERS)
    check_scalar(block_customers, "block_customers", int, min_val=1, max_val=MAX_BLOCK_CUSTOMERS)
    n_blocks = -(-customers // block_customers)
    check_scalar(block, "block", int, min_val=0, max_val=n_blocks - 1)
    run = _Run(
        world=_resolve_world(world),
        policy=policy,
        customers=customers,
        periods=periods,
        seed=seed,
        epsilon=float(epsilon),
        policy_version=policy_version or str(getattr(policy, "name", type(policy).__name__)),
        block_customers=block_customers,
    )
    return _block_table(run, block)


def _block_table(run: _Run, block: int) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    from campaignrl.rollout import run_policy

    size, periods = run.block_customers, run.periods
    result = run_policy(
        run.world,
        run.policy,
        n_customers=size,
        horizon=periods,
        seed=block_seed(run.seed, block),
        epsilon=run.epsilon,
        record=True,
        policy_version=run.policy_version,
    )
    frame = result.log
    if frame is None:  # record=True always builds the log
        raise RuntimeError("run_policy(record=True) returned no log")
    # run_policy logs period by period, every customer in each: row r is customer r % size.
    steps = frame["step"].to_numpy()
    if steps.shape[0] != size * periods or not np.array_equal(
        steps, np.repeat(np.arange(periods), size)
    ):
        raise RuntimeError("run_policy's log is no longer ordered by step, then customer")
    first = block * size
    keep = min(size, run.customers - first)
    columns = list(frame.columns)
    frame = frame.drop(columns=list(_ID_COLUMNS))
    if keep < size:  # the last block: simulated whole, cut to the customers asked for
        frame = frame[np.tile(np.arange(size) < keep, periods)]
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    local = np.tile(np.arange(keep, dtype=np.int64), periods)
    numbers = first + np.arange(keep, dtype=np.int64)
    customer = pc.take(_fixed_ids(f"s{run.seed}-c", numbers), local)
    episode = pc.take(_fixed_ids(f"s{run.seed}-e", numbers), local)
    step = pc.cast(table.column("step"), pa.large_string())
    decision = pc.binary_join_element_wise(customer, step, pa.scalar("-t", pa.large_string()))
    ids = {"decision_id": decision, "customer_id": customer, "episode_id": episode}
    arrays = [ids[c] if c in ids else table.column(c) for c in columns]
    return pa.Table.from_arrays(arrays, names=columns)


def _fixed_ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    """``prefix`` + zero-padded ``numbers`` as an Arrow string array, built from bytes.

    Formatting millions of ids one Python string at a time costs more than simulating them;
    fixed-width ids are one ``(n, width)`` byte matrix and an arithmetic offsets buffer.
    """
    import pyarrow as pa

    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    n, width = numbers.shape[0], head.size + ID_DIGITS
    chars = np.empty((n, width), dtype=np.uint8)
    chars[:, : head.size] = head
    powers = 10 ** np.arange(ID_DIGITS - 1, -1, -1, dtype=np.int64)
    chars[:, head.size :] = (numbers[:, None] // powers) % 10 + ord("0")
    offsets = np.arange(n + 1, dtype=np.int64) * width
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))


def _resolve_world(world: str | WorldSpec) -> WorldSpec:
    if isinstance(world, WorldSpec):
        return world
    if not isinstance(world, str):
        raise TypeError(f"`world` must be a preset name or a WorldSpec, got {type(world).__name__}")
    from campaignrl.simulators.presets import load_world

    return load_world(world)


def check_dataset_out(
    out_dir: str | os.PathLike[str], argument: str = "`out_dir`", *, overwrite: bool
) -> Path:
    """Refuse a dataset folder that exists (unless ``overwrite``) or that is not ours to replace.

    ``overwrite`` replaces only an empty folder or a finished dataset (a folder holding
    ``_manifest.json``): anything else may be a user's folder, and is never deleted.

    Args:
        out_dir: The dataset folder.
        argument: How messages name it (``argument --out`` in the CLI).
        overwrite: Whether an existing dataset may be replaced.

    Raises:
        FileExistsError: ``out_dir`` is a file, or exists without ``overwrite``, or is a
            non-empty folder that is not a dataset.
    """
    out = Path(out_dir)
    if not out.exists() and not out.is_symlink():
        return out
    if out.is_symlink() or not out.is_dir():
        raise FileExistsError(f"{argument}: {str(out)!r} exists and is not a folder")
    if not overwrite:
        raise FileExistsError(f"{argument}: {str(out)!r} exists; pass --overwrite to replace it")
    if any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise FileExistsError(
            f"{argument}: {str(out)!r} is a folder that is not a campaignrl log dataset "
            f"(no {MANIFEST_NAME}); --overwrite replaces only datasets: remove it yourself"
        )
    return out


def simulate_dataset(
    out_dir: str | os.PathLike[str],
    *,
    world: str | WorldSpec,
    policy: PopulationPolicy,
    customers: int,
    periods: int,
    seed: int,
    chunk_customers: int = CHUNK_CUSTOMERS,
    block_customers: int = BLOCK_CUSTOMERS,
    epsilon: float = 0.0,
    policy_version: str | None = None,
    ray_address: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> LogDatasetInfo:
    """Simulate a logging policy on ``customers`` customers into a partitioned Parquet dataset.

    The rows are those of the blocks described in :mod:`campaignrl.logs.scaled`: the same for
    the same ``(world, policy, customers, periods, seed, epsilon, block_customers)`` whatever
    ``chunk_customers`` and wherever the chunks run (here or on Ray); part files concatenated
    in order give the rows by block, then step, then customer. The dataset is built in a
    hidden folder beside ``out_dir`` and renamed into place when complete, so an error or an
    interrupt leaves nothing that looks finished.

    Args:
        out_dir: The dataset folder to create.
        world: Preset name or ``WorldSpec``.
        policy: The logging policy; stateless (see :func:`simulate_block`).
        customers: Customers to simulate, at most :data:`MAX_DATASET_CUSTOMERS`.
        periods: Periods (weeks) in the campaign.
        seed: Seed of the run.
        chunk_customers: Customers per part file (and per Ray task), rounded up to whole
            blocks. Memory does not depend on it (a part is written a block at a time).
        block_customers: Customers per block, the unit of randomness: changing it changes
            the rows.
        epsilon: Share of uniform exploration mixed into the policy, in [0, 1].
        policy_version: The ``policy_version`` column (default as in ``run_policy``).
        ray_address: Run the chunks as Ray tasks: ``"local"`` (a Ray on this machine),
            ``"auto"`` or a cluster address; a Ray already initialized in this process is
            used as it is. Workers write their parts into the dataset's folder, so on a
            cluster it must be on storage every node sees. ``None``: run here.
        overwrite: Replace an existing dataset (see :func:`check_dataset_out`).
        progress: Show a progress bar in customers.

    Returns:
        The folder, rows, customers, parts and manifest written.

    Raises:
        ValueError: An argument out of range (named, with its value).
        TypeError: An argument of the wrong type.
        FileExistsError: ``out_dir`` exists (see :func:`check_dataset_out`).
        ImportError: ``ray_address`` given without Ray installed.
    """
    check_scalar(customers, "customers", int, min_val=1, max_val=MAX_DATASET_CUSTOMERS)
    check_scalar(periods, "periods", int, min_val=1)
    check_scalar(seed, "seed", int, min_val=0)
    check_scalar(chunk_customers, "chunk_customers", int, min_val=1)
    check_scalar(block_customers, "block_customers", int, min_val=1, max_val=MAX_BLOCK_CUSTOMERS)
    check_scalar(epsilon, "epsilon", (int, float), min_val=0.0, max_val=1.0)
    if not callable(getattr(policy, "probabilities", None)):
        raise TypeError(
            f"`policy` must have a probabilities(obs, masks, sim) method, got "
            f"{type(policy).__name__}"
        )
    if policy_version is not None and (not isinstance(policy_version, str) or not policy_version):
        raise ValueError(f"`policy_version` must be a non-empty string, got {policy_version!r}")
    if ray_address is not None and (not isinstance(ray_address, str) or not ray_address.strip()):
        raise ValueError(
            f"`ray_address` must be 'local', 'auto' or a cluster address, got {ray_address!r}"
        )
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"`out_dir` must be a path, got {type(out_dir).__name__}")
    # absolute and normalized: the temporary folder goes beside it, never inside `.`
    out = Path(os.path.abspath(out_dir))
    here = Path.cwd()
    if not out.name or out == here or out in here.parents:
        raise ValueError(
            f"`out_dir` must be a new folder, not the current one or one holding it, "
            f"got {str(out_dir)!r}"
        )
    check_dataset_out(out, overwrite=overwrite)
    spec = _resolve_world(world)
    run = _Run(
        world=spec,
        policy=policy,
        customers=customers,
        periods=periods,
        seed=seed,
        epsilon=float(epsilon),
        policy_version=policy_version or str(getattr(policy, "name", type(policy).__name__)),
        block_customers=block_customers,
    )
    n_blocks = -(-customers // block_customers)
    chunk_blocks = -(-chunk_customers // block_customers)
    chunks = [
        range(start, min(start + chunk_blocks, n_blocks))
        for start in range(0, n_blocks, chunk_blocks)
    ]

    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_work_folders(out)
    tmp = _work_folder(out)
    try:
        with progress_bar(f"simulating {customers:,} customers", customers, progress) as advance:
            if ray_address is None:
                parts = [
                    _write_part(tmp, i, blocks, run, advance) for i, blocks in enumerate(chunks)
                ]
            else:
                parts = _write_parts_on_ray(ray_address, tmp, chunks, run, advance)
        manifest = _manifest(run, parts, chunk_blocks, world)
        write_text_atomic(tmp / MANIFEST_NAME, json.dumps(manifest, indent=1) + "\n")
        (tmp / SUCCESS_NAME).touch()
        # checked again: another process may have made `out_dir` while this one worked
        check_dataset_out(out, overwrite=overwrite)
        # the mark goes last: a kill from here on leaves a finished-looking folder that
        # only lacks its rename, which costs nothing to keep
        (tmp / _OWNER_NAME).unlink()
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return LogDatasetInfo(
        path=out,
        rows=int(manifest["rows"]),
        customers=customers,
        parts=len(parts),
        manifest=manifest,
    )


def _part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


def _write_part(
    folder: Path,
    index: int,
    blocks: range,
    run: _Run,
    advance: Callable[[int], None],
    *,
    overlap: bool = True,
) -> dict[str, Any]:
    """Write one part file, a row group per block, to a temporary name renamed when done.

    At most two blocks' logs are in memory: with ``overlap``, block ``b`` is written by a
    thread while block ``b + 1`` is simulated (pyarrow encodes and compresses without the
    GIL, and writing is about a third of the CPU time, so a second core shortens the wall
    time by up to that); the bytes written are the same either way. A part retried after
    its worker died (Ray) simply rewrites the temporary file.
    """
    import pyarrow.parquet as pq

    name = _part_name(index)
    temp = folder / f".{name}.tmp"
    rows = 0
    schema: pa.Schema | None = None
    writer: pq.ParquetWriter | None = None
    pool = ThreadPoolExecutor(max_workers=1) if overlap else None
    pending: Future[None] | None = None
    try:
        for block in blocks:
            table = _block_table(run, block)
            if writer is None:
                schema = table.schema
                # zstd: a third of snappy's size and no slower to write here; unique decision
                # ids gain nothing from a dictionary, which is tried (and dropped) per page.
                dictionary = [c for c in schema.names if c != "decision_id"]
                writer = pq.ParquetWriter(
                    temp, schema, compression="zstd", use_dictionary=dictionary
                )
            if pending is not None:
                pending.result()  # the previous block is written (or its error raised)
                pending = None
            if pool is None:
                writer.write_table(table)
            else:
                pending = pool.submit(writer.write_table, table)
            rows += table.num_rows
            advance(table.num_rows // run.periods)
        if pending is not None:
            pending.result()
            pending = None
        if writer is None or schema is None:
            raise RuntimeError(f"part {index} has no blocks")
        writer.close()
        writer = None
        os.chmod(temp, ordinary_mode())
        os.replace(temp, folder / name)
    except BaseException:
        if pending is not None:
            wait([pending])  # never close the file under a write in progress
        if writer is not None:
            writer.close()
        temp.unlink(missing_ok=True)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    first = blocks[0] * run.block_customers
    last = min((blocks[-1] + 1) * run.block_customers, run.customers)
    return {
        "file": name,
        "rows": rows,
        "first_customer": first,
        "customers": last - first,
        "first_block": blocks[0],
        "blocks": len(blocks),
        "sha256": _sha256(folder / name),
        "schema": [[f.name, str(f.type)] for f in schema],
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _write_parts_on_ray(
    address: str,
    folder: Path,
    chunks: Sequence[range],
    run: _Run,
    advance: Callable[[int], None],
) -> list[dict[str, Any]]:
    """Each chunk as a Ray task writing its own part; results gathered in part order."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("`ray_address` needs Ray: pip install 'campaignrl[ray]'") from exc

    started = False
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, log_to_driver=False)
        started = True
    try:
        # One CPU per task (the simulator is single-threaded numpy); a task lost with its
        # worker is retried and rewrites its part from scratch, so the files do not change.
        task = ray.remote(num_cpus=1, max_retries=3)(_write_part_task)
        run_ref = ray.put(run)
        pending = {
            task.remote(str(folder), i, blocks.start, blocks.stop, run_ref): i
            for i, blocks in enumerate(chunks)
        }
        parts: dict[int, dict[str, Any]] = {}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    part = ray.get(ref)
                    parts[pending.pop(ref)] = part
                    advance(int(part["customers"]))
        except BaseException:
            for ref in pending:  # stop the rest before the caller removes their folder
                ray.cancel(ref, force=True)
            raise
        for part in parts.values():
            if not (folder / str(part["file"])).is_file():
                raise RuntimeError(
                    f"a Ray worker wrote {part['file']} where this machine does not see it: "
                    "`out_dir` must be on storage every node of the Ray cluster sees"
                )
        return [parts[i] for i in range(len(chunks))]
    finally:
        if started:
            ray.shutdown()


def _write_part_task(folder: str, index: int, start: int, stop: int, run: _Run) -> dict[str, Any]:
    """The Ray task: :func:`_write_part` without a progress bar (the driver draws it).

    No writer thread: the task asked Ray for one CPU.
    """
    return _write_part(Path(folder), index, range(start, stop), run, lambda n: None, overlap=False)


def _manifest(
    run: _Run, parts: list[dict[str, Any]], chunk_blocks: int, world: str | WorldSpec
) -> dict[str, Any]:
    from campaignrl import __version__

    schemas = {json.dumps(p["schema"]) for p in parts}
    if len(schemas) != 1:  # every block is built by one code path: this is a bug, not input
        raise RuntimeError(f"part files have {len(schemas)} different schemas")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "campaignrl_version": __version__,
        "customers": run.customers,
        "periods": run.periods,
        "seed": run.seed,
        "world": world if isinstance(world, str) else run.world.name,
        "world_spec": run.world.to_dict(),
        "policy_version": run.policy_version,
        "epsilon": run.epsilon,
        "block_customers": run.block_customers,
        "chunk_customers": chunk_blocks * run.block_customers,
        "blocks": -(-run.customers // run.block_customers),
        "seeding": (
            "block b (customers b*block_customers onwards) is run_policy(seed="
            "SeedSequence([seed, b]).generate_state(1, uint64)[0]) on block_customers "
            "customers, the last block cut to `customers`; one row group per block"
        ),
        "row_order": "part, block, step, customer",
        "id_digits": ID_DIGITS,
        "rows": sum(int(p["rows"]) for p in parts),
        "schema": parts[0]["schema"],
        "parts": [{k: v for k, v in p.items() if k != "schema"} for p in parts],
    }


_OWNER_NAME = ".owner"


def _work_folder(out: Path) -> Path:
    """A new hidden folder beside ``out``, marked with the host and process that own it.

    The mark lets a later run remove what a killed one (SIGKILL, power loss) left behind
    without touching the folder of a run still going (:func:`remove_dead_work_folders`).
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, ordinary_mode(directory=True))
    owner = {"host": socket.gethostname(), "pid": os.getpid()}
    (tmp / _OWNER_NAME).write_text(json.dumps(owner) + "\n")
    return tmp


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_work_folders(out: str | os.PathLike[str]) -> list[Path]:
    """Remove the hidden work folders of ``out`` whose run died, and return them.

    A run builds its dataset in ``.<name>.<8 characters>`` beside ``out`` and renames it in
    when done; a run killed before that leaves the folder (which may hold gigabytes of
    parts). Only folders of exactly that form, marked as owned by a process of this host
    that no longer exists, are removed: another host's run on shared storage, a run still
    going, and anything unmarked are left alone. A reused process id only keeps an orphan
    longer. Symbolic links are never followed.
    """
    out = Path(os.path.abspath(out))
    if not out.parent.is_dir():
        return []
    host, removed = socket.gethostname(), []
    prefix = f".{out.name}."
    for entry in out.parent.iterdir():
        tail = entry.name[len(prefix) :]
        if not (entry.name.startswith(prefix) and TEMP_TAIL.match(tail)):
            continue
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            owner = json.loads((entry / _OWNER_NAME).read_text())
            pid, owner_host = int(owner["pid"]), str(owner["host"])
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if owner_host == host and pid != os.getpid() and not _alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; a dataset being replaced goes only after."""
    if not out.exists():
        os.rename(tmp, out)
        return
    trash = _work_folder(out)
    os.rename(out, trash / "old")
    os.rename(tmp, out)
    shutil.rmtree(trash, ignore_errors=True)


def read_dataset_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a finished dataset folder, checked against its part files.

    Raises:
        ValueError: ``path`` is not a folder, has no ``_manifest.json`` (not a dataset, or a
            run that did not finish), a manifest of another format, or a part it lists is
            missing.
    """
    folder = Path(path)
    where = repr(str(folder))
    if not folder.is_dir():
        raise ValueError(f"`path` {where} is not a folder")
    try:
        text = (folder / MANIFEST_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(
            f"`path` {where} is not a finished campaignrl log dataset: no {MANIFEST_NAME}"
        ) from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{MANIFEST_NAME} of {where} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{MANIFEST_NAME} of {where} is not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{MANIFEST_NAME} of {where} has format_version "
            f"{manifest.get('format_version')!r}; this campaignrl reads {FORMAT_VERSION}"
        )
    for part in manifest.get("parts", []):
        if not (folder / str(part["file"])).is_file():
            raise ValueError(f"dataset {where} lists {part['file']!r}, which is missing")
    return manifest


def dataset_parts(path: str | os.PathLike[str]) -> list[Path]:
    """The part files of a finished dataset, in row order (see :func:`read_dataset_manifest`)."""
    manifest = read_dataset_manifest(path)
    return [Path(path) / str(p["file"]) for p in manifest["parts"]]


def read_log_dataset(
    path: str | os.PathLike[str],
    *,
    action_names: Sequence[str] | None = None,
    feature_columns: Sequence[str] | None = None,
) -> Iterator[LoggedData]:
    """Read a dataset part by part, each validated by :func:`campaignrl.logs.read_logs`.

    Memory holds one part at a time. ``episode_ids`` are coded per part (every episode lies
    within one part, so sequential estimators can run part by part).

    Args:
        path: The dataset folder.
        action_names: Action names in index order. Default: the catalog of the world in
            the manifest.
        feature_columns: As in ``read_logs``.

    Yields:
        One :class:`~campaignrl.logs.LoggedData` per part file, in row order.
    """
    from campaignrl.logs.io import read_logs

    manifest = read_dataset_manifest(path)
    if action_names is None:
        spec = WorldSpec.from_dict(manifest["world_spec"])
        action_names = spec.catalog.action_names
    for part in manifest["parts"]:
        yield read_logs(
            Path(path) / str(part["file"]),
            action_names=action_names,
            feature_columns=feature_columns,
        )
