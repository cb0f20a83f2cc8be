"""The fidelity report: known-answer rates, Wilson, KS, Spearman, files, atomicity, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from campaignrl.agents.baselines import make_baseline
from campaignrl.policies.sampling import epsilon_mix
from campaignrl.rollout import run_policy
from campaignrl.simulators import get_world
from campaignrl.simulators.fit import FittedSimulator, fit_simulator
from campaignrl.simulators.fit.report import (
    FIGURES,
    FidelityReport,
    fidelity_report,
    ks_scores,
    spearman,
    wilson_interval,
)

CUSTOMERS, PERIODS = 1_500, 6
POLICIES = ("random", "no-contact", "rfm-rules", "myopic")


class Logging:
    """rfm-rules with 30% uniform exploration: the policy that wrote the test log."""

    name = "rfm-rules+eps0.3"

    def __init__(self) -> None:
        self.rules = make_baseline("rfm-rules")

    def probabilities(self, obs: np.ndarray, masks: np.ndarray, sim: Any) -> np.ndarray:
        """The rules mixed with uniform exploration over the allowed actions."""
        return epsilon_mix(self.rules.probabilities(obs, masks, sim), masks, 0.3)


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    """1,500 ``retail`` customers x 6 weeks, outcome columns included."""
    res = run_policy(
        get_world("retail"), Logging(), n_customers=CUSTOMERS, horizon=PERIODS, seed=5, record=True
    )
    assert res.log is not None
    return res.log


@pytest.fixture(scope="module")
def fitted(log: pd.DataFrame) -> FittedSimulator:
    """Three segments (given, so no silhouette search: fast)."""
    return fit_simulator(log, segments=3, seed=0)


@pytest.fixture(scope="module")
def report(
    fitted: FittedSimulator, log: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> FidelityReport:
    """The report with the true logging policy given (so the simulated log can be rebuilt)."""
    out = tmp_path_factory.mktemp("report") / "fidelity"
    return fidelity_report(
        fitted,
        log,
        out,
        policies=POLICIES,
        seed=3,
        logging_policy=Logging(),
        reward_model="ridge",
        progress=False,
    )


def _segment_of_rows(fitted: FittedSimulator, log: pd.DataFrame) -> np.ndarray:
    """The fit's segment name of every logged row, looked up by customer id."""
    by_id = dict(zip(fitted.customer_ids.astype(str), fitted.segment, strict=True))
    names = np.asarray(fitted.spec.segment_names)
    return names[log["customer_id"].astype(str).map(by_id).to_numpy(int)]


def test_observed_rates_equal_hand_counts(
    report: FidelityReport, fitted: FittedSimulator, log: pd.DataFrame
) -> None:
    seg = _segment_of_rows(fitted, log)
    sent = log["action"].to_numpy() != "no_contact"
    channel = log["action"].str.partition("@")[2].to_numpy()
    offer = log["action"].str.partition("@")[0].to_numpy()
    opened = log["opened"].to_numpy(bool)
    bought = log["purchased"].to_numpy(bool)
    unsub = log["unsubscribed"].to_numpy(bool)
    rates = report.rates.set_index(["group", "key", "rate"])
    checked = 0
    for s in fitted.spec.segment_names:
        rows = (seg == s) & sent
        want = {
            "open": (opened[rows].sum(), rows.sum()),
            "conversion": (bought[rows & opened].sum(), (rows & opened).sum()),
            "optout": (unsub[rows].sum(), rows.sum()),
            "organic": (bought[(seg == s) & ~sent].sum(), ((seg == s) & ~sent).sum()),
        }
        for rate, (k, n) in want.items():
            row = rates.loc[("segment", s, rate)]
            assert row["observed_trials"] == n
            assert row["observed"] == k / n  # the same two integers divided: exact
            checked += 1
    for kind, keys in (("channel", channel), ("offer", offer)):
        for key in np.unique(keys[sent]):
            rows = sent & (keys == key)
            row = rates.loc[(kind, key, "open")]
            assert row["observed"] == opened[rows].sum() / rows.sum()
            checked += 1
    assert checked >= 3 * 4 + 3 + 5


def test_observed_side_never_reads_segment_columns(
    report: FidelityReport, fitted: FittedSimulator, log: pd.DataFrame, tmp_path: Path
) -> None:
    # scramble the true-segment columns: a report that read them would change
    seg_cols = [c for c in log.columns if c.startswith("segment=")]
    assert seg_cols
    scrambled = log.copy()
    scrambled[seg_cols] = scrambled[seg_cols].to_numpy()[::-1]
    other = fidelity_report(
        fitted,
        scrambled,
        tmp_path / "r",
        policies=("no-contact",),
        seed=3,
        logging_policy=Logging(),
        reward_model="ridge",
        progress=False,
    )
    cols = ["group", "key", "rate", "observed", "observed_trials"]
    pd.testing.assert_frame_equal(other.rates[cols], report.rates[cols])


