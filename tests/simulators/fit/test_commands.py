"""The fit-sim command: arguments, output directory, refusals as one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pytest

from campaignrl.simulators import load_world
from campaignrl.simulators.fit.commands import add_parser


class _Parser(argparse.ArgumentParser):
    """Like the campaignrl parser: one-line errors, exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"campaignrl: error: {message}\n")


def _run(argv: list[str]) -> int:
    parser = _Parser(prog="campaignrl")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_parser(sub, _Parser)
    args = parser.parse_args(argv)
    return int(args.handler(args))


@pytest.fixture(scope="module")
def small_log(fit_log: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "logs.parquet"
    fit_log[fit_log["customer_id"] < fit_log["customer_id"].iloc[1500]].to_parquet(path)
    return path


def test_fit_sim_writes_a_simdir(small_log: Path, tmp_path: Path, capsys):
    out = tmp_path / "sim"
    code = _run(["fit-sim", "--logs", str(small_log), "--out", str(out), "--segments", "5"])
    assert code == 0
    text = capsys.readouterr().out
    assert "5 segments" in text and f"--sim {out}" in text
    mults = [s.unsubscribe_multiplier for s in load_world(out).segments]
    assert f"opt-out x{mults[0]:.2f}" in text  # the fitted per-segment opt-out multiplier
    assert load_world(out).segment_names == ("loyal", "bargain", "new", "lapsing", "dormant")
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        _run(["fit-sim", "--logs", str(small_log), "--out", str(out), "--segments", "5"])
    assert _run(["fit-sim", "--logs", str(small_log), "--out", str(out), "--overwrite"]) == 0


def test_fit_sim_refuses_a_log_without_exploration(small_log: Path, tmp_path: Path):
    bad = tmp_path / "det.csv"
    pd.read_parquet(small_log).assign(propensity=1.0).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="no exploration"):
        _run(["fit-sim", "--logs", str(bad), "--out", str(tmp_path / "sim")])
    assert not (tmp_path / "sim").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--segments", "0"], "argument --segments: must be in 1..50 or auto, got '0'"),
        (["--segments", "x"], "argument --segments: must be a positive integer or auto"),
        (["--seed", "-1"], "argument --seed: must be a non-negative integer, got '-1'"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        _run(["fit-sim", "--logs", "x.parquet", "--out", "sim", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_fit_sim_report_writes_the_fidelity_report_beside_the_world(
    small_log: Path, tmp_path: Path, capsys
):
    out = tmp_path / "sim"
    argv = ["fit-sim", "--logs", str(small_log), "--out", str(out), "--segments", "3", "--report"]
    assert _run(argv) == 0
    text = capsys.readouterr().out
    assert f"fidelity report: {out / 'report' / 'report.md'}" in text
    assert "per-segment open/conversion/opt-out rates within 10%" in text
    report = (out / "report" / "report.md").read_text()
    assert "Spearman" in report
    for figure in ("rates.png", "distributions.png", "policies.png"):
        assert (out / "report" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(load_world(out).segments) == 3  # the report folder does not disturb the world
