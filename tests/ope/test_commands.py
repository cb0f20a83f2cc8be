"""``campaignrl ope`` and ``campaignrl logs import-obd``: JSON output, bad arguments, OBD import."""

from __future__ import annotations

import contextlib
import json
import re
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
            "--bootstrap", "100", "--json",
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
            "--estimators", "pdis,wpdis,sdr,fqe", "--gamma", "0.9", "--bootstrap", "100",
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
    code, out, _ = run([*argv, "--bootstrap", "100"], capsys)
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


# --------------------------------------------------------------------------------------------
# Hostile logs through the CLI: exit 2 and one line naming the column, the row and the value
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_frame(sim_log) -> pd.DataFrame:
    return pd.read_parquet(sim_log)


def _set_cell(column: str, value: object, dtype: object = object):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        if column not in frame.columns:
            frame[column] = 0
        frame[column] = frame[column].astype(dtype)
        frame.at[7, column] = value
        return frame

    return change


def _integer_actions(value: object):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        from campaignrl.catalog import default_catalog

        codes = np.asarray(default_catalog().action_indices(list(frame["action"])), dtype=float)
        codes[7] = value  # type: ignore[call-overload]
        frame["action"] = codes if value != int(value) else codes.astype(np.int64)  # type: ignore[call-overload]
        return frame

    return change


def _as_csv(change):
    return lambda frame, path: change(frame).to_csv(path.with_suffix(".csv"), index=False)


def _as_parquet(change):
    return lambda frame, path: change(frame).to_parquet(path.with_suffix(".parquet"), index=False)


def _raw(suffix: str, make):
    def write(frame: pd.DataFrame, path: Path) -> None:
        path.with_suffix(suffix).write_bytes(make(frame))

    return write


def _dup_header(frame: pd.DataFrame) -> bytes:
    text = frame.to_csv(index=False)
    header, rest = text.split("\n", 1)
    names = header.split(",")
    names[-1] = names[-2]
    return (",".join(names) + "\n" + rest).encode()


def _bad_utf8(frame: pd.DataFrame) -> bytes:
    lines = frame.to_csv(index=False).encode().split(b"\n")
    fields = lines[8].split(b",")  # data row 7 is line 9
    fields[2] = fields[2] + b"\xff"  # customer_id
    lines[8] = b",".join(fields)
    return b"\n".join(lines)


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.head(20).to_parquet(buffer, index=False)
    return buffer.getvalue()


HOSTILE_CLI = [
    ("list action", _raw(".parquet", lambda f: _list_action_parquet()),
     r"argument --logs: column `action` must hold single values, not lists or structs: "
     r"row 0 has \['no_contact'\]"),
    ("position 1e12", _as_parquet(_set_cell("position", 10**12, np.int64)),
     r"column `position` must hold slot indices in \[0, 18\] .*: row 7 has 1000000000000"),
    ("boolean propensity", _as_parquet(lambda f: f.assign(propensity=True)),
     r"column `propensity` must be a number in \(0, 1\], not a boolean: row 0 has True"),
    ("duplicate column names", _raw(".csv", _dup_header),
     r"column `.*` appears twice in '.*' \(columns \d+ and \d+, counting from 0\)"),
    ("Position", _as_parquet(lambda f: f.assign(Position=1)),
     r"column `Position` is not a schema column: did you mean 'position'\?"),
    ("Reward", _as_csv(lambda f: f.rename(columns={"reward": "Reward"})),
     r"column `Reward` is not a schema column: did you mean 'reward'\?"),
    ("step 2**63", _as_csv(_set_cell("step", str(2**63))),
     r"column `step` must hold non-negative integers below 2\*\*63: "
     r"row 7 has '9223372036854775808'"),
    ("invalid UTF-8", _raw(".csv", _bad_utf8),
     r"column `customer_id` must be UTF-8 text: row 7 \(line 9 of the file, the header being "
     r"line 1\) has b'.*\\xff'"),
    ("unknown action name", _as_parquet(_set_cell("action", "pct99@fax")),
     r"column `action` must name a known action \(no_contact, .*\) or an index: "
     r"row 7 has 'pct99@fax' \(the action names were guessed: pass --actions"),
    ("action -1", _as_csv(_integer_actions(-1)),
     r"column `action` must be an action index in \[0, 18\]: row 7 has -1"),
    ("action 1.5", _as_csv(_integer_actions(1.5)),
     r"column `action` must be an action index in \[0, 18\]: row 7 has 1.5"),
    ("header only", _as_csv(lambda f: f.head(0)),
     r"argument --logs: the log is empty: '.*' has no rows"),
    ("zero rows", _as_parquet(lambda f: f.head(0)), r"the log is empty: '.*' has no rows"),
    ("feature 1e308", _as_parquet(_set_cell("monetary", 1e308, np.float64)),
     r"column `monetary` must be a finite number of magnitude at most 1e\+12: row 7 has 1e\+308"),
    ("Parquet in a .csv", _raw(".csv", _parquet_bytes),
     r"argument --logs: `source` '.*' looks like Parquet, not CSV: rename it to .parquet"),
    ("propensity 1e-320", _as_parquet(_set_cell("propensity", 1e-320, np.float64)),
     r"`propensity` at row 7 is 1e-320: the importance weight 0.0526316 / 1e-320 overflows"),
]  # fmt: skip


