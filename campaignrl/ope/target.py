"""Target policies for OPE: probability tables, context-free or one row per logged decision."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from campaignrl.logs.io import LoggedData

__all__ = ["ProbabilityModel", "TargetPolicy", "as_target", "load_target_table", "takes_masks"]

SUM_ATOL = 1e-6
"""tolerance on probabilities summing to one over actions"""
_MASS_BLOCK_ROWS = 1 << 16
"""rows per block of the masked unlogged-mass computation"""


class ProbabilityModel(Protocol):
    """Anything that maps features ``(n, d)`` to action probabilities ``(n, A)``."""

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(n, A)`` action probabilities, one row per context."""
        ...


@dataclass(frozen=True, eq=False)
class TargetPolicy:
    """The evaluated policy's action probabilities ``pi_e(a | x, position)``.

    Held as a table in one of two layouts:

    * context-free: ``probs`` of shape ``(A,)`` or ``(A, L)``, the same for every logged row.
      Everything derived from it stays O(n) in memory: no ``(n, A)`` array is built.
    * per row (``per_row=True``): ``(n, A)`` or ``(n, A, L)``, aligned with the log's rows.

    Tables without a position axis apply at every position. Actions follow the log's integer
    action order. Probabilities must be non-negative and sum to one over actions.

    Examples:
        >>> from campaignrl.logs.io import LoggedData
        >>> data = LoggedData(
        ...     actions=np.array([0, 1, 1]),
        ...     rewards=np.array([0.0, 1.0, 0.5]),
        ...     propensities=np.array([0.5, 0.25, 0.25]),
        ...     action_names=("a", "b", "c"),
        ... )
        >>> target = TargetPolicy(np.array([0.2, 0.8, 0.0]))
        >>> target.factual(data)
        array([0.2, 0.8, 0.8])
        >>> target.unlogged_mass(data)
        0.0
    """

    probs: np.ndarray
    """``(A,)``, ``(A, L)``, ``(n, A)`` or ``(n, A, L)`` action probabilities"""
    per_row: bool = False
    """whether the first axis runs over logged rows (``(n, A[, L])``)"""
    masks_ignored: bool = False
    """whether these are the probabilities of a policy that decides under action masks,
    computed without them because the log records none (no ``allowed=<action>`` columns):
    its mass on actions the world did not allow at logging time has no logged evidence"""

    def __post_init__(self) -> None:
        try:
            probs = np.asarray(self.probs, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"`target` must be a numeric array, got {type(self.probs).__name__}"
            ) from exc
        want = (2, 3) if self.per_row else (1, 2)
        if probs.ndim not in want:
            layout = "(n, A) or (n, A, L)" if self.per_row else "(A,) or (A, L)"
            raise ValueError(f"`target` must have shape {layout}, got {probs.shape}")
        bad = ~(np.isfinite(probs) & (probs >= 0.0))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"`target` probabilities must be finite and >= 0, got {probs[idx]} at index {idx}"
            )
        axis = 1 if self.per_row else 0
        totals = probs.sum(axis=axis)
        off = np.abs(totals - 1.0) > SUM_ATOL
        if off.any():
            idx = tuple(int(i) for i in np.argwhere(off)[0])
            raise ValueError(
                f"`target` probabilities must sum to 1 over actions (axis {axis}), "
                f"got {float(totals[idx])!r} at {idx}"
            )
        if probs is self.probs:
            probs = probs.view()
        probs.setflags(write=False)
        object.__setattr__(self, "probs", probs)

    @classmethod
    def from_model(cls, model: ProbabilityModel, data: LoggedData) -> TargetPolicy:
        """Per-row target of a policy object, from the log's features.

        ``model.probabilities(data.features)`` must return ``(n, A)`` probabilities (a
        :class:`campaignrl.policies.Policy` does). A model whose ``probabilities`` also takes
        action masks is given the log's masks (``data.masks``) when the log has them, and is
        marked :attr:`masks_ignored` when it has none.
        """
        if data.features is None:
            raise ValueError("`data` has no features: a policy object needs contexts")
        masked = takes_masks(model)
        if masked and data.masks is not None:
            probs = model.probabilities(data.features, data.masks)  # type: ignore[call-arg]
        else:
            probs = model.probabilities(data.features)
        return cls(np.asarray(probs), per_row=True, masks_ignored=masked and data.masks is None)

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return int(self.probs.shape[1] if self.per_row else self.probs.shape[0])

    @property
    def n_positions(self) -> int:
        """Number of positions of the table (1 if it has no position axis)."""
        full = 3 if self.per_row else 2
        return int(self.probs.shape[-1]) if self.probs.ndim == full else 1

    def check_against(self, data: LoggedData, name: str = "target") -> None:
        """Refuse a table whose shape does not fit ``data``, naming ``name``.

        Raises:
            ValueError: On a wrong number of rows, actions or positions.
        """
        _check_shape(self.probs.shape, self.per_row, data, name)

    def _position_index(self, data: LoggedData) -> np.ndarray | int:
        has_axis = self.probs.ndim == (3 if self.per_row else 2)
        if has_axis and data.positions is not None:
            return data.positions
        return 0

    def _table(self) -> np.ndarray:
        """The table with an explicit position axis: ``(A, L)`` or ``(n, A, L)``."""
        full = 3 if self.per_row else 2
        return self.probs if self.probs.ndim == full else self.probs[..., np.newaxis]

    def factual(self, data: LoggedData) -> np.ndarray:
        """``pi_e(a_i | x_i, position_i)`` for every logged action, shape ``(n,)``."""
        table = self._table()
        pos = self._position_index(data)
        if self.per_row:
            return table[np.arange(data.n_rounds), data.actions, pos]
        return table[data.actions, pos]

    def expected(self, estimated_rewards: np.ndarray, data: LoggedData) -> np.ndarray:
        """``sum_a pi_e(a | x_i, position_i) q_hat(x_i, a, position_i)``, shape ``(n,)``.

        ``estimated_rewards`` is ``(n, A)`` (the same at every position) or ``(n, A, L)``.
        Beyond ``estimated_rewards`` itself, memory stays O(n L): the target is contracted
        against the reward matrix, never broadcast to it.
        """
        n, n_l = data.n_rounds, data.n_positions
        table = self._table()
        # Position axes may be longer than the log needs: keep the logged positions (views).
        q = estimated_rewards if estimated_rewards.ndim == 2 else estimated_rewards[:, :, :n_l]
        one_slot = table.shape[-1] == 1  # no position axis: the same at every position
        if not one_slot:
            table = table[..., :n_l]
        if q.ndim == 2 and one_slot:
            if self.per_row:
                return np.einsum("ia,ia->i", q, table[:, :, 0])
            return q @ table[:, 0]
        # One value per row and position, then pick each row's logged position.
        if q.ndim == 2:
            per_pos = np.einsum("ia,ial->il", q, table) if self.per_row else q @ table
        elif self.per_row:
            if one_slot:
                per_pos = np.einsum("ial,ia->il", q, table[:, :, 0])
            else:
                per_pos = np.einsum("ial,ial->il", q, table)
        elif one_slot:
            per_pos = np.einsum("ial,a->il", q, table[:, 0])
        else:
            per_pos = np.einsum("ial,al->il", q, table)
        if per_pos.shape[1] == 1:
            return per_pos[:, 0]
        pos = data.positions if data.positions is not None else np.zeros(n, dtype=np.int64)
        return per_pos[np.arange(n), pos]

    def unlogged_mass(self, data: LoggedData) -> float:
        """Mean target probability on actions the logging policy could not have taken.

        Those are the (action, position) pairs the log never shows and, where the log records
        the allowed actions (``data.masks``), the actions not allowed at that decision: the
        logger's propensity is zero there. Such actions carry no importance-weighted
        evidence: IPS values them at zero and DR falls back on the reward model there.

        Examples:
            >>> data = LoggedData(
            ...     actions=np.array([0, 1]), rewards=np.zeros(2), propensities=np.ones(2),
            ...     action_names=("a", "b"), masks=np.array([[True, False], [False, True]]),
            ... )
            >>> TargetPolicy(np.array([0.75, 0.25])).unlogged_mass(data)  # (0.25 + 0.75) / 2
            0.5
        """
        n_a, n_l = data.n_actions, data.n_positions
        pos_all = data.positions if data.positions is not None else np.zeros_like(data.actions)
        seen = np.bincount(data.actions * n_l + pos_all, minlength=n_a * n_l).reshape(n_a, n_l)
        unseen = (seen == 0).astype(np.float64)  # (A, L)
        if data.masks is not None:
            return self._unsupported_mass(data, unseen == 1.0, pos_all)
        table = self._table()
        if self.per_row:
            if table.shape[-1] == 1:
                per_pos = table[:, :, 0] @ unseen  # (n, L)
            else:
                per_pos = np.einsum("ial,al->il", table[:, :, :n_l], unseen)
            rows = np.arange(data.n_rounds)
            mass = per_pos[rows, pos_all] if n_l > 1 else per_pos[:, 0]
            return float(mass.mean()) if mass.size else 0.0
        # Context-free: the mass at each position, weighted by how often it was logged.
        if table.shape[-1] == 1:
            per_pos = table[:, 0] @ unseen  # (L,)
        else:
            per_pos = np.einsum("al,al->l", table[:, :n_l], unseen)
        weights = np.bincount(pos_all, minlength=n_l) / max(data.n_rounds, 1)
        return float(per_pos @ weights)

    def _unsupported_mass(self, data: LoggedData, unseen: np.ndarray, pos: np.ndarray) -> float:
        """:meth:`unlogged_mass` under the logged masks: row by row, in blocks of rows."""
        masks = data.masks
        if masks is None or data.n_rounds == 0:  # pragma: no cover - the caller checks
            return 0.0
        table = self._table()
        total = 0.0
        # (rows, A) blocks: memory stays O(A) per row beyond the inputs, whatever n is
        for start in range(0, data.n_rounds, _MASS_BLOCK_ROWS):
            rows = slice(start, start + _MASS_BLOCK_ROWS)
            p = pos[rows] if table.shape[-1] > 1 else np.zeros_like(pos[rows])
            if self.per_row:
                probs = table[np.arange(start, start + p.shape[0]), :, p]  # (rows, A)
            else:
                probs = table[:, p].T
            blocked = ~masks[rows] | unseen[:, pos[rows]].T
            total += float(np.where(blocked, probs, 0.0).sum())
        return total / data.n_rounds


