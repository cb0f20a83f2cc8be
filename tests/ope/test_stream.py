"""Streamed OPE of Parquet logs: equal to the in-memory path, independent of partitioning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import Ridge
from sklearn.tree import DecisionTreeRegressor

from campaignrl.logs.io import read_logs
from campaignrl.logs.schema import mask_column
from campaignrl.ope import DM, DR, IPS, SNDR, SNIPS, evaluate
from campaignrl.ope.bootstrap import hash_ids, poisson_weights
from campaignrl.ope.stream import cluster_folds, evaluate_stream, resolve_log_files
from campaignrl.policies.base import Exploration
from campaignrl.policies.linear import LinearPolicy

ACTIONS = ("no_contact", "a1", "a2", "a3", "a4")
FEATURES = ("x0", "x1", "x2")
N_TYPES = 4
BUCKETS = 1024  # small logs: 2^10 buckets keep the bootstrap cheap (the default is 2^16)
# Tolerance of "equal": the two paths add the same float64 terms in different orders
# (per bucket, then buckets; or per row). Summing n terms of magnitude at most T in any order
# errs by at most n * eps * T (Higham, "Accuracy and Stability of Numerical Algorithms",
# 4.2); with n <= 3,000 rows and terms below 100 that is 3e3 * 2.2e-16 * 100 = 7e-11.
TOL = 1e-9


def _world() -> dict[str, np.ndarray]:
    """Fixed world: context types, their features, masks, mean rewards, target and logger."""
    w = np.random.default_rng(12345)
    feats = w.normal(size=(N_TYPES, len(FEATURES)))
    masks = np.ones((N_TYPES, len(ACTIONS)), dtype=bool)
    masks[0, 3:] = False  # type 0 may not get a3, a4
    masks[2, 1] = False
    q = w.uniform(0.0, 2.0, size=(N_TYPES, len(ACTIONS)))
    scores = w.normal(size=(N_TYPES, len(ACTIONS)))
    logging = np.where(masks, np.exp(scores), 0.0)
    logging /= logging.sum(axis=1, keepdims=True)
    logging = 0.7 * logging + 0.3 * masks / masks.sum(axis=1, keepdims=True)
    return {
        "feats": feats,
        "masks": masks,
        "q": q,
        "logging": logging,
        "p": w.dirichlet(np.ones(N_TYPES) * 3),
    }


WORLD = _world()
TARGET = LinearPolicy(
    FEATURES,
    ACTIONS,
    np.random.default_rng(7).normal(size=(len(ACTIONS), len(FEATURES))),
    exploration=Exploration(kind="softmax", epsilon=0.2),
)


def _truth() -> float:
    probs = TARGET.probabilities(WORLD["feats"], WORLD["masks"])
    return float(WORLD["p"] @ (probs * WORLD["q"]).sum(axis=1))


def make_log(n_customers: int, periods: int, seed: int, customer_sd: float = 1.0) -> pd.DataFrame:
    """A campaign-like log: each customer has one context type and a shared reward effect."""
    rng = np.random.default_rng(seed)
    types = np.repeat(rng.choice(N_TYPES, size=n_customers, p=WORLD["p"]), periods)
    effect = np.repeat(rng.normal(scale=customer_sd, size=n_customers), periods)
    n = types.size
    cum = WORLD["logging"][types].cumsum(axis=1)
    actions = (rng.random((n, 1)) < cum).argmax(axis=1)
    rewards = WORLD["q"][types, actions] + effect + rng.normal(scale=0.5, size=n)
    customer = np.repeat(np.arange(n_customers), periods)
    step = np.tile(np.arange(periods), n_customers)
    frame = pd.DataFrame(
        {
            "decision_id": [f"d{seed}-{i}" for i in range(n)],
            "timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
            "customer_id": [f"cust-{seed}-{c}" for c in customer],
            "episode_id": [f"ep-{seed}-{c}" for c in customer],
            "step": step,
            "action": np.asarray(ACTIONS, dtype=object)[actions],
            "propensity": WORLD["logging"][types, actions],
            "reward": rewards,
            "policy_version": "logger",
        }
    )
    for j, a in enumerate(ACTIONS):
        frame[mask_column(a)] = WORLD["masks"][types, j]
    for j, f in enumerate(FEATURES):
        frame[f] = WORLD["feats"][types, j]
    return frame


def write_parts(frame: pd.DataFrame, folder: Path, cuts: list[int]) -> Path:
    """``frame`` as Parquet files split at the row indices ``cuts``."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [0, *cuts, len(frame)]
    for k in range(len(bounds) - 1):
        part = frame.iloc[bounds[k] : bounds[k + 1]]
        part.to_parquet(folder / f"part-{k:03d}.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return make_log(500, 5, seed=0)


def in_memory(frame: pd.DataFrame, q: np.ndarray | None) -> list[float]:
    data = read_logs(frame, action_names=ACTIONS)
    ests = [IPS(), SNIPS(), DR(), SNDR(), DM()]
    return [e.estimate_policy_value(data, TARGET, estimated_rewards=q) for e in ests]


@pytest.mark.parametrize(
    ("cuts", "batch_rows"), [([], 100_000), ([700, 701, 1900], 64), ([1234], 7)]
)
def test_streamed_equals_in_memory(
    tmp_path: Path, log: pd.DataFrame, cuts: list[int], batch_rows: int
) -> None:
    folder = write_parts(log, tmp_path / "log", cuts)
    ests = [IPS(), SNIPS(), DR(), SNDR(), DM()]
    result = evaluate_stream(
        folder,
        TARGET,
        ests,
        reward_model=Ridge(),
        model_sample=2000,
        n_bootstrap=100,
        batch_rows=batch_rows,
        n_buckets=BUCKETS,
    )
    assert result.n_files == len(cuts) + 1
    assert result.reward_model is not None
    data = read_logs(log, action_names=ACTIONS)
    q = result.reward_model.predict(data, cluster_folds(log["customer_id"], 2))
    expected = in_memory(log, q)
    got = [e.value for e in result.estimates]
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    ref = evaluate(data, TARGET, [IPS()], method="normal").diagnostics
    diag = result.diagnostics
    assert diag.n_rounds == data.n_rounds
    assert diag.effective_sample_size == pytest.approx(ref.effective_sample_size, rel=TOL)
    assert diag.max_weight == ref.max_weight
    assert diag.mean_weight == pytest.approx(ref.mean_weight, rel=TOL)
    assert diag.unlogged_target_mass == pytest.approx(ref.unlogged_target_mass, abs=TOL)


def test_reward_model_sample_is_cross_fitted(tmp_path: Path, log: pd.DataFrame) -> None:
    folder = write_parts(log, tmp_path / "log", [1000])
    result = evaluate_stream(
        folder,
        TARGET,
        [DR()],
        reward_model=Ridge(),
        model_sample=1000,
        n_bootstrap=100,
        n_buckets=BUCKETS,
    )
    # About 1000 rows, whole customers (5 rows each): binomial over 500 customers at 0.4.
    assert result.model_rows % 5 == 0
    assert 700 <= result.model_rows <= 1300
    folds = cluster_folds(log["customer_id"], 2)
    assert set(np.unique(folds)) == {0, 1}
    # One customer, one fold.
    per_customer = pd.Series(folds).groupby(log["customer_id"].to_numpy()).nunique()
    assert (per_customer == 1).all()


@pytest.mark.parametrize("model", [Ridge(alpha=2.0), DecisionTreeRegressor(max_depth=4)])
def test_fold_models_predict_as_scikit_learn(
    tmp_path: Path, log: pd.DataFrame, model: object
) -> None:
    folder = write_parts(log, tmp_path / "log", [1000])
    result = evaluate_stream(
        folder,
        TARGET,
        [DR()],
        reward_model=model,
        model_sample=1500,
        n_bootstrap=100,
        n_buckets=BUCKETS,
    )
    fitted = result.reward_model
    assert fitted is not None and len(fitted.models) == 2
    data = read_logs(log, action_names=ACTIONS)
    folds = cluster_folds(log["customer_id"], 2)
    q = fitted.predict(data, folds)
    assert data.features is not None
    for a in range(len(ACTIONS)):
        design = np.hstack([np.eye(len(ACTIONS))[np.full(len(log), a)], data.features])
        for k in (0, 1):
            rows = folds == k
            expected = fitted.models[k].predict(design[rows])
            # a linear model's prediction summed in another order: |x| <= 10, |coef| <= 10
            np.testing.assert_allclose(q[rows, a], expected, rtol=0, atol=1e-10)


def test_interval_independent_of_partitioning_and_order(tmp_path: Path, log: pd.DataFrame) -> None:
    ests = [IPS(), SNIPS(), DR()]
    kwargs = {
        "reward_model": Ridge(),
        "model_sample": 1500,
        "n_bootstrap": 200,
        "n_buckets": BUCKETS,
        "seed": 3,
    }
    one = evaluate_stream(write_parts(log, tmp_path / "a", []), TARGET, ests, **kwargs)
    shuffled = log.sample(frac=1.0, random_state=1).reset_index(drop=True)
    other = evaluate_stream(
        write_parts(shuffled, tmp_path / "b", [10, 999, 2000]),
        TARGET,
        ests,
        batch_rows=33,
        **kwargs,
    )
    for a, b in zip(one.estimates, other.estimates, strict=True):
        assert a.ci_low < a.value < a.ci_high
        # The same buckets and weights: only the order of float additions differs.
        np.testing.assert_allclose(
            [b.value, b.ci_low, b.ci_high], [a.value, a.ci_low, a.ci_high], rtol=0, atol=TOL
        )
    # Another seed: other resamples, another interval (the check above can fail).
    reseeded = evaluate_stream(
        write_parts(log, tmp_path / "c", []), TARGET, ests, **{**kwargs, "seed": 4}
    )
    assert reseeded.estimates[0].ci_low != one.estimates[0].ci_low
    assert reseeded.estimates[0].value == one.estimates[0].value


def test_hand_computed_ips_snips(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["u", "v", "u", "w"],
            "action": ["x", "y", "y", "x"],
            "propensity": [0.5, 0.25, 0.5, 0.8],
            "reward": [1.0, 2.0, 0.0, 4.0],
        }
    )
    write_parts(frame, tmp_path / "tiny", [2])
    # target (0.3, 0.7): w = 0.3/0.5, 0.7/0.25, 0.7/0.5, 0.3/0.8 = 0.6, 2.8, 1.4, 0.375
    # IPS = (0.6 + 5.6 + 0 + 1.5) / 4 = 1.925; SNIPS = 7.7 / 5.175
    result = evaluate_stream(
        tmp_path / "tiny",
        np.array([0.3, 0.7]),
        [IPS(), SNIPS()],
        action_names=("x", "y"),
        n_bootstrap=100,
        n_buckets=256,
    )
    ips, snips = (e.value for e in result.estimates)
    assert ips == pytest.approx(1.925, abs=1e-12)
    assert snips == pytest.approx(7.7 / 5.175, abs=1e-12)
    assert result.cluster == "customer_id"
    assert result.diagnostics.max_weight == pytest.approx(2.8)


