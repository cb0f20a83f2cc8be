"""The framework-free ``Policy``: features ``(n, d)`` and masks to action probabilities."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from campaignrl._checks import check_choice, check_scalar
from campaignrl.policies.sampling import sample_actions

__all__ = ["Exploration", "Policy", "SavedArrays", "masked_softmax"]

_MIN_TEMPERATURE = float(np.finfo(np.float32).tiny)
"""smallest softmax temperature: the smallest normal float32 (a float32 division by anything
smaller, or by its float32 rounding 0, overflows or gives NaN)"""
_MAX_TEMPERATURE = float(np.finfo(np.float32).max)
"""largest softmax temperature: the largest float32"""

Shape = tuple[int | None, ...]
"""an array shape; ``None`` where any length is allowed"""


class SavedArrays(NamedTuple):
    """What a policy kind saves in ``weights.npz``, known from its manifest alone.

    Lets a loader check every ``.npy`` header (names, dimensions, sizes) before any data is
    read; the kind's constructor checks what depends on the data.
    """

    shapes: dict[str, Shape]
    """every array the kind may save, by name: its shape, ``None`` where any length goes"""
    optional: frozenset[str] = frozenset()
    """the names among them that may be absent"""


def check_names(names: Sequence[str], name: str, *, min_len: int = 0) -> tuple[str, ...]:
    """``names`` as a tuple, refusing non-strings, duplicates, or fewer than ``min_len``.

    Examples:
        >>> check_names(["a", "b", "a"], "action_names")
        Traceback (most recent call last):
        ...
        ValueError: `action_names` must be unique, got 'a' twice (at 0 and 2)
    """
    if isinstance(names, str | bytes) or not isinstance(names, Sequence | np.ndarray):
        raise TypeError(f"`{name}` must be a sequence of strings, got {names!r}")
    out = tuple(names)
    for i, value in enumerate(out):
        if not isinstance(value, str):
            raise TypeError(
                f"`{name}` must hold strings, got {type(value).__name__} {value!r} at {i}"
            )
    if len(out) < min_len:
        raise ValueError(f"`{name}` must name at least {min_len}, got {len(out)}")
    if len(set(out)) != len(out):
        seen: dict[str, int] = {}
        for i, value in enumerate(out):
            if value in seen:
                raise ValueError(
                    f"`{name}` must be unique, got {value!r} twice (at {seen[value]} and {i})"
                )
            seen[value] = i
    return out


def masked_softmax(scores: np.ndarray, masks: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature`` over allowed actions; zero elsewhere.

    float32 scores (an MLP's logits) are exponentiated in float32, other scores in float64;
    the result is float64 either way, its rows summing to 1 to double precision.

    Examples:
        >>> masked_softmax(np.array([[0.0, 0.0, 5.0]]), np.array([[True, True, False]]))
        array([[0.5, 0.5, 0. ]])
    """
    scores = np.asarray(scores)
    if scores.dtype == np.float32:
        return _masked_softmax32(scores, masks, temperature)
    scores = scores.astype(np.float64, copy=False)
    top = np.where(masks, scores, -np.inf).max(axis=1, keepdims=True)
    # Shifted by the best allowed score, then divided: ``(s - top) / t`` is 0 for the best
    # action and at most 0 (or -inf) for the others whatever the temperature, where ``s / t``
    # overflows to inf for a small one (1e300 / 1e-10) and ``inf - inf`` gave NaN rows.
    with np.errstate(over="ignore"):
        z = np.subtract(scores, top, order="K")
        if temperature != 1.0:
            z /= temperature
    # Clipping at 0 keeps masked entries finite (a masked score above the best allowed one
    # would overflow exp) before the mask zeroes them; exp(-inf) is avoided, which is slow.
    # In place: a fresh (n, A) buffer per step cost a third of the time in page faults.
    np.minimum(z, 0.0, out=z)
    np.exp(z, out=z)
    z *= masks
    z /= z.sum(axis=1, keepdims=True)
    return z


def _masked_softmax32(scores: np.ndarray, masks: np.ndarray, temperature: float) -> np.ndarray:
    """:func:`masked_softmax` of float32 scores: exponentiated in float32, float64 result.

    numpy's float32 exp is vectorized and its float64 one is not (4x faster here); its ~1e-7
    relative error is below that of float32 scores themselves.
    """
    # Shifted by each row's best score over all actions, masked or not: no overflow, and no
    # masking pass before exp. The allowed actions' exponentials then keep float32's relative
    # precision unless the best allowed score is more than ~87 below that best (in units of
    # the temperature); their sum below 2^-60 (allowed scores more than 41 below) flags those
    # rows, done again below. The shift comes before the division by the temperature, so
    # that no temperature (a normal float32, see Exploration) overflows the best score.
    with np.errstate(over="ignore"):
        e = scores - scores.max(axis=1, keepdims=True)
        if temperature != 1.0:
            e /= np.float32(temperature)
    np.exp(e, out=e)
    e *= masks
    # Normalized in float64: each row sums to 1 to double precision.
    probs = e.astype(np.float64)
    total = probs.sum(axis=1, keepdims=True)
    far = np.flatnonzero(total < 2.0**-60)
    if far.size:
        zf = np.where(masks[far], scores[far], np.float32(-np.inf))
        with np.errstate(over="ignore"):
            zf = zf - zf.max(axis=1, keepdims=True)
            if temperature != 1.0:
                zf /= np.float32(temperature)
        ef = np.exp(zf).astype(np.float64)
        probs[far] = ef
        total[far] = ef.sum(axis=1, keepdims=True)
    probs /= total
    return probs


