"""The decider: a served policy, exploration and masks -> decisions with exact propensities.

A :class:`Decider` turns one customer's features (a mapping ``name -> number``) or a batch of
them into :class:`Decision` s. Every call explores: the action is drawn from the policy's full
probability vector (its own ``epsilon``, or the decider's ``exploration_epsilon`` in its
place) with a seeded ``numpy.random.Generator``, and the decision carries that vector and the
exact probability of the drawn action, the propensity off-policy evaluation needs.

Input is strict, as the service's 422 answers need: the features must be exactly the policy's
names, each a finite real number (``True`` is not a float); masks must allow at least one
action. Every refusal is a :class:`DecisionInputError` naming the field (``features.recency``)
and the value.

The policy comes from a *source* whose ``current`` attribute is a :class:`ServedPolicy`
(``campaignrl.service.versions.PolicyVersions`` is one), read once per call: a policy swapped
in meanwhile serves the next call, never half of one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

import numpy as np

from campaignrl.policies import Policy
from campaignrl.policies.sampling import sample_actions

__all__ = [
    "Decider",
    "Decision",
    "DecisionColumns",
    "DecisionInputError",
    "PolicySource",
    "ServedPolicy",
]


class DecisionInputError(ValueError):
    """Input the decider refuses, with where it is (``loc``) and what it got (``value``).

    ``loc`` is the path to the field as a tuple, e.g. ``("features", "recency")``, with the
    row first in a batch (``(3, "features", "recency")``); :attr:`field` is its dotted form.
    """

    def __init__(self, loc: tuple[str | int, ...], value: Any, problem: str) -> None:
        self.loc = loc
        self.value = value
        self.problem = problem
        super().__init__(f"`{self.field}` {problem}, got {_show(value)}")

    @property
    def field(self) -> str:
        """The dotted field name, ``features.recency`` or ``[3].features.recency``."""
        parts = [f"[{p}]" if isinstance(p, int) else p for p in self.loc]
        out = ""
        for part in parts:
            out += part if (not out or part.startswith("[")) else f".{part}"
        return out


def _show(value: Any) -> str:
    """A short, typed rendering of a refused value for messages."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


@dataclass(frozen=True)
class ServedPolicy:
    """A policy and its version number, swapped as one immutable object."""

    version: int
    """the policy version (``v000001`` is 1)"""
    policy: Policy
    """the loaded numpy policy"""


class PolicySource(Protocol):
    """Anything whose ``current`` is the :class:`ServedPolicy` to decide with."""

    @property
    def current(self) -> ServedPolicy:
        """The policy serving now."""
        ...


class _Fixed:
    """A source that always serves the same policy."""

    def __init__(self, served: ServedPolicy) -> None:
        self.current = served


@dataclass(frozen=True)
class Decision:
    """One decision, with everything the decisions table logs about it."""

    action: int
    """flat action index (0 = no contact)"""
    action_name: str
    """``no_contact`` or ``<offer>@<channel>``"""
    offer: str | None
    """the offer sent, ``None`` for no contact"""
    channel: str | None
    """the channel used, ``None`` for no contact"""
    propensity: float
    """exact probability of ``action`` under the served policy with its exploration, in (0, 1]"""
    probabilities: np.ndarray
    """(A,) float64, read-only: the full probability vector the action was drawn from"""
    policy_version: int
    """version of the policy that decided"""
    features: np.ndarray
    """(d,) float64, read-only: the features in the policy's (manifest's) order"""
    mask: np.ndarray | None
    """(A,) bool, read-only: the allowed actions, when the caller passed a mask"""