def test_poisson_bootstrap_covers_the_truth(tmp_path: Path) -> None:
    # 40 logs of 400 customers x 5 decisions with a strong customer effect (intra-customer
    # correlation): the 95% cluster intervals must cover the exact truth in most of them.
    # P(at most 33 of 40 | coverage 0.95) = 0.0005, P(at least 34 | coverage 0.75) = 0.03.
    truth = _truth()
    covered = {"ipw": 0, "snipw": 0}
    for seed in range(40):
        folder = write_parts(
            make_log(400, 5, seed=100 + seed, customer_sd=1.5), tmp_path / str(seed), [900]
        )
        result = evaluate_stream(
            folder, TARGET, [IPS(), SNIPS()], n_bootstrap=200, n_buckets=BUCKETS, seed=seed
        )
        for e in result.estimates:
            covered[e.estimator] += int(e.ci_low <= truth <= e.ci_high)
    assert covered["ipw"] >= 34, covered
    assert covered["snipw"] >= 34, covered


def test_row_bootstrap_undercovers_clustered_logs(tmp_path: Path) -> None:
    # The same check resampling rows (decision_id clusters) ignores the customer effect: its
    # intervals are too narrow. Shows the coverage test above can fail.
    truth = _truth()
    covered = 0
    for seed in range(40):
        folder = write_parts(
            make_log(400, 5, seed=100 + seed, customer_sd=1.5), tmp_path / str(seed), []
        )
        result = evaluate_stream(
            folder,
            TARGET,
            [IPS()],
            n_bootstrap=200,
            n_buckets=BUCKETS,
            seed=seed,
            cluster="decision_id",
        )
        e = result.estimates[0]
        covered += int(e.ci_low <= truth <= e.ci_high)
    assert covered < 36