def takes_masks(model: Any) -> bool:
    """Whether ``model.probabilities`` takes action masks after the features.

    Examples:
        >>> class Masked:
        ...     def probabilities(self, features, masks=None): ...
        >>> takes_masks(Masked()), takes_masks(TargetPolicy)
        (True, False)
    """
    method = getattr(model, "probabilities", None)
    if not callable(method):
        return False
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False
    return "masks" in params


def as_target(target: Any, data: LoggedData, name: str = "target") -> TargetPolicy:
    """A :class:`TargetPolicy` for ``data`` from a table or a policy object.

    Arrays are read by shape: ``(A,)`` context-free, ``(n, A, L)`` per row, ``(n, A)`` per
    row or ``(A, L)`` context-free; a 2D shape that fits both readings is refused (wrap it in
    ``TargetPolicy(probs, per_row=...)``). An object with a ``probabilities(features)`` method
    is evaluated on the log's features.

    Raises:
        ValueError: If the shape fits neither layout, naming ``name``.
    """
    if isinstance(target, TargetPolicy):
        target.check_against(data, name)
        return target
    if not isinstance(target, np.ndarray) and hasattr(target, "probabilities"):
        policy = TargetPolicy.from_model(target, data)
        policy.check_against(data, name)
        return policy
    try:
        arr = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"`{name}` must be a TargetPolicy, a policy or a numeric array, "
            f"got {type(target).__name__}"
        ) from exc
    n, n_a = data.n_rounds, data.n_actions
    per_row = arr.ndim == 3
    if arr.ndim == 2:
        per_row = arr.shape == (n, n_a)
        if per_row and _fits(arr.shape, False, data):
            raise ValueError(
                f"`{name}` of shape {arr.shape} reads as both (n, A) and (A, L): wrap it in "
                "TargetPolicy(probs, per_row=True or False)"
            )
    _check_shape(arr.shape, per_row, data, name)
    return TargetPolicy(arr, per_row=per_row)


