import json

import numpy as np
import pandas as pd
import pytest
import yaml

from campaignrl.cli import main
from campaignrl.experiments import load_config, run_experiment
from campaignrl.policies import load_policy

TINY = {
    "name": "tiny",
    "world": "fatigue",
    "horizon": 4,
    "seeds": [0, 1],
    "eval_customers": 400,
    "training_eval_customers": 300,
    "agents": [
        {"agent": "no-contact"},
        {"agent": "myopic-oracle"},
        {"agent": "ucb1", "timesteps": 1600, "train_customers": 200, "params": {"epsilon": 0.1}},
        {"agent": "qlearning", "label": "q", "timesteps": 1600, "train_customers": 200},
    ],
}


def write(tmp_path, config, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_writes_every_result_and_is_repeatable(tmp_path):
    config = load_config(write(tmp_path, TINY))
    first = run_experiment(config, tmp_path / "a", progress=False)
    second = run_experiment(config, tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(
        first.drop(columns=["train_seconds"]), second.drop(columns=["train_seconds"])
    )
    out = tmp_path / "a"
    for name in (
        "config.json",
        "runs.csv",
        "summary.csv",
        "learning_curves.csv",
        "report.md",
        "values.png",
        "learning_curves.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "values.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.agent) == {"no-contact", "myopic-oracle", "ucb1", "q"}
    assert (summary.ci95_low <= summary.value_per_customer).all()
    assert (summary.value_per_customer <= summary.ci95_high).all()
    assert (summary.eval_customers == 800).all()  # pooled over the two seeds
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8
    # the pooled value is the mean of the per-seed values (equal seed sizes)
    for agent, group in runs.groupby("agent"):
        pooled = summary.set_index("agent").loc[agent, "value_per_customer"]
        assert pooled == pytest.approx(group.value_per_customer.mean(), rel=1e-12)
    # every learner's policy is exported per seed and loads
    for label in ("ucb1", "q"):
        for seed in (0, 1):
            policy = load_policy(out / "policies" / label / f"seed{seed}")
            assert policy.action_names[0] == "no_contact"
    report = (out / "report.md").read_text()
    assert "| ucb1 |" in report and "values.png" in report
    curves = pd.read_csv(out / "learning_curves.csv")
    assert set(curves.agent) == {"ucb1", "q"} and set(curves.seed) == {0, 1}
    # each run is evaluated during training (training_evals: every campaign here) on a fixed
    # population, and its last evaluation is the exported policy's
    assert curves.eval_value.notna().all()
    assert (curves.eval_ci95_low < curves.eval_value).all()


def test_baselines_share_the_evaluation_population_across_agents(tmp_path):
    config = load_config(write(tmp_path, {**TINY, "seeds": [3], "agents": TINY["agents"][:2]}))
    summary = run_experiment(config, tmp_path / "o", progress=False).set_index("agent")
    # the oracle beats doing nothing on the same customers (common random numbers)
    assert (
        summary.loc["myopic-oracle", "value_per_customer"]
        != summary.loc["no-contact", "value_per_customer"]
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"wrld": "retail"}, r"wrld: unknown key"),
        ({"world": "shop"}, r"unknown world 'shop'"),
        ({"seeds": [-1]}, r"seeds"),
        ({"seeds": [1, 1]}, r"distinct"),
        ({"eval_customers": 1}, r"eval_customers"),
        ({"agents": [{"agent": "ppo2"}]}, r"unknown agent 'ppo2'"),
        (
            {"agents": [{"agent": "ucb1", "timestep": 5}]},
            r"agents.0 \(ucb1\).timestep: unknown key",
        ),
        (
            {"agents": [{"agent": "ucb1", "timesteps": 5}, {"agent": "ucb1", "timesteps": 5}]},
            r"labels must be unique",
        ),
        ({"world_overrides": {"margin_rate": 2.0}}, r"`WorldSpec.margin_rate` must be <= 1.0"),
    ],
)
def test_bad_configs_are_refused_by_key(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        load_config(write(tmp_path, {**TINY, **change}))


def test_unknown_agent_setting_is_refused_by_name_at_load(tmp_path):
    bad = {**TINY, "agents": [{"agent": "ucb1", "timesteps": 10, "params": {"epsilonn": 0.1}}]}
    with pytest.raises(
        ValueError,
        match=r"agents.0 \(ucb1\).params: unknown setting\(s\) \['epsilonn'\] for agent 'ucb1'",
    ):
        load_config(write(tmp_path, bad))


def test_missing_or_broken_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize("name", ["quickstart.yaml", "retail.yaml", "fatigue.yaml"])
def test_shipped_configs_are_valid(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / name
    config = load_config(path)
    assert config.agents


def test_cli_train_then_evaluate_the_exported_policy(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--world",
            "retail",
            "--agent",
            "lingreedy",
            "--timesteps",
            "1200",
            "--customers",
            "300",
            "--periods",
            "4",
            "--seed",
            "2",
            "--set",
            "epsilon=0.2",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["params"] == {"epsilon": 0.2} and config["timesteps"] == 1200
    assert load_policy(out / "policy").exploration.epsilon == 0.2
    assert len(pd.read_csv(out / "learning_curve.csv")) == 1
    capsys.readouterr()
    code = main(
        [
            "evaluate",
            "--policy",
            str(out / "policy"),
            "--customers",
            "300",
            "--periods",
            "4",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert np.isfinite(summary["value_per_customer"])
    # the run folder itself is accepted too, and means its policy/
    code = main(
        ["evaluate", "--policy", str(out), "--customers", "300", "--periods", "4", "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["value_per_customer"] == summary["value_per_customer"]
    # training again into the same folder is refused instead of overwriting
    code = main(
        ["train", "--agent", "ucb1", "--timesteps", "10", "--customers", "5", "--out", str(out)]
    )
    assert code == 2 and "already holds a train run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--agent", "dqn", "--timesteps", "5", "--out", "x"], "--agent"),
        (["train", "--agent", "ucb1", "--timesteps", "0", "--out", "x"], "--timesteps"),
        (["train", "--agent", "ucb1", "--timesteps", "5", "--set", "alpha", "--out", "x"], "--set"),
        (["evaluate", "--policy", "/no/such/dir"], "--policy"),
    ],
)
def test_bad_train_arguments_exit_2_naming_the_argument(argv, needle, capsys, tmp_path):
    argv = [str(tmp_path / a) if a == "x" else a for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1, err


def test_quickstart_runs_a_config_and_writes_the_report(tmp_path, capsys):
    config = write(tmp_path, {**TINY, "seeds": [0], "agents": TINY["agents"][:3]})
    code = main(["quickstart", "--config", str(config), "--out", str(tmp_path / "qs")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ucb1" in captured.out and (tmp_path / "qs" / "report.md").is_file()
