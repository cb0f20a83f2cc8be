"""Online learning in the service: exact incremental updates, each published as a version.

Joined rewards (the joiner's rows of activated, non-late decisions: features, actions,
rewards) update per-action sufficient statistics in numpy; :meth:`OnlineLearning.publish`
turns them into a policy artifact and proposes it to
:class:`~campaignrl.service.versions.PolicyVersions`, so every update is a servable,
rollback-able version. Nothing is ever refitted from scratch.

Which policy kinds learn online:

- ``linear`` (LinUCB, LinGreedy; :class:`~campaignrl.policies.LinearPolicy`) and the Gaussian
  ``thompson`` family (LinTS, :class:`~campaignrl.policies.GaussianThompsonPolicy`): per action
  (and per segment group when the policy crosses its features with one), ``A_a = lambda I +
  sum z z^T`` and ``b_a = sum r z`` over ``z = phi(x)``; an update adds a batch's ``Z^T Z`` and
  ``Z^T r``. Publishing solves ``beta_a = A_a^{-1} b_a``: exactly what a ridge fit on all the
  data seen gives (MABWiser's LinUCB, LinGreedy and LinTS keep the same ``A`` and ``b``). LinTS
  shares LinUCB's statistics, as its posterior is ``N(beta_a, alpha^2 A_a^{-1})``.
- ``tabular`` (epsilon-greedy, UCB1, Q-learning tables;
  :class:`~campaignrl.policies.TabularPolicy`): per (state, action) the count and the reward
  sum; the published table is each cell's mean reward, shrunk towards the starting table by
  ``prior_count`` pseudo-observations. This learns immediate rewards (a contextual bandit
  over the table's states): a Q-learning table's long-horizon values give way to one-step
  means where data arrives.

Not learned online (``--learn`` refuses them, see :data:`NOT_LEARNED`): ``mlp`` (PPO), the
Beta ``thompson`` family and ``constant``.

A version published here carries its statistics in ``learning.npz`` beside its weights, with
the file's sha256 in the manifest's ``training.online`` (so the manifest's signature covers
it): a restart, a rollback or another worker resumes from exactly what that version knew.
An artifact without it (trained offline) is a starting point: LinUCB and LinTS artifacts give
back ``A_a = (A_a^{-1})^{-1}`` and ``b_a = A_a beta_a``; others start from ``A_a = lambda I``,
``b_a = lambda beta_a`` (ridge shrinkage towards their weights instead of towards 0).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from threadpoolctl import ThreadpoolController

from campaignrl.policies import (
    Exploration,
    GaussianThompsonPolicy,
    LinearPolicy,
    Policy,
    TabularPolicy,
    save_policy,
)
from campaignrl.service.versions import PolicyRefused, PolicyVersion, PolicyVersions, sign_artifact

__all__ = [
    "LEARNABLE_KINDS",
    "NOT_LEARNED",
    "STATE_FILE",
    "LearningSettings",
    "LinearLearner",
    "OnlineLearner",
    "OnlineLearning",
    "OnlineLearningUnsupported",
    "TabularLearner",
    "learner_for",
    "uniform_linear_policy",
    "uniform_linear_policy_for_world",
]

STATE_FILE = "learning.npz"
"""the learning statistics saved in each version published by :class:`OnlineLearning`"""

LEARNABLE_KINDS = ("linear", "tabular", "thompson (gaussian family)")
"""policy kinds that learn online"""

NOT_LEARNED = {
    "mlp": (
        "an MLP (PPO's actor) has no sufficient statistics: learning it means gradient steps "
        "on whole trajectories with advantages from a value network, neither exact nor "
        "incremental; retrain it offline on the exported logs and PUT the new artifact"
    ),
    "thompson (beta family)": (
        "its Beta posteriors count 0/1 successes, but the service's rewards are profits, and "
        "the artifact does not record the bounds that turned profits into coin flips, so an "
        "update could not continue its posterior; serve a linear or Gaussian Thompson policy"
    ),
    "constant": (
        "a constant policy has no parameters that depend on features; start from "
        "uniform_linear_policy() instead"
    ),
}
"""policy kinds that are not learned online, with the reason"""


class OnlineLearningUnsupported(ValueError):
    """The serving policy's kind cannot learn online (``--learn`` is refused)."""