def test_wilson_interval_hand_computed() -> None:
    # 8 of 10, z = 1.959964: p = 0.8, z^2 = 3.841459,
    # center = (0.8 + 0.192073) / 1.384146 = 0.716740,
    # half = 1.959964 * sqrt(0.016 + 0.009604) / 1.384146 = 0.226578 (6 digits: +-2e-6)
    lo, hi = wilson_interval(8, 10)
    assert float(lo) == pytest.approx(0.716740 - 0.226578, abs=2e-6)
    assert float(hi) == pytest.approx(0.716740 + 0.226578, abs=2e-6)
    # scipy's own Wilson interval agrees to rounding on other cases, including k = 0 and k = n
    for k, n in ((0, 50), (3, 2000), (50, 50), (417, 1234)):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        lo, hi = wilson_interval(k, n)
        assert float(lo) == pytest.approx(ci.low, abs=1e-12)
        assert float(hi) == pytest.approx(ci.high, abs=1e-12)
    lo, hi = wilson_interval(np.array([0]), np.array([0]))
    assert np.isnan(lo).all() and np.isnan(hi).all()


def test_report_intervals_are_wilson_of_the_counts(report: FidelityReport) -> None:
    r = report.rates
    k = np.rint(r["observed"] * r["observed_trials"])
    lo, hi = wilson_interval(k, r["observed_trials"])
    np.testing.assert_allclose(r["observed_low"], lo, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["observed_high"], hi, rtol=0, atol=1e-12)
    assert (r["observed_low"] <= r["observed"]).all() and (
        r["observed"] <= r["observed_high"]
    ).all()
    within = np.abs((r["simulated"] - r["observed"]) / r["observed"]) <= 0.10
    assert (r["within_10pct"] == within).all()


def test_ks_equals_scipy_on_the_same_samples(
    report: FidelityReport, fitted: FittedSimulator, log: pd.DataFrame
) -> None:
    # the simulated log is the fitted world under the given logging policy, seed 3, on five
    # times the log's customers: rebuild it
    sim = run_policy(
        fitted.spec, Logging(), n_customers=5 * CUSTOMERS, horizon=PERIODS, seed=3, record=True
    ).log
    assert sim is not None
    table = report.distributions.set_index("variable")
    for frame_obs, frame_sim, name, pick in (
        (log, sim, "basket_value", lambda f: f["basket_value"][f["purchased"]].to_numpy(float)),
        (log, sim, "recency_weeks", lambda f: np.rint(f["recency"].to_numpy(float) * 52)),
    ):
        a, b = pick(frame_obs), pick(frame_sim)
        want = stats.ks_2samp(a, b)
        assert table.loc[name, "ks_statistic"] == pytest.approx(want.statistic, abs=1e-12)
        assert table.loc[name, "p_value"] == pytest.approx(want.pvalue, rel=1e-9, abs=1e-300)
        assert table.loc[name, "n_observed"] == a.size
    # a known answer: disjoint samples have D = 1, identical ones D = 0
    t = ks_scores({"x": np.arange(5.0)}, {"x": np.arange(5.0) + 10})
    assert float(t["ks_statistic"].iloc[0]) == 1.0
    t = ks_scores({"x": np.arange(5.0)}, {"x": np.arange(5.0)})
    assert float(t["ks_statistic"].iloc[0]) == 0.0


def test_spearman_hand_computed() -> None:
    # ranks 1..5 vs 2,1,4,3,5: d = (-1, 1, -1, 1, 0), sum d^2 = 4,
    # rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert spearman([10.0, 20.0, 30.0, 40.0, 50.0], [2.0, 1.0, 4.0, 3.0, 5.0]) == pytest.approx(
        0.8, abs=1e-12
    )
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0, abs=1e-12)
    assert np.isnan(spearman([1.0, 2.0], [1.0, 2.0]))
    with pytest.raises(ValueError, match="`a` and `b`"):
        spearman([1.0, 2.0, 3.0], [1.0, 2.0])


