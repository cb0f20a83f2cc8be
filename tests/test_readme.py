"""The README's Python examples run as written, and its OPE example prints what it shows."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_python_examples():
    assert len(_blocks("python")) >= 2  # the Python API and the OPE example


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    code = _blocks("python")[index]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "readme"})
    if "evaluate(data, target" in code:
        # The OPE example prints one line per estimator and no warnings; its intervals hold the
        # figures the README shows (the exact digits depend on the machine's float kernels).
        lines = out.getvalue().splitlines()
        assert [line.split(":")[0] for line in lines[:3]] == ["ipw", "snipw", "dr"]
        assert lines[3] == "()"
        shown = dict(re.findall(r"^(ipw|snipw|dr): ([\d.]+) \[", README.read_text(), re.M))
        for line in lines[:3]:
            name, _, lo, hi = re.match(r"(\w+): ([\d.]+) \[([\d.]+), ([\d.]+)\]", line).groups()
            assert float(lo) <= float(shown[name]) <= float(hi), (line, shown[name])