@pytest.mark.parametrize("kind", ["empty", "glob", "schemas", "missing", "action", "table"])
def test_bad_input_names_the_path_or_column(tmp_path: Path, log: pd.DataFrame, kind: str) -> None:
    target: object = TARGET
    if kind == "empty":
        (tmp_path / "empty").mkdir()
        source: object = tmp_path / "empty"
        match = "holds no .parquet file"
    elif kind == "glob":
        source = str(tmp_path / "nothing-*.parquet")
        match = "matches no file"
    elif kind == "schemas":
        write_parts(log, tmp_path / "mixed", [])
        log.drop(columns=["x2"]).to_parquet(tmp_path / "mixed" / "part-999.parquet")
        source = tmp_path / "mixed"
        match = "different schemas.*part-999.parquet.*x2"
    elif kind == "missing":
        write_parts(log.drop(columns=["propensity"]), tmp_path / "noprop", [])
        source = tmp_path / "noprop"
        match = "missing required column.*propensity"
    elif kind == "action":
        bad = log.copy()
        bad.loc[1234, "action"] = "a9"
        write_parts(bad, tmp_path / "badaction", [1000])
        source = tmp_path / "badaction"
        match = "column `action` of .*part-001.parquet.*row 234 has 'a9'"
    else:
        write_parts(log, tmp_path / "ok", [])
        source = tmp_path / "ok"
        target = np.full((len(log), len(ACTIONS)), 1 / len(ACTIONS))
        match = "per-row tables cannot"
    with pytest.raises(ValueError, match=match):
        evaluate_stream(source, target, [IPS()], n_bootstrap=100, n_buckets=BUCKETS)  # type: ignore[arg-type]