def _fits(shape: tuple[int, ...], per_row: bool, data: LoggedData) -> bool:
    """Whether a table of ``shape`` in the given layout fits ``data``."""
    if per_row:
        if len(shape) not in (2, 3) or shape[0] != data.n_rounds:
            return False
        shape = shape[1:]
    if len(shape) not in (1, 2) or shape[0] != data.n_actions:
        return False
    # A position axis must cover every logged position; no axis means "at every position".
    return len(shape) == 1 or shape[1] >= data.n_positions


def _check_shape(shape: tuple[int, ...], per_row: bool, data: LoggedData, name: str) -> None:
    if not _fits(shape, per_row, data):
        n, n_a, n_l = data.n_rounds, data.n_actions, data.n_positions
        raise ValueError(
            f"`{name}` must have shape (A,)=({n_a},), (A, L)=({n_a}, {n_l}), "
            f"(n, A)=({n}, {n_a}) or (n, A, L)=({n}, {n_a}, {n_l}), got {shape}"
        )


def load_target_table(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a probability table from ``.npy`` (any layout) or ``.parquet`` (1D or 2D).

    ``.npy`` files are loaded with ``allow_pickle=False``. A Parquet table's numeric columns
    become the columns of a 2D array (``(n, A)`` or ``(A, L)``); a single column gives ``(A,)``
    or, aligned with the log, is refused later by shape. Pass the result to
    :func:`as_target` (or wrap it in :class:`TargetPolicy` to fix the layout).

    Raises:
        ValueError: On another suffix or a non-numeric Parquet column.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix == ".npy":
        return np.load(file, allow_pickle=False)
    if suffix != ".parquet":
        raise ValueError(f"`path` must end in .npy or .parquet, got {str(path)!r}")
    import pandas as pd

    frame = pd.read_parquet(file)
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column].dtype):
            raise ValueError(
                f"column `{column}` of {str(path)!r} must be numeric, got {frame[column].dtype}"
            )
    table = frame.to_numpy(dtype=np.float64)
    return table[:, 0] if table.shape[1] == 1 else table
