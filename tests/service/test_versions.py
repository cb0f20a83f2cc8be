"""Tests of policy versions: validation, signatures, atomic swaps, rollback, restarts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from campaignrl.policies import ConstantPolicy, Exploration, save_policy
from campaignrl.service.decider import Decider
from campaignrl.service.versions import (
    SIGNATURE_FILE,
    NoPolicyError,
    PolicyRefused,
    PolicyVersions,
    artifact_signature,
    main,
    read_signing_key,
    sign_artifact,
    verify_signature,
)

FEATURES = ("recency", "frequency")
ACTIONS = ("no_contact", "pct10@email", "bundle@sms")
KEY = b"a signing key for the tests"


def artifact(
    directory: Path,
    tag: float,
    *,
    features: tuple[str, ...] = FEATURES,
    actions: tuple[str, ...] = ACTIONS,
    key: bytes | None = None,
) -> Path:
    """A constant policy whose first score is ``tag`` (so a version can be recognized)."""
    scores = np.array([tag] + [0.0] * (len(actions) - 1))
    policy = ConstantPolicy(features, actions, scores, Exploration("greedy", epsilon=0.1))
    save_policy(policy, directory, training={"tag": tag})
    if key is not None:
        sign_artifact(directory, key)
    return directory


def tag_of(versions: PolicyVersions) -> float:
    return float(versions.current.policy.score_vector[0])  # type: ignore[attr-defined]


def test_propose_activate_rollback_and_list(tmp_path):
    versions = PolicyVersions(tmp_path / "root", signing_key=None)
    assert versions.empty
    with pytest.raises(NoPolicyError, match="propose one"):
        _ = versions.current
    for tag in (1.0, 2.0, 3.0):
        entry = versions.propose(artifact(tmp_path / f"a{tag}", tag))
        assert entry.version == int(tag)
        assert versions.current is entry
    assert (tmp_path / "root" / "v000003" / "manifest.json").is_file()
    assert versions.history == [1, 2, 3]
    assert versions.rollback().version == 2
    assert tag_of(versions) == 2.0
    assert versions.rollback().version == 1
    with pytest.raises(PolicyRefused, match="no previous version to roll back to"):
        versions.rollback()
    assert versions.activate(3).version == 3
    assert versions.history == [1, 3]
    assert versions.rollback().version == 1
    infos = versions.list()
    assert [(i.version, i.kind, i.current, i.signed) for i in infos] == [
        (1, "constant", True, False),
        (2, "constant", False, False),
        (3, "constant", False, False),
    ]
    with pytest.raises(PolicyRefused, match="version 9 does not exist"):
        versions.activate(9)


def test_propose_without_activating(tmp_path):
    versions = PolicyVersions(tmp_path / "root", signing_key=None)
    versions.propose(artifact(tmp_path / "a", 1.0))
    staged = versions.propose(artifact(tmp_path / "b", 2.0), activate=False)
    assert (staged.version, versions.current.version) == (2, 1)
    assert versions.activate(2).version == 2


def test_a_restart_serves_the_same_version(tmp_path):
    root = tmp_path / "root"
    versions = PolicyVersions(root, signing_key=KEY)
    for tag in (1.0, 2.0, 3.0):
        versions.propose(artifact(tmp_path / f"a{tag}", tag, key=KEY))
    versions.rollback()
    again = PolicyVersions(root, signing_key=KEY)
    assert again.current.version == 2
    assert tag_of(again) == 2.0
    assert again.history == [1, 2]
    assert again.rollback().version == 1
    pointer = json.loads((root / "current.json").read_text())
    assert (pointer["version"], pointer["history"]) == (1, [1])


def test_another_process_swap_is_picked_up_by_refresh(tmp_path):
    root = tmp_path / "root"
    worker_a = PolicyVersions(root, signing_key=None)
    worker_a.propose(artifact(tmp_path / "a", 1.0))
    worker_b = PolicyVersions(root, signing_key=None)
    worker_a.propose(artifact(tmp_path / "b", 2.0))
    assert worker_b.current.version == 1
    assert worker_b.refresh() is True
    assert worker_b.current.version == 2
    assert worker_b.refresh() is False
    # a third version proposed by b gets the next free number
    assert worker_b.propose(artifact(tmp_path / "c", 3.0)).version == 3


def _tamper_weights(directory: Path) -> None:
    """Flip a bit of the first array's data (not of any header): only the sha256 tells."""
    path = directory / "weights.npz"
    data = bytearray(path.read_bytes())
    magic = data.index(b"\x93NUMPY")  # np.savez stores the .npy files uncompressed
    header_len = int.from_bytes(data[magic + 8 : magic + 10], "little")
    data[magic + 10 + header_len + 3] ^= 0x01
    path.write_bytes(bytes(data))


def _tamper_manifest(directory: Path) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["exploration"]["epsilon"] = 0.9
    path.write_text(json.dumps(manifest))


def _unsign(directory: Path) -> None:
    (directory / SIGNATURE_FILE).unlink()


def _sign_with_another_key(directory: Path) -> None:
    sign_artifact(directory, b"another key")


def _symlink(directory: Path) -> None:
    (directory / "extra").symlink_to(directory / "weights.npz")


