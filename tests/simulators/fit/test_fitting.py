"""fit_simulator on a world whose parameters are known: recovery within binomial bounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from campaignrl.simulators import CustomerSimulator, get_world
from campaignrl.simulators.fit import FittedSimulator, fit_simulator
from campaignrl.simulators.spec import WorldSpec

TRUE = get_world("retail")


def _fatigue(log: pd.DataFrame) -> np.ndarray:
    x = log["fatigue"].to_numpy(np.float64)
    return x / (1.0 - x)


def _segment(log: pd.DataFrame, spec: WorldSpec) -> np.ndarray:
    cols = [f"segment={s}" for s in spec.segment_names]
    return log[cols].to_numpy().argmax(axis=1)


def _channel(log: pd.DataFrame) -> np.ndarray:
    return log["action"].str.partition("@")[2].to_numpy()


def _open_prob(spec: WorldSpec, log: pd.DataFrame, seg: np.ndarray, c: int) -> np.ndarray:
    """The simulator's open chance of each row (module docstring of core, step 3)."""
    w = spec.arrays()
    recency = np.rint(log["recency"].to_numpy() * 52.0)
    mult = np.exp(-w.fatigue_sensitivity[seg] * _fatigue(log))
    mult = np.where(recency >= spec.lapse_after, mult * spec.winback_open_factor, mult)
    return w.open_rate[seg, c] * mult


def test_segments_recovered_with_names_and_shares(fitted: FittedSimulator, fit_log: pd.DataFrame):
    spec = fitted.spec
    assert spec.segment_names == TRUE.segment_names  # named after the logged segment= columns
    assert fitted.diagnostics["segments"]["k"] == 5  # silhouette chose the true K
    first = fit_log[fit_log["step"] == 0].sort_values("customer_id")
    true_seg = _segment(first, TRUE)
    order = np.argsort(fitted.customer_ids)
    # K-Means on every feature, not only the segment columns: a few customers with extreme
    # RFM or tastes may join a neighbouring cluster
    assert adjusted_rand_score(true_seg, fitted.segment[order]) >= 0.99
    n = len(first)
    for s, seg in enumerate(TRUE.segments):
        se = np.sqrt(seg.share * (1 - seg.share) / n)
        assert abs(spec.segments[s].share - seg.share) <= 4 * se, seg.name


def test_open_rates_recovered(fitted: FittedSimulator, fit_log: pd.DataFrame):
    """Rested open rates where rested sends are many; elsewhere the mean open chance of the
    logged sends, under fitted vs true parameters, within 5 binomial standard errors."""
    log = fit_log[fit_log["action"] != "no_contact"]
    seg = _segment(log, TRUE)
    chan = _channel(log)
    recency = np.rint(log["recency"].to_numpy() * 52.0)
    rested = (_fatigue(log) < 0.5) & (recency < TRUE.lapse_after)
    for s, true_seg in enumerate(TRUE.segments):
        rows = (seg == s) & (chan == "email")
        fit_p = _open_prob(fitted.spec, log[rows], seg[rows], 0).mean()
        true_p = _open_prob(TRUE, log[rows], seg[rows], 0).mean()
        se = np.sqrt(true_p * (1 - true_p) / rows.sum())
        assert abs(fit_p - true_p) <= 5 * se, true_seg.name
        k = int((rows & rested).sum())
        if k >= 500:
            p = true_seg.open_rates[0]
            se = np.sqrt(p * (1 - p) / k)
            assert abs(fitted.spec.segments[s].open_rates[0] - p) <= 5 * se, true_seg.name


def test_unsubscribe_rates_recovered(fitted: FittedSimulator, fit_log: pd.DataFrame):
    log = fit_log[fit_log["action"] != "no_contact"]
    chan = _channel(log)
    fatigue = _fatigue(log)
    for c, ch in enumerate(TRUE.catalog.channels):
        rows = chan == ch.name
        f = fatigue[rows]
        fit_p = fitted.spec.unsubscribe_base[c] * (1 + fitted.spec.unsubscribe_fatigue_slope * f)
        true_p = TRUE.unsubscribe_base[c] * (1 + TRUE.unsubscribe_fatigue_slope * f)
        se = np.sqrt(np.sum(true_p * (1 - true_p))) / rows.sum()
        assert abs(fit_p.mean() - true_p.mean()) <= 5 * se, ch.name


def test_deterministic_parameters_recovered(fitted: FittedSimulator):
    """Parameters read from deterministic relations in the log: exact up to float32 features."""
    spec = fitted.spec
    assert (spec.contact_cap, spec.cap_window) == (TRUE.contact_cap, TRUE.cap_window)
    assert spec.lapse_after == TRUE.lapse_after
    # fatigue is logged as float32 F / (1 + F): relative error ~1e-7 per value
    assert spec.fatigue_decay == pytest.approx(TRUE.fatigue_decay, abs=1e-4)
    # profit = margin * basket exactly on purchases without a redeemed offer
    assert spec.margin_rate == pytest.approx(TRUE.margin_rate, rel=1e-9)
    for fit_seg, true_seg in zip(spec.segments, TRUE.segments, strict=True):
        assert fit_seg.recency_range == true_seg.recency_range


