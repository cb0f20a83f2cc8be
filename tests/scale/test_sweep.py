"""Sweeps on Ray Tune: the plan, its checks, the table against serial runs, kill and resume."""

from __future__ import annotations

import glob
import json
import os
import pickle
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from campaignrl.experiments import AgentSpec
from campaignrl.policies.artifacts import load_policy
from campaignrl.runs import run_one, summarize
from campaignrl.scale.sweep import (
    DONE,
    METRICS,
    SweepSpec,
    load_sweep,
    plan_trials,
    read_trial_record,
    sweep_experiment,
    trial_record,
    write_trial_record,
)

TINY: dict[str, Any] = {
    "name": "tiny-sweep",
    "world": "retail",
    "horizon": 4,
    "seeds": [0, 1],
    "eval_customers": 300,
    "training_evals": 0,
    "agents": [
        {"agent": "no-contact"},
        {
            "agent": "ucb1",
            "timesteps": 800,
            "train_customers": 200,
            "params": {"epsilon": 0.05, "alpha": 1.0},
        },
    ],
    "sweep": {"agents": {"ucb1": {"grid": {"epsilon": [0.0, 0.1, 0.3], "alpha": [0.5, 2.0]}}}},
}
"""6 trials of a cheap bandit on a 4-period world (the baseline is not swept: not run)"""