@dataclass(frozen=True)
class LearningSettings:
    """How learned statistics become a published policy; changing them keeps the statistics."""

    exploration: Exploration = field(default_factory=lambda: Exploration("greedy", epsilon=0.1))
    """exploration of the published artifacts (greedy with ``epsilon`` for LinTS)"""
    alpha: float | None = None
    """LinUCB bonus width or LinTS posterior scale, >= 0; ``None`` keeps the starting
    artifact's"""
    l2_lambda: float = 1.0
    """ridge penalty, > 0: ``A_a`` starts at ``lambda I`` when the starting artifact has no
    ``A^{-1}`` to rebuild it from"""
    prior_count: float = 1.0
    """tabular: pseudo-observations of the starting table in each cell's mean, >= 0"""

    def __post_init__(self) -> None:
        if not isinstance(self.exploration, Exploration):
            raise TypeError(
                f"`exploration` must be an Exploration, got {type(self.exploration).__name__}"
            )
        for name, low, strict in (("l2_lambda", 0.0, True), ("prior_count", 0.0, False)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
            if not np.isfinite(value) or value < low or (strict and value == low):
                op = ">" if strict else ">="
                raise ValueError(f"`{name}` must be finite and {op} {low}, got {value!r}")
        if self.alpha is not None and (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not np.isfinite(self.alpha)
            or self.alpha < 0
        ):
            raise ValueError(f"`alpha` must be a finite number >= 0 or None, got {self.alpha!r}")


# ---------------------------------------------------------------------------- starting point


def uniform_linear_policy(
    feature_names: tuple[str, ...] | list[str],
    action_names: tuple[str, ...] | list[str],
    *,
    interact_with: tuple[str, ...] | list[str] = (),
    l2_lambda: float = 1.0,
) -> LinearPolicy:
    """A linear policy that knows nothing: zero weights, uniform over the allowed actions.

    ``beta = 0`` and ``A^{-1} = I / lambda`` (the statistics of no data), with ``epsilon = 1``
    exploration: every allowed action equally likely. The first :meth:`OnlineLearning.publish`
    replaces the exploration with :attr:`LearningSettings.exploration`.

    Examples:
        >>> pol = uniform_linear_policy(["x"], ["no_contact", "a@email", "b@sms"])
        >>> pol.probabilities(np.array([[3.0]]), np.array([[True, False, True]])).tolist()
        [[0.5, 0.0, 0.5]]
    """
    k = len(feature_names) * max(1, len(interact_with))
    n_a = len(action_names)
    return LinearPolicy(
        feature_names,
        action_names,
        np.zeros((n_a, k)),
        a_inv=np.broadcast_to(np.eye(k) / float(l2_lambda), (n_a, k, k)).copy(),
        alpha=0.0,
        interact_with=interact_with,
        exploration=Exploration("greedy", epsilon=1.0),
    )


def uniform_linear_policy_for_world(
    world: str = "retail", *, per_segment: bool = True, l2_lambda: float = 1.0
) -> LinearPolicy:
    """:func:`uniform_linear_policy` on a world's observation features and actions.

    ``per_segment`` crosses the features with the segment one-hot (one model per segment and
    action), as the ``linucb`` agent does by default.
    """
    from campaignrl.envs import CampaignVectorEnv

    env = CampaignVectorEnv(1, world=world)
    names = env.encoder.feature_names
    groups = tuple(n for n in names if n.startswith("segment=")) if per_segment else ()
    return uniform_linear_policy(names, env.action_names, interact_with=groups, l2_lambda=l2_lambda)


# ---------------------------------------------------------------------------- learners


@functools.cache
def _blas() -> ThreadpoolController:
    """The loaded thread pools, found once (each lookup scans every loaded library)."""
    return ThreadpoolController()


class OnlineLearner(Protocol):
    """Sufficient statistics of one policy kind, updated exactly and incrementally."""

    rows: int
    """rows learned from so far (across versions)"""

    def update(self, features: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Add a batch of validated ``(n, d)`` features, ``(n,)`` actions and rewards."""
        ...

    def policy(self, settings: LearningSettings) -> Policy:
        """The policy the statistics give now."""
        ...

    def state(self) -> dict[str, np.ndarray]:
        """The statistics as numeric arrays (saved in :data:`STATE_FILE`)."""
        ...


def _group_names(policy: Policy) -> tuple[str, ...]:
    return tuple(policy.config().get("interact_with", ()))


class LinearLearner:
    """Ridge statistics per action: ``A_a = lambda I + sum z z^T``, ``b_a = sum r z``.

    Args:
        start: The linear or Gaussian Thompson policy the statistics belong to (its names,
            groups and kind).
        a: ``(A, k, k)`` design matrices.
        b: ``(A, k)`` reward-weighted feature sums.
        rows: Rows learned from so far.
    """

    def __init__(self, start: Policy, a: np.ndarray, b: np.ndarray, rows: int = 0) -> None:
        self.start = start
        self.thompson = isinstance(start, GaussianThompsonPolicy)
        self.interact_with = _group_names(start)
        k = len(start.feature_names) * max(1, len(self.interact_with))
        n_a = start.n_actions
        a = np.array(a, dtype=np.float64)
        b = np.array(b, dtype=np.float64)
        if a.shape != (n_a, k, k) or b.shape != (n_a, k):
            raise ValueError(
                f"linear statistics must be A ({n_a}, {k}, {k}) and b ({n_a}, {k}), got "
                f"{a.shape} and {b.shape}"
            )
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise ValueError("linear statistics must be finite")
        self.a, self.b, self.rows = a, b, int(rows)
        # phi(x) of the policy: a zero LinearPolicy is only used for its feature map.
        self._map = LinearPolicy(
            start.feature_names,
            start.action_names,
            np.zeros((n_a, k)),
            interact_with=self.interact_with,
        )

    @classmethod
    def from_policy(cls, policy: Policy, l2_lambda: float) -> LinearLearner:
        """Statistics that reproduce ``policy``'s weights (see the module docstring)."""
        params = policy.parameters()
        beta = np.asarray(params["beta"], dtype=np.float64)
        a_inv = params.get("a_inv")
        if a_inv is not None:
            a = np.linalg.inv(np.asarray(a_inv, dtype=np.float64))
            a = 0.5 * (a + a.transpose(0, 2, 1))
        else:
            k = beta.shape[1]
            a = np.broadcast_to(l2_lambda * np.eye(k), (beta.shape[0], k, k)).copy()
        b = np.einsum("aij,aj->ai", a, beta)
        return cls(policy, a, b, 0)

    @classmethod
    def from_state(cls, policy: Policy, state: dict[str, np.ndarray]) -> LinearLearner:
        """Statistics saved by :meth:`state`."""
        return cls(policy, state["a"], state["b"], int(state["rows"]))

    def update(self, features: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Add ``Z_a^T Z_a`` and ``Z_a^T r_a`` of each action's rows (no refit)."""
        z = self._map.feature_map(features)
        # Small products: one BLAS thread is much faster than several on busy cores.
        with _blas().limit(limits=1, user_api="blas"):
            for action in np.unique(actions).tolist():
                rows = actions == action
                za = z[rows]
                self.a[action] += za.T @ za
                self.b[action] += za.T @ rewards[rows]
        self.rows += int(actions.shape[0])

    def solve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(beta, A^{-1})``: ``beta_a = A_a^{-1} b_a`` and the symmetric inverse."""
        with _blas().limit(limits=1, user_api="blas"):
            a_inv = np.linalg.inv(self.a)
            beta = np.linalg.solve(self.a, self.b[:, :, None])[:, :, 0]
        a_inv = 0.5 * (a_inv + a_inv.transpose(0, 2, 1))
        return beta, a_inv

    def policy(self, settings: LearningSettings) -> Policy:
        """The ridge solution with the settings' exploration (and ``alpha`` if given)."""
        beta, a_inv = self.solve()
        start = self.start
        alpha = settings.alpha
        if alpha is None:
            alpha = float(start.config().get("alpha", 0.0))
        exploration = settings.exploration
        names = (start.feature_names, start.action_names)
        if self.thompson:
            if exploration.kind != "greedy":
                exploration = replace(exploration, kind="greedy")
            return GaussianThompsonPolicy(
                *names,
                beta,
                a_inv,
                alpha,
                interact_with=self.interact_with,
                exploration=exploration,
            )
        return LinearPolicy(
            *names,
            beta,
            a_inv=a_inv,
            alpha=alpha,
            interact_with=self.interact_with,
            exploration=exploration,
        )

    def state(self) -> dict[str, np.ndarray]:
        """``a``, ``b`` and ``rows``."""
        return {"a": self.a, "b": self.b, "rows": np.array(self.rows, dtype=np.int64)}


class TabularLearner:
    """Per (state, action) counts and reward sums over a :class:`TabularPolicy`'s states.

    The published cell is ``(prior_count * start + sum r) / (prior_count + count)``: the mean
    reward, shrunk towards the starting table; cells without data keep the starting value.

    Args:
        start: The tabular policy (its states and starting table).
        counts: ``(S, A)`` rows seen per cell.
        sums: ``(S, A)`` reward sums per cell.
        rows: Rows learned from so far.
    """

    def __init__(
        self, start: TabularPolicy, counts: np.ndarray, sums: np.ndarray, rows: int = 0
    ) -> None:
        self.start = start
        shape = start.table.shape
        counts = np.array(counts, dtype=np.float64)
        sums = np.array(sums, dtype=np.float64)
        if counts.shape != shape or sums.shape != shape:
            raise ValueError(
                f"tabular statistics must have shape {shape}, got {counts.shape} and {sums.shape}"
            )
        if not (np.isfinite(counts).all() and np.isfinite(sums).all()) or (counts < 0).any():
            raise ValueError("tabular statistics must be finite, with counts >= 0")
        self.prior = np.array(start.table, dtype=np.float64)
        self.counts, self.sums, self.rows = counts, sums, int(rows)

    @classmethod
    def from_policy(cls, policy: TabularPolicy) -> TabularLearner:
        """No data yet: the starting table is the prior."""
        zeros = np.zeros(policy.table.shape)
        return cls(policy, zeros, zeros.copy(), 0)

    @classmethod
    def from_state(cls, policy: TabularPolicy, state: dict[str, np.ndarray]) -> TabularLearner:
        """Statistics saved by :meth:`state`; the prior is the saved ``prior`` table."""
        learner = cls(policy, state["counts"], state["sums"], int(state["rows"]))
        learner.prior = np.array(state["prior"], dtype=np.float64)
        return learner

    def update(self, features: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Add each row to its (state, action) cell."""
        cells = self.start.states(features) * self.start.n_actions + actions
        size = self.counts.size
        self.counts += np.bincount(cells, minlength=size).reshape(self.counts.shape)
        self.sums += np.bincount(cells, weights=rewards, minlength=size).reshape(self.sums.shape)
        self.rows += int(actions.shape[0])

    def table(self, prior_count: float) -> np.ndarray:
        """Each cell's shrunk mean reward."""
        weight = prior_count + self.counts
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (prior_count * self.prior + self.sums) / weight
        return np.where(weight > 0, mean, self.prior)

    def policy(self, settings: LearningSettings) -> Policy:
        """The table of means with the settings' exploration."""
        start = self.start
        config = start.config()
        return TabularPolicy(
            start.feature_names,
            start.action_names,
            start.state_features,
            start.edges,
            self.table(settings.prior_count),
            settings.exploration,
            argmax_over=config.get("argmax_over", ()),
        )

    def state(self) -> dict[str, np.ndarray]:
        """``counts``, ``sums``, the ``prior`` table and ``rows``."""
        return {
            "counts": self.counts,
            "sums": self.sums,
            "prior": self.prior,
            "rows": np.array(self.rows, dtype=np.int64),
        }


def _unsupported(policy: Policy) -> str | None:
    """Why ``policy`` cannot learn online, or ``None`` if it can."""
    if isinstance(policy, (LinearPolicy, GaussianThompsonPolicy, TabularPolicy)):
        return None
    key = policy.kind
    if policy.kind == "thompson":
        key = f"thompson ({policy.config().get('family')} family)"
    reason = NOT_LEARNED.get(key, "it has no online learner")
    return (
        f"--learn: policy kind {key!r} is not learned online: {reason}. Online learning "
        f"supports {', '.join(LEARNABLE_KINDS)}"
    )


def learner_for(
    policy: Policy,
    settings: LearningSettings | None = None,
    state: dict[str, np.ndarray] | None = None,
) -> OnlineLearner:
    """The learner for ``policy``'s kind, from saved ``state`` or from the policy itself.

    Raises:
        OnlineLearningUnsupported: If the kind does not learn online (the message says why).
    """
    settings = settings or LearningSettings()
    why = _unsupported(policy)
    if why is not None:
        raise OnlineLearningUnsupported(why)
    if isinstance(policy, TabularPolicy):
        if state is not None:
            return TabularLearner.from_state(policy, state)
        return TabularLearner.from_policy(policy)
    if state is not None:
        return LinearLearner.from_state(policy, state)
    return LinearLearner.from_policy(policy, settings.l2_lambda)


# ---------------------------------------------------------------------------- the loop


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_state(version: PolicyVersion) -> dict[str, np.ndarray] | None:
    """The statistics a version was published with, checked against its manifest."""
    online = version.manifest.get("training", {}).get("online")
    if not isinstance(online, dict) or "state_sha256" not in online:
        return None
    path = version.path / STATE_FILE
    if not path.is_file() or _sha256(path) != online["state_sha256"]:
        raise PolicyRefused(
            "training.online",
            f"version {version.version}: {STATE_FILE} is missing or does not match the sha256 "
            f"in its manifest (tampered or corrupt)",
        )
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


class OnlineLearning:
    """Learns from joined rewards and publishes each update as a policy version.

    The learner follows the serving version: if it changes behind the learner's back (a
    rollback, an operator's ``PUT /v1/policy``, another worker's publish), the next
    :meth:`update` or :meth:`publish` continues from that version's statistics; the rows
    learned since the learner's own last publish are then dropped with the version they
    belonged to (that is what a rollback asks for).

    Args:
        versions: The policy versions; the serving one is the starting point.
        settings: How published policies explore; change with :meth:`configure`.
        signing_key: Signs each published artifact (needed when ``versions`` checks
            signatures).

    Raises:
        OnlineLearningUnsupported: If the serving policy's kind does not learn online.
    """

    def __init__(
        self,
        versions: PolicyVersions,
        *,
        settings: LearningSettings | None = None,
        signing_key: bytes | None = None,
    ) -> None:
        self.versions = versions
        self.settings = settings or LearningSettings()
        self._key = signing_key
        self._lock = threading.Lock()
        self.pending = 0
        """rows learned since the last publish"""
        self._follow(versions.current)

    def _follow(self, version: PolicyVersion) -> None:
        self.learner = learner_for(version.policy, self.settings, _load_state(version))
        self.base_version = version.version
        self.pending = 0

    def _sync(self) -> None:
        current = self.versions.current
        if current.version != self.base_version:
            self._follow(current)

    def configure(self, settings: LearningSettings) -> None:
        """New settings from the next publish on; the statistics are kept."""
        if not isinstance(settings, LearningSettings):
            raise TypeError(f"`settings` must be LearningSettings, got {type(settings).__name__}")
        self.settings = settings

    @property
    def rows(self) -> int:
        """Rows learned from by the serving line of versions."""
        return self.learner.rows

    def update(
        self,
        features: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        propensities: np.ndarray | None = None,
    ) -> int:
        """Add joined rows; return how many.

        Propensities are accepted (the joiner gives them) and not needed: a per-action
        regression of reward on features is unbiased whatever policy chose the actions, as
        long as every action keeps some probability (the service explores).

        Raises:
            ValueError: If the arrays' shapes disagree, a feature or reward is not finite or
                an action is outside the policy's actions (naming the argument and the row).
        """
        x, a, r = self._check(features, actions, rewards, propensities)
        with self._lock:
            self._sync()
            if a.shape[0]:
                self.learner.update(x, a, r)
                self.pending += int(a.shape[0])
        return int(a.shape[0])

    def _check(
        self,
        features: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        propensities: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        policy = self.versions.current.policy
        d, n_a = len(policy.feature_names), policy.n_actions
        x = np.asarray(features)
        if (
            x.ndim != 2
            or x.shape[1] != d
            or x.dtype == bool
            or not np.issubdtype(x.dtype, np.number)
        ):
            raise ValueError(
                f"`features` must be a numeric (n, {d}) array, got {x.dtype} {x.shape}"
            )
        x = x.astype(np.float64)
        n = x.shape[0]
        a = np.asarray(actions)
        if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"`actions` must be ({n},) integers, got {a.dtype} {a.shape}")
        r = np.asarray(rewards)
        if r.shape != (n,) or r.dtype == bool or not np.issubdtype(r.dtype, np.number):
            raise ValueError(f"`rewards` must be ({n},) numbers, got {r.dtype} {r.shape}")
        r = r.astype(np.float64)
        if propensities is not None and np.shape(propensities) != (n,):
            raise ValueError(f"`propensities` must have shape ({n},), got {np.shape(propensities)}")
        for name, values in (("features", x), ("rewards", r)):
            bad = ~np.isfinite(values)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise ValueError(f"`{name}` must be finite, got {float(values[row])} at row {row}")
        outside = (a < 0) | (a >= n_a)
        if outside.any():
            row = int(np.argmax(outside))
            raise ValueError(f"`actions` must be in [0, {n_a}), got {a[row]} at row {row}")
        return x, a.astype(np.int64), r

    def publish(self, *, activate: bool = True) -> PolicyVersion:
        """Save the statistics' policy as an artifact and propose it as the next version.

        The artifact holds ``learning.npz`` (the statistics) with its sha256 in
        ``training.online``, and a signature when a key was given.

        Raises:
            PolicyRefused: If the versions refuse it (the serving version stays).
        """
        with self._lock:
            self._sync()
            policy = self.learner.policy(self.settings)
            work = Path(tempfile.mkdtemp(prefix=".publish.", dir=self.versions.root))
            try:
                state_path = work / STATE_FILE
                np.savez(state_path, **self.learner.state())  # type: ignore[arg-type]
                online = {
                    "base_version": self.base_version,
                    "rows": self.learner.rows,
                    "rows_since_base": self.pending,
                    "state_file": STATE_FILE,
                    "state_sha256": _sha256(state_path),
                    "alpha": self.settings.alpha,
                    "l2_lambda": self.settings.l2_lambda,
                    "prior_count": self.settings.prior_count,
                }
                artifact = save_policy(
                    policy, work / "artifact", training={"agent": "online", "online": online}
                )
                os.replace(state_path, artifact / STATE_FILE)
                if self._key is not None:
                    sign_artifact(artifact, self._key)
                entry = self.versions.propose(artifact, activate=activate)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if activate:
                self.base_version = entry.version
                self.pending = 0
            return entry

    def state(self) -> dict[str, Any]:
        """What the learner knows, for metrics: rows, pending rows, base version, kind."""
        return {
            "kind": self.versions.current.policy.kind,
            "rows": self.learner.rows,
            "pending": self.pending,
            "base_version": self.base_version,
        }
