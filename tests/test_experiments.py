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
    # summary.csv holds no wall-clock column: two runs of one config write the same bytes.
    assert (out / "summary.csv").read_bytes() == (tmp_path / "b" / "summary.csv").read_bytes()
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


# ------------------------------------------------- issue 10: names, whole validation, folders

FAST = {
    "name": "fast",
    "world": "retail",
    "horizon": 3,
    "seeds": [0],
    "eval_customers": 50,
    "training_evals": 1,
    "training_eval_customers": 20,
    "agents": [
        {"agent": "no-contact"},
        {"agent": "ucb1", "timesteps": 150, "train_customers": 50},
    ],
}


def with_agent(agent, **config):
    """FAST with ``agent`` as its third entry (agents.2)."""
    return {**FAST, **config, "agents": [*FAST["agents"], agent]}


@pytest.mark.parametrize(
    "label", ["../../x", "/abs/dir", "a/b", "a\\b", "..", ".", "", ".hidden", "x\x00y", "t\tab"]
)
def test_labels_are_plain_names_not_paths(tmp_path, label):
    bad = with_agent({"agent": "epsilon-greedy", "label": label, "timesteps": 150})
    with pytest.raises(
        ValueError, match=r"agents.2 \(epsilon-greedy\).label: must be a plain name"
    ):
        load_config(write(tmp_path, bad))


def test_a_path_label_writes_nothing_outside_out(tmp_path):
    # Before: `label: ../victim` made save_policy(overwrite=True) replace tmp_path/victim.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    bad = with_agent({"agent": "epsilon-greedy", "label": "../../victim", "timesteps": 150})
    code = main(["experiment", "run", str(write(tmp_path, bad)), "--out", str(tmp_path / "o")])
    assert code == 2
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("agent", "match"),
    [
        ({"agent": "ppo", "timesteps": 10, "params": {"learning_rate": -1}},
         r"agents.2 \(ppo\).learning_rate: must be > 0.0, got -1$"),
        ({"agent": "ppo", "timesteps": 10, "params": {"n_steps": 10**30}},
         r"agents.2 \(ppo\).n_steps: must be <= 10000"),
        ({"agent": "ppo", "timesteps": 10, "params": {"extra": {"devic": "cuda"}}},
         r"agents.2 \(ppo\).extra: must hold MaskablePPO keyword arguments, got 'devic'"),
        ({"agent": "ppo", "timesteps": 10, "params": {"extra": {"seed": 3}}},
         r"agents.2 \(ppo\).extra: must not set 'seed'"),
        ({"agent": "ppo", "timesteps": 10, "params": {"net_arch": [64, 10**9]}},
         r"agents.2 \(ppo\).net_arch: must be 1 to 8 layer widths"),
        ({"agent": "ppo", "timesteps": 10, "train_customers": 2_000_000},
         r"agents.2 \(ppo\).n_steps: 26 x 2,000,000 customers make rollouts of 52,000,000"),
        ({"agent": "qlearning", "timesteps": 10, "params": {"gamma": 2}},
         r"agents.2 \(qlearning\).gamma: must be <= 1.0, got 2"),
        ({"agent": "qlearning", "timesteps": 10, "params": {"best_offer": "yes"}},
         r"agents.2 \(qlearning\).best_offer: must be true or false, got str 'yes'"),
        ({"agent": "qlearning", "timesteps": 10, "params": {"recency_weeks": [8, 4]}},
         r"agents.2 \(qlearning\).recency_weeks: must be strictly increasing"),
        ({"agent": "qlearning", "timesteps": 10, "params": {"recency_weeks": ["a"]}},
         r"agents.2 \(qlearning\).recency_weeks\[0\]: must be of type int or float, got str"),
        ({"agent": "qlearning", "timesteps": 10,
          "params": {"recency_weeks": list(range(1, 41)), "fatigue_levels": list(range(1, 41))}},
         r"agents.2 \(qlearning\).params: .* make a Q-table of [\d,]+ entries"),
        ({"agent": "ucb1", "timesteps": 10, "params": {"epsilon": 1.5}},
         r"agents.2 \(ucb1\).epsilon: must be <= 1.0, got 1.5"),
        ({"agent": "linucb", "timesteps": 10, "params": {"per_segment": 1}},
         r"agents.2 \(linucb\).per_segment: must be true or false"),
        ({"agent": "ucb1"}, r"agents.2 \(ucb1\).timesteps: a learner needs a training budget"),
        ({"agent": "linucb", "timesteps": 0}, r"agents.2 \(linucb\).timesteps: linucb needs"),
        ({"agent": "lints", "timesteps": 0}, r"agents.2 \(lints\).timesteps: lints needs"),
        ({"agent": "ucb1", "timesteps": 10**30}, r"agents.2 \(ucb1\).timesteps: Input should be"),
        ({"agent": "ucb1", "timesteps": True}, r"agents.2 \(ucb1\).timesteps: .*got True"),
        ({"agent": "random", "params": {"epsilon": 0.1}},
         r"agents.2 \(random\).params: unknown setting\(s\) \['epsilon'\] for baseline "
         r"'random'; it takes none"),
        ({"agent": "static-best", "params": {"pilot_customers": 10**12}},
         r"agents.2 \(static-best\).pilot_customers: must be <= 2000000"),
        ({"agent": "restrained-oracle", "params": {"fatigue_threshold": -1}},
         r"agents.2 \(restrained-oracle\).fatigue_threshold: must be >= 0.0, got -1"),
        ({"agent": "random", "timesteps": 100}, r"agents.2 \(random\).timesteps: baselines are"),
    ],
)  # fmt: skip
def test_every_agent_entry_is_validated_at_load_by_name(tmp_path, agent, match):
    path = write(tmp_path, with_agent(agent))
    with pytest.raises(ValueError, match=rf"^experiment file '{path}': {match}"):
        load_config(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"eval_customers": 10**12}, r"eval_customers: Input should be less than or equal to "
         r"2000000, got 1000000000000$"),
        ({"eval_customers": 10**29}, r"eval_customers: Input should be less than or equal to "
         r"2000000, got 1000000000"),
        ({"training_eval_customers": 10**12}, r"training_eval_customers: Input should be less"),
        ({"horizon": True}, r"horizon: Input should be a valid integer, got True$"),
        ({"horizon": 10**9}, r"horizon: Input should be less than or equal to 5000"),
        ({"horizon": 2.5}, r"horizon: Input should be a valid integer, got 2.5$"),
        ({"seeds": [True]}, r"seeds.0: Input should be a valid integer, got True"),
        ({"seeds": [2**40]}, r"seeds must be distinct integers in \[0, 4294967295\]"),
        ({"training_evals": 10**6}, r"training_evals: Input should be less than or equal to"),
        ({"name": 5}, r"name: Input should be a valid string, got 5"),
        ({"world_overrides": {"margin_rat": 0.3}}, r"world_overrides: .*margin_rat"),
    ],
)  # fmt: skip
def test_sizes_and_types_are_refused_by_key(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        load_config(write(tmp_path, {**FAST, **change}))


def test_labels_must_differ_even_in_case(tmp_path):
    bad = with_agent({"agent": "ucb1", "label": "UCB1", "timesteps": 150})
    with pytest.raises(ValueError, match=r"agents.2 \(ucb1\).label: agent labels must be unique"):
        load_config(write(tmp_path, bad))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: a\nname: b\nagents: [{agent: random}]\n",
         r"not valid YAML: line 2, column 1: found duplicate key 'name' \(first on line 1\)"),
        ("name: a\nagents:\n  - {agent: ucb1, timesteps: 5, params: {epsilon: 0.1, epsilon: 1}}\n",
         r"found duplicate key 'epsilon'"),
        ("- just\n- a list\n", r"must be a mapping of keys"),
    ],
)  # fmt: skip
def test_yaml_documents_are_read_strictly(tmp_path, text, match):
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(ValueError, match=match):
        load_config(tmp_path / "x.yaml")


