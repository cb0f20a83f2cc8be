"""The policy kinds an artifact can hold: constant, tabular and MLP scores.

Linear scores (LinGreedy, LinUCB) are in :mod:`campaignrl.policies.linear`, Thompson sampling
in :mod:`campaignrl.policies.thompson`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from campaignrl._checks import check_array
from campaignrl.policies.artifacts import (
    config_keys,
    config_names,
    register_policy_kind,
)
from campaignrl.policies.base import Exploration, Policy, SavedArrays, Shape
from campaignrl.policies.linear import LinearPolicy

__all__ = ["ConstantPolicy", "LinearPolicy", "MLPPolicy", "TabularPolicy"]


@register_policy_kind
class ConstantPolicy(Policy):
    """The same scores for every customer (``random``, ``no-contact``, ``static-best``).

    Args:
        scores: ``(A,)`` scores; greedy takes the best allowed, softmax spreads by them.
    """

    kind = "constant"

    def __init__(
        self,
        feature_names: Sequence[str],
        action_names: Sequence[str],
        scores: np.ndarray,
        exploration: Exploration | None = None,
    ) -> None:
        super().__init__(tuple(feature_names), tuple(action_names), exploration)
        self.score_vector = check_array(scores, "scores", shape=(self.n_actions,))

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The constant scores, broadcast to ``(n, A)``."""
        return np.broadcast_to(self.score_vector, (features.shape[0], self.n_actions))

    def parameters(self) -> dict[str, np.ndarray]:
        """``scores``."""
        return {"scores": self.score_vector}

    def config(self) -> dict[str, Any]:
        """No settings."""
        return {}

    @classmethod
    def saved_arrays(
        cls,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        config: dict[str, Any],
    ) -> SavedArrays:
        """``scores`` ``(A,)``."""
        config_keys(config, ())
        return SavedArrays({"scores": (len(action_names),)})

    @classmethod
    def from_saved(
        cls,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        exploration: Exploration,
        config: dict[str, Any],
        arrays: dict[str, np.ndarray],
    ) -> ConstantPolicy:
        """Rebuild from saved arrays."""
        config_keys(config, ())
        return cls(feature_names, action_names, arrays["scores"], exploration)


@register_policy_kind
class TabularPolicy(Policy):
    """A table of scores over a discretized state (Q-tables, per-segment bandits).

    Each listed feature is cut at its ``edges`` (``np.digitize``), giving bin ``b_j`` in
    ``[0, len(edges_j)]``; each ``argmax_over`` group adds the index of its largest column
    (e.g. the offer a customer likes most, among the ``affinity=<offer>`` columns; ties go to
    the first). The state index is the mixed-radix number of these digits, binned features
    first, most significant first. ``scores = table[state]``.

    Args:
        state_features: Names of the features that define the state, in order.
        edges: For each of them, increasing cut points.
        table: ``(n_states, A)`` scores.
        argmax_over: Groups of feature names; each contributes ``argmax`` over its columns.
    """

    kind = "tabular"

    def __init__(
        self,
        feature_names: Sequence[str],
        action_names: Sequence[str],
        state_features: Sequence[str],
        edges: Sequence[Sequence[float] | np.ndarray],
        table: np.ndarray,
        exploration: Exploration | None = None,
        *,
        argmax_over: Sequence[Sequence[str]] = (),
    ) -> None:
        super().__init__(tuple(feature_names), tuple(action_names), exploration)
        if len(state_features) != len(edges):
            raise ValueError(
                f"`state_features` and `edges` must have the same length, got "
                f"{len(state_features)} and {len(edges)}"
            )
        unknown = [f for f in state_features if f not in self.feature_names]
        if unknown:
            raise ValueError(f"`state_features` {unknown} are not among the feature names")
        self.state_features = tuple(state_features)
        self.edges = tuple(np.asarray(e, dtype=np.float64) for e in edges)
        for name, e in zip(self.state_features, self.edges, strict=True):
            if e.ndim != 1 or not np.isfinite(e).all() or np.any(np.diff(e) <= 0):
                raise ValueError(f"edges of {name!r} must be finite and strictly increasing")
        self._columns = np.array([self.feature_names.index(f) for f in self.state_features])
        self.argmax_over = tuple(tuple(group) for group in argmax_over)
        for group in self.argmax_over:
            unknown = [f for f in group if f not in self.feature_names]
            if len(group) < 2 or unknown:
                raise ValueError(
                    f"each `argmax_over` group must name at least 2 features, got {list(group)}"
                    + (f" ({unknown} are not among the feature names)" if unknown else "")
                )
        self._argmax_columns = [
            np.array([self.feature_names.index(f) for f in group]) for group in self.argmax_over
        ]
        self.radix = np.array(
            [len(e) + 1 for e in self.edges] + [len(g) for g in self.argmax_over], dtype=np.int64
        )
        n_states = int(np.prod(self.radix))
        self.table = check_array(table, "table", shape=(n_states, self.n_actions))

    @property
    def n_states(self) -> int:
        """Number of discrete states."""
        return int(self.table.shape[0])

    def states(self, features: np.ndarray) -> np.ndarray:
        """``(n,)`` state index of each row."""
        x = np.asarray(features)
        state = np.zeros(x.shape[0], dtype=np.int64)
        binned = self.radix[: len(self.edges)]
        for col, e, r in zip(self._columns, self.edges, binned, strict=True):
            state = state * r + np.digitize(x[:, col], e)
        for cols in self._argmax_columns:
            state = state * cols.size + x[:, cols].argmax(axis=1)
        return state

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Table rows of each row's state."""
        return self.table[self.states(features)]

    def parameters(self) -> dict[str, np.ndarray]:
        """The table and the edges (``edges_<i>``)."""
        params = {"table": self.table}
        params.update({f"edges_{i}": e for i, e in enumerate(self.edges)})
        return params

    def config(self) -> dict[str, Any]:
        """The state features and argmax groups."""
        return {
            "state_features": list(self.state_features),
            "argmax_over": [list(g) for g in self.argmax_over],
        }

    @classmethod
    def saved_arrays(
        cls,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        config: dict[str, Any],
    ) -> SavedArrays:
        """``table`` ``(any, A)`` and ``edges_<i>`` ``(any,)`` per state feature."""
        names, _ = _tabular_config(config)
        return SavedArrays({"table": (None, len(action_names)), **state_edges_shapes(len(names))})

    @classmethod
    def from_saved(
        cls,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        exploration: Exploration,
        config: dict[str, Any],
        arrays: dict[str, np.ndarray],
    ) -> TabularPolicy:
        """Rebuild from saved arrays."""
        names, groups = _tabular_config(config)
        edges = [arrays[f"edges_{i}"].tolist() for i in range(len(names))]
        return cls(
            feature_names,
            action_names,
            names,
            edges,
            arrays["table"],
            exploration,
            argmax_over=groups,
        )


