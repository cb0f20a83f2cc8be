"""benchmarks/obd_protocol.py on the trimmed OBD copy: it runs, and its IPS is the hand value."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

OBD = Path(__file__).resolve().parents[1] / "data" / "obd"
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "obd_protocol.py"


@pytest.fixture(scope="module")
def protocol():
    spec = importlib.util.spec_from_file_location("obd_protocol", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_runs_and_ips_is_the_hand_computation(protocol, capsys):
    assert protocol.main(["--data", str(OBD), "--bootstrap", "100", "--reward-model", "ridge"]) == 0
    out = capsys.readouterr().out
    assert "| ipw |" in out and "relative error" in out

    result = protocol.run_protocol(OBD, n_bootstrap=100, reward_model="ridge")
    random = pd.read_csv(OBD / "random" / "all.csv", index_col=0)
    bts = pd.read_csv(OBD / "bts" / "all.csv", index_col=0)
    # Hand: BTS's frequency of (item, position) among its rows at that position.
    counts = bts.groupby(["item_id", "position"]).size()
    per_position = bts.groupby("position").size()
    pi = np.array(
        [
            counts.get((item, pos), 0) / per_position[pos]
            for item, pos in zip(random["item_id"], random["position"], strict=True)
        ]
    )
    ips = float(np.mean(pi / random["propensity_score"] * random["click"]))
    value = {r["estimator"]: r["value"] for r in result["estimates"]}["ipw"]
    assert value == ips
    assert result["truth"] == bts["click"].mean()
    assert result["table"].sum(axis=0) == pytest.approx(np.ones(3))
