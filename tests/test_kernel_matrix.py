"""benchmarks/kernel_matrix.py: which settings it runs and how it counts (no suite run here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kernel_matrix.py"


@pytest.fixture(scope="module")
def matrix():
    spec = importlib.util.spec_from_file_location("kernel_matrix", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_disable_the_features_numpy_found_and_skip_aliased_kernels(matrix, monkeypatch):
    # An AVX-512 CPU under numpy 2.4's names; Zen falls back to Haswell's kernel.
    kernels = {"Zen": "Haswell", "Prescott": "Katmai"}

    def probe(env, python=""):
        core = env.get("OPENBLAS_CORETYPE", "SkylakeX")
        return {
            "architecture": kernels.get(core, core),
            "dispatch": ["X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR"],
            "found": ["X86_V3", "X86_V4", "AVX512_ICL"],
        }

    monkeypatch.setattr(matrix, "probe", probe)
    rows = dict(matrix.settings())
    assert "Zen, numpy all SIMD" not in rows  # the same kernel as Haswell
    assert rows["Prescott, numpy all SIMD"] == {"OPENBLAS_CORETYPE": "Prescott"}
    assert rows["Haswell, numpy no AVX-512"] == {
        "OPENBLAS_CORETYPE": "Haswell",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL",
    }
    assert rows["Nehalem, numpy no AVX2/FMA3"]["NPY_DISABLE_CPU_FEATURES"] == (
        "X86_V3 X86_V4 AVX512_ICL"
    )
    assert rows["default kernel, 1 BLAS thread"] == {"OPENBLAS_NUM_THREADS": "1"}
    assert len(rows) == 5 * 3 + 1


def test_summary_counts_from_the_junit_report(matrix, tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="20">'
        "</testsuite></testsuites>"
    )
    assert matrix._summary(report) == "14 passed, 3 failed, 3 skipped"
    assert matrix._summary(tmp_path / "missing.xml") == "no report"