def _write(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _serial_row(config: Any, spec: dict[str, Any]) -> pd.Series:
    """The trial's row as an experiment of that one setting gives it: the known answer."""
    experiment = config.model_copy(update={"agents": [AgentSpec.model_validate(spec)]})
    agent = experiment.agents[0]
    return summarize([run_one(agent, s, experiment) for s in experiment.seeds], experiment).iloc[0]


# ------------------------------------------------------------------------------- the plan


def test_plan_crosses_grid_with_seeded_draws(tmp_path: Path) -> None:
    raw = {
        **TINY,
        "sweep": {
            "seed": 7,
            "agents": {
                "ucb1": {
                    "grid": {"epsilon": [0.0, 0.2]},
                    "random": {
                        "alpha": {"loguniform": [0.1, 10.0]},
                        "warmup_periods": {"integers": [1, 3]},
                        "per_segment": {"choices": [True, False]},
                    },
                    "samples": 5,
                }
            },
        },
    }
    config, _, trials = load_sweep(_write(tmp_path / "s.yaml", raw))
    assert [t.index for t in trials] == list(range(10))
    assert [t.settings["epsilon"] for t in trials] == [0.0, 0.2] * 5  # the grid varies fastest
    draws = [trials[2 * k].settings for k in range(5)]
    for k in range(5):  # one draw per sample, shared by its grid points
        assert {**trials[2 * k + 1].settings, "epsilon": 0.0} == draws[k]
    # the draws are numpy's, from default_rng([seed, agent position]), in the order written
    rng = np.random.default_rng([7, 1])
    for d in draws:
        assert d["alpha"] == float(np.exp(rng.uniform(np.log(0.1), np.log(10.0))))
        assert d["warmup_periods"] == int(rng.integers(1, 3, endpoint=True))
        assert d["per_segment"] == [True, False][int(rng.integers(2))]
    assert all(t.spec["params"]["alpha"] == t.settings["alpha"] for t in trials)
    assert all(t.spec["timesteps"] == 800 for t in trials)  # unswept fields kept
    again = plan_trials(config, SweepSpec.model_validate(raw["sweep"]))
    assert again == trials
    other = plan_trials(config, SweepSpec.model_validate({**raw["sweep"], "seed": 8}))
    assert [t.settings for t in other] != [t.settings for t in trials]


_BAD = [
    ({"grid": {"epsilon": [0.1, 1.5]}}, "sweep.agents.ucb1.grid.epsilon: must be <= 1.0, got 1.5"),
    ({"grid": {"epsilon": ["a"]}}, "sweep.agents.ucb1.grid.epsilon: must be of type int or float"),
    ({"grid": {"epsilonx": [0.1]}}, "sweep.agents.ucb1.grid.epsilonx: unknown setting for agent"),
    ({"grid": {"timesteps": [-5]}}, "sweep.agents.ucb1.grid.timesteps: Input should be greater"),
    ({"grid": {"epsilon": []}}, "sweep.agents.ucb1.grid.epsilon: List should have at least 1"),
    (
        {"random": {"alpha": {"uniform": [-1, 2]}}},
        "sweep.agents.ucb1.random.alpha: uniform allows -1: must be >= 0.0, got -1",
    ),
    (
        {"random": {"alpha": {"loguniform": [0, 1]}}},
        "sweep.agents.ucb1.random.alpha.loguniform: needs 0 < low, got [0, 1]",
    ),
    (
        {"random": {"alpha": {"uniform": [1, 2], "choices": [1]}}},
        "sweep.agents.ucb1.random.alpha: give exactly one of choices, uniform",
    ),
    ({"random": {"alpha": {"normal": [0, 1]}}}, "sweep.agents.ucb1.random.alpha.normal: unknown"),
    (
        {"grid": {"epsilon": [0.1]}, "random": {"epsilon": {"uniform": [0, 1]}}},
        "sweep.agents.ucb1.random.epsilon: also in grid",
    ),
    ({"grid": {"epsilon": [0.1]}, "samples": 3}, "sweep.agents.ucb1.samples: 3 repeats random"),
    ({}, "sweep.agents.ucb1: give a grid and/or random settings to sweep"),
    ({"grid": {"epsilon": [0.1]}, "smaples": 3}, "sweep.agents.ucb1.smaples: unknown key"),
    (
        {"grid": {"epsilon": list(np.linspace(0, 1, 101)), "alpha": list(range(100))}},
        "sweep.agents: 10,100 trials planned, over 10,000",
    ),
]


@pytest.mark.parametrize(("entry", "message"), _BAD)
def test_bad_sweep_names_the_key_and_value(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    raw = {**TINY, "sweep": {"agents": {"ucb1": entry}}}
    path = _write(tmp_path / "bad.yaml", json.loads(json.dumps(raw, default=float)))
    with pytest.raises(ValueError, match=re.escape(f"experiment file {str(path)!r}: {message}")):
        load_sweep(path)


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (None, "sweep: missing; a sweep needs a `sweep:` section"),
        ({"agents": {"ppo": {"grid": {"epsilon": [0.1]}}}}, "sweep.agents.ppo: no agent labelled"),
        ({"agents": {"no-contact": {"grid": {"x": [1]}}}}, "sweep.agents.no-contact.grid.x: unk"),
        ({"agents": {}}, "sweep.agents: Dictionary should have at least 1 item"),
        ({"agents": {"ucb1": {"grid": {"epsilon": [0.1]}}}, "sed": 1}, "sweep.sed: unknown key"),
        ({"agents": {"ucb1": {"grid": {"epsilon": [0.1]}}}, "seed": -1}, "sweep.seed: Input"),
    ],
)
def test_bad_sweep_section(tmp_path: Path, sweep: Any, message: str) -> None:
    raw = {k: v for k, v in TINY.items() if k != "sweep"}
    if sweep is not None:
        raw["sweep"] = sweep
    path = _write(tmp_path / "bad.yaml", raw)
    with pytest.raises(ValueError, match=re.escape(f"experiment file {str(path)!r}: {message}")):
        load_sweep(path)


def test_experiment_errors_keep_their_names(tmp_path: Path) -> None:
    raw = {**TINY, "horizon": 0}
    with pytest.raises(ValueError, match=r"'\S+': horizon: Input should be greater than or"):
        load_sweep(_write(tmp_path / "bad.yaml", raw))