REFUSED = [
    (
        "tampered weights",
        _tamper_weights,
        {},
        "artifact",
        r"'weights.npz' does not match its sha256",
    ),
    # the manifest changed after signing: the signature no longer matches it
    (
        "tampered manifest",
        _tamper_manifest,
        {},
        "signature",
        r"'signature' does not match manifest.json",
    ),
    ("unsigned", _unsign, {}, "signature", r"is unsigned: no 'signature' file"),
    ("wrong key", _sign_with_another_key, {}, "signature", r"does not match manifest.json"),
    (
        "other features",
        None,
        {"features": ("recency", "age")},
        "feature_names",
        r"`feature_names` differ from the serving version's \(v000001\): missing \['frequency'\], "
        r"unknown \['age'\]",
    ),
    (
        "reordered features",
        None,
        {"features": ("frequency", "recency")},
        "feature_names",
        r"`feature_names` are the serving version's \(v000001\) in another order",
    ),
    (
        "reordered actions",
        None,
        {"actions": ("no_contact", "bundle@sms", "pct10@email")},
        "action_names",
        r"`action_names` are the serving version's \(v000001\) in another order",
    ),
    (
        "fewer actions",
        None,
        {"actions": ("no_contact", "pct10@email")},
        "action_names",
        r"missing \['bundle@sms'\], unknown \[\]",
    ),
    ("symlink", _symlink, {}, "artifact", r"'extra' is not a regular file"),
]


@pytest.mark.parametrize(
    ("case", "damage", "kwargs", "field", "match"), REFUSED, ids=[r[0] for r in REFUSED]
)
def test_refused_artifacts_leave_the_old_version_serving(
    tmp_path, case, damage, kwargs, field, match
):
    versions = PolicyVersions(tmp_path / "root", signing_key=KEY)
    first = versions.propose(artifact(tmp_path / "good", 1.0, key=KEY))
    bad = artifact(tmp_path / "bad", 2.0, key=KEY, **kwargs)
    if damage is not None:
        damage(bad)
    with pytest.raises(PolicyRefused, match=match) as info:
        versions.propose(bad)
    assert info.value.field == field
    assert str(tmp_path / "bad") in str(info.value) or field.endswith("_names")
    assert versions.current is first
    assert versions.versions() == [1]
    # nothing half-copied is left behind, and a restart still serves version 1
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == [
        ".lock",
        "current.json",
        "v000001",
    ]
    assert PolicyVersions(tmp_path / "root", signing_key=KEY).current.version == 1


def test_without_a_key_signatures_are_not_required(tmp_path):
    versions = PolicyVersions(tmp_path / "root", signing_key=None)
    versions.propose(artifact(tmp_path / "a", 1.0))
    assert versions.propose(artifact(tmp_path / "b", 2.0, key=b"whatever")).version == 2


def test_a_stored_version_tampered_on_disk_is_refused_at_restart(tmp_path):
    root = tmp_path / "root"
    PolicyVersions(root, signing_key=None).propose(artifact(tmp_path / "a", 1.0))
    _tamper_weights(root / "v000001")
    with pytest.raises(PolicyRefused, match="does not match its sha256"):
        PolicyVersions(root, signing_key=None)


def test_the_signature_is_the_hmac_of_the_manifest_bytes(tmp_path):
    import hashlib
    import hmac

    directory = artifact(tmp_path / "a", 1.0, key=KEY)
    expected = hmac.new(KEY, (directory / "manifest.json").read_bytes(), hashlib.sha256)
    assert (directory / SIGNATURE_FILE).read_text() == expected.hexdigest() + "\n"
    assert artifact_signature(directory, KEY) == expected.hexdigest()
    verify_signature(directory, KEY)


def test_sign_from_the_command_line(tmp_path, monkeypatch, capsys):
    directory = artifact(tmp_path / "a", 1.0)
    key_file = tmp_path / "key.txt"
    key_file.write_bytes(KEY + b"\n")
    assert main(["sign", str(directory), "--key-file", str(key_file)]) == 0
    verify_signature(directory, KEY)
    assert capsys.readouterr().out.strip() == artifact_signature(directory, KEY)
    monkeypatch.delenv("CAMPAIGNRL_SIGNING_KEY", raising=False)
    assert main(["sign", str(directory)]) == 2
    assert (
        "no signing key: pass --key-file or set CAMPAIGNRL_SIGNING_KEY" in capsys.readouterr().err
    )
    monkeypatch.setenv("CAMPAIGNRL_SIGNING_KEY", "env key")
    assert read_signing_key() == b"env key"
    assert main(["sign", str(tmp_path / "missing")]) == 2
    assert "has no manifest.json" in capsys.readouterr().err


def test_readers_see_only_whole_versions_during_100_swaps(tmp_path):
    versions = PolicyVersions(tmp_path / "root", signing_key=None)
    versions.propose(artifact(tmp_path / "a0", 1.0))
    sources = [artifact(tmp_path / f"a{k}", float(k)) for k in range(2, 102)]
    decider = Decider(versions, seed=0)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    def read() -> None:
        row = {"recency": 1.0, "frequency": 2.0}
        while not stop.is_set():
            current = versions.current
            # the version number, the policy and the manifest belong to one artifact
            if not (
                tag_of_entry(current) == current.version == current.manifest["training"]["tag"]
                and current.path.name == f"v{current.version:06d}"
            ):
                errors.append(f"mixed state {current.version} {current.path}")
            decision = decider.decide(row)
            if abs(decision.probabilities[0] - (0.9 + 0.1 / 3)) > 1e-12:
                errors.append(f"bad probabilities {decision.probabilities}")
            seen.append(current.version)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for source in sources:
            versions.propose(source)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert errors == []
    assert versions.current.version == 101
    assert len(set(seen)) > 1


def tag_of_entry(entry) -> float:
    return float(entry.policy.score_vector[0])