def _list_action_parquet() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    table = pa.table(
        {"action": pa.array([["no_contact"]] * 3), "propensity": [0.5] * 3, "reward": [1.0] * 3}
    )
    pq.write_table(table, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("write", "match"), [h[1:] for h in HOSTILE_CLI], ids=[h[0] for h in HOSTILE_CLI]
)
def test_hostile_logs_exit_2_with_one_line(sim_frame, uniform, tmp_path, capsys, write, match):
    write(sim_frame, tmp_path / "log")
    (path,) = tmp_path.glob("log.*")
    code, out, err = run(
        ["ope", "--logs", str(path), "--target-probs", str(uniform), "--bootstrap", "100"], capsys
    )
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("campaignrl: error: "), err
    assert "Traceback" not in err
    assert err.isascii() and err.strip().isprintable(), err  # no raw bytes
    assert re.search(match, err), err


@pytest.mark.parametrize("bootstrap", ["0", "1", "99"])
def test_too_few_resamples_are_refused(sim_log, uniform, capsys, bootstrap):
    code, _, err = run(
        ["ope", "--logs", str(sim_log), "--target-probs", str(uniform), "--bootstrap", bootstrap],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1
    assert "argument --bootstrap: must be an integer >= 100 (fewer cannot place the 2.5% " in err
    assert f"got '{bootstrap}'" in err


def test_normal_intervals_need_no_resamples(sim_log, uniform, capsys):
    argv = ["ope", "--logs", str(sim_log), "--target-probs", str(uniform), "--json"]
    code, out, _ = run([*argv, "--estimators", "ipw", "--interval", "normal"], capsys)
    assert code == 0
    (row,) = json.loads(out)["estimates"]
    assert row["method"] == "normal" and row["ci_low"] < row["value"] < row["ci_high"]


def test_integer_actions_take_the_action_count_from_the_table(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 300
    actions = rng.integers(0, 6, n)
    frame = pd.DataFrame(
        {"action": actions, "propensity": 1 / 6, "reward": rng.normal(size=n) + actions}
    )
    log = tmp_path / "six.csv"
    frame.to_csv(log, index=False)
    table = tmp_path / "six.npy"
    target = np.array([0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    np.save(table, target)
    argv = ["ope", "--logs", str(log), "--target-probs", str(table), "--estimators", "ipw"]
    code, out, err = run([*argv, "--interval", "normal", "--json"], capsys)
    assert code == 0, err
    (row,) = json.loads(out)["estimates"]
    expected = float(np.mean(target[actions] * 6 * frame["reward"]))
    assert row["value"] == pytest.approx(expected, rel=1e-12)
    # an index beyond the table's actions is named by row and value
    frame.loc[7, "action"] = 6
    frame.to_csv(log, index=False)
    code, _, err = run(argv, capsys)
    assert code == 2
    assert "column `action` must be an action index in [0, 5]: row 7 has 6" in err


# --------------------------------------------------------------------------------------------
# OPE never reports a confident number it does not have
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def never_logged(sim_frame) -> int:
    from campaignrl.catalog import default_catalog

    logged = set(default_catalog().action_indices(list(sim_frame["action"])))
    return min(set(range(19)) - logged)


def test_a_target_no_logged_row_supports_is_refused(sim_log, never_logged, tmp_path, capsys):
    table = tmp_path / "unsupported.npy"
    probs = np.zeros(19)
    probs[never_logged] = 1.0
    np.save(table, probs)
    argv = ["ope", "--logs", str(sim_log), "--target-probs", str(table), "--estimators"]
    code, out, err = run([*argv, "ipw,snipw,dm,dr", "--json"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "no logged decision supports the target: it gives probability 0 to the logged " in err
    assert "at all 240 rows" in err


def test_warnings_reach_the_json_and_the_table(sim_log, never_logged, tmp_path, capsys):
    table = tmp_path / "half.npy"
    probs = np.full(19, 0.5 / 18)
    probs[never_logged] = 0.5
    np.save(table, probs)
    argv = ["ope", "--logs", str(sim_log), "--target-probs", str(table), "--estimators", "ipw"]
    code, out, _ = run([*argv, "--interval", "normal", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    warnings = result["warnings"]
    assert any(w.startswith("the target puts 72.0% of its probability on actions the log never")
               for w in warnings)  # fmt: skip
    assert any(w.startswith("effective sample size 62.53 is under 100 rows") for w in warnings)
    assert any(w.startswith("mean importance weight 0.298 is far from 1") for w in warnings)
    assert "warnings" not in result["diagnostics"]
    code, out, _ = run([*argv, "--interval", "normal"], capsys)
    assert code == 0
    lines = out.replace("\n", " ")
    assert "warning: the target puts 72.0% of its probability" in lines
    assert "warning: effective sample size 62.53" in lines


def test_a_masked_policy_on_a_log_without_masks_is_warned_about(
    sim_log, sim_frame, policy_dir, tmp_path, capsys
):
    plain = tmp_path / "plain.parquet"
    sim_frame.drop(columns=[c for c in sim_frame.columns if c.startswith("allowed=")]).to_parquet(
        plain, index=False
    )
    argv = ["ope", "--policy", str(policy_dir), "--estimators", "ipw", "--interval", "normal"]
    code, out, _ = run([*argv, "--logs", str(plain), "--json"], capsys)
    assert code == 0
    assert any(w.startswith("the log has no allowed=<action> columns, but the target decides "
                            "under action masks") for w in json.loads(out)["warnings"])  # fmt: skip
    # the simulated log records the masks: the policy is evaluated under them, no warning
    code, out, _ = run([*argv, "--logs", str(sim_log), "--json"], capsys)
    assert code == 0
    assert not any("allowed=<action>" in w for w in json.loads(out)["warnings"])


def test_a_clean_evaluation_has_no_warnings(tmp_path, capsys):
    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame(
        {
            "action": [f"arm{k}" for k in rng.integers(0, 3, n)],
            "propensity": 1 / 3,
            "reward": rng.normal(size=n),
        }
    )
    log = tmp_path / "arms.parquet"
    frame.to_parquet(log, index=False)
    table = tmp_path / "t.npy"
    np.save(table, np.array([0.2, 0.3, 0.5]))
    code, out, err = run(
        ["ope", "--logs", str(log), "--target-probs", str(table), "--estimators", "ipw",
         "--interval", "normal", "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["warnings"] == []


def test_progress_covers_the_reward_model_and_the_intervals(sim_log, uniform, monkeypatch, capsys):
    from campaignrl.ope import commands

    bars: list[list] = []

    @contextlib.contextmanager
    def recording_bar(description, total, enabled=True):
        bar = [description, total, 0]
        bars.append(bar)

        def advance(n):
            bar[2] += n

        yield advance

    monkeypatch.setattr(commands, "progress_bar", recording_bar)
    argv = ["ope", "--logs", str(sim_log), "--target-probs", str(uniform), "--json"]
    code, out, _ = run([*argv, "--estimators", "ipw,dr", "--reward-model", "ridge",
                        "--bootstrap", "100"], capsys)  # fmt: skip
    assert code == 0
    json.loads(out)  # stdout stays one JSON object
    assert [b[0] for b in bars] == [
        "fitting the reward model (ridge, 3 folds)",
        "estimating (100 resamples)",
    ]
    assert bars[0][1] == 3 * (1 + 19) and bars[1][1] == 2
    assert all(done == total for _, total, done in bars)
    bars.clear()
    code, out, _ = run([*argv, "--sequential", "--estimators", "pdis,fqe", "--bootstrap", "100"],
                       capsys)  # fmt: skip
    assert code == 0
    assert [b[0] for b in bars] == ["fitting Q (ridge, 3 folds)", "estimating (100 resamples)"]
    assert bars[0][1] == 3 * 4 and all(done == total for _, total, done in bars)


def test_the_cli_builds_every_estimator_of_the_registries(sim_log, uniform, capsys):
    from campaignrl.ope.commands import BANDIT_NAMES, SEQUENTIAL_NAMES
    from campaignrl.ope.estimators import ESTIMATORS
    from campaignrl.ope.sequential import SEQUENTIAL_ESTIMATORS

    assert set(BANDIT_NAMES) == set(ESTIMATORS) and set(SEQUENTIAL_NAMES) == set(
        SEQUENTIAL_ESTIMATORS
    )
    code, out, _ = run(["ope", "--help"], capsys)
    assert code == 0 and "--estimators" in out and "dr-os" in out
    # flags reach the estimator's fields: clipping at 1e-9 makes every ipw weight tiny
    argv = ["ope", "--logs", str(sim_log), "--target-probs", str(uniform), "--json"]
    argv += ["--estimators", "ipw", "--interval", "normal"]
    code, out, err = run([*argv, "--clip", "1e-9"], capsys)
    assert code == 0, err
    clipped = json.loads(out)["estimates"][0]["value"]
    code, out, _ = run(argv, capsys)
    assert abs(clipped) < 1e-6 < abs(json.loads(out)["estimates"][0]["value"])