def test_sweep_cli_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from campaignrl import cli

    parser = cli._build_parser()
    commands: Any = next(a for a in parser._actions if a.dest == "command").choices
    experiment = commands["experiment"]
    sub: Any = next(a for a in experiment._actions if a.dest == "experiment_command").choices
    assert "sweep" in sub  # registered in campaignrl/cli.py
    path = _write(tmp_path / "bad.yaml", {**TINY, "sweep": {"agents": {"ucb1": {"grid": {}}}}})
    code = cli.main(["experiment", "sweep", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        f"campaignrl: error: experiment file {str(path)!r}: sweep.agents.ucb1: give a grid "
        "and/or random settings to sweep"
    ]


def test_sweep_parser() -> None:
    import argparse

    from campaignrl.scale.sweep_cli import add_sweep_parser

    parser = argparse.ArgumentParser()
    add_sweep_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", "c.yaml", "--out", "o", "--ray", "auto"])
    assert (args.config, args.out, args.ray, args.overwrite) == (
        Path("c.yaml"),
        Path("o"),
        "auto",
        False,
    )
    assert callable(args.handler)
    with pytest.raises(SystemExit):  # --out is required
        parser.parse_args(["sweep", "c.yaml"])


def test_core_does_not_import_ray() -> None:
    code = (
        "import sys, campaignrl.cli, campaignrl.experiments, campaignrl.scale.sweep, "
        "campaignrl.scale.sweep_cli; print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_out_holding_another_plan_or_other_files_is_refused(tmp_path: Path) -> None:
    config, sweep, _ = load_sweep(_write(tmp_path / "s.yaml", TINY))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="holds no campaignrl sweep"):
        sweep_experiment(config, sweep, other)
    assert (other / "notes.txt").read_text() == "mine"
    previous = tmp_path / "previous"
    previous.mkdir()
    manifest = {"format": "campaignrl-sweep", "plan": "0" * 64, "files": ["sweep.json"]}
    (previous / "sweep.json").write_text(json.dumps(manifest))
    with pytest.raises(FileExistsError, match=r"holds a sweep of another plan.*--overwrite"):
        sweep_experiment(config, sweep, previous)


_HASH = "ab" * 32
_RESULT = {
    "value_per_customer": 1.25,
    "ci95_low": 0.5,
    "ci95_high": 2.0,
    "seed_sd": 0.1,
    "contact_rate": 0.4,
    "timesteps": 800,
    "n_seeds": 2,
    "eval_customers": 600,
    "seed_values": [1.2, 1.3],
    "training_iteration": 1,  # Tune's own keys are not recorded
}


def _tampered(record: dict[str, Any], change: str) -> str:
    """The record's JSON text with one kind of damage."""
    r = json.loads(json.dumps(record))
    if change == "truncated":
        return json.dumps(r)[:40]
    if change == "nan":
        return json.dumps(r).replace("1.25", "NaN")
    if change == "overflow":  # json reads 1e999 as inf
        return json.dumps(r).replace("0.4", "1e999")
    if change == "plan":
        r["plan"] = "cd" * 32
    elif change == "index":
        r["trial"] = 4
    elif change == "settings":
        r["settings"]["epsilon"] = 0.5
    elif change == "int-as-float":  # 0.0 and 0 differ: settings compare as JSON text
        r["settings"]["epsilon"] = 0
    elif change == "string":
        r["metrics"]["value_per_customer"] = "1.25"
    elif change == "bool":
        r["metrics"]["n_seeds"] = True
    elif change == "missing":
        del r["metrics"]["seed_sd"]
    elif change == "extra":
        r["pickle"] = "gASV"
    elif change == "interval":
        r["metrics"]["value_per_customer"] = 9.0
    elif change == "seeds":
        r["seed_values"] = [1.2]
    elif change == "list":
        r = [r]
    return json.dumps(r)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("truncated", "not valid JSON"),
        ("nan", "not valid JSON: holds NaN, which is not a finite number"),
        ("overflow", "metrics.contact_rate: must be a finite number, got inf"),
        ("plan", "plan: of another plan"),
        ("index", "trial: must be 1, got 4"),
        ("settings", 'settings: must be {"alpha":2.0,"epsilon":0.0}, got'),
        ("int-as-float", 'settings: must be {"alpha":2.0,"epsilon":0.0}, got'),
        ("string", "metrics.value_per_customer: must be a finite number, got '1.25'"),
        ("bool", "metrics.n_seeds: must be an integer, got True"),
        ("missing", "metrics: keys must be"),
        ("extra", "not a trial record: keys must be"),
        ("interval", "metrics: value_per_customer 9.0 is outside its interval [0.5, 2.0]"),
        ("seeds", "seed_values: must be 2 finite numbers, got [1.2]"),
        ("list", "not a trial record: keys must be"),
    ],
)
def test_trial_record_round_trip_and_tampering(tmp_path: Path, change: str, reason: str) -> None:
    trials = plan_trials(*load_sweep(_write(tmp_path / "s.yaml", TINY))[:2])
    trial = trials[1]
    assert trial.settings == {"epsilon": 0.0, "alpha": 2.0}
    assert read_trial_record(tmp_path, _HASH, trial, 2) is None  # no record yet
    record = trial_record(_HASH, trial, _RESULT)
    path = write_trial_record(tmp_path, record)
    assert path == tmp_path / "trials" / "trial_1.json"
    assert not list(path.parent.glob(".*"))  # no temporary file left beside it
    got = read_trial_record(tmp_path, _HASH, trial, 2)
    assert got == record and set(got["metrics"]) == set(METRICS)
    assert got["metrics"]["value_per_customer"] == 1.25 and got["seed_values"] == [1.2, 1.3]
    assert read_trial_record(tmp_path, _HASH, trial, 3) == (
        "metrics.n_seeds: must be 3 (the experiment's seeds), got 2"
    )
    path.write_text(_tampered(record, change))
    refused = read_trial_record(tmp_path, _HASH, trial, 2)
    assert isinstance(refused, str) and refused.startswith(reason), refused