def _tabular_config(config: Any) -> tuple[tuple[str, ...], list[list[str]]]:
    """A saved tabular config's state features and argmax groups, checked for types."""
    config_keys(config, ("state_features",), ("argmax_over",))
    names = config_names(config, "state_features")
    groups = config.get("argmax_over", [])
    if not isinstance(groups, list) or not all(
        isinstance(g, list) and all(isinstance(f, str) for f in g) for g in groups
    ):
        raise TypeError(
            f"field 'config.argmax_over' must be a list of lists of names, got {groups!r}"
        )
    return names, groups


def state_edges_shapes(n_state_features: int) -> dict[str, Shape]:
    """``edges_<i>``: one 1-D array of cut points per state feature."""
    return {f"edges_{i}": (None,) for i in range(n_state_features)}


_ACTIVATIONS = ("relu", "tanh")
_MAX_LAYERS = 256


@register_policy_kind
class MLPPolicy(Policy):
    """A multilayer perceptron's logits, in numpy (PPO's actor without torch).

    ``h_0 = x; h_{k+1} = act(h_k W_k + b_k)``; logits ``= h_K W_out + b_out``. With softmax
    exploration at temperature 1 the probabilities are the network's own distribution.

    Args:
        weights: Weight matrices, input to output, each ``(in, out)``.
        biases: Bias vectors, one per weight matrix.
        activation: ``tanh`` or ``relu`` (hidden layers only).
    """

    kind = "mlp"

    def __init__(
        self,
        feature_names: Sequence[str],
        action_names: Sequence[str],
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        activation: str = "tanh",
        exploration: Exploration | None = None,
    ) -> None:
        super().__init__(
            tuple(feature_names), tuple(action_names), exploration or Exploration("softmax")
        )
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        if len(weights) == 0 or len(weights) != len(biases):
            raise ValueError(
                f"`weights` and `biases` must be non-empty and of equal length, got "
                f"{len(weights)} and {len(biases)}"
            )
        self.activation = activation
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        width = len(self.feature_names)
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            out = self.n_actions if i == len(weights) - 1 else np.shape(w)[-1]
            self.weights.append(check_array(w, f"w{i}", shape=(width, out)))
            self.biases.append(check_array(b, f"b{i}", shape=(out,)))
            width = out
        self._layers32 = self._float32_layers()

    def _float32_layers(self) -> list[np.ndarray]:
        """Per layer, float32 ``[W^T | b]`` ``(out, in + 1)``, for :meth:`_logits`.

        :meth:`_logits` adds the bias in the matrix product, against a row of ones under the
        layer's input (a broadcast bias add costs 4x a plain pass over the hidden units).

        With ``tanh`` the layers are refolded so the hidden units need no ``tanh`` call
        (numpy's float32 ``tanh`` is scalar code, 2-3x slower than its vectorized ``exp``, and
        was half the forward pass): ``tanh(z) = 2 s - 1`` with ``s = 1 / (1 + exp(-2 z))``.
        Each hidden layer computes ``-2 z`` directly (its weights and bias times ``-2``, exact
        in floating point) and outputs ``s``; the next layer takes ``W^T (2 s - 1) + b =
        (2 W)^T s + (b - W^T 1)``. The folding is done in float64, then rounded once.
        """
        ws = [np.asarray(w, dtype=np.float64) for w in self.weights]
        bs = [np.asarray(b, dtype=np.float64) for b in self.biases]
        if self.activation == "tanh":
            for i in range(1, len(ws)):
                # The previous layer outputs s = (1 + tanh) / 2 instead of tanh.
                bs[i] = bs[i] - ws[i].sum(axis=0)
                ws[i] = 2.0 * ws[i]
            for i in range(len(ws) - 1):
                ws[i], bs[i] = -2.0 * ws[i], -2.0 * bs[i]
        return [
            np.ascontiguousarray(np.column_stack([w.T, b]), dtype=np.float32)
            for w, b in zip(ws, bs, strict=True)
        ]

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Logits."""
        return self._logits(features).astype(np.float64)

    def _exploration_scores(self, features: np.ndarray) -> np.ndarray:
        """float32 logits: :func:`~campaignrl.policies.masked_softmax` exponentiates them so."""
        return self._logits(features)

    def _logits(self, features: np.ndarray) -> np.ndarray:
        """``(n, A)`` column-major float32 logits."""
        # float32 like the torch network it was trained as: twice the speed of float64.
        x = np.asarray(features)
        if x.dtype != np.float32:  # float32 input was checked finite already
            x = x.astype(np.float32)
            if not np.isfinite(x).all():
                row, col = np.argwhere(~np.isfinite(x))[0]
                raise ValueError(
                    f"`features` must fit in float32 for the MLP, got {features[row, col]} at "
                    f"row {row}, column {self.feature_names[col]!r}"
                )
        # Transposed forward pass, (units, n): the logits come out as one contiguous row per
        # action, i.e. a column-major (n, A) matrix, the layout the exploration step wants.
        # Each layer's input carries a last row of ones, for the bias column of its weights.
        n = x.shape[0]
        h = np.empty((x.shape[1] + 1, n), dtype=np.float32)
        h[:-1] = x.T
        h[-1] = 1.0
        for w in self._layers32[:-1]:
            nxt = np.empty((w.shape[0] + 1, n), dtype=np.float32)
            z = np.matmul(w, h, out=nxt[:-1])
            if self.activation == "tanh":
                # z = -2 (W^T h + b): s = 1 / (1 + exp(z)); exp overflows to inf for
                # pre-activations below -44, where s = 1 / inf = 0 = (1 + tanh) / 2 is right.
                with np.errstate(over="ignore"):
                    np.exp(z, out=z)
                z += 1.0
                np.divide(1.0, z, out=z)  # vectorized, unlike np.reciprocal (2x slower)
            else:
                np.maximum(z, 0.0, out=z)
            nxt[-1] = 1.0
            h = nxt
        return (self._layers32[-1] @ h).T

    def parameters(self) -> dict[str, np.ndarray]:
        """``w<i>`` and ``b<i>`` per layer."""
        params = {f"w{i}": w for i, w in enumerate(self.weights)}
        params.update({f"b{i}": b for i, b in enumerate(self.biases)})
        return params

    def config(self) -> dict[str, Any]:
        """Layer count and activation."""
        return {"n_layers": len(self.weights), "activation": self.activation}

    @classmethod
    def saved_arrays(
        cls,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        config: dict[str, Any],
    ) -> SavedArrays:
        """``w<i>`` and ``b<i>`` per layer; hidden widths are free, the ends are fixed."""
        k, _ = _mlp_config(config)
        d, n_a = len(feature_names), len(action_names)
        shapes: dict[str, Shape] = {}
        for i in range(k):
            shapes[f"w{i}"] = (d if i == 0 else None, n_a if i == k - 1 else None)
            shapes[f"b{i}"] = (n_a if i == k - 1 else None,)
        return SavedArrays(shapes)

    @classmethod
    def from_saved(
        cls,
        feature_names: tuple[str, ...],
        action_names: tuple[str, ...],
        exploration: Exploration,
        config: dict[str, Any],
        arrays: dict[str, np.ndarray],
    ) -> MLPPolicy:
        """Rebuild from saved arrays."""
        k, activation = _mlp_config(config)
        weights = [arrays[f"w{i}"] for i in range(k)]
        biases = [arrays[f"b{i}"] for i in range(k)]
        return cls(feature_names, action_names, weights, biases, activation, exploration)


def _mlp_config(config: Any) -> tuple[int, str]:
    """A saved MLP config's layer count and activation, checked."""
    config_keys(config, ("n_layers", "activation"))
    k, activation = config["n_layers"], config["activation"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= _MAX_LAYERS:
        raise ValueError(
            f"field 'config.n_layers' must be an integer in [1, {_MAX_LAYERS}], got {k!r}"
        )
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"field 'config.activation' must be one of {list(_ACTIVATIONS)}, got {activation!r}"
        )
    return k, activation
