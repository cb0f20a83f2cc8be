"""``campaignrl ope`` and ``campaignrl logs import-obd``: JSON output, bad arguments, OBD import."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from campaignrl.agents.baselines import make_baseline
from campaignrl.cli import main
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.logs.io import read_logs
from campaignrl.policies import ConstantPolicy, Exploration, save_policy
from campaignrl.rollout import run_policy

OBD = Path(__file__).resolve().parents[1] / "data" / "obd"


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory) -> Path:
    """A small epsilon-greedy retail log (60 customers x 4 weeks)."""
    result = run_policy(
        "retail",
        make_baseline("rfm-rules"),
        n_customers=60,
        horizon=4,
        seed=0,
        epsilon=0.3,
        record=True,
    )
    assert result.log is not None
    path = tmp_path_factory.mktemp("ope") / "logs.parquet"
    result.log.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def uniform(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("target") / "uniform.npy"
    np.save(path, np.full(19, 1 / 19))
    return path


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    env = CampaignVectorEnv(2, world="retail", horizon=4)
    policy = ConstantPolicy(
        env.encoder.feature_names,
        env.action_names,
        np.arange(19.0),
        Exploration("softmax", temperature=5.0),
    )
    return save_policy(policy, tmp_path_factory.mktemp("pol") / "policy")


def test_ope_json_schema(sim_log, uniform, capsys):
    code, out, _ = run(
        [
            "ope", "--logs", str(sim_log), "--target-probs", str(uniform),
            "--estimators", "ipw,snipw,dm,dr,sndr,switch-dr,dros", "--switch-tau", "5",
            "--dros-lambda", "10", "--clip", "100", "--reward-model", "ridge",
            "--bootstrap", "50", "--json",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert set(result) >= {"estimates", "diagnostics"}
    names = [e["estimator"] for e in result["estimates"]]
    # the estimators' own names; "dros" is an alias of "dr-os"
    assert names == ["ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dr-os"]
    for e in result["estimates"]:
        assert {"estimator", "value", "ci_low", "ci_high", "method", "alpha", "n_rounds"} <= set(e)
        assert e["n_rounds"] == 240
        assert e["ci_low"] <= e["ci_high"]
        assert e["method"] == "studentized"  # the bandit default
        assert e["cluster"] == "episode"  # the log has customers: cluster-robust by default
    diag = result["diagnostics"]
    for key in ("effective_sample_size", "max_weight", "unlogged_target_mass", "n_rounds"):
        assert key in diag
    # IPS by hand from the log itself.
    frame = pd.read_parquet(sim_log)
    ips = float(np.mean((1 / 19) / frame["propensity"] * frame["reward"]))
    assert result["estimates"][0]["value"] == pytest.approx(ips, rel=1e-9)


def test_ope_sequential_json(sim_log, uniform, capsys):
    code, out, _ = run(
        [
            "ope", "--logs", str(sim_log), "--target-probs", str(uniform), "--sequential",
            "--estimators", "pdis,wpdis,sdr,fqe", "--gamma", "0.9", "--bootstrap", "50",
            "--json",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert [e["estimator"] for e in result["estimates"]] == ["pdis", "wpdis", "sdr", "fqe"]
    assert all(e["n_episodes"] == 60 and e["gamma"] == 0.9 for e in result["estimates"])
    assert all(e["method"] == "bootstrap" for e in result["estimates"])  # sequential default
    assert result["diagnostics"]["n_episodes"] == 60
    assert result["diagnostics"]["longest_episode"] == 4


def test_ope_with_a_policy_directory_and_a_table(sim_log, policy_dir, capsys):
    code, out, _ = run(
        ["ope", "--logs", str(sim_log), "--policy", str(policy_dir), "--estimators", "ipw,snipw"],
        capsys,
    )
    assert code == 0
    assert "ipw" in out and "snipw" in out and "diagnostics" in out


def test_policy_needing_missing_features_is_refused(tmp_path, sim_log, capsys):
    env = CampaignVectorEnv(2, world="retail", horizon=4)
    policy = ConstantPolicy(
        (*env.encoder.feature_names, "lifetime_value"), env.action_names, np.zeros(19)
    )
    directory = save_policy(policy, tmp_path / "p")
    code, _, err = run(["ope", "--logs", str(sim_log), "--policy", str(directory)], capsys)
    assert code == 2
    assert "lifetime_value" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--estimators", "ipw,foo"], "argument --estimators: unknown estimator 'foo'"),
        (["--estimators", "pdis"], "argument --estimators: unknown estimator 'pdis'"),
        (["--sequential", "--estimators", "dr"], "argument --estimators: unknown estimator 'dr'"),
        (["--estimators", "switch-dr"], "argument --switch-tau"),
        (["--estimators", "dros"], "argument --dros-lambda"),
        (["--gamma", "1.5"], "argument --gamma"),
        (["--bootstrap", "0"], "argument --bootstrap"),
        (["--seed", "-1"], "argument --seed"),
        (["--clip", "-2"], "argument --clip"),
        (["--interval", "exact"], "argument --interval"),
        (["--sequential", "--interval", "studentized"], "argument --interval: studentized"),
        (["--cluster", "customer"], "argument --cluster"),
        (["--sequential", "--cluster", "row"], "argument --cluster: row is for bandit"),
        (["--policy", "somewhere"], "argument --policy"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(sim_log, uniform, capsys, extra, needle):
    code, _, err = run(
        ["ope", "--logs", str(sim_log), "--target-probs", str(uniform), *extra], capsys
    )
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["ope", "--logs", "nope.parquet", "--target-probs", "x.npy"], "argument --logs"),
        (["ope", "--target-probs", "x.npy"], "--logs"),
        (["logs", "import-obd", "no-such-dir", "--out", "x.parquet"], "argument DIR"),
        (["logs", "import-obd", str(OBD / "random"), "--out", "x.txt"], "argument --out"),
    ],
)
def test_more_bad_arguments(argv, needle, capsys):
    code, _, err = run(argv, capsys)
    assert code == 2
    assert needle in err


def test_cluster_by_episode_needs_episodes(sim_log, uniform, tmp_path, capsys):
    no_episodes = tmp_path / "rows.parquet"
    pd.read_parquet(sim_log).drop(columns=["episode_id"]).to_parquet(no_episodes)
    argv = ["ope", "--logs", str(no_episodes), "--target-probs", str(uniform), "--json"]
    code, out, _ = run([*argv, "--bootstrap", "20"], capsys)
    assert code == 0
    assert {e["cluster"] for e in json.loads(out)["estimates"]} == {"row"}
    code, _, err = run([*argv, "--cluster", "episode"], capsys)
    assert code == 2
    assert "argument --cluster: episode needs an episode_id column" in err


def test_wrong_table_shape_names_the_flag(sim_log, tmp_path, capsys):
    table = tmp_path / "t.npy"
    np.save(table, np.full(7, 1 / 7))
    code, _, err = run(["ope", "--logs", str(sim_log), "--target-probs", str(table)], capsys)
    assert code == 2 and "--target-probs" in err


def test_import_obd(tmp_path, capsys):
    out = tmp_path / "obd.parquet"
    code, text, _ = run(["logs", "import-obd", str(OBD / "random"), "--out", str(out)], capsys)
    assert code == 0 and "2,000 decisions" in text
    log = pd.read_parquet(out)
    raw = pd.read_csv(OBD / "random" / "all.csv", index_col=0)
    assert len(log) == 2000
    assert log["action"].tolist() == [f"item_{k}" for k in raw["item_id"]]
    assert log["position"].tolist() == (raw["position"] - 1).tolist()
    assert log["reward"].tolist() == raw["click"].astype(float).tolist()
    assert log["propensity"].tolist() == raw["propensity_score"].tolist()
    assert log["decision_id"].is_unique and (log["step"] == 0).all()
    assert (log["episode_id"] == log["decision_id"]).all()
    assert (log["policy_version"] == "obd-random-all").all()
    assert str(log["timestamp"].dt.tz) == "UTC"
    affinity = [c for c in log.columns if c.startswith("user-item_affinity_")]
    assert len(affinity) == 80
    onehot = [c for c in log.columns if c.startswith("user_feature_0=")]
    assert log[onehot].sum(axis=1).eq(1.0).all()
    items = pd.read_parquet(tmp_path / "obd.items.parquet")
    assert items["action"].tolist() == [f"item_{k}" for k in range(80)]
    # The CLI picks the item list up beside the log: a context-free (A, L) table works.
    data = read_logs(out, action_names=items["action"].tolist())
    assert data.n_actions == 80 and data.n_positions == 3
    table = tmp_path / "uniform80.npy"
    np.save(table, np.full((80, 3), 1 / 80))
    code, text, _ = run(
        [
            "ope",
            "--logs",
            str(out),
            "--target-probs",
            str(table),
            "--estimators",
            "ipw,snipw",
            "--json",
        ],
        capsys,
    )
    assert code == 0
    values = {e["estimator"]: e["value"] for e in json.loads(text)["estimates"]}
    assert values["ipw"] == pytest.approx(raw["click"].mean(), rel=1e-9)


def test_import_obd_needs_one_campaign(tmp_path, capsys):
    folder = tmp_path / "random"
    shutil.copytree(OBD / "random", folder)
    shutil.copy(folder / "all.csv", folder / "men.csv")
    code, _, err = run(
        ["logs", "import-obd", str(folder), "--out", str(tmp_path / "x.parquet")], capsys
    )
    assert code == 2 and "--campaign" in err
    code, _, _ = run(
        ["logs", "import-obd", str(folder), "--campaign", "men", "--out", str(tmp_path / "x.csv")],
        capsys,
    )
    assert code == 0 and (tmp_path / "x.items.csv").is_file()