class DecisionColumns(NamedTuple):
    """A batch of decisions column by column (what :class:`Decision` holds, per row ``i``).

    The service builds its stored records and its answers from these columns: one object
    per batch instead of one :class:`Decision` per row. Arrays are read-only.
    """

    policy_version: int
    """version of the policy that decided"""
    action_names: tuple[str, ...]
    """the policy's action names, by index"""
    actions: np.ndarray
    """(n,) int64 flat action indexes"""
    propensities: np.ndarray
    """(n,) float64: ``probabilities[i, actions[i]]``"""
    probabilities: np.ndarray
    """(n, A) float64: the full probability vectors the actions were drawn from"""
    features: np.ndarray
    """(n, d) float64 in the policy's order"""
    masks: np.ndarray | None
    """(n, A) bool allowed actions, or ``None`` when no row had a mask"""
    given: list[bool]
    """per row, whether the caller passed a mask (``masks[i]`` is logged only then)"""

    def __len__(self) -> int:  # the number of decisions, not of fields
        return int(self.actions.shape[0])


MaskInput = np.ndarray | Sequence[bool] | Sequence[str] | None
"""One row's mask: ``(A,)`` booleans, a list of allowed action names, or ``None`` (all)."""


def _number(value: Any, loc: tuple[str | int, ...]) -> float:
    """``value`` as a finite float; bools, strings, None and NaN/inf are refused by ``loc``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise DecisionInputError(loc, value, "must be a finite real number")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        raise DecisionInputError(loc, value, "must be a finite real number") from None
    if not math.isfinite(number):
        raise DecisionInputError(loc, value, "must be a finite real number")
    return number


class Decider:
    """Draws exploring decisions from a served policy, with exact propensities.

    Thread-safe: the one Generator is drawn from under a lock, so with the same ``seed`` the
    same sequence of calls gives the same decisions.

    Args:
        policy: A loaded :class:`~campaignrl.policies.Policy` (served as ``policy_version``)
            or a :class:`PolicySource` such as ``PolicyVersions``, read on every call.
        exploration_epsilon: Share of uniform exploration over the allowed actions, in
            [0, 1], used in place of the policy's own ``epsilon`` (its other exploration
            settings are kept); ``None`` keeps the policy's. Changeable at any time with
            :meth:`set_exploration`, which reloads nothing and changes no learned parameter.
        seed: Seed of the exploration Generator (an int >= 0 or a ``SeedSequence``).
        policy_version: Version reported for a plain ``policy`` (ignored for a source).

    Raises:
        TypeError: If ``policy`` is neither a Policy nor a source, or ``seed`` is not an int.
        ValueError: If ``exploration_epsilon`` is outside [0, 1] or ``seed`` is negative.

    Examples:
        >>> from campaignrl.policies import ConstantPolicy, Exploration
        >>> pol = ConstantPolicy(["x"], ["no_contact", "a@email"], np.array([0.0, 1.0]),
        ...                      Exploration("greedy", epsilon=0.2))
        >>> d = Decider(pol, seed=0).decide({"x": 1.5})
        >>> d.probabilities.tolist(), d.offer in (None, "a")
        ([0.1, 0.9], True)
    """

    def __init__(
        self,
        policy: Policy | PolicySource,
        *,
        exploration_epsilon: float | None = None,
        seed: int | np.random.SeedSequence,
        policy_version: int = 1,
    ) -> None:
        if isinstance(policy, Policy):
            self._source: PolicySource = _Fixed(ServedPolicy(int(policy_version), policy))
        elif isinstance(getattr(policy, "current", None), ServedPolicy):
            self._source = policy
        else:
            raise TypeError(
                f"`policy` must be a Policy or have a `current` ServedPolicy, got "
                f"{type(policy).__name__}"
            )
        if isinstance(seed, np.random.SeedSequence):
            sequence = seed
        else:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise TypeError(f"`seed` must be an int, got {type(seed).__name__} {seed!r}")
            if seed < 0:
                raise ValueError(f"`seed` must be >= 0, got {seed!r}")
            sequence = np.random.SeedSequence(int(seed))
        self._rng = np.random.default_rng(sequence)
        self._lock = threading.Lock()
        self._epsilon: float | None = None
        self._cache: tuple[ServedPolicy, float | None, Policy] | None = None
        self.set_exploration(exploration_epsilon)

    @property
    def served(self) -> ServedPolicy:
        """The policy serving now (with the artifact's own exploration)."""
        return self._source.current

    @property
    def exploration_epsilon(self) -> float | None:
        """The exploration share in force, or ``None`` for the policy's own."""
        return self._epsilon

    def set_exploration(self, epsilon: float | None) -> None:
        """Use ``epsilon`` uniform exploration from the next call (``None``: the policy's).

        Only how scores become probabilities changes: the policy and what it learned stay.

        Raises:
            TypeError: If ``epsilon`` is not a real number (``bool`` is refused).
            ValueError: If ``epsilon`` is outside [0, 1].
        """
        if epsilon is not None:
            if isinstance(epsilon, bool) or not isinstance(
                epsilon, (int, float, np.integer, np.floating)
            ):
                raise TypeError(
                    f"`exploration_epsilon` must be a number in [0, 1] or None, got "
                    f"{type(epsilon).__name__} {epsilon!r}"
                )
            if not 0.0 <= float(epsilon) <= 1.0:
                raise ValueError(f"`exploration_epsilon` must be in [0, 1], got {epsilon!r}")
            epsilon = float(epsilon)
        self._epsilon = epsilon

    def _deciding(self) -> tuple[ServedPolicy, Policy]:
        """The served policy (read once) and the policy that decides with its exploration."""
        served = self._source.current
        epsilon = self._epsilon
        cache = self._cache
        if cache is not None and cache[0] is served and cache[1] == epsilon:
            return served, cache[2]
        policy = served.policy
        if epsilon is not None and epsilon != policy.exploration.epsilon:
            # A fresh policy from the same parameters: nothing shared (some kinds cache
            # probabilities), nothing learned changes.
            policy = type(policy).from_saved(
                policy.feature_names,
                policy.action_names,
                replace(policy.exploration, epsilon=epsilon),
                policy.config(),
                policy.parameters(),
            )
        self._cache = (served, epsilon, policy)  # one reference assignment
        return served, policy

    # ------------------------------------------------------------------ input checks

    def feature_matrix(
        self, features: Mapping[str, Any] | Sequence[Mapping[str, Any]] | np.ndarray
    ) -> np.ndarray:
        """Validated ``(n, d)`` float64 features in the policy's order.

        Args:
            features: One mapping ``name -> number``, a sequence of them, or an ``(n, d)``
                numeric array whose columns are in the policy's order.

        Raises:
            DecisionInputError: Naming the field and the value: a missing or unknown feature
                name, or a value that is not a finite real number.
        """
        return self._features(features, self.served.policy.feature_names, batch=None)

    def _features(
        self,
        features: Any,
        names: tuple[str, ...],
        batch: bool | None,
    ) -> np.ndarray:
        if isinstance(features, np.ndarray):
            return self._feature_array(features, names)
        if isinstance(features, Mapping):
            if batch:
                raise DecisionInputError(("features",), features, "must be a list of mappings")
            return self._feature_row(features, names, ("features",))[None, :]
        if isinstance(features, (str, bytes)) or not isinstance(features, Sequence):
            raise DecisionInputError(
                ("features",), features, "must be a mapping of feature name to number"
            )
        if batch is False:
            raise DecisionInputError(
                ("features",), features, "must be a mapping of feature name to number"
            )
        out = np.empty((len(features), len(names)))
        for i, row in enumerate(features):
            out[i] = self._feature_row(row, names, (i, "features"))
        return out

    @staticmethod
    def _feature_row(row: Any, names: tuple[str, ...], loc: tuple[str | int, ...]) -> np.ndarray:
        if not isinstance(row, Mapping):
            raise DecisionInputError(loc, row, "must be a mapping of feature name to number")
        if len(row) != len(names) or any(name not in row for name in names):
            missing = [n for n in names if n not in row]
            unknown = [str(k) for k in row if k not in names]
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if unknown:
                parts.append(f"unknown {unknown}")
            raise DecisionInputError(
                loc,
                sorted(str(k) for k in row),
                f"must hold exactly the policy's {len(names)} features ({'; '.join(parts)})",
            )
        return np.array([_number(row[n], (*loc, n)) for n in names])

    @staticmethod
    def _feature_array(x: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        d = len(names)
        if x.ndim != 2 or x.shape[1] != d:
            raise DecisionInputError(("features",), x.shape, f"must have shape (n, {d})")
        if x.dtype != np.float64 and (
            x.dtype == bool or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x)
        ):
            raise DecisionInputError(("features",), x.dtype, "must hold real numbers")
        out = x.astype(np.float64)
        finite = np.isfinite(out)
        if not finite.all():
            row, col = (int(v) for v in np.argwhere(~finite)[0])
            raise DecisionInputError(
                (row, "features", names[col]), x[row, col].item(), "must be a finite real number"
            )
        return out

    def mask_matrix(self, masks: Any, n: int) -> tuple[np.ndarray | None, list[bool]]:
        """Validated ``(n, A)`` masks and, per row, whether the caller gave one.

        Args:
            masks: ``None`` (all allowed), an ``(n, A)`` boolean array, or a sequence of ``n``
                per-row masks, each ``(A,)`` booleans, a list of allowed action names, or
                ``None``.
            n: Number of rows.

        Raises:
            DecisionInputError: A mask of the wrong shape or type, an unknown action name,
                or a row that allows no action.
        """
        return self._masks(masks, n, self.served.policy.action_names, batch=True)

    def _masks(
        self, masks: Any, n: int, actions: tuple[str, ...], batch: bool
    ) -> tuple[np.ndarray | None, list[bool]]:
        n_a = len(actions)
        if masks is None:
            return None, [False] * n
        if isinstance(masks, np.ndarray) and masks.ndim == 2:
            if masks.dtype != bool or masks.shape != (n, n_a):
                raise DecisionInputError(
                    ("mask",),
                    f"{masks.dtype} {masks.shape}",
                    f"must be a boolean array of shape ({n}, {n_a})",
                )
            rows = list(masks)
        elif not batch:
            rows = [masks]
        elif isinstance(masks, (str, bytes)) or not isinstance(masks, Sequence):
            raise DecisionInputError(("mask",), masks, "must be a list of per-row masks")
        elif len(masks) != n:
            raise DecisionInputError(("mask",), len(masks), f"must hold {n} rows")
        else:
            rows = list(masks)
        out = np.ones((n, n_a), dtype=bool)
        given = [False] * n
        for i, row in enumerate(rows):
            if row is None:
                continue
            loc: tuple[str | int, ...] = (i, "mask") if batch else ("mask",)
            out[i] = self._mask_row(row, actions, loc)
            given[i] = True
        return out, given

    @staticmethod
    def _mask_row(row: Any, actions: tuple[str, ...], loc: tuple[str | int, ...]) -> np.ndarray:
        n_a = len(actions)
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)):
            raise DecisionInputError(
                loc, row, f"must be {n_a} booleans or a list of allowed action names"
            )
        items = list(row)
        if items and all(isinstance(v, str) for v in items):
            lookup = {name: j for j, name in enumerate(actions)}
            mask = np.zeros(n_a, dtype=bool)
            for name in items:
                if name not in lookup:
                    raise DecisionInputError(
                        loc, name, f"names an unknown action; known: {list(actions)}"
                    )
                mask[lookup[name]] = True
        elif len(items) == n_a and all(isinstance(v, (bool, np.bool_)) for v in items):
            mask = np.array(items, dtype=bool)
        else:
            raise DecisionInputError(
                loc, row, f"must be {n_a} booleans or a list of allowed action names"
            )
        if not mask.any():
            raise DecisionInputError(loc, row, "must allow at least one action")
        return mask

    # ------------------------------------------------------------------ deciding

    def decide(self, features: Mapping[str, Any], mask: MaskInput = None) -> Decision:
        """One decision for one customer.

        Args:
            features: ``name -> number``, exactly the policy's feature names.
            mask: ``(A,)`` booleans or a list of allowed action names; ``None``: all allowed.

        Raises:
            DecisionInputError: See :meth:`feature_matrix` and :meth:`mask_matrix`.
        """
        return self._rows(self.decide_columns(features, mask, single=True))[0]

    def decide_batch(self, features: Any, masks: Any = None) -> list[Decision]:
        """Decisions for a batch, all from the same policy version.

        Args:
            features: A sequence of mappings ``name -> number`` or an ``(n, d)`` array in the
                policy's feature order.
            masks: ``None``, an ``(n, A)`` boolean array, or one mask per row (see
                :meth:`mask_matrix`).

        Raises:
            DecisionInputError: See :meth:`feature_matrix` and :meth:`mask_matrix`.
        """
        return self._rows(self.decide_columns(features, masks))

    def decide_columns(
        self, features: Any, masks: Any = None, *, single: bool = False
    ) -> DecisionColumns:
        """:meth:`decide_batch` as columns: one probability matrix, one draw for the batch.

        The same decisions as :meth:`decide_batch` (with ``single``: as :meth:`decide`) for
        the same generator state: those methods are this one, then a :class:`Decision` per
        row.

        Args:
            features: As for :meth:`decide_batch`; with ``single``, as for :meth:`decide`
                (or a ``(1, d)`` array).
            masks: As for :meth:`decide_batch`; with ``single``, one row's mask.
            single: One customer: errors name the field without a row number.

        Raises:
            DecisionInputError: See :meth:`feature_matrix` and :meth:`mask_matrix`.
        """
        served, policy = self._deciding()
        x = self._features(features, policy.feature_names, batch=not single)
        m, given = self._masks(masks, x.shape[0], policy.action_names, batch=not single)
        return self._columns(served, policy, x, m, given)

    def _columns(
        self,
        served: ServedPolicy,
        policy: Policy,
        x: np.ndarray,
        m: np.ndarray | None,
        given: list[bool],
    ) -> DecisionColumns:
        n = x.shape[0]
        if n == 0:
            probs = np.empty((0, policy.n_actions))
            actions, propensities = np.empty(0, dtype=np.int64), np.empty(0)
        else:
            kind = type(policy)
            if (
                kind.probabilities is Policy.probabilities
                and kind._check_features is Policy._check_features
                and kind._check_masks is Policy._check_masks
            ):
                # The inputs are checked as Policy.probabilities checks them (finite float64
                # features, masks allowing an action per row): only its layout step is left.
                # A kind with checks of its own keeps them (the else branch).
                probs = policy.checked_probabilities(
                    x,
                    np.ones((n, policy.n_actions), dtype=bool, order="F")
                    if m is None
                    else np.asfortranarray(m),
                )
            else:  # a kind with probabilities of its own: its own checks
                probs = policy.probabilities(x, m)
            # Drawn before the row-major copy: sample_actions works on column-major
            # probabilities, which greedy exploration gives, so neither layout is copied twice.
            with self._lock:
                actions, propensities = sample_actions(probs, self._rng)
            probs = np.ascontiguousarray(probs)
        for array in (probs, x, m, actions, propensities):
            if array is not None:
                array.setflags(write=False)
        return DecisionColumns(
            served.version, policy.action_names, actions, propensities, probs, x, m, given
        )

    @staticmethod
    def _rows(columns: DecisionColumns) -> list[Decision]:
        """One :class:`Decision` per row of ``columns``."""
        names, m, given = columns.action_names, columns.masks, columns.given
        probs, x, version = columns.probabilities, columns.features, columns.policy_version
        out = []
        for i, (a, p) in enumerate(
            zip(columns.actions.tolist(), columns.propensities.tolist(), strict=True)
        ):
            name = names[a]
            offer, _, channel = name.partition("@")
            out.append(
                Decision(
                    action=int(a),
                    action_name=name,
                    offer=offer if channel else None,
                    channel=channel or None,
                    propensity=float(p),
                    probabilities=probs[i],
                    policy_version=version,
                    features=x[i],
                    mask=m[i] if (m is not None and given[i]) else None,
                )
            )
        return out
