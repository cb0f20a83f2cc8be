"""Run the test suite under every BLAS kernel and numpy SIMD level this CPU can run.

    python benchmarks/kernel_matrix.py [--only SUBSTRING] [--list] [--pytest-args "..."]
        [--dir CHECKOUT]

float32 results depend on the machine: OpenBLAS picks its sgemm kernel (blocking, FMA or
not) from the CPU, and numpy dispatches its float32 ``exp``/``tanh``/reductions to the widest
SIMD level found. The tests' tolerances are derived from error bounds, so the suite must pass
under each of them. This script runs ``pytest -p no:cacheprovider -x`` (``-q`` comes from the
project's ``addopts``) once per setting, one after another, and prints::

    setting | architecture reported | numpy SIMD | result | seconds

The settings: ``OPENBLAS_CORETYPE`` for each kernel this CPU accepts (threadpoolctl reports
which one OpenBLAS really took; names mapped to an already listed kernel are skipped), each
with numpy's full dispatch, without AVX-512 and without AVX2/FMA3 (``NPY_DISABLE_CPU_FEATURES``
with the names numpy itself lists as dispatched: an unknown name is ignored with a hidden
``ImportWarning``, so the script reads back what numpy found); then the default kernel with
one BLAS thread (its blocking, and so the summation order, depends on the thread count).
Exit status 1 if any setting failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["main", "probe", "settings"]

CORETYPES = ("SkylakeX", "Haswell", "Zen", "Sandybridge", "Nehalem", "Prescott")
"""Kernels to try, widest first (an unsupported one falls back; the probe says to what)."""

_PROBE = """
import json, numpy
from numpy._core import _multiarray_umath as m
from threadpoolctl import threadpool_info
arch = sorted({i.get("architecture", "?") for i in threadpool_info() if i["user_api"] == "blas"})
print(json.dumps({
    "architecture": ",".join(arch),
    "dispatch": list(m.__cpu_dispatch__),
    "found": [f for f in m.__cpu_dispatch__ if m.__cpu_features__.get(f)],
}))
"""


def probe(env: dict[str, str], python: str = sys.executable) -> dict[str, object]:
    """The BLAS architecture and numpy's dispatched SIMD features under ``env``."""
    out = subprocess.run(
        [python, "-c", _PROBE], env={**os.environ, **env}, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"probe failed under {env}: {out.stderr.strip()}")
    result: dict[str, object] = json.loads(out.stdout)
    return result


def settings(python: str = sys.executable) -> list[tuple[str, dict[str, str]]]:
    """``(name, environment)`` of every setting this CPU can run, duplicates removed."""
    base = probe({}, python)
    found = [str(f) for f in base["found"]]  # type: ignore[union-attr]
    # numpy >= 2.4 names levels X86_V3 (AVX2, FMA3) and X86_V4 (AVX-512); older ones
    # AVX2, FMA3, AVX512F, AVX512_SKX...: disable whatever of them this CPU found.
    avx512 = [f for f in found if f.startswith("AVX512") or f == "X86_V4"]
    numpy_levels: list[tuple[str, str]] = [("all SIMD", "")]
    if avx512:
        numpy_levels.append(("no AVX-512", " ".join(avx512)))
    if found and len(found) > len(avx512):
        numpy_levels.append(("no AVX2/FMA3", " ".join(found)))
    out: list[tuple[str, dict[str, str]]] = []
    seen: set[str] = set()
    for core in CORETYPES:
        arch = str(probe({"OPENBLAS_CORETYPE": core}, python)["architecture"])
        if arch in seen:
            continue
        seen.add(arch)
        for label, disabled in numpy_levels:
            env = {"OPENBLAS_CORETYPE": core}
            if disabled:
                env["NPY_DISABLE_CPU_FEATURES"] = disabled
            out.append((f"{core}, numpy {label}", env))
    out.append(("default kernel, 1 BLAS thread", {"OPENBLAS_NUM_THREADS": "1"}))
    return out


def _summary(junit: Path) -> str:
    """``N passed, M failed, K skipped`` from pytest's JUnit XML report.

    Read from the report, not from the terminal, whose last line of counts ``-qq`` hides
    (the project's ``addopts`` already has one ``-q``).
    """
    if not junit.exists():
        return "no report"
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    return f"{total - failed - skipped} passed, {failed} failed, {skipped} skipped"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="run the settings whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the settings and exit")
    parser.add_argument(
        "--pytest-args", default="-p no:cacheprovider -x", help="arguments for pytest"
    )
    parser.add_argument(
        "--dir", type=Path, default=Path(__file__).resolve().parent.parent, help="checkout"
    )
    args = parser.parse_args(argv)
    rows = [(name, env) for name, env in settings() if args.only in name]
    if args.list:
        for name, env in rows:
            print(f"{name}: {' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())}")
        return 0
    print("setting | architecture reported | numpy SIMD | result | seconds", flush=True)
    print("---|---|---|---|---", flush=True)
    failed = False
    for name, env in rows:
        info = probe(env)
        simd = " ".join(str(f) for f in info["found"]) or "baseline only"  # type: ignore[attr-defined]
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "junit.xml"
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    *shlex.split(args.pytest_args),
                    f"--junitxml={junit}",
                ],
                cwd=args.dir,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
            )
            result = _summary(junit)
        seconds = time.perf_counter() - start
        failed |= run.returncode != 0
        if run.returncode != 0:
            ids = re.findall(r"^(?:FAILED|ERROR) (\S+)", run.stdout, re.MULTILINE)
            result += f" ({'; '.join(ids)})" if ids else f" (exit {run.returncode})"
        print(f"{name} | {info['architecture']} | {simd} | {result} | {seconds:.0f}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
