"""Experiments on Ray: the same results as the serial run, on one machine and on a cluster
that loses a node mid-experiment."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from campaignrl.experiments import AgentSpec, ExperimentConfig, run_experiment, serial_runs
from campaignrl.policies import load_policy
from campaignrl.runs import RunResult, summarize

ray = pytest.importorskip("ray")

from campaignrl.scale.ray_runner import ray_runner, ray_runs  # noqa: E402

STORE = 100 * 1024**2
TINY = ExperimentConfig.model_validate(
    {
        "name": "tiny-ray",
        "world": "fatigue",
        "horizon": 3,
        "seeds": [0, 1],
        "eval_customers": 400,
        "training_evals": 2,
        "training_eval_customers": 100,
        "agents": [
            {"agent": "no-contact"},
            {"agent": "static-best", "params": {"pilot_customers": 200}},
            {"agent": "ucb1", "timesteps": 1800, "train_customers": 200},
            {"agent": "qlearning", "label": "q", "timesteps": 1800, "train_customers": 200},
        ],
    }
)
PPO = AgentSpec(
    agent="ppo",
    timesteps=600,
    train_customers=100,
    params={"n_steps": 3, "n_epochs": 1, "batch_size": 300},
)
WITH_PPO = TINY.model_copy(update={"agents": [*TINY.agents[:3], PPO]})


def same_results(got: list[RunResult], expected: list[RunResult], config: ExperimentConfig):
    """Equal to the last digit: the summary (but wall times) and every policy file's weights."""
    a, b = summarize(got, config), summarize(expected, config)
    cols = [c for c in a.columns if c != "train_seconds"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    by_run = {(r.agent, r.seed): r for r in expected}
    for r in got:
        e = by_run[(r.agent, r.seed)]
        np.testing.assert_array_equal(r.customer_values, e.customer_values)
        assert r.artifact.get("weights.npz") == e.artifact.get("weights.npz")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, object_store_memory=STORE, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def serial_tiny() -> list[RunResult]:
    return list(serial_runs(TINY, progress=False))


def test_ray_experiment_equals_the_serial_one(local_ray, tmp_path):
    serial = list(serial_runs(WITH_PPO, progress=False))
    summary = run_experiment(WITH_PPO, tmp_path / "ray", progress=False, runner=ray_runner())
    expected = summarize(serial, WITH_PPO)
    cols = [c for c in summary.columns if c != "train_seconds"]
    pd.testing.assert_frame_equal(summary[cols], expected[cols], check_exact=True)
    # the policies came back as bytes and were written by the driver, whole
    for agent in ("ucb1", "ppo"):
        for seed in WITH_PPO.seeds:
            folder = tmp_path / "ray" / "policies" / agent / f"seed{seed}"
            mine = next(r for r in serial if (r.agent, r.seed) == (agent, seed))
            assert (folder / "weights.npz").read_bytes() == mine.artifact["weights.npz"]
            assert load_policy(folder).action_names == load_policy(folder).action_names
    assert (tmp_path / "ray" / "DONE.json").is_file()
    written = pd.read_csv(tmp_path / "ray" / "summary.csv")
    assert written.agent.tolist() == expected.agent.tolist()


def test_an_error_inside_a_run_stops_the_experiment_with_its_message(local_ray):
    # model_copy does not validate: the world is refused inside the task, on the worker
    broken = TINY.model_copy(update={"world": "no-such-world"})
    with pytest.raises(ValueError, match="no-such-world"):
        list(ray_runs(broken, progress=False))


def test_progress_says_runs_done_running_and_queued(local_ray, monkeypatch, capsys):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws bars only on a terminal
    small = TINY.model_copy(update={"agents": TINY.agents[:1], "seeds": [0, 1, 2]})
    results = list(ray_runs(small, progress=True))
    assert sorted(r.seed for r in results) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "runs on Ray: 0 done, 0 running, 3 queued" in err  # before the first poll
    assert "runs on Ray: 3 done, 0 running, 0 queued" in err


def test_a_node_killed_mid_experiment_and_the_results_are_the_same(local_ray, serial_tiny):
    from ray.cluster_utils import Cluster

    ray.shutdown()  # this test runs its own cluster (the module's local Ray goes first)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": STORE, "include_dashboard": False},
    )
    victim = cluster.add_node(num_cpus=1, object_store_memory=STORE)
    ray.init(address=cluster.address)
    results: list[RunResult] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            results.extend(ray_runs(TINY, progress=False, max_retries=2))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    worker = threading.Thread(target=consume)
    try:
        worker.start()
        deadline = time.monotonic() + 60
        # mid-experiment: a run finished and the victim's only CPU is busy with the next
        while (not results or ray.available_resources().get("CPU", 0) > 0) and (
            time.monotonic() < deadline and worker.is_alive()
        ):
            time.sleep(0.05)
        assert results and len(results) < len(TINY.agents) * len(TINY.seeds)
        assert ray.available_resources().get("CPU", 0) == 0  # a run is on the victim
        cluster.add_node(num_cpus=1, object_store_memory=STORE)
        cluster.remove_node(victim, allow_graceful=False)
        worker.join(timeout=90)
        assert not worker.is_alive()
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert not errors, errors
    same_results(results, serial_tiny, TINY)
