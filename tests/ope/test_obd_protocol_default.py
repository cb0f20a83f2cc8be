"""benchmarks/obd_protocol.py's default --data: the shared sample, else the trimmed copy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

OBD = Path(__file__).resolve().parents[1] / "data" / "obd"
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "obd_protocol.py"


@pytest.fixture(scope="module")
def protocol():
    spec = importlib.util.spec_from_file_location("obd_protocol_default", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_data_falls_back_to_the_trimmed_copy(protocol, tmp_path):
    shared = tmp_path / "shared" / "obd"
    path, which = protocol.default_data(shared, OBD)
    assert path == OBD and "trimmed 2,000-row" in which and "is absent" in which
    (shared / "random").mkdir(parents=True)
    assert protocol.default_data(shared, OBD)[0] == OBD  # half a copy is not a copy
    (shared / "bts").mkdir()
    assert protocol.default_data(shared, OBD) == (shared, f"the shared OBD sample in {shared}")


def test_main_without_data_says_which_copy_it_used(protocol, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(protocol, "SHARED_DATA", tmp_path / "absent")
    assert protocol.main(["--bootstrap", "100", "--reward-model", "ridge"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"obd_protocol: data: the trimmed 2,000-row OBD copy in {OBD}")
    assert "(2,000 Random rows;" in captured.out