def _allowed_counts(masks: np.ndarray) -> np.ndarray:
    """``(n,)`` number of allowed actions per row of a column-major ``(n, A)`` mask."""
    if masks.shape[1] < 256 and masks.flags.f_contiguous:
        # A uint8 sum down the action axis of the (A, n) transpose: whole-row vector adds,
        # without the bool-to-int64 cast a plain ``sum(axis=1)`` buffers (~4x faster).
        return np.add.reduce(masks.T.view(np.uint8), axis=0, dtype=np.uint8)
    return masks.sum(axis=1)


@dataclass(frozen=True)
class Exploration:
    """How a policy turns scores into probabilities.

    ``greedy``: all mass on the best allowed action (ties to the lowest index), then mixed with
    ``epsilon`` uniform over allowed actions. ``softmax``: ``masked_softmax(scores /
    temperature)``, then mixed with ``epsilon``. Both give exact probabilities.
    """

    kind: str = "greedy"
    """``greedy`` or ``softmax``"""
    epsilon: float = 0.0
    """share of uniform exploration over allowed actions, in [0, 1]"""
    temperature: float = 1.0
    """softmax temperature (``softmax`` only): a normal float32, between ``2^-126`` (about
    1.2e-38) and about 3.4e38, since an MLP's float32 logits are divided by it in float32"""

    def __post_init__(self) -> None:
        check_choice(self.kind, "Exploration.kind", ("greedy", "softmax"))
        check_scalar(self.epsilon, "Exploration.epsilon", (int, float), min_val=0.0, max_val=1.0)
        check_scalar(
            self.temperature,
            "Exploration.temperature",
            (int, float),
            min_val=0.0,
            min_inclusive=False,
        )
        if not _MIN_TEMPERATURE <= self.temperature <= _MAX_TEMPERATURE:
            raise ValueError(
                f"`Exploration.temperature` must be between {_MIN_TEMPERATURE:.8g} and "
                f"{_MAX_TEMPERATURE:.8g} (a normal float32: an MLP's float32 logits are "
                f"divided by it), got {self.temperature!r}"
            )

    def probabilities(self, scores: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Exact ``(n, A)`` probabilities from ``scores`` under ``masks``."""
        # Column-major (one contiguous column per action): numpy then reduces over the few
        # actions of each row with whole-column vector operations, ~10x faster than row-major.
        scores, masks = np.asfortranarray(scores), np.asfortranarray(masks)
        if self.kind == "softmax":
            probs = masked_softmax(scores, masks, self.temperature)
            if self.epsilon > 0.0:
                probs *= 1.0 - self.epsilon
                probs += self._spread(masks).T
            return probs
        return self.greedy_probabilities(np.where(masks, scores, -np.inf).argmax(axis=1), masks)

    def greedy_probabilities(self, best: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Greedy probabilities given each row's best allowed action ``best`` ``(n,)``.

        For policies that find the argmax their own way (e.g. from float32 scores with a
        float64 check of near-ties): ``1 - epsilon`` on ``best``, ``epsilon`` spread evenly
        over the allowed actions. ``kind`` is not consulted.
        """
        masks = np.asfortranarray(masks)
        n = masks.shape[0]
        if n == 1:
            one = self._greedy_one(best, masks)
            if one is not None:
                return one
        # Built as its (A, n) transpose: one contiguous row per action, broadcasts along rows.
        if self.epsilon > 0.0:
            probs_t = self._spread(masks)
        else:
            probs_t = np.zeros(masks.shape[::-1])
        # Flat index of (row, best) in the (A, n) buffer: a 1-d fancy add, 2x a 2-d one.
        probs_t.reshape(-1)[np.asarray(best, dtype=np.intp) * n + np.arange(n)] += (
            1.0 - self.epsilon
        )
        return probs_t.T

    def _greedy_one(self, best: np.ndarray, masks: np.ndarray) -> np.ndarray | None:
        """:meth:`greedy_probabilities` of one row in plain Python, or ``None`` for numpy's.

        The same IEEE operations on Python floats (``epsilon / k`` per allowed action, then
        ``1 - epsilon`` added to the best), without a dozen numpy calls on arrays of one row.
        ``None`` where numpy's path differs in kind: masks that are not booleans, no allowed
        action, or ``best`` not one index inside the row (numpy's errors and warnings).
        """
        picked = np.asarray(best, dtype=np.intp)
        if masks.dtype != bool or picked.shape != (1,):
            return None
        allowed = masks[0].tolist()
        k = sum(allowed)
        b = int(picked[0])
        if k == 0 or not 0 <= b < len(allowed):
            return None
        epsilon = self.epsilon
        if epsilon > 0.0:
            share = epsilon / k
            row = [share if a else 0.0 for a in allowed]
        else:
            row = [0.0] * len(allowed)
        row[b] += 1.0 - epsilon
        return np.array([row])

    def _spread(self, masks: np.ndarray) -> np.ndarray:
        """``(A, n)``: ``epsilon / k`` on each of a row's ``k`` allowed actions (transposed)."""
        # One pass: the cast mask (1.0 or 0.0) times each row's share, as a float64 product.
        return np.multiply(masks.T, self.epsilon / _allowed_counts(masks), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


class Policy(ABC):
    """Maps a feature matrix ``(n, d)`` (and masks ``(n, A)``) to action probabilities.

    Runs on numpy alone so the decision service stays small. Subclasses give ``scores`` and
    their parameters; exploration is part of the policy.

    Args:
        feature_names: Names of the ``d`` input columns, in order.
        action_names: Names of the ``A`` actions, in index order.
        exploration: How scores become probabilities.
    """

    kind: ClassVar[str]
    """artifact kind, the key :func:`campaignrl.policies.load_policy` dispatches on"""

    def __init__(
        self,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        exploration: Exploration | None = None,
    ) -> None:
        self.feature_names = check_names(feature_names, "feature_names")
        self.action_names = check_names(action_names, "action_names", min_len=1)
        self.exploration = exploration or Exploration()

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return len(self.action_names)

    @abstractmethod
    def scores(self, features: np.ndarray) -> np.ndarray:
        """``(n, A)`` preference scores (higher is better) for validated features."""

    @abstractmethod
    def parameters(self) -> dict[str, np.ndarray]:
        """Arrays to save in ``weights.npz`` (numeric only)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able settings besides names and exploration, to save in the manifest."""

    @classmethod
    @abstractmethod
    def saved_arrays(
        cls,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        config: dict[str, Any],
    ) -> SavedArrays:
        """The arrays :meth:`parameters` saves for this manifest, from the manifest alone.

        Raises:
            ValueError: If ``config`` is not a valid configuration of the kind (a missing or
                unknown key, a value of the wrong type or out of range), naming the key.
        """

    @classmethod
    @abstractmethod
    def from_saved(
        cls,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        exploration: Exploration,
        config: dict[str, Any],
        arrays: dict[str, np.ndarray],
    ) -> Policy:
        """Rebuild from what :meth:`parameters` and :meth:`config` saved."""

    def probabilities(self, features: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """``(n, A)`` exact action probabilities; zero on masked actions.

        Raises:
            ValueError: If ``features`` is not ``(n, d)`` with finite values or ``masks`` is
                not ``(n, A)`` booleans with at least one allowed action per row.
        """
        x = self._check_features(features)
        return self.checked_probabilities(x, self._check_masks(masks, x.shape[0]))

    def checked_probabilities(self, features: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """:meth:`probabilities` of inputs their caller has checked as it checks them.

        ``features`` ``(n, d)`` finite numbers, ``masks`` ``(n, A)`` booleans allowing at
        least one action per row. For callers that already hold such inputs (the streamed
        OPE of validated log batches), which would otherwise be checked again here; kinds
        whose probabilities differ from the exploration of their scores override this
        method, not :meth:`probabilities`.
        """
        return self.exploration.probabilities(self._exploration_scores(features), masks)

    def _exploration_scores(self, features: np.ndarray) -> np.ndarray:
        """Scores as :meth:`probabilities` hands them to the exploration step.

        :meth:`scores` here; a kind may return them in float32 where that changes no result
        beyond its own precision (the MLP, whose weights are float32 like its torch network).
        """
        return self.scores(features)

    def sample(
        self, features: np.ndarray, masks: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw an action per row; return actions and their exact propensities."""
        return sample_actions(self.probabilities(features, masks), rng)

    def _check_features(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features)
        d = len(self.feature_names)
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"`features` must have shape (n, {d}), got {x.shape}")
        if not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"`features` must be numeric, got dtype {x.dtype}")
        if not np.isfinite(x).all():
            row, col = np.argwhere(~np.isfinite(x))[0]
            raise ValueError(
                f"`features` must be finite, got {x[row, col]} at row {row}, "
                f"column {self.feature_names[col]!r}"
            )
        return x

    def _check_masks(self, masks: np.ndarray | None, n: int) -> np.ndarray:
        """Validated masks, column-major (the layout :class:`Exploration` computes in)."""
        if masks is None:
            return np.ones((n, self.n_actions), dtype=bool, order="F")
        m = np.asarray(masks)
        if m.shape != (n, self.n_actions) or m.dtype != bool:
            raise ValueError(
                f"`masks` must be a boolean array of shape ({n}, {self.n_actions}), "
                f"got {m.dtype} {m.shape}"
            )
        # One copy to column-major, which the exploration step needs anyway, makes the
        # row-wise ``any`` whole-column vector ORs (~5x faster than on row-major masks).
        m = np.asfortranarray(m)
        allowed = m.any(axis=1)
        if not allowed.all():
            raise ValueError(f"`masks` allows no action at row {int(np.argmin(allowed))}")
        return m
