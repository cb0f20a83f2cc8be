"""The loop at small scale: serve, decide over HTTP, reward, export, OPE, swap (issue #11).

One real ``campaignrl serve`` process; every figure checked against what was sent and what
the simulator knows.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from campaignrl.cli import main
from campaignrl.envs import CampaignVectorEnv
from campaignrl.logs import read_logs
from campaignrl.policies import ConstantPolicy, Exploration, LinearPolicy, save_policy
from campaignrl.service.loop import (
    LoopConfig,
    ServiceClient,
    run_loop,
    served_policy,
    start_server,
    upload_policy,
)

EPSILON = 0.5


def _policies(root: Path) -> tuple[Path, Path]:
    env = CampaignVectorEnv(1, world="retail")
    features, actions = env.encoder.feature_names, env.action_names
    # A: a linear policy that mostly holds back (no_contact gets +2 through the segment
    # one-hot, which sums to 1), and contacts where its random weights say so.
    beta = np.random.default_rng(5).standard_normal((len(actions), len(features)))
    beta[0, [i for i, f in enumerate(features) if f.startswith("segment=")]] += 2.0
    a = LinearPolicy(features, actions, beta, exploration=Exploration("greedy", epsilon=0.05))
    scores = -np.arange(len(actions), dtype=np.float64)
    scores[actions.index("bundle@email")] = 5.0
    b = ConstantPolicy(features, actions, scores, Exploration("greedy", epsilon=0.05))
    return save_policy(a, root / "A"), save_policy(b, root / "B")


def test_loop_closes_at_small_scale(tmp_path):
    policy_a, policy_b = _policies(tmp_path)
    lines: list[str] = []
    config = LoopConfig(
        policy_a=policy_a, policy_b=policy_b, epsilon=EPSILON, customers=600, periods=4,
        batch=250, seed=3, window_seconds=1.0, truth_customers=0, bootstrap=200,
        out=tmp_path / "loop",
    )  # fmt: skip
    result = run_loop(config, say=lines.append, record=True)
    rec = result.record
    assert rec is not None and result.log_path is not None

    # Every decision posted is exported once, with what the service answered.
    assert result.decisions == result.exported == 2400 == len(rec.decision_ids)
    assert result.late_rewards == 0
    assert result.rewards_posted == int((rec.rewards != 0).sum()) > 0
    log = pd.read_parquet(result.log_path).set_index("decision_id")
    assert sorted(log.index) == sorted(rec.decision_ids)
    log = log.loc[list(rec.decision_ids)]
    env = CampaignVectorEnv(1, world="retail")
    names = np.asarray(env.action_names, dtype=object)
    assert (log["action"].to_numpy() == names[rec.actions]).all()
    np.testing.assert_array_equal(log["propensity"].to_numpy(), rec.propensities)
    # Zero profits were not posted: the default reward (0) stands for them, exactly.
    np.testing.assert_array_equal(log["reward"].to_numpy(), rec.rewards)
    np.testing.assert_array_equal(log[list(env.encoder.feature_names)].to_numpy(), rec.features)
    allowed = log[[f"allowed={a}" for a in env.action_names]].to_numpy()
    np.testing.assert_array_equal(allowed, rec.masks)
    assert log["customer_id"].nunique() == 600 and not log["customer_id"].str.startswith("s3").any()
    assert (rec.versions == 1).all()
    read_logs(result.log_path, action_names=env.action_names)  # the schema OPE reads

    # Propensities are the served probabilities: A with the service's epsilon, under the masks.
    from campaignrl.policies import load_policy

    a_served = served_policy(load_policy(policy_a), EPSILON)
    probs = a_served.probabilities(rec.features, rec.masks)
    rows = np.arange(len(rec.actions))
    np.testing.assert_allclose(probs[rows, rec.actions], rec.propensities, rtol=1e-12)
    assert rec.masks[rows, rec.actions].all()
    # Exploration is on: every allowed action has at least EPSILON / (allowed actions).
    assert (rec.propensities >= EPSILON / rec.masks.sum(axis=1) - 1e-12).all()

    # OPE of the logging policy itself: its interval holds its value on the visited states
    # (exact expected profits from the simulator), and its estimate is the realized mean.
    est_a = result.estimate_a
    assert est_a["ci_low"] <= result.in_sample["A"] <= est_a["ci_high"]
    assert est_a["value"] == pytest.approx(result.realized_a, abs=0.05)
    assert est_a["diagnostics"]["mean_weight"] == pytest.approx(1.0)
    est_b = result.estimate_b
    assert est_b["ci_low"] <= result.in_sample["B"] <= est_b["ci_high"]

    # B is swapped in exactly when its estimate beats A's. (B, bundle@email first, is truly
    # better: 1.72 against 1.62 per decision over 4 weeks, from 20,000 simulated customers; at
    # 2,400 decisions the estimates cannot always tell, so only the rule is checked here.)
    assert result.swapped == (est_b["value"] > est_a["value"])
    assert result.served_version == (2 if result.swapped else 1)
    assert any(line.startswith("$ campaignrl logs export") for line in lines)

    # The server is stopped.
    client = ServiceClient("127.0.0.1", int(result.service_url.rsplit(":", 1)[1]), timeout=2)
    with pytest.raises((OSError, http.client.HTTPException)):
        client.get("/healthz")


def test_upload_swaps_in_and_the_server_stops(tmp_path):
    policy_a, policy_b = _policies(tmp_path)
    with start_server(
        policy_a, tmp_path / "service", epsilon=EPSILON, seed=0, window_seconds=1.0
    ) as server:
        client = server.client
        assert client.get("/v1/policy")["kind"] == "linear"
        # The server closes a keep-alive connection idle for 5 s; the upload (never sent
        # twice) must not go out on it.
        time.sleep(5.5)
        answer = upload_policy(client, policy_b)
        assert (answer["version"], answer["kind"], answer["history"]) == (2, "constant", [1, 2])
        row = dict.fromkeys(answer["feature_names"], 0.0)
        decided = client.post("/v1/decisions", {"customer_id": "c", "features": row})
        assert decided["policy_version"] == 2
        process = server.process
    assert process.returncode == 0  # SIGTERM: drained, exit code 0
    assert "c" not in (tmp_path / "service" / "server.log").read_text().split()


@pytest.mark.parametrize(
    ("field", "value", "error", "match"),
    [
        ("epsilon", 1.5, ValueError, r"`epsilon` must be in \[0.0, 1.0\], got 1.5"),
        ("customers", 1, ValueError, r"`customers` must be >= 2, got 1"),
        ("customers", 10.0, TypeError, r"`customers` must be an integer, got float 10.0"),
        ("periods", True, TypeError, r"`periods` must be an integer, got bool True"),
        ("bootstrap", 50, ValueError, r"`bootstrap` must be >= 100, got 50"),
        ("window_seconds", 0, ValueError, r"`window_seconds` must be > 0, got 0"),
        ("interval", "t", ValueError, r"`interval` must be studentized, bootstrap or normal"),
        ("world", "shop", ValueError, r"`world` must be a preset world, got 'shop'"),
    ],
)
def test_loop_config_refuses_bad_values(field, value, error, match):
    with pytest.raises(error, match=match):
        LoopConfig(**{field: value})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epsilon", "2"], "argument --epsilon: must be a number in [0, 1], got '2'"),
        (["--customers", "1"], "argument --customers: must be an integer >= 2, got '1'"),
        (["--bootstrap", "10"], "argument --bootstrap: must be an integer >= 100, got '10'"),
    ],
)
def test_loop_command_refuses_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(["loop", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
