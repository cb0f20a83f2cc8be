"""SIMDIR save/load: round trip, checksums, tampering refused; load_world on presets and SIMDIRs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from campaignrl.rollout import run_policy
from campaignrl.simulators import CustomerSimulator, get_world, load_world
from campaignrl.simulators.fit import (
    FittedSimulator,
    SimulatorArtifactError,
    load_fitted,
    save_fitted,
)
from campaignrl.simulators.fit.artifact import _checksum
from campaignrl.simulators.spec import WorldSpec


@pytest.fixture()
def simdir(fitted: FittedSimulator, tmp_path: Path) -> Path:
    return save_fitted(fitted, tmp_path / "sim")


def test_round_trip(fitted: FittedSimulator, simdir: Path):
    assert sorted(p.name for p in simdir.iterdir()) == ["arrays.npz", "manifest.json"]
    back = load_fitted(simdir)
    assert back.spec == fitted.spec
    assert back.spec.to_dict() == fitted.spec.to_dict()
    np.testing.assert_array_equal(back.customer_ids, fitted.customer_ids.astype(str))
    np.testing.assert_array_equal(back.segment, fitted.segment)
    np.testing.assert_array_equal(back.tastes, fitted.tastes)
    assert back.notes == fitted.notes
    assert [r["segment"] for r in back.profile] == list(fitted.spec.segment_names)


def test_load_world_reads_a_simdir_like_a_preset(fitted: FittedSimulator, simdir: Path):
    spec = load_world(simdir)
    assert spec == fitted.spec
    assert load_world(str(simdir), margin_rate=0.3).margin_rate == 0.3
    res = run_policy(spec, _NoContact(), n_customers=30, horizon=2, seed=0)
    assert res.value_per_customer.shape == (30,)
    sim = CustomerSimulator(spec, 10, 2)
    sim.reset(np.random.default_rng(0))
    assert sim.action_masks().shape == (10, spec.catalog.n_actions)


class _NoContact:
    def probabilities(self, obs, masks, sim):
        out = np.zeros(masks.shape)
        out[:, 0] = 1.0
        return out


def test_load_world_presets_and_errors(tmp_path: Path):
    assert load_world("fatigue") == get_world("fatigue")
    assert load_world("retail", contact_cap=2).contact_cap == 2
    with pytest.raises(ValueError, match=r"must be a preset .* or a simulator directory"):
        load_world("nowhere")
    with pytest.raises(SimulatorArtifactError, match=r"no regular file .manifest\.json."):
        load_world(tmp_path)


def test_tampered_arrays_refused(simdir: Path):
    path = simdir / "arrays.npz"
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    with pytest.raises(SimulatorArtifactError, match="does not match its sha256"):
        load_world(simdir)
    with pytest.raises(SimulatorArtifactError, match="does not match its sha256"):
        load_fitted(simdir)


def test_edited_manifest_refused(simdir: Path):
    path = simdir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["world"]["margin_rate"] = 0.5
    path.write_text(json.dumps(manifest))
    with pytest.raises(SimulatorArtifactError, match="does not match its manifest_sha256"):
        load_world(simdir)


def test_reformatted_manifest_still_loads(fitted: FittedSimulator, simdir: Path):
    path = simdir / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=None, sort_keys=True))
    assert load_world(simdir) == fitted.spec


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(format="other"), "field 'format' must be"),
        (lambda m: m.update(format_version=99), "format_version 99 is not supported"),
    ],
)
def test_wrong_format_refused(simdir: Path, edit, match):
    path = simdir / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(SimulatorArtifactError, match=match):
        load_world(simdir)


def test_existing_directory_needs_overwrite(fitted: FittedSimulator, simdir: Path):
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        save_fitted(fitted, simdir)
    save_fitted(fitted, simdir, overwrite=True)
    assert load_world(simdir) == fitted.spec
    assert [p.name for p in simdir.parent.iterdir()] == ["sim"]  # no temporary left behind


def test_simdir_without_opt_out_multipliers_loads_them_as_ones(
    fitted: FittedSimulator, simdir: Path
):
    """A SIMDIR written before per-segment opt-out multipliers existed (no such key)."""
    path = simdir / "manifest.json"
    manifest = json.loads(path.read_text())
    segments = manifest["world"]["segments"]
    assert all("unsubscribe_multiplier" in s for s in segments)  # this fit estimated them
    for s in segments:
        del s["unsubscribe_multiplier"]
    manifest["manifest_sha256"] = _checksum(manifest)  # as the older campaignrl wrote it
    path.write_text(json.dumps(manifest, indent=2))
    back = load_fitted(simdir)
    ones = tuple(replace(s, unsubscribe_multiplier=1.0) for s in fitted.spec.segments)
    assert back.spec == fitted.spec.replace(segments=ones)
    np.testing.assert_array_equal(back.spec.arrays().unsubscribe_multiplier, 1.0)


def test_opt_out_multipliers_in_the_world_json():
    retail = get_world("retail")
    # presets keep the JSON they had before the field (artifacts' checksums still match)
    assert all("unsubscribe_multiplier" not in s for s in retail.to_dict()["segments"])
    segs = (replace(retail.segments[0], unsubscribe_multiplier=0.25), *retail.segments[1:])
    spec = retail.replace(segments=segs)
    assert spec.to_dict()["segments"][0]["unsubscribe_multiplier"] == 0.25
    assert WorldSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(
        ValueError, match=r"`WorldSpec\.segments\[0\]\.unsubscribe_multiplier` must be >= 0"
    ):
        retail.replace(segments=(replace(segs[0], unsubscribe_multiplier=-1.0), *segs[1:]))
