r"""Off-policy evaluation of Parquet logs bigger than memory, in streamed record batches.

:func:`evaluate_stream` reads a partitioned Parquet log (a folder, a glob or one file) file
by file, in record batches of ``batch_rows`` rows and only the columns it needs. For every
batch it builds a :class:`~campaignrl.logs.io.LoggedData` (its checks made as the columns
are converted), the target's probabilities and, for DM and the DR family, the reward
model's predictions (a policy's :data:`CHUNK_ROWS` rows at a time, keeping only the
``(n,)`` vectors the estimators read), and runs the estimators' own per-row term code
(:meth:`~campaignrl.ope.base.BaseOffPolicyEstimator.terms`): the same formulas as the
in-memory path, written once. The terms are summed per bucket of customers
(:mod:`campaignrl.ope.bootstrap`); sums combine exactly, so on a log that fits in memory the
streamed estimates equal the in-memory ones (to rounding, far below 1e-9), and the
intervals come from a Poisson bootstrap over the buckets that does not depend on how the
rows are split into files or ordered.

The reward model is fitted on a stated sample: the rows of the customers whose hashed id
falls below ``model_sample / total rows`` (so about ``model_sample`` rows, the same rows
whatever the partitioning), cross-fitted by hashed customer id: customers are split into
``model_folds`` folds by another hash, fold ``k``'s model is fitted on the sample rows of the
other folds, and every row of the log is predicted by its customer's fold model. A sampled
row is thus never scored by a model that saw it, as with
:class:`~campaignrl.ope.reward_model.CrossFittedRewardModel`.

The work is cut into runs of whole row groups of at least :data:`UNIT_ROWS` rows, spread
over ``workers`` threads (numpy and Arrow release the GIL: under a tenth of the main pass
holds it) or, with ``ray_address``, over Ray tasks. A run returns the sums of each of its
batches, and they are added in file order, batch by batch, exactly as one serial pass over
the files would: the results are identical (to the last bit) whatever the workers.

Memory: one batch in flight per worker (``batch_rows`` x (features + actions) values, and
a few ``CHUNK_ROWS`` x actions floats for a policy target), the runs' batch sums in
flight (``(columns x M)`` floats per batch), the reward-model sample, and the total bucket
sums; not the log.
"""

from __future__ import annotations

import glob
import math
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import MISSING, dataclass, field
from dataclasses import fields as dataclass_fields
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from campaignrl._checks import check_scalar
from campaignrl.logs.io import MAX_ABS_VALUE, LoggedData
from campaignrl.logs.schema import (
    MASK_PREFIX,
    OUTCOME_COLUMNS,
    REQUIRED_COLUMNS,
    mask_column,
)
from campaignrl.ope.base import BaseOffPolicyEstimator, OPEInputs, ope_inputs
from campaignrl.ope.bootstrap import (
    N_BUCKETS,
    hash_ids,
    mix64,
    poisson_replicates,
    uniform_of,
)
from campaignrl.ope.diagnostics import MAX_WEIGHT, weight_diagnostics
from campaignrl.ope.evaluate import Evaluation
from campaignrl.ope.intervals import MIN_BOOTSTRAP
from campaignrl.ope.records import Estimate
from campaignrl.ope.target import SUM_ATOL, TargetPolicy, takes_masks
from campaignrl.policies.base import Policy

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "FittedRewardModel",
    "StreamEvaluation",
    "cluster_folds",
    "evaluate_stream",
    "is_stream_source",
    "resolve_log_files",
]

DEFAULT_BATCH_ROWS = 1 << 18
"""rows per record batch (262,144: about 100 MB of working arrays with 19 actions)"""
CHUNK_ROWS = 8192
"""rows of a batch whose target probabilities and reward predictions are made together
(:func:`_policy_terms`): (rows, A) float64 arrays of 1.2 MB with 19 actions, that stay in
the CPU's cache and are reused by the allocator, where whole-batch arrays went to memory
and page faults (measured with 19 actions: 4,096 to 32,768 rows alike, 40% faster than
80,000; below 4,096, numpy's per-call costs show)"""
UNIT_ROWS = 1 << 19
"""rows (at least, in whole row groups) a thread or a Ray task reads: 524,288, so that a few
big files still keep every worker busy"""
DEFAULT_MODEL_SAMPLE = 1_000_000
"""rows (about) the reward model is fitted on"""
_BUCKET_SALT = 0x5EED_B0C7
_FOLD_SALT = 0xF01D_F01D
_SAMPLE_SALT = 0x5A3B_1E00
_NOT_FEATURES = frozenset((*REQUIRED_COLUMNS, "position", *OUTCOME_COLUMNS))
"""schema columns, slots and outcomes (which happen after the decision): never context.
The same rule as :func:`~campaignrl.logs.io.read_logs`."""


# --------------------------------------------------------------------------------------------
# Files and schema
# --------------------------------------------------------------------------------------------