def test_billion_laughs_is_refused_quickly(tmp_path):
    bomb = 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for i in range(1, 9):  # 9^9 strings once expanded
        bomb += f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n"
    (tmp_path / "bomb.yaml").write_text("name: bomb\n" + bomb)
    with pytest.raises(ValueError, match=r"not valid YAML: line \d+, column \d+: found a node "
                       r"that expands to more than 100,000 nodes"):  # fmt: skip
        load_config(tmp_path / "bomb.yaml")


def test_yaml_floats_without_a_dot_are_numbers(tmp_path):
    (tmp_path / "x.yaml").write_text(
        "name: x\nagents:\n  - {agent: ppo, timesteps: 10, params: {learning_rate: 3e-4}}\n"
    )
    assert load_config(tmp_path / "x.yaml").agents[0].params == {"learning_rate": 3e-4}


def test_a_bad_learner_setting_writes_nothing(tmp_path, capsys):
    # Before: config.json (and the first learners' policies) were written, then make_agent
    # raised on the bad setting.
    bad = with_agent({"agent": "ppo", "timesteps": 10, "params": {"learning_rate": -1}})
    code = main(["experiment", "run", str(write(tmp_path, bad)), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "agents.2 (ppo).learning_rate: must be > 0.0, got -1" in err
    assert not (tmp_path / "o").exists()


def test_run_experiment_validates_a_config_built_in_python(tmp_path):
    config = load_config(write(tmp_path, FAST))
    broken = config.model_copy(update={"horizon": 0})  # model_copy does not validate
    with pytest.raises(ValueError, match="horizon"):
        run_experiment(broken, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_experiment_budgets_are_rounded_to_whole_campaigns(tmp_path, capsys):
    # 150 customer-steps asked, campaigns of 50 customers x 3 periods = 150: exact; 200 -> 300.
    config = with_agent({"agent": "epsilon-greedy", "timesteps": 200, "train_customers": 50})
    code = main(["experiment", "run", str(write(tmp_path, config)), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "epsilon-greedy: 200 customer-steps = 1.33 campaigns of 50 customers x 3 periods; "
        "training whole campaigns: 2 campaigns = 300 customer-steps"
    ) in out
    assert "ucb1:" not in out  # exact budgets need no note
    runs = pd.read_csv(tmp_path / "o" / "runs.csv").set_index("agent")
    assert runs.loc["epsilon-greedy", "timesteps"] == 300 and runs.loc["ucb1", "timesteps"] == 150


# results folders


def run_fast(tmp_path, out, *extra):
    return main(["experiment", "run", str(write(tmp_path, FAST)), "--out", str(out), *extra])


def test_a_finished_run_has_its_marker_and_manifest(tmp_path):
    out = tmp_path / "o"
    assert run_fast(tmp_path, out) == 0
    done = json.loads((out / "DONE.json").read_text())
    manifest = json.loads((out / "run.json").read_text())
    assert done["complete"] is True and done["files"] == manifest["files"]
    assert "policies/ucb1/seed0" in manifest["files"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["DONE.json", "run.json", "config.json", "policies", *RESULT_FILES_]
    )


RESULT_FILES_ = [
    "runs.csv",
    "summary.csv",
    "learning_curves.csv",
    "values.png",
    "learning_curves.png",
    "report.md",
]


def test_a_non_empty_out_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run_fast(tmp_path, out) == 2
    err = capsys.readouterr().err
    assert err == (
        f"campaignrl: error: argument --out: {str(out)!r} is not empty; pass --overwrite "
        "(overwrite=True) to replace the previous run's results, or choose a new folder\n"
    )
    # --overwrite without a run manifest deletes nothing either
    assert run_fast(tmp_path, out, "--overwrite") == 2
    assert "holds no campaignrl run manifest (run.json)" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_overwrite_removes_only_the_previous_runs_files(tmp_path, capsys):
    out = tmp_path / "o"
    assert run_fast(tmp_path, out) == 0
    assert run_fast(tmp_path, out) == 2  # a second run is refused
    (out / "notes.txt").write_text("mine")  # a file the run did not create
    (out / "policies" / "mine").mkdir()
    old = json.loads((out / "DONE.json").read_text())["finished"]
    # a policy directory a killed save_policy left (SIGKILL: its cleanup never ran)
    orphan = out / "policies" / "ucb1" / ".seed0.ab12cd_9"
    orphan.mkdir()
    (orphan / "weights.npz").write_bytes(b"partial")
    capsys.readouterr()
    assert run_fast(tmp_path, out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "policies" / "mine").is_dir()
    assert not orphan.exists()
    assert json.loads((out / "DONE.json").read_text())["finished"] >= old
    assert load_policy(out / "policies" / "ucb1" / "seed0").action_names[0] == "no_contact"


def test_overwrite_never_deletes_what_a_tampered_manifest_points_outside(tmp_path):
    out = tmp_path / "o"
    assert run_fast(tmp_path, out) == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    manifest = json.loads((out / "run.json").read_text())
    manifest["files"] += ["../victim.txt", str(victim)]
    (out / "run.json").write_text(json.dumps(manifest))
    assert run_fast(tmp_path, out, "--overwrite") == 0
    assert victim.read_text() == "keep"


def test_ctrl_c_exits_130_with_one_line_and_nothing_looks_finished(tmp_path, capsys, monkeypatch):
    import campaignrl.experiments as experiments

    real = experiments.plot_learning_curves

    def interrupted(*args, **kwargs):  # Ctrl-C while the last results are being written
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "plot_learning_curves", interrupted)
    out = tmp_path / "o"
    code = run_fast(tmp_path, out)
    err = capsys.readouterr().err
    assert code == 130
    assert err == (
        f"campaignrl: interrupted: {str(out)!r} holds no finished results (no DONE.json); run "
        "again with --overwrite to replace them\n"
    )
    left = sorted(p.name for p in out.iterdir())
    assert left == ["config.json", "policies", "run.json"]  # no results, no marker, no temps
    monkeypatch.setattr(experiments, "plot_learning_curves", real)
    assert run_fast(tmp_path, out, "--overwrite") == 0 and (out / "DONE.json").is_file()


def test_a_runner_only_places_work_the_order_of_results_changes_no_file(tmp_path):
    """run_experiment writes the same files whatever order its runner yields the runs in."""
    from campaignrl.experiments import serial_runs

    config = load_config(write(tmp_path, TINY))
    results = list(serial_runs(config, progress=False))
    run_experiment(config, tmp_path / "a", progress=False, runner=lambda c, progress: results)
    run_experiment(config, tmp_path / "b", progress=False, runner=lambda c, progress: results[::-1])
    for name in ("runs.csv", "summary.csv", "learning_curves.csv", "report.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for r in results:
        if r.artifact:
            folder = tmp_path / "b" / "policies" / r.agent / f"seed{r.seed}"
            assert (folder / "weights.npz").read_bytes() == r.artifact["weights.npz"]
    # a runner that loses a run is refused before any result is written
    with pytest.raises(ValueError, match=r"miss 1 run\(s\) of 'tiny'"):
        run_experiment(
            config, tmp_path / "c", progress=False, runner=lambda c, progress: results[1:]
        )
    assert not (tmp_path / "c" / "summary.csv").exists()
    assert not (tmp_path / "c" / "DONE.json").exists()