def test_trial_record_must_be_a_small_regular_file(tmp_path: Path) -> None:
    trials = plan_trials(*load_sweep(_write(tmp_path / "s.yaml", TINY))[:2])
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(trial_record(_HASH, trials[0], _RESULT)))
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / "trial_0.json").symlink_to(elsewhere)
    assert read_trial_record(tmp_path, _HASH, trials[0], 2) == "not a regular file"
    (tmp_path / "trials" / "trial_1.json").write_text(" " * 1_000_001)
    assert read_trial_record(tmp_path, _HASH, trials[1], 2) == "1,000,001 bytes, over 1,000,000"
    with pytest.raises(ValueError):  # a non-finite row is never written
        write_trial_record(tmp_path, trial_record(_HASH, trials[2], {**_RESULT, "seed_sd": np.nan}))


# ------------------------------------------------------------------------------ on Ray


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    ray.init(
        num_cpus=2,
        object_store_memory=100 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("cfg") / "tiny.yaml", TINY)


@pytest.fixture(scope="module")
def unkilled(local_ray: Any, tiny_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    config, sweep, _ = load_sweep(tiny_file)
    return sweep_experiment(config, sweep, tmp_path_factory.mktemp("sweep") / "out")


def test_sweep_table_equals_serial_runs(unkilled: Any, tiny_file: Path) -> None:
    config, _, trials = load_sweep(tiny_file)
    table = unkilled.table
    assert table.trial.tolist() == list(range(6))
    assert table.epsilon.tolist() == [0.0, 0.0, 0.1, 0.1, 0.3, 0.3]
    assert table.alpha.tolist() == [0.5, 2.0] * 3
    assert (table.n_seeds == 2).all() and (table.eval_customers == 600).all()
    for t in trials:  # the same code on the same inputs, one BLAS thread: the same digits
        want = _serial_row(config, t.spec)
        got = table.loc[t.index]
        for col in ("value_per_customer", "ci95_low", "ci95_high", "seed_sd", "contact_rate"):
            assert got[col] == want[col], (t.index, col)
    assert sorted(unkilled.ran) == list(range(6)) and not unkilled.failed
    best = int(table.value_per_customer.idxmax())
    assert unkilled.best == {"ucb1": best}
    assert table.best.tolist() == [i == best for i in range(6)]
    out = unkilled.out
    assert pd.read_csv(out / "sweep.csv").trial.tolist() == list(range(6))
    info = json.loads((out / "best" / "ucb1" / "best.json").read_text())
    assert info["trial"] == best and info["spec"] == trials[best].spec
    spec = AgentSpec.model_validate(trials[best].spec)
    for seed in (0, 1):  # the exported policy is the best trial's, byte for byte
        folder = out / "best" / "ucb1" / f"seed{seed}"
        load_policy(folder)
        result = run_one(spec, seed, config.model_copy(update={"agents": [spec]}))
        for name, data in result.artifact.items():
            if name != "manifest.json":  # the manifest records when it was made
                assert (folder / name).read_bytes() == data
    assert (out / "sweep_ucb1.png").stat().st_size > 1000
    assert (out / DONE).is_file()


def _session_processes(sid: int) -> list[int]:
    """Processes of session ``sid`` (the killed sweep's Ray, started in its own session)."""
    pids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after ") ": state, ppid, pgrp, session
            pids.append(int(Path(stat).parent.name))
    return pids


def _recorded(out: Path) -> set[int]:
    """Trials the killed driver recorded as finished (``trials/trial_<i>.json``)."""
    return {int(p.stem.removeprefix("trial_")) for p in (out / "trials").glob("trial_*.json")}


_KILLED_RUN = """
import sys, ray
ray.init(address=sys.argv[3], log_to_driver=False)  # the test's local Ray, as a second job
from campaignrl.scale.sweep import load_sweep, sweep_experiment
config, sweep, _ = load_sweep(sys.argv[1])
sweep_experiment(config, sweep, sys.argv[2])
"""


def test_killed_sweep_resumes_with_the_same_table(
    unkilled: Any, tiny_file: Path, tmp_path: Path, local_ray: Any
) -> None:
    out = tmp_path / "killed"
    address = local_ray.get_runtime_context().gcs_address
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(tiny_file), str(out), address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # whatever it starts shares its session: all killed below
    )
    lines: queue.Queue[str] = queue.Queue()

    def read(stream: Any) -> None:
        for x in stream:
            lines.put(x)

    threading.Thread(target=read, args=(proc.stderr,), daemon=True).start()
    seen: list[str] = []
    done, deadline = 0, time.monotonic() + 300  # generous: a loaded CI machine
    try:
        while done < 2:  # kill -9 once two trials have finished
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("no two trials finished in time; the sweep said:\n" + "".join(seen))
            seen.append(line)
            done += line.startswith("sweep: trial ")
        # the record is written before the line is printed: no wait needed
    finally:
        for pid in _session_processes(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / DONE).exists()
    before = _recorded(out)
    assert 2 <= len(before) < 6, before

    config, sweep, _ = load_sweep(tiny_file)
    resumed = sweep_experiment(config, sweep, out)  # the same folder: a new Tuner, the rest
    assert sorted(resumed.ran) == sorted(set(range(6)) - before)  # finished ones not rerun
    assert not resumed.refused
    pd.testing.assert_frame_equal(resumed.table, unkilled.table)
    assert (out / "sweep.csv").read_bytes() == (unkilled.out / "sweep.csv").read_bytes()
    assert resumed.best == unkilled.best and (out / DONE).is_file()


