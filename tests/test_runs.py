"""The unit of work: run_one is deterministic and writes nothing; summarize is pure."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pytest

from campaignrl.experiments import ExperimentConfig, run_experiment
from campaignrl.policies import load_policy
from campaignrl.rollout import mean_ci95
from campaignrl.runs import (
    RunResult,
    curves_table,
    order_results,
    run_one,
    runs_table,
    summarize,
    write_run,
)

TINY = ExperimentConfig.model_validate(
    {
        "name": "tiny",
        "world": "fatigue",
        "horizon": 3,
        "seeds": [0, 1],
        "eval_customers": 300,
        "training_evals": 2,
        "training_eval_customers": 100,
        "agents": [
            {"agent": "no-contact"},
            {"agent": "static-best", "params": {"pilot_customers": 200}},
            {"agent": "ucb1", "timesteps": 1000, "train_customers": 200},
            {"agent": "qlearning", "label": "q", "timesteps": 600, "train_customers": 100},
        ],
    }
)


@pytest.fixture(scope="module")
def results() -> list[RunResult]:
    return [run_one(a, s, TINY) for s in TINY.seeds for a in TINY.agents]


def test_run_one_is_deterministic_and_writes_nothing(results, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    again = run_one(TINY.agents[2], 1, TINY)
    first = next(r for r in results if (r.agent, r.seed) == ("ucb1", 1))
    np.testing.assert_array_equal(again.customer_values, first.customer_values)
    np.testing.assert_array_equal(again.period_rewards, first.period_rewards)
    assert again.value_per_customer == first.value_per_customer
    assert again.timesteps == first.timesteps == 1200  # 1000 rounded up: 2 campaigns of 600
    assert again.artifact["weights.npz"] == first.artifact["weights.npz"]
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


def test_results_are_plain_picklable_data(results):
    for r in results:
        back = pickle.loads(pickle.dumps(r))
        assert (back.agent, back.seed, back.value_per_customer) == (
            r.agent,
            r.seed,
            r.value_per_customer,
        )
        np.testing.assert_array_equal(back.customer_values, r.customer_values)
    learner = next(r for r in results if r.agent == "ucb1")
    assert set(learner.artifact) == {"manifest.json", "weights.npz"}
    assert learner.curve is not None and len(learner.curve["timesteps"]) == 2
    baseline = next(r for r in results if r.agent == "no-contact")
    assert baseline.artifact == {} and baseline.curve is None and baseline.timesteps == 0


def test_summary_is_the_pooled_mean_whatever_the_order(results):
    summary = summarize(results, TINY)
    shuffled = [results[i] for i in np.random.default_rng(3).permutation(len(results))]
    pd.testing.assert_frame_equal(summarize(shuffled, TINY), summary, check_exact=True)
    pd.testing.assert_frame_equal(runs_table(shuffled, TINY), runs_table(results, TINY))
    pd.testing.assert_frame_equal(curves_table(shuffled, TINY), curves_table(results, TINY))
    # known answer: each agent's value is the mean of its customers over both seeds
    for a in TINY.agents:
        values = np.concatenate([r.customer_values for r in results if r.agent == a.name])
        row = summary.set_index("agent").loc[a.name]
        assert (row.value_per_customer, row.ci95_low, row.ci95_high) == mean_ci95(values)
        assert row.eval_customers == 600 and row.n_seeds == 2
    assert summary.value_per_customer.is_monotonic_decreasing
    assert runs_table(shuffled, TINY)[["agent", "seed"]].values.tolist() == [
        [a.name, s] for s in TINY.seeds for a in TINY.agents
    ]


@pytest.mark.parametrize(
    ("pick", "message"),
    [
        (lambda rs: rs[:-1], r"miss 1 run\(s\) of 'tiny': \('q', seed 1\)"),
        (lambda rs: [*rs, rs[0]], r"run \('no-contact', seed 0\) twice"),
    ],
)
def test_results_must_be_exactly_the_experiments_runs(results, pick, message):
    with pytest.raises(ValueError, match=message):
        summarize(pick(results), TINY)


def test_a_result_of_another_experiment_is_refused(results):
    other = TINY.model_copy(update={"seeds": [0]})
    with pytest.raises(ValueError, match=r"\('no-contact', seed 1\) that experiment 'tiny'"):
        order_results(results, other)


def test_write_run_writes_a_loadable_policy_atomically(results, tmp_path):
    learner = next(r for r in results if r.agent == "q")
    path = write_run(learner, tmp_path)
    assert path == tmp_path / "policies" / "q" / f"seed{learner.seed}"
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "weights.npz"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    policy = load_policy(path)
    assert policy.kind == "tabular"
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        write_run(learner, tmp_path)
    assert write_run(next(r for r in results if r.agent == "no-contact"), tmp_path) is None
    bad = RunResult(**{**learner.__dict__, "artifact": {"../x": b""}})
    with pytest.raises(ValueError, match=r"must be plain, got '\.\./x'"):
        write_run(bad, tmp_path / "other")


def test_run_experiment_writes_what_the_runs_say(results, tmp_path):
    summary = run_experiment(TINY, tmp_path / "o", progress=False)
    cols = [c for c in summary.columns if c != "train_seconds"]
    expected = summarize(results, TINY)
    pd.testing.assert_frame_equal(summary[cols], expected[cols], check_exact=True)
    text = (tmp_path / "o" / "summary.csv").read_text()
    written = pd.read_csv(io.StringIO(text))
    assert written.agent.tolist() == expected.agent.tolist()