def test_policy_table_and_its_spearman(report: FidelityReport) -> None:
    p = report.policies
    assert len(p) == len(POLICIES)
    assert p["policy"].iloc[-1].startswith("myopic")
    for col in ("fitted_value", "dr", "snipw"):
        assert np.isfinite(p[col]).all()
        assert (
            (p[f"{col.removesuffix('_value')}_low"] <= p[col]).all()
            if col != "fitted_value"
            else True
        )
    assert (p["fitted_low"] <= p["fitted_value"]).all() and (
        p["fitted_value"] <= p["fitted_high"]
    ).all()
    assert report.spearman["dr"] == pytest.approx(spearman(p["fitted_value"], p["dr"]), abs=1e-12)
    # no-contact is on the logged support (it was logged 30% x 1/A of the time at least):
    # its DR estimate and fitted value are the organic profit, positive
    nc = p[p["policy"] == "no-contact"].iloc[0]
    assert nc["fitted_value"] > 0 and nc["dr_high"] > 0


def test_all_files_written(report: FidelityReport) -> None:
    assert set(report.paths) == {"report", "rates", "distributions", "policies"}
    for name in FIGURES:
        data = (report.paths["report"].parent / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    text = report.paths["report"].read_text(encoding="utf-8")
    for heading in ("## 1.", "## 2.", "## 3.", "## 5."):
        assert heading in text
    assert "Spearman" in text and "![policies](policies.png)" in text
    assert "## 4." not in text  # no feedback, no topics section
    # the fit's own notes are in "what could not be fitted"
    assert fitted_note_in(text, report)
    assert not [p for p in report.paths["report"].parent.parent.iterdir() if p.name.startswith(".")]


def fitted_note_in(text: str, report: FidelityReport) -> bool:
    """Every note of the report appears in its markdown."""
    return all(n in text for n in report.notes)


def test_a_failing_figure_leaves_nothing_half_written(
    fitted: FittedSimulator, log: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = matplotlib.figure.Figure.savefig

    def fail_on_policies(self: Any, fname: Any, *args: Any, **kwargs: Any) -> None:
        if str(fname).endswith("policies.png"):
            raise OSError("disk full")
        real(self, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail_on_policies)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "report.md").write_text("old report\n", encoding="utf-8")
    for out in (tmp_path / "new", existing):
        with pytest.raises(OSError, match="disk full"):
            fidelity_report(
                fitted,
                log,
                out,
                policies=("no-contact",),
                seed=3,
                logging_policy=Logging(),
                reward_model="ridge",
                progress=False,
            )
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in existing.iterdir()) == ["report.md"]
    assert (existing / "report.md").read_text(encoding="utf-8") == "old report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # no temporary folder


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"simulated_customers": 0}, "simulated_customers"),
        ({"reward_model": "xgb"}, "reward_model"),
        ({"policies": "random"}, "policies"),
        ({"policies": ("nope",)}, r"policies\[0\]"),
        ({"policies": ("random", "myopic-oracle")}, r"policies\[1\].*hidden state"),
        ({"policies": ()}, "policies"),
        ({"policies": (("mine", object()),)}, r"policies\[0\]"),
    ],
)
def test_bad_arguments_name_the_argument(
    fitted: FittedSimulator, log: pd.DataFrame, tmp_path: Path, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        fidelity_report(fitted, log, tmp_path / "r", progress=False, **kwargs)
    assert not (tmp_path / "r").exists()


def test_bad_inputs_are_refused(fitted: FittedSimulator, log: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`fitted`"):
        fidelity_report("sim", log, tmp_path / "r", progress=False)  # type: ignore[arg-type]
    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="`out_dir`"):
        fidelity_report(fitted, log, a_file, progress=False)
    other = log.assign(customer_id="stranger-" + log["customer_id"].astype(str))
    with pytest.raises(ValueError, match=r"customer.*does not know"):
        fidelity_report(fitted, other, tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="recency"):
        fidelity_report(fitted, log.drop(columns=["recency"]), tmp_path / "r", progress=False)


def test_feedback_topics_listed_per_segment(
    fitted: FittedSimulator, log: pd.DataFrame, tmp_path: Path
) -> None:
    from campaignrl.simulators.fit.feedback import synthetic_feedback

    ids = fitted.customer_ids.astype(str)
    feedback = synthetic_feedback(fitted.segment, np.random.default_rng(0), customer_ids=list(ids))
    rep = fidelity_report(
        fitted,
        log,
        tmp_path / "r",
        policies=("no-contact",),
        seed=3,
        logging_policy=Logging(),
        feedback=feedback,
        reward_model="ridge",
        progress=False,
    )
    assert rep.topics is not None
    assert set(rep.topics["segment"]) == set(fitted.spec.segment_names)
    text = rep.paths["report"].read_text(encoding="utf-8")
    assert "## 4. Feedback topics by segment" in text
    assert str(rep.topics["words"].iloc[0]) in text