def resolve_log_files(
    logs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[Path]:
    """The Parquet files of a log: a folder (every ``*.parquet`` below it), a glob or files.

    Files come sorted by path, which fixes the order in which per-file sums are combined.

    Raises:
        ValueError: If a folder holds no Parquet file, a glob matches none, or a path does
            not exist, naming it.
    """
    if isinstance(logs, (str, os.PathLike)):
        items: list[str | os.PathLike[str]] = [logs]
    else:
        items = list(logs)
        if not items:
            raise ValueError("`logs` must name at least one folder, glob or file, got none")
    files: list[Path] = []
    for item in items:
        path = Path(item)
        text = str(item)
        if path.is_dir():
            # As pyarrow.dataset: names starting with "_" or "." are metadata or unfinished
            # (a dataset's _manifest.json, a writer's hidden temporary folder).
            found = sorted(
                p
                for p in path.rglob("*.parquet")
                if p.is_file()
                and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
            )
            if not found:
                raise ValueError(f"`logs` folder {text!r} holds no .parquet file")
            files += found
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise ValueError(f"`logs` glob {text!r} matches no file")
            files += found
        else:
            raise ValueError(f"`logs` path {text!r} does not exist")
    return sorted(dict.fromkeys(files))


def is_stream_source(logs: str | os.PathLike[str]) -> bool:
    """Whether ``campaignrl ope --logs PATH`` should stream: a folder or a glob, not a file.

    Examples:
        >>> is_stream_source("logs/*.parquet"), is_stream_source("missing-file.parquet")
        (True, False)
    """
    text = str(logs)
    return Path(text).is_dir() or (glob.has_magic(text) and not Path(text).exists())


def _read_schemas(files: list[Path]) -> tuple[pa.Schema, list[tuple[int, ...]]]:
    """The common schema of ``files`` and their row groups' row counts (from the footers)."""
    schema: pa.Schema | None = None
    rows: list[tuple[int, ...]] = []
    for path in files:
        try:
            meta = pq.read_metadata(path)
        except (OSError, pa.ArrowException) as exc:
            raise ValueError(
                f"`logs` file {str(path)!r} is not a readable Parquet file: {exc}"
            ) from None
        this = meta.schema.to_arrow_schema()
        rows.append(tuple(int(meta.row_group(i).num_rows) for i in range(meta.num_row_groups)))
        if schema is None:
            schema, first = this, path
            continue
        if this.names != schema.names or not this.equals(schema, check_metadata=False):
            differ = _schema_difference(schema, this)
            raise ValueError(
                f"`logs` files have different schemas: {str(path)!r} differs from "
                f"{str(first)!r} ({differ})"
            )
    if schema is None:  # pragma: no cover - resolve_log_files never returns no file
        raise ValueError("`logs` has no file")
    return schema, rows


def _schema_difference(a: pa.Schema, b: pa.Schema) -> str:
    only_a = [n for n in a.names if n not in b.names]
    only_b = [n for n in b.names if n not in a.names]
    if only_a or only_b:
        return f"columns only in the first: {only_a[:5]}, only in this one: {only_b[:5]}"
    for name in a.names:
        if a.field(name).type != b.field(name).type:
            return f"column `{name}` is {a.field(name).type} there and {b.field(name).type} here"
    return "the column order differs"


# --------------------------------------------------------------------------------------------
# Reward model: fitted on a hashed sample of customers, cross-fitted by hashed customer id
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FittedRewardModel:
    """Per-fold reward models ``q_hat(x, a)`` on ``[one-hot action | features]``.

    Fold ``k``'s model was fitted on the sample rows of the customers outside fold ``k``;
    :meth:`predict` scores each row with its customer's fold model (cross-fitting).
    """

    models: tuple[Any, ...]
    """one fitted scikit-learn model per fold"""
    n_actions: int
    """number of actions ``A``"""
    classify: bool
    """whether the models are classifiers (predict the probability of reward 1)"""
    n_sample: int
    """rows the models were fitted on (all folds)"""

    def predict(self, data: LoggedData, folds: np.ndarray) -> np.ndarray:
        """``(n, A)`` predictions for every row of ``data`` and every action.

        Args:
            data: The rows (their features).
            folds: ``(n,)`` fold of each row's customer.
        """
        n, n_a = data.n_rounds, self.n_actions
        feats = data.features if data.features is not None else np.zeros((n, 0))
        if self.linear is not None:
            return _linear_predict(self.linear, feats, folds)
        out = np.empty((n, n_a))
        for k, model in enumerate(self.models):
            rows = np.flatnonzero(folds == k)
            if rows.size == 0:
                continue
            x = feats[rows]
            design = np.hstack([np.repeat(np.eye(n_a), rows.size, axis=0), np.tile(x, (n_a, 1))])
            out[rows] = _predict(model, design, self.classify).reshape(n_a, rows.size).T
        return out

    @cached_property
    def linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The coefficients of linear regressors, ``None`` for other models.

        ``(d, K)`` feature coefficients and ``(K, A)`` action coefficients plus intercept:
        one column or row per fold.
        """
        if self.classify:
            return None
        coefs = [getattr(m, "coef_", None) for m in self.models]
        if any(c is None or np.ndim(c) != 1 for c in coefs):
            return None
        n_a = self.n_actions
        stacked = np.asarray(coefs, dtype=np.float64)  # (K, A + d)
        intercepts = np.array([float(np.asarray(m.intercept_)) for m in self.models])
        return stacked[:, n_a:].T.copy(), stacked[:, :n_a] + intercepts[:, None]


def _linear_predict(
    linear: tuple[np.ndarray, np.ndarray], feats: np.ndarray, folds: np.ndarray
) -> np.ndarray:
    """``(n, A)`` predictions of linear fold models (:attr:`FittedRewardModel.linear`).

    A linear model predicts design @ coef + intercept: with a one-hot action block that is
    the features' part plus one coefficient per action. All folds at once, without building
    the (n A, A + d) design: (n, K) feature parts, then each row takes its fold's part and
    its fold's action coefficients. Row by row: the same values for any slice of rows.
    """
    feature_coef, action_coef = linear
    base = (feats @ feature_coef)[np.arange(feats.shape[0]), folds]
    return action_coef[folds] + base[:, None]


def _predict(model: Any, x: np.ndarray, classify: bool) -> np.ndarray:
    if not classify:
        return np.asarray(model.predict(x), dtype=np.float64)
    classes = list(model.classes_)
    if 1.0 not in classes:  # the training folds never saw a reward: predict 0
        return np.zeros(x.shape[0])
    return np.asarray(model.predict_proba(x)[:, classes.index(1.0)], dtype=np.float64)


def _fit_models(
    estimator: Any, sample: _Sample, n_actions: int, n_folds: int, seed: int
) -> FittedRewardModel:
    from sklearn.base import clone, is_classifier

    classify = is_classifier(estimator)
    if sample.rewards.size < n_folds:
        raise ValueError(
            f"`model_sample` gave {sample.rewards.size} rows, fewer than model_folds={n_folds}: "
            "raise `model_sample`"
        )
    if classify and not np.isin(sample.rewards, (0.0, 1.0)).all():
        bad = float(sample.rewards[~np.isin(sample.rewards, (0.0, 1.0))][0])
        raise ValueError(f"a classifier reward model needs 0/1 rewards, got {bad!r}")
    design = np.hstack([np.eye(n_actions)[sample.actions], sample.features])
    generator = np.random.default_rng(seed)
    models = []
    for k in range(n_folds):
        train = sample.folds != k
        model = clone(estimator)
        # As CrossFittedRewardModel: a model's own randomness comes from the caller's seed.
        if "random_state" in (params := model.get_params()) and params["random_state"] is None:
            model.set_params(random_state=int(generator.integers(2**31 - 1)))
        if not train.any():
            raise ValueError(
                f"reward-model fold {k} has no training rows: the sample holds the customers "
                "of one fold only (raise `model_sample` or lower `model_folds`)"
            )
        model.fit(design[train], sample.rewards[train])
        models.append(model)
    return FittedRewardModel(tuple(models), n_actions, classify, int(sample.rewards.size))


@dataclass(frozen=True, eq=False)
class _Sample:
    """Sample rows for the reward model, in a canonical order (by a hash of their content)."""

    features: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    folds: np.ndarray
    keys: np.ndarray

    @staticmethod
    def concat(parts: Sequence[_Sample], n_features: int, ordered: bool = True) -> _Sample:
        """The rows of ``parts``, in the canonical order (``ordered``) or as they come."""
        if not parts:
            return _Sample(np.zeros((0, n_features)), *(np.zeros(0, t) for t in "ifiu"))
        if not ordered:
            return _Sample(
                np.concatenate([p.features for p in parts]),
                np.concatenate([p.actions for p in parts]),
                np.concatenate([p.rewards for p in parts]),
                np.concatenate([p.folds for p in parts]),
                np.concatenate([p.keys for p in parts]),
            )
        keys = np.concatenate([p.keys for p in parts])
        # The order the model sees does not depend on the files: sorted by a hash of each
        # row's content (ties are identical rows, whose order does not matter).
        order = np.argsort(keys, kind="stable")
        return _Sample(
            np.concatenate([p.features for p in parts])[order],
            np.concatenate([p.actions for p in parts])[order],
            np.concatenate([p.rewards for p in parts])[order],
            np.concatenate([p.folds for p in parts])[order],
            keys[order],
        )


# --------------------------------------------------------------------------------------------
# The per-file work (the unit a Ray task runs)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Spec:
    """Everything a worker needs to turn a file into partial sums (picklable for Ray)."""

    columns: tuple[str, ...]
    action_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    has_masks: bool
    cluster: str
    target: Any
    """a policy object (``probabilities(features[, masks])``) or an ``(A,)`` table"""
    estimators: tuple[BaseOffPolicyEstimator, ...]
    layout: tuple[tuple[int, int, int], ...]
    """per estimator: the sum rows of its direct, numerator, denominator terms (-1: none)"""
    n_columns: int
    model: FittedRewardModel | None
    n_folds: int
    n_buckets: int
    batch_rows: int
    sample_rate: float = 0.0
    dictionary: tuple[str, ...] = ()
    """text columns read dictionary-encoded (ids and actions repeat: each distinct value is
    decoded, hashed or looked up once per batch)"""


@dataclass(eq=False)
class Partial:
    """Sums over some rows of a log that combine exactly (by :meth:`add`)."""

    n_rows: int
    sums: np.ndarray
    """(c, M): row 0 the rows per bucket, row 1 the weights, then the estimators' terms"""
    weight_sq: float
    max_weight: float
    n_supported: int
    seen: np.ndarray
    """(A,) rows per logged action"""
    allowed_mass: np.ndarray
    """(A,) summed target probability of each action where it was allowed"""
    blocked_mass: float
    """summed target probability of actions not allowed (masks)"""
    masks_ignored: bool = False

    @staticmethod
    def empty(n_columns: int, n_buckets: int, n_actions: int) -> Partial:
        return Partial(
            0,
            np.zeros((n_columns, n_buckets)),
            0.0,
            0.0,
            0,
            np.zeros(n_actions, np.int64),
            np.zeros(n_actions),
            0.0,
        )

    def add_batch(self, batch: _BatchSums) -> None:
        """Add one batch's sums, in the order of the batches of a file (exact: see below)."""
        # The same operations, in the same order, as summing the batches in place one after
        # the other: a file's sums do not depend on how its row groups were spread.
        self.n_rows += batch.n_rows
        self.sums += batch.sums
        self.weight_sq += batch.weight_sq
        self.max_weight = max(self.max_weight, batch.max_weight)
        self.n_supported += batch.n_supported
        self.seen += batch.seen
        self.allowed_mass += batch.target_mass
        if batch.blocked is not None:
            self.allowed_mass -= batch.blocked
            self.blocked_mass += float(batch.blocked.sum())
        self.masks_ignored = self.masks_ignored or batch.masks_ignored

    def add(self, other: Partial) -> None:
        """Add ``other``'s sums into this one."""
        self.n_rows += other.n_rows
        self.sums += other.sums
        self.weight_sq += other.weight_sq
        self.max_weight = max(self.max_weight, other.max_weight)
        self.n_supported += other.n_supported
        self.seen += other.seen
        self.allowed_mass += other.allowed_mass
        self.blocked_mass += other.blocked_mass
        self.masks_ignored = self.masks_ignored or other.masks_ignored


@dataclass(frozen=True)
class _Unit:
    """A run of consecutive row groups of one file: what a thread or a Ray task reads."""

    path: Path
    row_groups: tuple[int, ...]
    first_row: int
    """the run's first row in its file (rows are named by their place in the file)"""
    n_rows: int
    file_index: int
    last: bool
    """whether the run ends its file"""


def _units(files: list[Path], groups: list[tuple[int, ...]], unit_rows: int) -> list[_Unit]:
    """Each file's row groups in runs of at least ``unit_rows`` rows (the last may be fewer).

    Work is spread over runs rather than files so that a few big files still keep every
    worker busy; the runs do not depend on the number of workers, and their batches are the
    file's own (a batch never spans row groups), so the sums are the same as file by file.
    """
    units: list[_Unit] = []
    for index, (path, sizes) in enumerate(zip(files, groups, strict=True)):
        runs: list[tuple[list[int], int, int]] = []
        start = 0
        for group, size in enumerate(sizes):
            if not runs or runs[-1][2] >= unit_rows:
                runs.append(([], start, 0))
            members, first, rows = runs[-1]
            members.append(group)
            runs[-1] = (members, first, rows + size)
            start += size
        if not runs:  # a file without row groups: one empty run keeps the file's place
            runs.append(([], 0, 0))
        for k, (members, first, rows) in enumerate(runs):
            units.append(_Unit(path, tuple(members), first, rows, index, last=k == len(runs) - 1))
    return units


@dataclass(frozen=True, eq=False)
class _BatchSums:
    """One batch's contributions to a :class:`Partial`, before they are added."""

    n_rows: int
    sums: np.ndarray
    """(c, M) per-bucket sums of the batch"""
    weight_sq: float
    max_weight: float
    n_supported: int
    seen: np.ndarray
    target_mass: np.ndarray
    """(A,) the target's summed probability of each action"""
    blocked: np.ndarray | None
    """(A,) the part of ``target_mass`` on actions not allowed (``None``: no masks)"""
    masks_ignored: bool


def _batches(unit: _Unit, spec: _Spec) -> Iterator[tuple[int, pa.RecordBatch]]:
    """``(first row in the file, batch)`` of ``unit``'s row groups, only ``spec.columns``."""
    if not unit.row_groups:
        return
    fmt = ds.ParquetFileFormat(
        read_options=ds.ParquetReadOptions(dictionary_columns=list(spec.dictionary))
    )
    fragment = fmt.make_fragment(
        str(unit.path.resolve()), filesystem=pafs.LocalFileSystem(), row_groups=unit.row_groups
    )
    # Little read-ahead: the default (16 batches) would hold ~1 GB of decoded columns.
    scanner = ds.Scanner.from_fragment(
        fragment,
        columns=list(spec.columns),
        batch_size=spec.batch_rows,
        batch_readahead=1,
        fragment_readahead=1,
        use_threads=True,
    )
    start = unit.first_row
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield start, batch
            start += batch.num_rows


def _column_floats(batch: pa.RecordBatch, name: str, where: str, cast: bool = True) -> np.ndarray:
    """A numeric column as numpy float64 (``cast=False``: in its own dtype, e.g. float32)."""
    column = batch.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise ValueError(f"column `{name}` {where} must be numeric, got {column.type}")
    if column.null_count:
        row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
        raise ValueError(f"column `{name}` {where} has a missing value at row {row}")
    values = column.to_numpy(zero_copy_only=False)
    return values.astype(np.float64, copy=False) if cast else values


def _bools(column: pa.Array) -> np.ndarray:
    """A boolean column as numpy: its bitmap unpacked (Arrow's own conversion is 3x slower)."""
    if not pa.types.is_boolean(column.type):
        return column.to_numpy(zero_copy_only=False).astype(bool, copy=False)
    bits = np.frombuffer(column.buffers()[1], dtype=np.uint8)
    first = column.offset
    unpacked = np.unpackbits(bits[first // 8 : -(-(first + len(column)) // 8)], bitorder="little")
    return unpacked[first % 8 : first % 8 + len(column)].view(bool)


def _bounded(values: np.ndarray) -> bool:
    """Whether every value is at most ``MAX_ABS_VALUE`` in magnitude (so finite, not NaN)."""
    if values.size == 0:
        return True
    return bool(values.max() <= MAX_ABS_VALUE and values.min() >= -MAX_ABS_VALUE)


def _checked_data(fields: dict[str, Any]) -> LoggedData:
    """A :class:`LoggedData` of arrays :func:`_batch_data` has checked as it would.

    Its own checks would make each pass over the batch again; the fields are set as its
    ``__post_init__`` leaves them (read-only arrays of the right dtypes).
    """
    data = object.__new__(LoggedData)
    for item in dataclass_fields(LoggedData):
        value = fields.get(item.name, item.default)
        if value is MISSING:  # pragma: no cover - _batch_data gives every required field
            raise TypeError(f"LoggedData needs `{item.name}`")
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
        object.__setattr__(data, item.name, value)
    return data


def _batch_data(
    path: Path, start: int, batch: pa.RecordBatch, spec: _Spec, hashed: bool = True
) -> tuple[LoggedData, np.ndarray]:
    """The batch as a validated :class:`LoggedData`, and each row's 64-bit cluster hash."""
    where = f"of {str(path)!r} (rows from {start})"
    names = spec.action_names
    action = batch.column("action")
    if pa.types.is_integer(action.type):
        actions = action.to_numpy(zero_copy_only=False).astype(np.int64)
    elif pa.types.is_dictionary(action.type) and not action.null_count:
        # Each distinct name looked up once, then gathered by the row's dictionary index.
        codes = pc.index_in(
            action.dictionary.cast(pa.string()), value_set=pa.array(names, pa.string())
        )
        lookup = codes.to_numpy(zero_copy_only=False)
        indices = action.indices.to_numpy(zero_copy_only=False)
        if codes.null_count:
            unknown = codes.is_null().to_numpy(zero_copy_only=False)
            _unknown_action(action, int(np.argmax(unknown[indices])), start, where, names)
        actions = lookup.astype(np.int64)[indices]
    else:
        codes = pc.index_in(action.cast(pa.string()), value_set=pa.array(names, pa.string()))
        if codes.null_count:
            row = int(np.argmax(codes.is_null().to_numpy(zero_copy_only=False)))
            _unknown_action(action, row, start, where, names)
        actions = codes.to_numpy(zero_copy_only=False).astype(np.int64)
    n = batch.num_rows
    # LoggedData's checks, made here as the columns are converted (a bound on each column,
    # one pass, in cache): a batch that passes them all is built without checking it again;
    # any other is built by LoggedData itself, which names the defect.
    valid = not pa.types.is_integer(action.type) or bool(
        n == 0 or (actions.min() >= 0 and actions.max() < len(names))
    )
    features = None
    if spec.feature_names:
        features = np.empty((n, len(spec.feature_names)), order="F")
        for j, name in enumerate(spec.feature_names):
            # Converted to float64 as it is copied in (float32 features: one pass, not two).
            features[:, j] = _column_floats(batch, name, where, cast=False)
            valid = valid and _bounded(features[:, j])
    masks = None
    if spec.has_masks:
        # Column-major, as the policies and the masked sums read them: one column per action.
        masks = np.empty((n, len(names)), dtype=bool, order="F")
        for j, name in enumerate(names):
            column = batch.column(mask_column(name))
            if column.null_count:
                raise ValueError(f"column `{mask_column(name)}` {where} has a missing value")
            masks[:, j] = _bools(column)
        valid = valid and bool(masks.reshape(-1, order="F")[actions * n + np.arange(n)].all())
    rewards = _column_floats(batch, "reward", where)
    propensities = _column_floats(batch, "propensity", where)
    # NaN fails every comparison, so these bounds refuse it too.
    valid = (
        valid
        and _bounded(rewards)
        and bool(n == 0 or (propensities.min() > 0.0 and propensities.max() <= 1.0))
    )
    fields = {
        "actions": actions,
        "rewards": rewards,
        "propensities": propensities,
        "action_names": names,
        "features": features,
        "feature_names": spec.feature_names,
        "masks": masks,
    }
    if valid:
        data = _checked_data(fields)
    else:
        try:
            data = LoggedData(**fields)
        except ValueError as exc:
            raise ValueError(f"{exc} {where}") from None
    if not hashed:
        return data, np.zeros(0, dtype=np.uint64)
    return data, hash_ids(batch.column(spec.cluster), _BUCKET_SALT, spec.cluster)


def _unknown_action(
    action: pa.Array, row: int, start: int, where: str, names: Sequence[str]
) -> None:
    raise ValueError(
        f"column `action` {where} must name a known action: row {start + row} has "
        f"{action[row].as_py()!r} (actions: {list(names)[:4]}... {len(names)} in all)"
    )


def _target_probs(spec: _Spec, data: LoggedData) -> tuple[TargetPolicy, np.ndarray, bool]:
    """The target on ``data``, its ``(n, A)`` probabilities and whether masks were ignored."""
    if isinstance(spec.target, np.ndarray):
        policy = TargetPolicy(spec.target)
        return policy, np.broadcast_to(spec.target, (data.n_rounds, data.n_actions)), False
    from campaignrl.ope.policy_target import policy_target

    policy = policy_target(spec.target, data)
    return policy, policy.probs, policy.masks_ignored


def _folds(hashes: np.ndarray, n_folds: int) -> np.ndarray:
    return (mix64(hashes ^ np.uint64(_FOLD_SALT)) % np.uint64(n_folds)).astype(np.int64)


def cluster_folds(ids: Any, n_folds: int, name: str = "cluster") -> np.ndarray:
    """The cross-fitting fold of every cluster id (as :func:`evaluate_stream` assigns them).

    With :attr:`StreamEvaluation.reward_model`, ``model.predict(data, cluster_folds(ids, k))``
    gives the in-memory predictions of the streamed reward model, e.g. to compare with
    :func:`~campaignrl.ope.evaluate.evaluate`.

    Examples:
        >>> folds = cluster_folds(["c1", "c2", "c1"], 2)
        >>> folds.shape, bool(folds[0] == folds[2])
        ((3,), True)
    """
    column = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(ids)
    return _folds(hash_ids(column, _BUCKET_SALT, name), n_folds)


def unit_sums(unit: _Unit, spec: _Spec) -> list[_BatchSums]:
    """The sums of each batch of a run of row groups (the work of a thread or a Ray task)."""
    n_a = len(spec.action_names)
    out: list[_BatchSums] = []
    mask = np.uint64(spec.n_buckets - 1)
    path = unit.path
    for start, batch in _batches(unit, spec):
        data, hashes = _batch_data(path, start, batch, spec)
        terms = _policy_terms(spec, data, hashes) if _chunked(spec) else None
        if terms is None:
            terms = _checked_terms(spec, data, hashes, f"(in {str(path)!r}, rows from {start})")
        inputs = terms.inputs
        bucket = (hashes & mask).astype(np.intp)
        m = spec.n_buckets
        sums = np.zeros((spec.n_columns, m))
        sums[0] += np.bincount(bucket, minlength=m)
        sums[1] += np.bincount(bucket, weights=inputs.weights, minlength=m)
        for est, rows in zip(spec.estimators, spec.layout, strict=True):
            est_terms = est.terms(inputs)
            for row, column in zip(
                rows, (est_terms.direct, est_terms.numerator, est_terms.denominator), strict=True
            ):
                if row >= 0 and column is not None:
                    sums[row] += np.bincount(bucket, weights=column, minlength=m)
        w = inputs.weights
        out.append(
            _BatchSums(
                n_rows=data.n_rounds,
                sums=sums,
                weight_sq=float(np.dot(w, w)),
                max_weight=float(w.max()),
                n_supported=int(np.count_nonzero(w > 0)),
                seen=np.bincount(data.actions, minlength=n_a),
                target_mass=terms.target_mass,
                blocked=terms.blocked,
                masks_ignored=terms.masks_ignored,
            )
        )
    return out


@dataclass(frozen=True, eq=False)
class _TargetTerms:
    """A batch's estimator inputs and the target's mass per action."""

    inputs: OPEInputs
    target_mass: np.ndarray
    """(A,) the target's summed probability of each action"""
    blocked: np.ndarray | None
    """(A,) the part of ``target_mass`` on actions not allowed (``None``: no masks)"""
    masks_ignored: bool


def _checked_terms(spec: _Spec, data: LoggedData, hashes: np.ndarray, where: str) -> _TargetTerms:
    """The batch's terms through the estimators' own checked path (whole-batch arrays)."""
    policy, probs, ignored = _target_probs(spec, data)
    q = None if spec.model is None else spec.model.predict(data, _folds(hashes, spec.n_folds))
    try:
        inputs = ope_inputs(data, policy, q)
    except ValueError as exc:
        if "supports the target" in str(exc):  # support is judged on the whole log
            inputs = _unsupported_inputs(data, policy, q)
        else:
            raise ValueError(f"{exc} {where}") from None
    blocked = None
    if data.masks is not None:
        # Mass on actions the logger could not take: not allowed at this decision.
        # probs are finite and non-negative (TargetPolicy checks), so p * not-allowed is
        # p's masked-out part exactly; with both column-major, one pass per action.
        outside = np.logical_not(np.asfortranarray(data.masks))
        blocked = (np.asfortranarray(probs) * outside).sum(axis=0)
    return _TargetTerms(inputs, probs.sum(axis=0), blocked, ignored)


def _chunked(spec: _Spec) -> bool:
    """Whether the batch's target is a policy object, evaluated by :func:`_policy_terms`."""
    return not isinstance(spec.target, np.ndarray)


def _policy_terms(spec: _Spec, data: LoggedData, hashes: np.ndarray) -> _TargetTerms | None:
    """:func:`_checked_terms` of a policy target, :data:`CHUNK_ROWS` rows at a time.

    The policy's probabilities, the reward model's predictions and their products are made
    for a chunk of rows at a time, so that their ``(rows, A)`` arrays stay in the CPU's cache
    and only ``(n,)`` vectors are kept: ``pi(a_i | x_i)``, ``q_hat(x_i, a_i)`` and
    ``sum_a pi(a | x_i) q_hat(x_i, a)``. Every value is computed row by row as in
    :func:`~campaignrl.ope.policy_target.policy_target` and
    :func:`~campaignrl.ope.base.ope_inputs` (the same operations on each row: the same
    inputs to the last bit); only the target's mass per action, a diagnostic, is summed in
    another order. The checks are theirs, made on the chunk (probabilities finite, at least
    0 and summing to 1; weights below ``MAX_WEIGHT``; finite model terms): ``None`` when
    one fails, for :func:`_checked_terms` to report it as the checked path does.
    """
    policy = spec.target
    names = tuple(getattr(policy, "feature_names", ()))
    actions = tuple(getattr(policy, "action_names", data.action_names))
    if (
        data.features is None
        or actions != data.action_names
        or any(f not in data.feature_names for f in names)
    ):
        return None  # the checked path names the missing columns or differing actions
    n, n_a = data.n_rounds, data.n_actions
    index = [data.feature_names.index(f) for f in names]
    feats = data.features
    x = feats if index == list(range(feats.shape[1])) else feats[:, index]
    masks = data.masks
    model = spec.model
    folds = np.zeros(0, np.intp) if model is None else _folds(hashes, spec.n_folds)
    q_all = base = action_coef = None
    if model is not None and model.linear is not None:
        # As _linear_predict, whose products come per batch; the (rows, A) sums per chunk.
        feature_coef, action_coef = model.linear
        base = (feats @ feature_coef)[np.arange(n), folds]
    elif model is not None:
        # Other models predict a whole batch at once (a call per chunk costs more).
        q_all = model.predict(data, folds)
    factual = np.empty(n)
    q_factual = np.empty(n) if model is not None else None
    expected = np.empty(n) if model is not None else None
    target_mass = np.zeros(n_a)
    blocked = None if masks is None else np.zeros(n_a)
    acts = data.actions
    ones = np.ones(min(n, CHUNK_ROWS))
    # A Policy whose probabilities are its checks, then checked_probabilities: the batch's
    # features are finite and its masks allow the logged action (_batch_data or LoggedData
    # checked them), so the checks are skipped. Other objects get probabilities().
    checked = isinstance(policy, Policy) and type(policy).probabilities is Policy.probabilities
    for first in range(0, n, CHUNK_ROWS):
        rows = slice(first, min(n, first + CHUNK_ROWS))
        size = rows.stop - first
        # Column-major rows, as read_logs gives the in-memory estimators their features (a
        # BLAS kernel may round a row's scores differently, by an ulp, in another layout).
        features = x[rows]
        if checked:
            allowed = (
                np.ones((size, n_a), dtype=bool, order="F")
                if masks is None
                else np.asfortranarray(masks[rows])
            )
            probs = policy.checked_probabilities(features, allowed)
        else:
            # Any other object gets contiguous arrays, as policy_target hands them on.
            features = np.ascontiguousarray(features)
            probs = np.asarray(
                policy.probabilities(features)
                if masks is None
                else policy.probabilities(features, np.ascontiguousarray(masks[rows])),
                dtype=np.float64,
            )
        # TargetPolicy's checks: NaN fails ``min >= 0``, an infinity the sums to one.
        if probs.shape != (size, n_a) or not (
            probs.min(initial=0.0) >= 0.0
            and float(np.abs(probs.sum(axis=1) - 1.0).max(initial=0.0)) <= SUM_ATOL
        ):
            return None
        a = acts[rows]
        factual[rows] = _pick(probs, a)
        # Column sums as one matrix-vector product (a diagnostic: any order will do).
        target_mass += ones[:size] @ probs
        if blocked is not None and masks is not None:
            blocked += ones[:size] @ (probs * np.logical_not(masks[rows]))
        if q_factual is not None and expected is not None:
            if q_all is not None:
                q = q_all[rows]
            else:
                # As _linear_predict (take: the same rows as indexing, 5x faster).
                q = np.take(cast(np.ndarray, action_coef), folds[rows], axis=0)
                q += cast(np.ndarray, base)[rows, None]
            q_factual[rows] = _pick(q, a)
            # As TargetPolicy.expected: one product sum per row.
            expected[rows] = np.einsum("ia,ia->i", q, probs)
    with np.errstate(over="ignore", divide="ignore"):
        weights = factual / data.propensities
    if not (weights <= MAX_WEIGHT).all():
        return None
    if expected is not None and not (
        np.isfinite(expected).all() and np.isfinite(cast(np.ndarray, q_factual)).all()
    ):
        return None  # a non-finite prediction: finite ones give finite terms
    ignored = masks is None and takes_masks(policy)
    return _TargetTerms(
        OPEInputs(data.rewards, weights, q_factual, expected), target_mass, blocked, ignored
    )


def _pick(table: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """``table[i, actions[i]]`` for every row ``i``: one gather from the flat buffer."""
    n = actions.shape[0]
    if table.flags.f_contiguous:
        return table.ravel(order="F").take(actions * n + np.arange(n))
    if table.flags.c_contiguous:
        return table.ravel().take(np.arange(n) * table.shape[1] + actions)
    return table[np.arange(n), actions]


def _unsupported_inputs(data: LoggedData, policy: TargetPolicy, q: np.ndarray | None) -> OPEInputs:
    """Inputs of a batch where the target supports no logged row (other batches may)."""
    weights = policy.factual(data) / data.propensities
    q_factual = q_expected = None
    if q is not None:
        q_factual = q[np.arange(data.n_rounds), data.actions]
        q_expected = policy.expected(q, data)
    return OPEInputs(data.rewards, weights, q_factual, q_expected)


def unit_sample(unit: _Unit, spec: _Spec) -> _Sample:
    """The reward-model sample rows of a run of row groups (customers hashed below the rate).

    In read order: :meth:`_Sample.concat` puts all the runs' rows in their canonical order.
    """
    parts = []
    path = unit.path
    for start, batch in _batches(unit, spec):
        all_hashes = hash_ids(batch.column(spec.cluster), _BUCKET_SALT, spec.cluster)
        keep = uniform_of(mix64(all_hashes ^ np.uint64(_SAMPLE_SALT))) < spec.sample_rate
        if not keep.any():
            continue
        # Only the sampled rows are converted (Arrow filters the rest away in C++); their
        # checks name rows of the filtered batch, so a defect is reported from the whole one.
        try:
            data, _ = _batch_data(path, start, batch.filter(pa.array(keep)), spec, False)
        except ValueError:
            _batch_data(path, start, batch, spec)
            raise
        hashes = all_hashes[keep]
        keep = np.ones(data.n_rounds, dtype=bool)
        feats = data.features[keep] if data.features is not None else np.zeros((int(keep.sum()), 0))
        actions, rewards = data.actions[keep], data.rewards[keep]
        key = mix64(hashes[keep] ^ actions.astype(np.uint64))
        key = mix64(key ^ rewards.view(np.uint64))
        for j in range(feats.shape[1]):
            key = mix64(key ^ np.ascontiguousarray(feats[:, j]).view(np.uint64))
        parts.append(_Sample(feats, actions, rewards, _folds(hashes[keep], spec.n_folds), key))
    return _Sample.concat(parts, len(spec.feature_names), ordered=False)


# --------------------------------------------------------------------------------------------
# Placement: serial, or Ray tasks over files
# --------------------------------------------------------------------------------------------


def _map_units(
    fn: Callable[[_Unit, _Spec], Any],
    files: list[_Unit],
    spec: _Spec,
    ray_address: str | None,
    workers: int = 1,
) -> Iterator[Any]:
    """``fn(unit, spec)`` for every run of row groups, yielded in order (threads or Ray)."""
    if ray_address is None and (workers <= 1 or len(files) == 1):
        for unit in files:
            yield fn(unit, spec)
        return
    if ray_address is None:
        # Threads: numpy and Arrow release the GIL in their array work. Results are taken in
        # file order, so the sums are added in the serial order (identical results).
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = iter(files)
            futures = deque(pool.submit(fn, f, spec) for f in islice(pending, 2 * workers))
            while futures:
                result = futures.popleft().result()
                following = next(pending, None)
                if following is not None:
                    futures.append(pool.submit(fn, following, spec))
                yield result
        return
    ray = _ray(ray_address)
    remote = ray.remote(num_cpus=1, max_retries=3)(_in_task)
    spec_ref = ray.put(spec)
    window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    refs: list[Any] = []
    submitted = 0
    for i in range(len(files)):
        # A bounded window of tasks in flight: results are gathered in file order, so the
        # sums are added in the order of the serial loop (identical results).
        while submitted < len(files) and submitted < i + window:
            refs.append(remote.remote(fn, files[submitted], spec_ref))
            submitted += 1
        yield ray.get(refs[i])
        refs[i] = None


def _ray(address: str) -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError("`ray_address` needs Ray: pip install 'campaignrl[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, log_to_driver=False)
    return ray


# --------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamEvaluation(Evaluation):
    """:class:`~campaignrl.ope.evaluate.Evaluation` of a streamed log, with how it was read."""

    n_files: int = 0
    """Parquet files read"""
    cluster: str = ""
    """the column whose values are the bootstrap's clusters"""
    n_buckets: int = N_BUCKETS
    """buckets of clusters resampled by the Poisson bootstrap"""
    model_rows: int = 0
    """rows the reward model was fitted on (0 without one)"""
    reward_model: FittedRewardModel | None = field(default=None, repr=False)
    """the fitted per-fold reward models (to predict a log in memory, see :func:`cluster_folds`)"""

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Evaluation.to_dict`, with ``stream`` facts."""
        out = super().to_dict()
        out["stream"] = {
            "n_files": self.n_files,
            "cluster": self.cluster,
            "n_buckets": self.n_buckets,
            "model_rows": self.model_rows,
        }
        return out


def evaluate_stream(
    logs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    target: Any,
    estimators: Sequence[BaseOffPolicyEstimator],
    *,
    action_names: Sequence[str] | None = None,
    reward_model: Any | None = None,
    model_sample: int = DEFAULT_MODEL_SAMPLE,
    model_folds: int = 2,
    alpha: float = 0.05,
    n_bootstrap: int = 1000,
    seed: int = 0,
    cluster: str = "auto",
    batch_rows: int = DEFAULT_BATCH_ROWS,
    n_buckets: int = N_BUCKETS,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> StreamEvaluation:
    r"""Evaluate ``target`` on a Parquet log read in record batches, with bounded memory.

    Point estimates are the estimators' own (their per-row terms, summed); intervals are a
    Poisson bootstrap over buckets of clusters (see :mod:`campaignrl.ope.bootstrap`):
    ``V*_b = sum_k W_bk S^d_k / sum_k W_bk n_k + sum_k W_bk S^u_k / sum_k W_bk S^v_k`` with
    ``W_bk ~ Poisson(1)`` from a hash of ``(seed, b, k)``, and the ``alpha/2``,
    ``1 - alpha/2`` quantiles of the ``V*_b``. References: Hanley & MacGibbon,
    "Creating non-parametric bootstrap samples using Poisson frequencies", 2006; Chamandy
    et al., "Estimating Uncertainty for Massive Data Streams", 2012.

    Args:
        logs: A folder (every ``*.parquet`` under it), a glob, a file, or a list of them.
        target: A policy object (``probabilities(features[, masks])``, e.g. a loaded
            :class:`campaignrl.policies.Policy`), an exported policy directory, or a
            context-free ``(A,)`` probability table. Per-row tables cannot be streamed.
        estimators: Bandit estimators (:mod:`campaignrl.ope.estimators`).
        action_names: The actions in index order (default: the policy's, else the default
            catalog's).
        reward_model: An unfitted scikit-learn regressor or classifier, required by DM and
            the DR family; inputs ``[one-hot action | features]``.
        model_sample: About how many rows the reward model is fitted on: the rows of the
            customers whose hash is below ``model_sample / total rows``.
        model_folds: Cross-fitting folds of customers (by hashed id), at least 2.
        alpha: One minus the coverage of the intervals, in (0, 1).
        n_bootstrap: Poisson resamples (at least
            :data:`~campaignrl.ope.intervals.MIN_BOOTSTRAP`).
        seed: Seed of the resamples and of the reward model's own randomness.
        cluster: The column whose values are the independent units (a customer's decisions
            are correlated): ``auto`` is ``customer_id``, else ``episode_id``, else
            ``decision_id`` (independent rows).
        batch_rows: Rows per record batch (memory is about ``batch_rows`` x (3 x actions +
            features) x 8 bytes per worker).
        n_buckets: Buckets of clusters (a power of two, at least 2^8).
        ray_address: ``None`` (this process), ``"local"`` (a local Ray, or the one already
            initialized), ``"auto"`` or a Ray address: one task per run of row groups.
        workers: Threads over runs of row groups without Ray (default: the CPUs, at most 8;
            1: serial); also the threads of the bootstrap. Results do not depend on it.
        progress: Show progress bars.

    Returns:
        The :class:`StreamEvaluation` (estimates with ``method="poisson-bootstrap"``).

    Raises:
        ValueError: On a bad argument (naming it), no files, files with different schemas,
            a missing column (naming it), a bad value (naming the column, file and row), or
            a target that no logged decision supports.
    """
    if not estimators:
        raise ValueError("`estimators` must hold at least one estimator, got none")
    for i, est in enumerate(estimators):
        if not isinstance(est, BaseOffPolicyEstimator):
            raise TypeError(
                f"`estimators[{i}]` must be an off-policy estimator, got {type(est).__name__}"
            )
    check_scalar(
        alpha, "alpha", float, min_val=0.0, max_val=1.0, min_inclusive=False, max_inclusive=False
    )
    check_scalar(n_bootstrap, "n_bootstrap", int, min_val=MIN_BOOTSTRAP)
    check_scalar(seed, "seed", int, min_val=0)
    check_scalar(batch_rows, "batch_rows", int, min_val=1)
    check_scalar(model_sample, "model_sample", int, min_val=1)
    check_scalar(model_folds, "model_folds", int, min_val=2)
    check_scalar(n_buckets, "n_buckets", int, min_val=256)
    if n_buckets & (n_buckets - 1):
        raise ValueError(f"`n_buckets` must be a power of two, got {n_buckets}")
    if workers is not None:
        check_scalar(workers, "workers", int, min_val=1)
    n_workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    files = resolve_log_files(logs)
    schema, file_groups = _read_schemas(files)
    columns = set(schema.names)
    where = (
        f"the log {str(files[0])!r}"
        if len(files) == 1
        else f"the log ({len(files)} files from {str(files[0])!r})"
    )

    target, policy_names = _resolve_target(target)
    if action_names is None:
        if policy_names is not None:
            action_names = policy_names
        else:
            from campaignrl.catalog import default_catalog

            action_names = default_catalog().action_names
    names = tuple(str(a) for a in action_names)
    if isinstance(target, np.ndarray) and target.shape != (len(names),):
        raise ValueError(
            f"`target` table must have shape (A,)=({len(names)},) to be streamed (per-row "
            f"tables cannot be aligned with a streamed log: pass a policy), got {target.shape}"
        )
    if cluster == "auto":
        cluster = next(
            (c for c in ("customer_id", "episode_id", "decision_id") if c in columns), ""
        )
        if not cluster:
            raise ValueError(
                f"{where} has none of customer_id, episode_id, decision_id: name the `cluster` "
                "column"
            )
    missing = [c for c in ("action", "propensity", "reward", cluster) if c not in columns]
    if missing:
        raise ValueError(f"{where} is missing required column(s) {missing}")
    if "position" in columns:
        raise ValueError(
            f"{where} has a `position` column: multi-slot logs are not streamed (use the "
            "in-memory campaignrl ope)"
        )
    mask_cols = [c for c in schema.names if c.startswith(MASK_PREFIX)]
    if mask_cols:
        expected = [mask_column(a) for a in names]
        unknown = sorted(set(mask_cols) - set(expected))
        absent = [c for c in expected if c not in columns]
        if unknown or absent:
            raise ValueError(
                f"{where}: mask column(s) {unknown[:3]} name no known action"
                if unknown
                else f"{where} has mask columns but is missing {absent[:3]} ({len(absent)})"
            )
    all_features = tuple(
        c for c in schema.names if c not in _NOT_FEATURES and not c.startswith(MASK_PREFIX)
    )
    needs_model = any(e.needs_reward_model for e in estimators)
    if needs_model and reward_model is None:
        needers = [e.estimator_name for e in estimators if e.needs_reward_model]
        raise ValueError(
            f"`reward_model` is required by {', '.join(needers)}: pass a scikit-learn model"
        )
    if needs_model:
        features = all_features
    elif isinstance(target, np.ndarray):
        features = ()
    else:
        features = tuple(getattr(target, "feature_names", all_features))
    absent = [f for f in features if f not in columns]
    if absent:
        raise ValueError(f"{where} lacks the policy's feature column(s) {absent}")
    layout, n_columns = _layout(estimators)
    read = ("action", "propensity", "reward", cluster, *features, *mask_cols)
    spec = _Spec(
        columns=tuple(dict.fromkeys(read)),
        action_names=names,
        feature_names=features,
        has_masks=bool(mask_cols),
        cluster=cluster,
        target=target,
        estimators=tuple(estimators),
        layout=layout,
        n_columns=n_columns,
        model=None,
        n_folds=model_folds,
        n_buckets=n_buckets,
        batch_rows=batch_rows,
        dictionary=tuple(
            c
            for c in dict.fromkeys(("action", cluster))
            if pa.types.is_string(schema.field(c).type)
            or pa.types.is_large_string(schema.field(c).type)
            or pa.types.is_binary(schema.field(c).type)
            or pa.types.is_large_binary(schema.field(c).type)
        ),
    )
    total = sum(sum(sizes) for sizes in file_groups)
    units = _units(files, file_groups, UNIT_ROWS)
    if total == 0:
        raise ValueError(f"{where} is empty: no rows (decisions)")
    rng = np.random.default_rng(seed)
    model_seed, boot_seed = (int(s) for s in rng.integers(2**63, size=2))
    from campaignrl._progress import progress_bar

    fitted = None
    if needs_model:
        rate = min(1.0, model_sample / total)
        # The sample needs no masks (the main pass checks them): 19 columns fewer to read.
        sample_spec = _replace(
            spec,
            sample_rate=rate,
            has_masks=False,
            columns=tuple(c for c in spec.columns if not c.startswith(MASK_PREFIX)),
        )
        what = "reward-model sample"
        with _one_blas_thread(), progress_bar(what, total, progress) as advance:
            parts = []
            for unit, part in zip(
                units,
                _map_units(unit_sample, units, sample_spec, ray_address, n_workers),
                strict=True,
            ):
                parts.append(part)
                advance(unit.n_rows)
        sample = _Sample.concat(parts, len(features))
        del parts  # the sample is held once while the models fit (peak memory)
        # One thread (BLAS and OpenMP): with more, a busy machine's spinning threads took 15x
        # the CPU time of a ridge fit (4 s against 0.27 s on 500,000 rows, the same
        # coefficients) and 18x that of gradient boosting (51 s against 2.9 s).
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            fitted = _fit_models(reward_model, sample, len(names), model_folds, model_seed)
        del sample
        spec = _replace(spec, model=fitted)
    totals = Partial.empty(n_columns, n_buckets, len(names))
    what = f"streaming {total:,} rows"
    with _one_blas_thread(), progress_bar(what, total, progress) as advance:
        n_a = len(names)
        in_file = Partial.empty(n_columns, n_buckets, n_a)
        for unit, batches in zip(
            units, _map_units(unit_sums, units, spec, ray_address, n_workers), strict=True
        ):
            # A file's batches are summed in order, then the file's sums into the totals:
            # the same additions whatever the runs and the workers (identical results).
            for batch in batches:
                in_file.add_batch(batch)
            if unit.last:
                totals.add(in_file)
                in_file = Partial.empty(n_columns, n_buckets, n_a)
            advance(unit.n_rows)
        return _finish(totals, spec, alpha, n_bootstrap, boot_seed, len(files), fitted, n_workers)


def _one_blas_thread() -> Any:
    """A context in which BLAS runs on one thread (process-wide, as BLAS pools are).

    The batches' products are small ((65536, 20) x (20, 19)): a multi-threaded BLAS spends
    more waking and spinning its threads than computing (measured: the main pass took 2.5x
    the CPU time), and the work is already spread over files.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _in_task(fn: Callable[[_Unit, _Spec], Any], unit: _Unit, spec: _Spec) -> Any:
    """``fn(unit, spec)`` in a Ray worker, with one BLAS thread (see :func:`_one_blas_thread`)."""
    with _one_blas_thread():
        return fn(unit, spec)


def _replace(spec: _Spec, **changes: Any) -> _Spec:
    from dataclasses import replace

    return replace(spec, **changes)


def _resolve_target(target: Any) -> tuple[Any, tuple[str, ...] | None]:
    """The target as a policy object or an ``(A,)`` array, and the policy's action names."""
    if isinstance(target, (str, os.PathLike)):
        from campaignrl.policies import load_policy

        try:
            target = load_policy(target)
        except (OSError, ValueError) as exc:
            raise ValueError(f"`target` {str(target)!r}: {exc}") from None
    if not isinstance(target, np.ndarray) and hasattr(target, "probabilities"):
        names = getattr(target, "action_names", None)
        return target, (tuple(names) if names is not None else None)
    if isinstance(target, TargetPolicy):
        if target.per_row or target.probs.ndim != 1:
            raise ValueError(
                "`target` must be context-free (A,) to be streamed: per-row tables cannot be "
                "aligned with a streamed log (pass a policy)"
            )
        return np.asarray(target.probs, dtype=np.float64), None
    try:
        arr = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"`target` must be a policy, a policy directory or an (A,) table, got "
            f"{type(target).__name__}"
        ) from None
    if arr.ndim != 1:
        raise ValueError(
            f"`target` table must be (A,) to be streamed (per-row tables cannot be aligned "
            f"with a streamed log: pass a policy), got shape {arr.shape}"
        )
    TargetPolicy(arr)  # the same checks as in memory (non-negative, sums to 1)
    return arr, None


def _layout(
    estimators: Sequence[BaseOffPolicyEstimator],
) -> tuple[tuple[tuple[int, int, int], ...], int]:
    """Which sum rows hold each estimator's direct, numerator and denominator terms."""
    probe = OPEInputs(np.zeros(1), np.ones(1), np.zeros(1), np.zeros(1))
    rows = []
    next_row = 2  # rows 0 and 1: counts and weights
    for est in estimators:
        terms = est.terms(probe)
        ids = []
        for column in (terms.direct, terms.numerator, terms.denominator):
            if column is None:
                ids.append(-1)
            else:
                ids.append(next_row)
                next_row += 1
        rows.append((ids[0], ids[1], ids[2]))
    return tuple(rows), next_row


def _value(totals: np.ndarray, rows: tuple[int, int, int], n: np.ndarray) -> np.ndarray:
    """``sum(d)/n + sum(u)/sum(v)`` from (resampled) column totals, as RoundTerms.value."""
    d, u, v = rows
    value = np.zeros_like(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if d >= 0:
            value = value + np.where(n > 0, totals[..., d] / n, 0.0)
        if u >= 0:
            den = totals[..., v]
            value = value + np.where(den != 0.0, totals[..., u] / den, 0.0)
    return value


def _finish(
    totals: Partial,
    spec: _Spec,
    alpha: float,
    n_bootstrap: int,
    seed: int,
    n_files: int,
    fitted: FittedRewardModel | None,
    workers: int = 1,
) -> StreamEvaluation:
    n = totals.n_rows
    if totals.n_supported == 0:
        raise ValueError(
            f"no logged decision supports the target: it gives probability 0 to the logged "
            f"action at all {n} rows (it only takes actions the log never took or did not "
            "allow), so this log cannot value it"
        )
    sums = totals.sums.T  # (M, c)
    full = sums.sum(axis=0)  # (c,)
    replicates = poisson_replicates(sums, seed, n_bootstrap, workers)  # (B, c)
    estimates = []
    for est, rows in zip(spec.estimators, spec.layout, strict=True):
        value = float(_value(full, rows, np.asarray(full[0])))
        boot = _value(replicates, rows, replicates[:, 0])
        lo, hi = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
        estimates.append(
            Estimate(
                estimator=est.estimator_name,
                value=value,
                ci_low=float(lo),
                ci_high=float(hi),
                method="poisson-bootstrap",
                alpha=alpha,
                n_rounds=n,
                cluster=spec.cluster,
            )
        )
    w_sum = float(full[1])
    mean = w_sum / n
    ess = w_sum * w_sum / totals.weight_sq if totals.weight_sq > 0 else 0.0
    # Cluster-robust SE of the mean weight with the buckets as clusters (unions of whole
    # clusters): RoundTerms' sandwich formula on the bucket sums of w_i - mean.
    counts = totals.sums[0]
    resid = totals.sums[1] - mean * counts
    units = int(np.count_nonzero(counts))
    se = float(np.sqrt(units / (units - 1) * float(resid @ resid))) / n if units > 1 else math.inf
    unseen = totals.seen == 0
    mass = (totals.blocked_mass + float(totals.allowed_mass[unseen].sum())) / n
    diagnostics = weight_diagnostics(
        n_rounds=n,
        effective_sample_size=ess,
        max_weight=totals.max_weight,
        mean_weight=mean,
        mean_weight_se=se,
        unlogged_target_mass=mass,
        supported=True,
        masks_ignored=totals.masks_ignored,
    )
    return StreamEvaluation(
        estimates=tuple(estimates),
        diagnostics=diagnostics,
        n_files=n_files,
        cluster=spec.cluster,
        n_buckets=spec.n_buckets,
        model_rows=0 if fitted is None else fitted.n_sample,
        reward_model=fitted,
    )