class _Touch:
    """A hostile pickle: loading it creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.path,))


def test_tampered_record_is_named_and_its_trial_rerun(
    unkilled: Any, tiny_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "tampered"
    shutil.copytree(unkilled.out, out)
    record = out / "trials" / "trial_2.json"
    text = record.read_text()
    value = json.loads(text)["metrics"]["value_per_customer"]
    record.write_text(text.replace(repr(value), "1e999", 1))  # json reads it as inf
    # Tune's pickles in the folder made hostile: unpickling one would create `marker`
    marker = tmp_path / "unpickled"
    pickles = list((out / "tune").rglob("*.pkl"))
    assert pickles  # Tune did write its own (scratch) state
    for p in pickles:
        p.write_bytes(pickle.dumps(_Touch(marker)))
    config, sweep, _ = load_sweep(tiny_file)
    again = sweep_experiment(config, sweep, out, progress=False)
    err = capsys.readouterr().err
    assert f"sweep: {record}: refused (metrics.value_per_customer: must be a finite" in err
    assert "trial 2 runs again" in err
    assert again.ran == (2,) and list(again.refused) == [2] and not again.failed
    assert (out / "sweep.csv").read_bytes() == (unkilled.out / "sweep.csv").read_bytes()
    assert record.read_bytes() == (unkilled.out / "trials" / "trial_2.json").read_bytes()
    assert not marker.exists()
    (out / "sweep.csv").unlink()
    complete = sweep_experiment(config, sweep, out, progress=False)  # every trial recorded
    assert complete.ran == () and not complete.refused and not complete.failed
    assert (out / "sweep.csv").read_bytes() == (unkilled.out / "sweep.csv").read_bytes()