def test_fitted_world_runs_like_a_preset(fitted: FittedSimulator):
    sim = CustomerSimulator(fitted.spec, n_customers=50, horizon=3)
    sim.reset(np.random.default_rng(0))
    res = sim.step(np.zeros(50, dtype=np.int64), np.random.default_rng(1))
    assert res.reward.shape == (50,)
    assert sim.expected_reward().shape == (50, fitted.spec.catalog.n_actions)


def test_same_seed_same_fit(fit_log: pd.DataFrame):
    small = fit_log[fit_log["customer_id"] < fit_log["customer_id"].iloc[1500]]
    a = fit_simulator(small, segments=3, seed=4)
    b = fit_simulator(small, segments=3, seed=4)
    assert a.spec.to_dict() == b.spec.to_dict()
    np.testing.assert_array_equal(a.segment, b.segment)


def _drop(prefix: str):
    return lambda log: log.drop(columns=[c for c in log.columns if c.startswith(prefix)])


REFUSALS = [
    (lambda log: log.drop(columns=["reward"]), {}, r"missing column\(s\) \['reward'\]"),
    (_drop("allowed="), {}, "missing the allowed=<action> mask column"),
    (lambda log: log.drop(columns=["recency"]), {}, r"context feature\(s\) \['recency'\]"),
    (lambda log: log[log["step"] == 0], {}, "one period only"),
    (lambda log: log.assign(propensity=1.0), {}, "no exploration"),
    (lambda log: log, {"min_rows_per_action": 10**7}, "too few rows per action.*'no_contact'"),
]


@pytest.mark.parametrize(("mutate", "kwargs", "match"), REFUSALS)
def test_refuses_logs_that_cannot_support_a_fit(fit_log, mutate, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_simulator(mutate(fit_log), segments=2, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"segments": 0}, "`segments` must be >= 1"),
        ({"segments": "many"}, "`segments` must be"),
        ({"seed": -1}, "`seed` must be >= 0"),
        ({"name": ""}, "`name` must be a non-empty string"),
    ],
)
def test_refuses_bad_arguments(fit_log, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fit_simulator(fit_log.head(100), **kwargs)


def test_notes_say_what_is_missing(fit_log: pd.DataFrame):
    small = fit_log[fit_log["customer_id"] < fit_log["customer_id"].iloc[1500]]
    fitted = fit_simulator(small.drop(columns=["opened", "churned"]), segments=5, seed=0)
    text = " ".join(fitted.notes)
    assert "no `opened` column" in text and "not separately identifiable" in text
    assert "no `churned` column" in text
    assert all(r == 1.0 for s in fitted.spec.segments for r in s.open_rates)


def test_customer_table_and_feedback_join_the_segmentation(fit_log: pd.DataFrame):
    from campaignrl.simulators.fit.feedback import synthetic_feedback

    small = fit_log[fit_log["customer_id"] < fit_log["customer_id"].iloc[1500]]
    first = small[small["step"] == 0]
    ids = first["customer_id"].astype(str).tolist()
    true_seg = _segment(first, TRUE)
    feedback = synthetic_feedback(true_seg, np.random.default_rng(0), customer_ids=ids)
    customers = pd.DataFrame({"customer_id": ids, "age": np.arange(len(ids)) % 70 + 18.0})
    fitted = fit_simulator(small, customers, feedback, segments=5, seed=0, n_topics=4)
    columns = fitted.diagnostics["segments"]["columns"]
    assert "customer:age" in columns
    assert [c for c in columns if c.startswith("topic")] == ["topic0", "topic1", "topic2", "topic3"]
    assert any(note.startswith("feedback: ") for note in fitted.notes)
    with pytest.raises(ValueError, match="`customers` must have a customer_id column"):
        fit_simulator(small, customers.drop(columns=["customer_id"]), segments=5)


def test_log_without_segment_and_score_columns(fit_log: pd.DataFrame):
    small = fit_log[fit_log["customer_id"] < fit_log["customer_id"].iloc[1500]]
    bare = small.drop(columns=[c for c in small.columns if c.startswith(("segment=", "affinity="))])
    fitted = fit_simulator(bare, segments=3, seed=0)
    assert fitted.spec.segment_names == ("segment0", "segment1", "segment2")
    assert fitted.diagnostics["tastes"]["source"] == "smoothed conversion-after-open rates"
    assert fitted.spec.taste_noise == 0.0
    assert any("segment taste centres only" in note for note in fitted.notes)