def test_folder_skips_metadata_and_hidden_files(tmp_path: Path, log: pd.DataFrame) -> None:
    folder = write_parts(log, tmp_path / "ds", [100])
    (folder / "_manifest.json").write_text("{}")
    (folder / ".tmp").mkdir()
    log.to_parquet(folder / ".tmp" / "half.parquet")
    assert [p.name for p in resolve_log_files(folder)] == ["part-000.parquet", "part-001.parquet"]
    assert len(resolve_log_files(str(folder / "part-*.parquet"))) == 2


def test_hash_ids_depend_on_the_value_only() -> None:
    short = pa.array(["c1", "customer-000000017"])
    # another batch: other neighbours (a longer id), chunked, 64-bit offsets
    long = pa.chunked_array(
        [pa.array(["x" * 40, "customer-000000017"]), pa.array(["c1"])], pa.string()
    ).cast(pa.large_string())
    a, b = hash_ids(short, 1, "id"), hash_ids(long, 1, "id")
    assert a[0] == b[2] and a[1] == b[1] and b[0] not in a
    assert hash_ids(short, 2, "id")[0] != a[0]
    ints = hash_ids(pa.array([5, 6, 5]), 1, "id")
    assert ints[0] == ints[2] != ints[1]
    with pytest.raises(ValueError, match="column `id` must not have missing"):
        hash_ids(pa.array(["a", None]), 1, "id")


def test_poisson_weights_are_poisson_and_deterministic() -> None:
    w = poisson_weights(5, 0, 64, 4096)
    # mean and variance 1 within 5 standard errors (262,144 draws)
    assert abs(w.mean() - 1.0) < 5 * np.sqrt(1.0 / w.size)
    assert abs(w.var() - 1.0) < 5 * np.sqrt(3.0 / w.size)
    assert np.array_equal(poisson_weights(5, 32, 40, 4096), w[32:40])
    assert not np.array_equal(poisson_weights(6, 0, 64, 4096), w)


def test_ray_equals_serial(tmp_path: Path, log: pd.DataFrame) -> None:
    ray = pytest.importorskip("ray")
    folder = write_parts(log, tmp_path / "log", [500, 1500])
    kwargs = {
        "reward_model": Ridge(),
        "model_sample": 1500,
        "n_bootstrap": 100,
        "n_buckets": BUCKETS,
    }
    serial = evaluate_stream(folder, TARGET, [IPS(), SNIPS(), DR()], **kwargs)
    ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False)
    try:
        on_ray = evaluate_stream(
            folder, TARGET, [IPS(), SNIPS(), DR()], ray_address="local", **kwargs
        )
    finally:
        ray.shutdown()
    assert on_ray.estimates == serial.estimates
    assert on_ray.diagnostics == serial.diagnostics
