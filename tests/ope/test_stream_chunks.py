"""The streamed policy path (chunks of rows, checks on the chunk) against the checked path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeRegressor

from campaignrl.logs.schema import mask_column
from campaignrl.ope import DR, IPS, SNIPS, stream
from campaignrl.ope.stream import evaluate_stream
from campaignrl.policies.base import Exploration
from campaignrl.policies.linear import LinearPolicy

ACTIONS = ("no_contact", "a1", "a2", "a3", "a4")
FEATURES = ("x0", "x1", "x2", "x3")
TARGET = LinearPolicy(
    FEATURES,
    ACTIONS,
    np.random.default_rng(5).normal(size=(len(ACTIONS), len(FEATURES))),
    exploration=Exploration(kind="softmax", epsilon=0.2),
)


def write_log(folder: Path, rows: int, masks: bool = True, tiny: int | None = None) -> Path:
    """One file of ``rows`` decisions (customers of 3), ``tiny``: a row of propensity 1e-300."""
    folder.mkdir()
    rng = np.random.default_rng(21)
    x = rng.normal(size=(rows, len(FEATURES)))
    allowed = rng.random((rows, len(ACTIONS))) < 0.6
    allowed[:, 0] = True  # no_contact is always allowed
    logging = allowed / allowed.sum(axis=1, keepdims=True)
    actions = (rng.random((rows, 1)) < logging.cumsum(axis=1)).argmax(axis=1)
    propensity = logging[np.arange(rows), actions]
    if tiny is not None:
        propensity[tiny] = 1e-300
    columns: dict[str, Any] = {
        "customer_id": pa.array([f"c{i // 3}" for i in range(rows)]),
        "action": pa.array(np.asarray(ACTIONS)[actions]),
        "propensity": propensity,
        "reward": x[:, 1] * (actions == 2) + rng.normal(size=rows),
        **{f: x[:, j] for j, f in enumerate(FEATURES)},
    }
    if masks:
        columns |= {mask_column(a): allowed[:, j] for j, a in enumerate(ACTIONS)}
    pq.write_table(pa.table(columns), folder / "part-0.parquet", row_group_size=700)
    return folder


def run(folder: Path, model: Any, target: Any = TARGET) -> dict[str, Any]:
    return evaluate_stream(
        folder,
        target,
        [IPS(), SNIPS(), DR()],
        reward_model=model,
        model_sample=1500,
        n_bootstrap=200,
        n_buckets=256,
        batch_rows=512,
        workers=1,
    ).to_dict()


@pytest.mark.parametrize("model", [Ridge(alpha=1.0), DecisionTreeRegressor(max_depth=3)])
@pytest.mark.parametrize("masks", [True, False])
def test_chunks_give_the_checked_paths_very_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: Any, masks: bool
) -> None:
    folder = write_log(tmp_path / "log", 2000, masks=masks)
    # Chunks of 37 rows: batches of 512 and 700-row groups cut them unevenly.
    monkeypatch.setattr(stream, "CHUNK_ROWS", 37)
    taken = []
    policy_terms = stream._policy_terms

    def spy(*args: Any) -> Any:
        taken.append(policy_terms(*args))
        return taken[-1]

    monkeypatch.setattr(stream, "_policy_terms", spy)
    chunked = run(folder, model)
    # Batches of 512 rows in row groups of 700: 512, 188, 512, 188, 512, 88 rows, all chunked.
    assert len(taken) == 6 and all(t is not None for t in taken)
    monkeypatch.setattr(stream, "_chunked", lambda spec: False)
    checked = run(folder, model)
    # The same operations on each row. The checked path hands the policy row-major features
    # (policy_target), the chunks column-major ones (as read_logs): a BLAS kernel may round
    # a score differently in the two layouts, by gamma_d sum_j |beta_j x_j| <= 4 * 2^-53 * 10
    # here (d = 4 features of |x| < 5, |beta| < 3), and a softmax probability moves by at
    # most twice that relative to itself; the estimates (weights below 10, |terms| below
    # 50) by less than 1e-12.
    for got, want in zip(chunked["estimates"], checked["estimates"], strict=True):
        for key in ("value", "ci_low", "ci_high"):
            assert got.pop(key) == pytest.approx(want.pop(key), rel=0, abs=1e-12)
        assert got == want
    got, want = chunked["diagnostics"], checked["diagnostics"]
    assert any("no allowed=<action> columns" in w for w in chunked["warnings"]) is (not masks)
    assert chunked["warnings"] == checked["warnings"]
    # The target's mass per action is summed chunk by chunk: a mean of 2,000 probabilities
    # in [0, 1] in another order, within 2000 * 2^-53 of the other (plus the layouts' 1e-14).
    mass = got.pop("unlogged_target_mass")
    assert mass == pytest.approx(want.pop("unlogged_target_mass"), abs=1e-12)
    assert got.keys() == want.keys()
    for key, value in got.items():  # weights: within 1e-14 of each other, relatively
        assert value == pytest.approx(want[key], rel=1e-12), key


class _Duck:
    """The target as a plain object with ``probabilities`` (not a campaignrl Policy)."""

    feature_names = FEATURES
    action_names = ACTIONS

    def __init__(self) -> None:
        self.layouts: set[tuple[bool, bool]] = set()

    def probabilities(self, features: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        assert masks is not None
        self.layouts.add((features.flags.c_contiguous, masks.flags.c_contiguous))
        return TARGET.probabilities(features, masks)


def test_other_policy_objects_are_chunked_with_contiguous_arrays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_log(tmp_path / "log", 2000)
    monkeypatch.setattr(stream, "CHUNK_ROWS", 100)
    duck = _Duck()
    got = run(folder, Ridge(alpha=1.0), target=duck)
    assert duck.layouts == {(True, True)}  # row-major, as policy_target hands them on
    monkeypatch.setattr(stream, "_chunked", lambda spec: False)
    want = run(folder, Ridge(alpha=1.0), target=_Duck())
    # Row-major features both ways: BLAS rounds a row alike in any number of rows (here, to
    # the bit); allowed to differ by the layouts' bound (see the test above) nonetheless.
    for g, w in zip(got["estimates"], want["estimates"], strict=True):
        assert [g[k] for k in ("value", "ci_low", "ci_high")] == pytest.approx(
            [w[k] for k in ("value", "ci_low", "ci_high")], rel=0, abs=1e-12
        )


class _Broken:
    """The target's probabilities, NaN where ``x0`` is above 2 (a defective policy object)."""

    feature_names = FEATURES
    action_names = ACTIONS

    def probabilities(self, features: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        probs = TARGET.probabilities(features, masks)
        probs[features[:, 0] > 2.0] = np.nan
        return probs


def test_defects_are_reported_as_by_the_checked_path(tmp_path: Path) -> None:
    folder = write_log(tmp_path / "log", 600)
    with pytest.raises(ValueError, match=r"probabilities must be finite and >= 0, got nan"):
        run(folder, Ridge(), target=_Broken())
    tiny = write_log(tmp_path / "tiny", 600, tiny=77)
    with pytest.raises(ValueError, match=r"`propensity` at row 77 is 1e-300.*overflows"):
        run(tiny, Ridge())


def _batch(folder: Path) -> tuple[stream._Spec, Any]:
    """The spec of a log and its first record batch, as evaluate_stream reads them."""
    names = pq.read_schema(folder / "part-0.parquet").names
    masks = tuple(c for c in names if c.startswith("allowed="))
    spec = stream._Spec(
        columns=("action", "propensity", "reward", "customer_id", *FEATURES, *masks),
        action_names=ACTIONS,
        feature_names=FEATURES,
        has_masks=bool(masks),
        cluster="customer_id",
        target=TARGET,
        estimators=(IPS(),),
        layout=((-1, 2, -1),),
        n_columns=3,
        model=None,
        n_folds=2,
        n_buckets=256,
        batch_rows=1000,
    )
    unit = stream._Unit(folder / "part-0.parquet", (0,), 0, 700, 0, True)
    return spec, next(stream._batches(unit, spec))


def test_batches_built_without_checks_are_those_loggeddata_builds(tmp_path: Path) -> None:
    spec, (start, batch) = _batch(write_log(tmp_path / "log", 700))
    data, _ = stream._batch_data(Path("f"), start, batch, spec)
    fields = {f: getattr(data, f) for f in ("actions", "rewards", "propensities", "features")}
    checked = stream.LoggedData(
        **fields, action_names=ACTIONS, feature_names=FEATURES, masks=data.masks
    )
    for name in ("actions", "rewards", "propensities", "features", "masks"):
        got, want = getattr(data, name), getattr(checked, name)
        assert got.dtype == want.dtype and np.array_equal(got, want), name
        assert not got.flags.writeable, name
    assert (data.action_names, data.feature_names) == (ACTIONS, FEATURES)
    assert (data.positions, data.episode_ids, data.outcomes) == (None, None, None)
    assert data.n_positions == 1


@pytest.mark.parametrize(
    ("column", "value", "match"),
    [
        ("reward", np.nan, r"`rewards` must be finite, got nan at index \(5,\)"),
        ("propensity", 0.0, r"`propensities` must be in \(0, 1\], got 0\.0 at index 5"),
        ("x1", -2e12, r"`features` must be at most 1e\+12 .* \(5, 1\) \(column 'x1'\)"),
        ("allowed=a2", False, r"`masks` must allow the logged action, row 5 does not"),
    ],
)
def test_bad_values_are_named_as_loggeddata_names_them(
    tmp_path: Path, column: str, value: Any, match: str
) -> None:
    folder = write_log(tmp_path / "log", 700)
    table = pq.read_table(folder / "part-0.parquet")
    values = table.column(column).to_numpy(zero_copy_only=False).copy()
    values[5] = value
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values))
    if column == "allowed=a2":  # the logged action of row 5 made a2
        actions = table.column("action").to_numpy(zero_copy_only=False).copy()
        actions[5] = "a2"
        column_at = table.schema.get_field_index("action")
        table = table.set_column(column_at, "action", pa.array(actions, pa.string()))
    pq.write_table(table, folder / "part-0.parquet")
    spec, (start, batch) = _batch(folder)
    with pytest.raises(ValueError, match=match + r" of 'f' \(rows from 0\)"):
        stream._batch_data(Path("f"), start, batch, spec)
