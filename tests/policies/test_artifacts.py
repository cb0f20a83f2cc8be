"""Policy artifacts: manifest content, npz without pickle, atomic save, tampered dirs refused.

The refusals are one table (``TAMPERED``: tamper -> message) that every policy kind goes through
(constant, tabular, linear, mlp, Thompson Beta and Gaussian), and a table of kind-specific
cases (``KIND_TAMPERED``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.lib import format as npy_format
from policy_helpers import (
    manifest_sha256,
    random_spd_inverse,
    rehash_weights,
    reseal,
    saved_arrays,
)

from campaignrl.policies import (
    BetaThompsonPolicy,
    ConstantPolicy,
    Exploration,
    GaussianThompsonPolicy,
    LinearPolicy,
    MLPPolicy,
    Policy,
    PolicyArtifactError,
    TabularPolicy,
    load_policy,
    read_manifest,
    save_policy,
)
from campaignrl.policies.artifacts import (
    FORMAT,
    FORMAT_VERSION,
    MAX_ARRAY_ELEMENTS,
    manifest_checksum,
)

FEATURES = ["recency", "frequency", "spend", "seg_a", "seg_b"]
ACTIONS = ["no_contact", "o1@email", "o1@sms", "o2@email"]


def _linear(seed: int = 0) -> LinearPolicy:
    rng = np.random.default_rng(seed)
    d, a = len(FEATURES), len(ACTIONS)
    a_inv = np.stack([np.linalg.inv(np.eye(d) + np.diag(rng.random(d))) for _ in range(a)])
    return LinearPolicy(
        FEATURES,
        ACTIONS,
        rng.normal(size=(a, d)),
        a_inv=a_inv,
        alpha=0.8,
        exploration=Exploration("softmax", epsilon=0.1, temperature=0.5),
    )


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return save_policy(_linear(), tmp_path / "policy", training={"agent": "linucb", "seed": 3})


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, manifest: object) -> None:
    (d / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------------- manifest and weights
def test_manifest_has_every_field(artifact):
    m = _manifest(artifact)
    assert m["format"] == FORMAT == "campaignrl.policy"
    assert m["format_version"] == FORMAT_VERSION == 2
    assert m["kind"] == "linear"
    assert m["feature_names"] == FEATURES
    assert m["action_names"] == ACTIONS
    assert m["exploration"] == {"kind": "softmax", "epsilon": 0.1, "temperature": 0.5}
    assert m["config"] == {"alpha": 0.8, "interact_with": []}
    created = datetime.fromisoformat(m["created"])
    assert created.tzinfo is not None  # an aware timestamp (UTC)
    assert m["training"] == {"agent": "linucb", "seed": 3}
    w = artifact / "weights.npz"
    assert m["files"] == {"weights.npz": {"sha256": _sha(w), "bytes": w.stat().st_size}}
    # the documented checksum, computed independently (policy_helpers.manifest_sha256)
    assert m["manifest_sha256"] == manifest_sha256(m) == manifest_checksum(m)
    assert len(m) == 12
    assert read_manifest(artifact) == m
    assert sorted(p.name for p in artifact.iterdir()) == ["manifest.json", "weights.npz"]


def test_training_defaults_to_empty_dict(tmp_path):
    out = save_policy(_linear(), tmp_path / "p")
    assert _manifest(out)["training"] == {}


def test_weights_load_without_pickle_and_equal_parameters(artifact):
    pol = _linear()
    with np.load(artifact / "weights.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["a_inv", "beta"]
        np.testing.assert_array_equal(npz["beta"], pol.beta)
        np.testing.assert_array_equal(npz["a_inv"], pol.a_inv)
        assert all(npz[k].dtype == np.float64 for k in npz.files)


def test_save_returns_path_and_accepts_str(tmp_path):
    out = save_policy(_linear(), str(tmp_path / "nested" / "dir"))
    assert out == tmp_path / "nested" / "dir"
    assert isinstance(load_policy(str(out)), LinearPolicy)


def test_save_into_existing_empty_dir(tmp_path):
    (tmp_path / "p").mkdir()
    out = save_policy(_linear(), tmp_path / "p")
    assert isinstance(load_policy(out), LinearPolicy)


def test_save_refuses_non_empty_dir_unless_overwrite(tmp_path):
    target = tmp_path / "p"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"`directory`.*exists and is not empty"):
        save_policy(_linear(), target)
    assert (target / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temp dir left
    save_policy(_linear(1), target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "weights.npz"]
    np.testing.assert_array_equal(load_policy(target).beta, _linear(1).beta)


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_policy(_linear(), tmp_path / "p")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temp dir


def test_failed_overwrite_keeps_the_old_artifact(tmp_path, monkeypatch):
    target = save_policy(_linear(0), tmp_path / "p")
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_policy(_linear(1), target, overwrite=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_artifact_directory_permissions_follow_umask(tmp_path):
    # The artifact is built in a temp dir and renamed in; tempfile.mkdtemp creates 0o700, so
    # unless save fixes the mode the service (often another user) cannot read the export.
    # Expected: the same mode as a directory made by a plain mkdir under the same umask.
    plain = tmp_path / "plain"
    plain.mkdir()
    out = save_policy(_linear(), tmp_path / "p")
    assert oct(out.stat().st_mode & 0o777) == oct(plain.stat().st_mode & 0o777)


def test_save_refuses_non_json_training_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        save_policy(_linear(), tmp_path / "p", training={"score": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_unregistered_kind(tmp_path):
    class Unregistered(ConstantPolicy):
        kind = "not-registered"

    pol = Unregistered(["f"], ["a", "b"], np.zeros(2))
    with pytest.raises(ValueError, match=r"'not-registered' is not registered"):
        save_policy(pol, tmp_path / "p")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_object_parameters(tmp_path):
    class Objecty(ConstantPolicy):
        def parameters(self):
            return {"scores": np.array([{"x": 1}, None], dtype=object)}

    pol = Objecty(["f"], ["a", "b"], np.zeros(2))
    with pytest.raises(TypeError, match=r"parameter 'scores' must be a numeric ndarray"):
        save_policy(pol, tmp_path / "p")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- every kind
def _kinds() -> dict[str, Callable[[], Policy]]:
    """One small policy of every kind (and Thompson family), built the same way each call."""

    def rng() -> np.random.Generator:
        return np.random.default_rng(9)

    return {
        "constant": lambda: ConstantPolicy(FEATURES, ACTIONS, rng().normal(size=4)),
        "tabular": lambda: TabularPolicy(
            FEATURES, ACTIONS, ["recency", "spend"], [[0.0, 1.0], []], rng().normal(size=(3, 4))
        ),
        "linear": _linear,
        "mlp": lambda: MLPPolicy(
            FEATURES,
            ACTIONS,
            [rng().normal(size=(5, 3)), rng().normal(size=(3, 4))],
            [rng().normal(size=3), rng().normal(size=4)],
            "relu",
        ),
        "thompson-beta": lambda: BetaThompsonPolicy(
            FEATURES,
            ACTIONS,
            ["recency"],
            [[0.0, 1.0]],
            rng().uniform(1, 50, size=(3, 4)),
            rng().uniform(1, 500, size=(3, 4)),
            Exploration(epsilon=0.05),
        ),
        "thompson-gaussian": lambda: GaussianThompsonPolicy(
            FEATURES,
            ACTIONS,
            rng().normal(size=(4, 10)),
            random_spd_inverse(rng(), 4, 10),
            0.7,
            interact_with=["seg_a", "seg_b"],
        ),
    }


KINDS = _kinds()


@pytest.mark.parametrize("name", sorted(KINDS))
def test_round_trip_parameters_identical(name, tmp_path):
    pol = KINDS[name]()
    loaded = load_policy(save_policy(pol, tmp_path / name))
    assert type(loaded) is type(pol)
    assert loaded.config() == pol.config()
    orig, back = pol.parameters(), loaded.parameters()
    assert sorted(orig) == sorted(back)
    for k in orig:
        np.testing.assert_array_equal(back[k], orig[k])


@pytest.fixture(params=sorted(KINDS))
def kind_artifact(request, tmp_path) -> Path:
    return save_policy(KINDS[request.param](), tmp_path / request.param)


# ---------------------------------------------------------------------- tampering helpers
def _edit(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    """Edit the manifest without recording its checksum again (a careless hand)."""

    def apply(d: Path) -> None:
        m = _manifest(d)
        change(m)
        _write_manifest(d, m)

    return apply


def _sealed(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    """Edit the manifest and record its checksum again (a forger): other checks must refuse."""
    return lambda d: reseal(d, change)


def _set(*path: str | int, value: object) -> Callable[[dict[str, Any]], None]:
    def change(m: dict[str, Any]) -> None:
        node: Any = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m.pop(key)


def _raw_manifest(text: str | bytes) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        p = d / "manifest.json"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())

    return apply


def _raw_edit(change: Callable[[str], str]) -> Callable[[Path], None]:
    """Edit manifest.json's text (values JSON itself cannot hold: NaN, 1e999, a repeated key)."""

    def apply(d: Path) -> None:
        p = d / "manifest.json"
        p.write_text(change(p.read_text()))

    return apply


def _rewrite_weights(
    change: Callable[[dict[str, np.ndarray], str], object], *, rehash: bool = True
) -> Callable[[Path], None]:
    """Rewrite weights.npz (np.savez) after ``change(arrays, first_member)``."""

    def apply(d: Path) -> None:
        arrays = saved_arrays(d)
        change(arrays, sorted(arrays)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # complex -> npz is fine; object arrays pickle
            np.savez(d / "weights.npz", **arrays)  # type: ignore[arg-type]
        if rehash:
            rehash_weights(d)

    return apply


def _npy_bytes(shape: tuple[int, ...], descr: str = "<f8", data: bytes | None = None) -> bytes:
    """A .npy file whose header declares ``shape``; ``data`` (default: none) follows it."""
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    npy_format.write_array_header_1_0(buf, header)
    return buf.getvalue() + (data or b"")


def _zip_members(
    members: Callable[[dict[str, np.ndarray], str], list[tuple[str, bytes]]],
    compression: int = zipfile.ZIP_STORED,
) -> Callable[[Path], None]:
    """Write weights.npz by hand from ``members(arrays, first)`` -> (name, bytes), rehashed."""

    def apply(d: Path) -> None:
        arrays = saved_arrays(d)
        w = d / "weights.npz"
        with warnings.catch_warnings(), zipfile.ZipFile(w, "w", compression) as z:
            warnings.simplefilter("ignore")  # "Duplicate name"
            for name, data in members(arrays, sorted(arrays)[0]):
                z.writestr(name, data)
        rehash_weights(d)

    return apply


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _huge_first(arrays: dict[str, np.ndarray], first: str) -> list[tuple[str, bytes]]:
    # The first member's header declares 10^12 rows; no data follows.
    out = [(f"{k}.npy", _npy(v)) for k, v in arrays.items() if k != first]
    shape = (10**12, *arrays[first].shape[1:])
    return [(f"{first}.npy", _npy_bytes(shape)), *out]


def _padded_first(arrays: dict[str, np.ndarray], first: str) -> list[tuple[str, bytes]]:
    out = [(f"{k}.npy", _npy(v)) for k, v in arrays.items()]
    out[0] = (out[0][0], out[0][1] + b"\0" * 64)  # bytes beyond what the header declares
    return out


def _twice_first(arrays: dict[str, np.ndarray], first: str) -> list[tuple[str, bytes]]:
    out = [(f"{k}.npy", _npy(v)) for k, v in arrays.items()]
    return [*out, (f"{first}.npy", _npy(arrays[first]))]


def _garbage_first(arrays: dict[str, np.ndarray], first: str) -> list[tuple[str, bytes]]:
    return [(f"{k}.npy", b"not an npy" if k == first else _npy(v)) for k, v in arrays.items()]


def _all_members(arrays: dict[str, np.ndarray], first: str) -> list[tuple[str, bytes]]:
    return [(f"{k}.npy", _npy(v)) for k, v in arrays.items()]


def _prepend_junk(d: Path) -> None:
    # Data before the zip: zipfile still reads the archive, the size check refuses it.
    w = d / "weights.npz"
    w.write_bytes(b"\0" * (1 << 20) + w.read_bytes())
    rehash_weights(d)


def _sparse_weights(d: Path) -> None:
    # A 2 GiB file (sparse: no disk used), listed with its true size: refused by size,
    # before it is hashed or read.
    w = d / "weights.npz"
    with w.open("r+b") as fh:
        fh.truncate(2 << 30)
    reseal(d, _set("files", "weights.npz", "bytes", value=2 << 30))


def _same_size_other_values(d: Path) -> None:
    # Values changed in place (same shapes, same size), manifest untouched: only the sha256
    # can tell.
    arrays = saved_arrays(d)
    for k, v in arrays.items():
        arrays[k] = np.where(v == 0, 1, v) * 2 if v.dtype.kind == "f" else v
    np.savez(d / "weights.npz", **arrays)  # type: ignore[arg-type]


def _symlinked(name: str) -> Callable[[Path], None]:
    """Move ``name`` out of the artifact and link it back in."""

    def apply(d: Path) -> None:
        outside = d.parent / f"outside-{name}"
        (d / name).rename(outside)
        (d / name).symlink_to(outside)

    return apply


def _replaced_by_dir(d: Path) -> None:
    (d / "weights.npz").unlink()
    (d / "weights.npz").mkdir()


def _replaced_by_fifo(d: Path) -> None:
    # Opening a FIFO for reading would wait for a writer forever.
    (d / "weights.npz").unlink()
    os.mkfifo(d / "weights.npz")


def _big_manifest(d: Path) -> None:
    text = (d / "manifest.json").read_text()
    (d / "manifest.json").write_text(text[:-2] + " " * (16 << 20) + text[-2:])


def _deep_notes(d: Path) -> None:
    # Parses (70 levels), sealed, in the hand-editable field: refused for its depth.
    m = _manifest(d)
    nested: Any = []
    for _ in range(70):
        nested = [nested]
    m["notes"] = nested
    _write_manifest(d, m)


def _move_first(m: dict[str, Any], key: str) -> None:
    m[key] = m[key][1:] + m[key][:1]


def _toggle_exploration_kind(m: dict[str, Any]) -> None:
    m["exploration"]["kind"] = {"greedy": "softmax", "softmax": "greedy"}[m["exploration"]["kind"]]


def _files_add(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["files"].update({name: {"sha256": "0" * 64, "bytes": 1}})


EDITED = r"manifest\.json was edited after export: its content does not match 'manifest_sha256'"

MISSING_FIELDS = (
    "format",
    "format_version",
    "kind",
    "feature_names",
    "feature_encoding",
    "action_names",
    "exploration",
    "config",
    "created",
    "training",
    "files",
    "manifest_sha256",
)

# (case, tamper, expected message) for every kind; the kind's first array (alphabetically)
# stands for "an array" where one is needed.
TAMPERED: list[tuple[str, Callable[[Path], None], str]] = [
    # -- the manifest's meaning: any edit without a new checksum is refused
    ("actions-reversed", _edit(lambda m: m["action_names"].reverse()), EDITED),
    ("actions-rotated", _edit(lambda m: _move_first(m, "action_names")), EDITED),
    ("features-rotated", _edit(lambda m: _move_first(m, "feature_names")), EDITED),
    ("action-renamed", _edit(_set("action_names", 1, value="pct20@sms")), EDITED),
    ("epsilon-edited", _edit(_set("exploration", "epsilon", value=0.5)), EDITED),
    ("exploration-kind-edited", _edit(_toggle_exploration_kind), EDITED),
    ("config-edited", _edit(_set("config", "zzz", value=1)), EDITED),
    ("encoding-edited", _edit(_set("feature_encoding", value="other/v1")), EDITED),
    ("training-edited", _edit(_set("training", "seed", value=4)), EDITED),
    ("created-edited", _edit(_set("created", value="2020-01-01T00:00:00+00:00")), EDITED),
    ("weights-hash-edited", _edit(_set("files", "weights.npz", "sha256", value="0" * 64)), EDITED),
    ("checksum-edited", _edit(_set("manifest_sha256", value="0" * 64)), EDITED),
    (
        "checksum-not-hex",
        _edit(_set("manifest_sha256", value="xyz")),
        r"field 'manifest_sha256' must be 64 hex digits, got 'xyz'",
    ),
    (
        "checksum-not-a-string",
        _edit(_set("manifest_sha256", value=7)),
        r"field 'manifest_sha256' must be 64 hex digits, got 7",
    ),
    (
        "unknown-field",
        _sealed(_set("note", value="typo")),
        r"manifest\.json has unknown field 'note' \(only 'notes' may be added\)",
    ),
    *[
        (f"missing-{key}", _edit(_delete(key)), rf"manifest\.json is missing field '{key}'")
        for key in MISSING_FIELDS
    ],
    (
        "format-version-1",
        _sealed(_set("format_version", value=1)),
        r"field 'format_version' 1 is an older format whose manifest is not checksummed; "
        r"re-export the policy",
    ),
    (
        "format-version-3",
        _sealed(_set("format_version", value=3)),
        r"field 'format_version' 3 is not supported \(this campaignrl reads version 2\)",
    ),
    (
        "format-version-string",
        _sealed(_set("format_version", value="2")),
        r"field 'format_version' '2' is not supported",
    ),
    (
        "format-version-bool",
        _sealed(_set("format_version", value=True)),
        r"field 'format_version' True is not supported",
    ),
    (
        "wrong-format",
        _sealed(_set("format", value="onnx.model")),
        r"field 'format' must be 'campaignrl\.policy', got 'onnx\.model'",
    ),
    # -- sealed again: what the checksum cannot vouch for is still checked
    (
        "duplicate-action",
        _sealed(lambda m: m["action_names"].__setitem__(2, m["action_names"][0])),
        r"field 'action_names' lists 'no_contact' twice \(at 0 and 2\)",
    ),
    (
        "duplicate-feature",
        _sealed(_set("feature_names", 4, value="recency")),
        r"field 'feature_names' lists 'recency' twice \(at 0 and 4\)",
    ),
    (
        "action-not-a-string",
        _sealed(_set("action_names", 1, value=3)),
        r"field 'action_names' must hold strings, got 3 at 1",
    ),
    (
        "no-actions",
        _sealed(_set("action_names", value=[])),
        r"field 'action_names' must name at least one action, got \[\]",
    ),
    (
        "features-a-string",
        _sealed(_set("feature_names", value="recency")),
        r"field 'feature_names' must be a JSON array, got str 'recency'",
    ),
    (
        "unknown-feature-encoding",
        _sealed(_set("feature_encoding", value="campaignrl.envs.observation/v0")),
        r"field 'feature_encoding' 'campaignrl\.envs\.observation/v0' is unknown; "
        r"known: \['campaignrl\.envs\.observation/v1'\]",
    ),
    (
        "encoding-not-a-string",
        _sealed(_set("feature_encoding", value=None)),
        r"field 'feature_encoding' must be a JSON string, got NoneType",
    ),
    *[
        (
            f"temperature-{value}",
            _sealed(
                _set("exploration", value={"kind": "softmax", "epsilon": 0.0, "temperature": value})
            ),
            rf"field 'exploration': `Exploration\.temperature` must be {message}",
        )
        for value, message in [
            (0.0, r"> 0\.0, got 0\.0"),
            (-1.0, r"> 0\.0, got -1\.0"),
            (1e-310, r"between 1\.1754944e-38 and 3\.4028235e\+38 .*got 1e-310"),
            (1e-40, r"between .*got 1e-40"),
            (1e39, r"between .*got 1e\+39"),
            ("1", r"of type int or float, got str '1'"),
        ]
    ],
    *[
        (
            f"temperature-{literal}",
            _raw_edit(
                lambda t, lit=literal: re.sub(r'"temperature": [^,}]+', f'"temperature": {lit}', t)
            ),
            rf"manifest\.json is not valid JSON \({message}\)",
        )
        for literal, message in [
            ("NaN", r"NaN is not a JSON number"),
            ("-Infinity", r"-Infinity is not a JSON number"),
            ("1e999", r"number 1e999 does not fit in a float"),
        ]
    ],
    (
        "epsilon-above-1",
        _sealed(_set("exploration", "epsilon", value=2.0)),
        r"field 'exploration': `Exploration\.epsilon` must be <= 1\.0, got 2\.0",
    ),
    (
        "exploration-unknown-key",
        _sealed(_set("exploration", "beta", value=1.0)),
        r"field 'exploration': .*unexpected keyword argument 'beta'",
    ),
    (
        "exploration-kind",
        _sealed(_set("exploration", "kind", value="boltzmann")),
        r"field 'exploration': `Exploration\.kind` must be one of .*got 'boltzmann'",
    ),
    (
        "exploration-a-list",
        _sealed(_set("exploration", value=[])),
        r"field 'exploration' must be a JSON object, got list",
    ),
    (
        "config-a-list",
        _sealed(_set("config", value=[1])),
        r"field 'config' must be a JSON object, got list",
    ),
    (
        "config-unknown-key",
        _sealed(_set("config", "zzz", value=1)),
        r"inconsistent '\w+' policy: field 'config' has unknown key 'zzz'",
    ),
    (
        "training-a-list",
        _sealed(_set("training", value=[])),
        r"field 'training' must be a JSON object, got list",
    ),
    ("created-int", _sealed(_set("created", value=0)), r"field 'created' must be a JSON string"),
    (
        "created-not-a-time",
        _sealed(_set("created", value="yesterday")),
        r"field 'created' must be an ISO 8601 time, got 'yesterday'",
    ),
    ("unknown-kind", _sealed(_set("kind", value="xgboost")), r"field 'kind' 'xgboost' is unknown"),
    (
        "kind-not-a-string",
        _sealed(_set("kind", value=["linear"])),
        r"field 'kind' must be a JSON string, got list",
    ),
    (
        "files-a-list",
        _sealed(_set("files", value=["weights.npz"])),
        r"field 'files' must be a JSON object, got list",
    ),
    ("files-empty", _sealed(_set("files", value={})), r"field 'files' must list weights\.npz"),
    *[
        (
            f"files-path-{label}",
            _sealed(_files_add(name)),
            rf"field 'files' names a path outside the artifact: '{escaped}'",
        )
        for label, name, escaped in [
            ("parent", "../x.npz", r"\.\./x\.npz"),
            ("absolute", "/etc/passwd", "/etc/passwd"),
            ("subdir", "sub/w.npz", r"sub/w\.npz"),
            ("dotdot", "..", r"\.\."),
            ("dot", ".", r"\."),
            ("empty", "", ""),
            ("backslash", "..\\x", r"\.\.\\\\x"),
        ]
    ],
    (
        "files-extra-file",
        _sealed(_files_add("extra.bin")),
        r"field 'files' lists 'extra\.bin'; an artifact holds only weights\.npz",
    ),
    (
        "files-the-manifest",
        _sealed(_files_add("manifest.json")),
        r"field 'files' lists 'manifest\.json'",
    ),
    (
        "files-without-sha256",
        _sealed(_set("files", "weights.npz", value={"bytes": 10})),
        r"field 'files\.weights\.npz' must hold a sha256 \(64 hex digits\) and bytes",
    ),
    (
        "files-sha256-not-hex",
        _sealed(_set("files", "weights.npz", "sha256", value="abc")),
        r"field 'files\.weights\.npz' must hold a sha256",
    ),
    (
        "files-bytes-negative",
        _sealed(_set("files", "weights.npz", "bytes", value=-1)),
        r"field 'files\.weights\.npz' must hold a sha256 .* and bytes \(an integer >= 0\)",
    ),
    (
        "files-bytes-bool",
        _sealed(_set("files", "weights.npz", "bytes", value=True)),
        r"field 'files\.weights\.npz' must hold",
    ),
    (
        "files-bytes-wrong",
        _sealed(lambda m: m["files"]["weights.npz"].__setitem__("bytes", 123)),
        r"file 'weights\.npz' is \d+ bytes, the manifest says 123",
    ),
    # -- the manifest file itself
    ("manifest-deleted", lambda d: (d / "manifest.json").unlink(), r"has no manifest\.json"),
    ("manifest-not-json", _raw_manifest("{not json"), r"manifest\.json is not valid JSON"),
    ("manifest-empty", _raw_manifest(""), r"manifest\.json is not valid JSON"),
    (
        "manifest-not-utf8",
        _raw_manifest(b'{"format": "\xff\xfe"}'),
        r"manifest\.json is not valid JSON \('utf-8' codec",
    ),
    ("manifest-list", _raw_manifest("[1, 2]"), r"manifest\.json must hold a JSON object, got list"),
    ("manifest-string", _raw_manifest('"x"'), r"manifest\.json must hold a JSON object, got str"),
    ("manifest-number", _raw_manifest("1e5"), r"manifest\.json must hold a JSON object, got float"),
    ("manifest-null", _raw_manifest("null"), r"must hold a JSON object, got NoneType"),
    (
        "manifest-nested-100000",
        _raw_manifest("[" * 100_000 + "]" * 100_000),
        r"manifest\.json nests deeper than 64 levels",
    ),
    (
        "manifest-object-nested-100000",
        _raw_manifest('{"a":' * 100_000 + "1" + "}" * 100_000),
        r"manifest\.json nests deeper than 64 levels",
    ),
    ("notes-nested-70", _deep_notes, r"manifest\.json nests deeper than 64 levels"),
    (
        "manifest-repeated-key",
        _raw_edit(lambda t: t.replace("{", '{"kind": "constant", ', 1)),
        r"manifest\.json is not valid JSON \(key 'kind' appears twice in one object\)",
    ),
    (
        "manifest-huge-integer",
        _raw_edit(lambda t: t.replace("{", '{"notes": ' + "9" * 5000 + ", ", 1)),
        r"manifest\.json is not valid JSON \(Exceeds the limit",
    ),
    (
        "manifest-over-16MiB",
        _big_manifest,
        r"manifest\.json is \d+ bytes, more than 16777216",
    ),
    (
        "manifest-symlink",
        _symlinked("manifest.json"),
        r"file 'manifest\.json' is a symbolic link; an artifact's files must be regular files",
    ),
    # -- weights.npz: its size, then its members' names and headers, then its hash
    (
        "weights-deleted",
        lambda d: (d / "weights.npz").unlink(),
        r"'weights\.npz' listed in the manifest is missing",
    ),
    (
        "weights-symlink",
        _symlinked("weights.npz"),
        r"file 'weights\.npz' is a symbolic link; an artifact's files must be regular files",
    ),
    ("weights-a-directory", _replaced_by_dir, r"file 'weights\.npz' is not a regular file"),
    ("weights-a-fifo", _replaced_by_fifo, r"file 'weights\.npz' is not a regular file"),
    (
        "weights-truncated",
        lambda d: (d / "weights.npz").write_bytes((d / "weights.npz").read_bytes()[:100]),
        r"file 'weights\.npz' is 100 bytes, the manifest says \d+",
    ),
    (
        "weights-huge-sparse",
        _sparse_weights,
        r"file 'weights\.npz' is 2147483648 bytes, more than any policy may hold",
    ),
    (
        "weights-huge-unlisted-size",
        lambda d: (d / "weights.npz").open("r+b").truncate(2 << 30),
        r"file 'weights\.npz' is 2147483648 bytes, the manifest says \d+",
    ),
    (
        "weights-junk-before-zip",
        _prepend_junk,
        r"file 'weights\.npz' is \d+ bytes, more than its arrays need \(at most \d+\)",
    ),
    (
        "weights-not-a-zip",
        lambda d: ((d / "weights.npz").write_bytes(b"x" * 1000), rehash_weights(d)),
        r"weights\.npz is not a zip archive",
    ),
    (
        "member-unknown",
        _rewrite_weights(lambda a, first: a.update(extra=np.zeros(3))),
        r"weights\.npz has unknown member 'extra\.npy'; a '[\w]+' policy with 4 actions and 5 "
        r"features saves \[",
    ),
    (
        "member-not-npy",
        _zip_members(lambda a, first: [*_all_members(a, first), ("notes.txt", b"hi")]),
        r"weights\.npz has unknown member 'notes\.txt'",
    ),
    (
        "member-missing",
        _rewrite_weights(lambda a, first: a.pop(first)),
        r"weights\.npz lacks member '\w+\.npy' \(a '\w+' policy",
    ),
    ("member-twice", _zip_members(_twice_first), r"weights\.npz has member '\w+\.npy' twice"),
    (
        "member-object-dtype",
        _rewrite_weights(lambda a, first: a.update({first: np.array([{"x": 1}, None])})),
        r"member '\w+\.npy' has dtype object; policy arrays are real numbers",
    ),
    (
        "member-complex",
        _rewrite_weights(lambda a, first: a.update({first: a[first] * (1 + 1j)})),
        r"member '\w+\.npy' has dtype complex128; policy arrays are real numbers",
    ),
    (
        "member-strings",
        _rewrite_weights(lambda a, first: a.update({first: np.array(["a", "b"])})),
        r"member '\w+\.npy' has dtype <U1",
    ),
    (
        "member-structured",
        _rewrite_weights(lambda a, first: a.update({first: np.zeros(2, "f8,f8")})),
        r"member '\w+\.npy' has dtype \[\('f0', '<f8'\), \('f1', '<f8'\)\]",
    ),
    (
        "member-float128",
        _rewrite_weights(lambda a, first: a.update({first: a[first].astype(np.longdouble)})),
        r"member '\w+\.npy' has dtype float128",
    ),
    (
        "member-declares-10^12-rows",
        _zip_members(_huge_first),
        r"member '\w+\.npy' declares shape \(1000000000000,",
    ),
    (
        "member-wrong-ndim",
        _rewrite_weights(lambda a, first: a.update({first: a[first][..., None]})),
        r"member '\w+\.npy' declares shape \([\d, ]+\); a '\w+' policy with 4 actions and 5 "
        r"features saves shape \(",
    ),
    (
        "member-one-row-more",
        _rewrite_weights(
            lambda a, first: a.update({first: np.concatenate([a[first], a[first][:1]])})
        ),
        r"member '\w+\.npy' declares shape|inconsistent '\w+' policy: (`\w+` must have "
        r"shape|edges of '\w+' must be finite and strictly increasing)",
    ),
    (
        "member-bytes-beyond-header",
        _zip_members(_padded_first),
        r"member '\w+\.npy' is \d+ bytes, but its header \(shape .*\) makes \d+",
    ),
    (
        "member-not-npy-bytes",
        _zip_members(_garbage_first),
        r"member '\w+\.npy' is not a \.npy array",
    ),
    (
        "member-compressed",
        _zip_members(_all_members, zipfile.ZIP_DEFLATED),
        r"member '\w+\.npy' is compressed or encrypted \(method 8\)",
    ),
    (
        "member-nan",
        _rewrite_weights(lambda a, first: a[first].flat.__setitem__(0, np.nan)),
        r"member '\w+\.npy' holds nan at index \(0,[ 0,]*\); policy arrays must be finite",
    ),
    (
        "member-inf",
        _rewrite_weights(lambda a, first: a[first].flat.__setitem__(-1, -np.inf)),
        r"member '\w+\.npy' holds -inf at index",
    ),
    (
        "weights-changed-same-size",
        _same_size_other_values,
        r"file 'weights\.npz' does not match its sha256 \(tampered or corrupt\)",
    ),
]


@pytest.mark.parametrize(
    ("tamper", "match"), [row[1:] for row in TAMPERED], ids=[row[0] for row in TAMPERED]
)
def test_load_refuses_tampered_artifact(kind_artifact, tamper, match):
    load_policy(kind_artifact)  # intact it loads
    tamper(kind_artifact)
    with pytest.raises(PolicyArtifactError, match=match) as info:
        load_policy(kind_artifact)
    # every message names the artifact directory it refers to, on one line
    assert str(kind_artifact) in str(info.value)
    assert "\n" not in str(info.value)


def test_tamper_table_controls(kind_artifact):
    # Re-sealing or re-hashing alone is not what makes the rows above fail.
    reseal(kind_artifact)
    rehash_weights(kind_artifact)
    _rewrite_weights(lambda a, first: None)(kind_artifact)
    load_policy(kind_artifact)


def test_notes_and_formatting_may_change(kind_artifact):
    # What an honest hand may do: add or edit notes, reformat the file, reorder its keys.
    m = _manifest(kind_artifact)
    m["notes"] = {"reviewed_by": "ana", "ticket": 12}
    text = json.dumps(dict(reversed(list(m.items()))), indent=8)
    (kind_artifact / "manifest.json").write_text(text)
    pol = load_policy(kind_artifact)
    assert read_manifest(kind_artifact)["notes"] == {"reviewed_by": "ana", "ticket": 12}
    assert pol.action_names == tuple(ACTIONS)


def test_symlinked_artifact_directory_loads(kind_artifact, tmp_path):
    # A deployment's "current" link to the version it serves: followed once.
    link = tmp_path / "current"
    link.symlink_to(kind_artifact, target_is_directory=True)
    assert load_policy(link).action_names == tuple(ACTIONS)


# ---------------------------------------------------------------------- kind-specific cases
def _non_psd(a: dict[str, np.ndarray], first: str) -> None:
    a["a_inv"] = a["a_inv"].copy()
    a["a_inv"][1] -= 2.0 * np.eye(a["a_inv"].shape[1]) * np.abs(a["a_inv"][1]).max()


def _asymmetric(a: dict[str, np.ndarray], first: str) -> None:
    a["a_inv"] = a["a_inv"].copy()
    a["a_inv"][2, 0, 1] += 1.0


def _wider_hidden(a: dict[str, np.ndarray], first: str) -> None:
    a["w0"] = np.ones((5, 7))


def _huge_hidden(arrays: dict[str, np.ndarray], first: str) -> list[tuple[str, bytes]]:
    out = [(f"{k}.npy", _npy(v)) for k, v in arrays.items() if k != "w0"]
    return [("w0.npy", _npy_bytes((5, 10**9))), *out]


KIND_TAMPERED: list[tuple[str, str, Callable[[Path], None], str]] = [
    (
        "linear",
        "a-inv-not-psd",
        _rewrite_weights(_non_psd),
        r"inconsistent 'linear' policy: `a_inv` must be positive semi-definite, got eigenvalue "
        r"-[\d.e+-]+ for action 1",
    ),
    (
        "linear",
        "a-inv-not-symmetric",
        _rewrite_weights(_asymmetric),
        r"inconsistent 'linear' policy: `a_inv` must be symmetric, got .* for action 2",
    ),
    (
        "thompson-gaussian",
        "a-inv-not-psd",
        _rewrite_weights(_non_psd),
        r"inconsistent 'thompson' policy: `a_inv` must be positive semi-definite, got eigenvalue",
    ),
    (
        "linear",
        "a-inv-missing-with-alpha",
        _rewrite_weights(lambda a, first: a.pop("a_inv")),
        r"weights\.npz lacks member 'a_inv\.npy'",
    ),
    (
        "linear",
        "alpha-a-string",
        _sealed(_set("config", "alpha", value="0.8")),
        r"inconsistent 'linear' policy: field 'config\.alpha' must be a number, got '0\.8'",
    ),
    (
        "linear",
        "alpha-negative",
        _sealed(_set("config", "alpha", value=-1.0)),
        r"field 'config\.alpha' must be a finite number >= 0\.0, got -1\.0",
    ),
    (
        "linear",
        "alpha-missing",
        _sealed(lambda m: m["config"].pop("alpha")),
        r"inconsistent 'linear' policy: field 'config' lacks key 'alpha'",
    ),
    (
        "linear",
        "features-do-not-match-weights",
        _sealed(_set("feature_names", value=["only_one"])),
        r"member '(a_inv|beta)\.npy' declares shape \(4, 5(, 5)?\); a 'linear' policy with 4 "
        r"actions and 1 features saves shape \(4, 1",
    ),
    (
        "thompson-gaussian",
        "interact-with-repeated",
        _sealed(_set("config", "interact_with", value=["seg_a", "seg_a"])),
        r"field 'config\.interact_with' must not repeat a name, got 'seg_a' twice",
    ),
    (
        "mlp",
        "n-layers-a-string",
        _sealed(_set("config", "n_layers", value="2")),
        r"field 'config\.n_layers' must be an integer in \[1, 256\], got '2'",
    ),
    (
        "mlp",
        "n-layers-huge",
        _sealed(_set("config", "n_layers", value=10**6)),
        r"field 'config\.n_layers' must be an integer in \[1, 256\], got 1000000",
    ),
    (
        "mlp",
        "activation-unknown",
        _sealed(_set("config", "activation", value="sigmoid")),
        r"field 'config\.activation' must be one of \['relu', 'tanh'\], got 'sigmoid'",
    ),
    (
        "mlp",
        "hidden-width-inconsistent",
        _rewrite_weights(_wider_hidden),
        r"inconsistent 'mlp' policy: `b0` must have shape \(7,\)",
    ),
    (
        "mlp",
        "hidden-width-10^9",
        _zip_members(_huge_hidden),
        rf"member 'w0\.npy' declares shape \(5, 1000000000\): more than {MAX_ARRAY_ELEMENTS} "
        r"numbers in all",
    ),
    (
        "tabular",
        "state-features-a-string",
        _sealed(_set("config", "state_features", value="recency")),
        r"field 'config\.state_features' must be a list of names, got 'recency'",
    ),
    (
        "tabular",
        "argmax-over-not-lists",
        _sealed(_set("config", "argmax_over", value=["recency"])),
        r"field 'config\.argmax_over' must be a list of lists of names",
    ),
    (
        "tabular",
        "table-rows-wrong",
        _rewrite_weights(lambda a, first: a.update(table=np.zeros((5, 4)))),
        r"inconsistent 'tabular' policy: `table` must have shape \(3, 4\), got \(5, 4\)",
    ),
    (
        "tabular",
        "edges-not-increasing",
        _rewrite_weights(lambda a, first: a.update(edges_0=np.array([1.0, 0.0]))),
        r"edges of 'recency' must be finite and strictly increasing",
    ),
    (
        "thompson-beta",
        "family-unknown",
        _sealed(_set("config", "family", value="poisson")),
        r"field 'config\.family' must be one of \['beta', 'gaussian'\], got 'poisson'",
    ),
    (
        "thompson-beta",
        "beta-a-zero",
        _rewrite_weights(lambda a, first: a["beta_a"].__setitem__((1, 0), 0.0)),
        r"`beta_a` must be > 0, got 0\.0 at index \(1, 0\)",
    ),
    (
        "thompson-beta",
        "softmax-exploration",
        _sealed(_set("exploration", "kind", value="softmax")),
        r"`exploration\.kind` must be 'greedy' for a Thompson policy",
    ),
    (
        "thompson-gaussian",
        "alpha-negative",
        _sealed(_set("config", "alpha", value=-0.5)),
        r"field 'config\.alpha' must be a finite number >= 0\.0, got -0\.5",
    ),
]


@pytest.mark.parametrize(
    ("name", "tamper", "match"),
    [(row[0], *row[2:]) for row in KIND_TAMPERED],
    ids=[f"{row[0]}-{row[1]}" for row in KIND_TAMPERED],
)
def test_load_refuses_kind_specific_tampering(name, tamper, match, tmp_path):
    path = save_policy(KINDS[name](), tmp_path / name)
    load_policy(path)
    tamper(path)
    with pytest.raises(PolicyArtifactError, match=match) as info:
        load_policy(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------- the library side
@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (
            lambda: ConstantPolicy(FEATURES, ["a", "b", "a"], np.zeros(3)),
            ValueError,
            r"`action_names` must be unique, got 'a' twice \(at 0 and 2\)",
        ),
        (
            lambda: ConstantPolicy(["x", "x"], ACTIONS, np.zeros(4)),
            ValueError,
            r"`feature_names` must be unique, got 'x' twice",
        ),
        (
            lambda: ConstantPolicy(FEATURES, ["a", 2], np.zeros(2)),
            TypeError,
            r"`action_names` must hold strings, got int 2 at 1",
        ),
        (
            lambda: ConstantPolicy(FEATURES, [], np.zeros(0)),
            ValueError,
            r"`action_names` must name at least 1, got 0",
        ),
        (
            lambda: Exploration("softmax", temperature=1e-310),
            ValueError,
            r"`Exploration\.temperature` must be between 1\.1754944e-38 and 3\.4028235e\+38",
        ),
        (
            lambda: Exploration("softmax", temperature=float("nan")),
            ValueError,
            r"`Exploration\.temperature` must be finite, got nan",
        ),
        (
            lambda: Exploration("softmax", temperature=float("inf")),
            ValueError,
            r"`Exploration\.temperature` must be finite, got inf",
        ),
        (
            lambda: LinearPolicy(
                FEATURES, ACTIONS, np.zeros((4, 5)), a_inv=-np.stack([np.eye(5)] * 4), alpha=1.0
            ),
            ValueError,
            r"`a_inv` must be positive semi-definite, got eigenvalue -1 for action 0",
        ),
        (
            lambda: LinearPolicy(FEATURES, ACTIONS, np.zeros((4, 5)) * (1 + 1j)),
            TypeError,
            r"`beta` must be real, got dtype complex128",
        ),
        (
            lambda: MLPPolicy(FEATURES, ACTIONS, [np.ones((5, 4), np.complex64)], [np.ones(4)]),
            TypeError,
            r"`w0` must be real, got dtype complex64",
        ),
    ],
    ids=[
        "duplicate-actions",
        "duplicate-features",
        "action-not-a-string",
        "no-actions",
        "temperature-subnormal",
        "temperature-nan",
        "temperature-inf",
        "linucb-a-inv-negative-definite",
        "linear-beta-complex",
        "mlp-weights-complex",
    ],
)
def test_policies_refuse_what_no_artifact_may_hold(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("temperature", [2e-38, 1e-30, 1e-10])
def test_tiny_temperature_gives_finite_greedy_limit(temperature, dtype):
    # Scores divided by the temperature overflow (1e30 / 2e-38); shifted by the best score
    # first they do not: the probabilities are the greedy limit, finite, summing to 1.
    big = 1e30 if dtype == np.float32 else 1e300
    scores = np.array([[big, -big, 0.5 * big], [1.0, 3.0, 2.0]], dtype=dtype)
    masks = np.array([[True, True, True], [True, False, True]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        probs = Exploration("softmax", temperature=temperature).probabilities(scores, masks)
    np.testing.assert_array_equal(probs, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def test_loaded_softmax_policy_with_tiny_temperature_is_finite(tmp_path):
    pol = ConstantPolicy(
        FEATURES, ACTIONS, np.array([1e300, -1e300, 0.0, 1.0]), Exploration("softmax", 0.0, 1e-30)
    )
    loaded = load_policy(save_policy(pol, tmp_path / "p"))
    probs = loaded.probabilities(np.zeros((2, 5)))
    np.testing.assert_array_equal(probs, [[1.0, 0.0, 0.0, 0.0]] * 2)


def test_load_reads_only_the_hashed_bytes(kind_artifact, monkeypatch):
    # weights.npz is read once: the arrays come from the bytes that were hashed, so a file
    # swapped between the hash and the load cannot slip in (np.load never opens the path).
    opened: list[object] = []
    real_load = np.load

    def spy(file, *args, **kwargs):
        opened.append(file)
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    load_policy(kind_artifact)
    assert len(opened) == 1 and isinstance(opened[0], io.BytesIO)


def test_load_refuses_missing_directory(tmp_path):
    with pytest.raises(PolicyArtifactError, match=r"does-not-exist': is not a directory"):
        load_policy(tmp_path / "does-not-exist")


def test_load_refuses_a_file(tmp_path):
    f = tmp_path / "policy.npz"
    f.write_bytes(b"PK")
    with pytest.raises(PolicyArtifactError, match=r"is not a directory"):
        load_policy(f)


def test_load_refuses_empty_directory(tmp_path):
    with pytest.raises(PolicyArtifactError, match=r"has no manifest\.json"):
        load_policy(tmp_path)


def test_policy_artifact_error_is_a_value_error():
    assert issubclass(PolicyArtifactError, ValueError)


def test_weights_npz_is_a_plain_zip_of_npy(artifact):
    # no pickle anywhere: every member is a stored .npy with a non-object dtype header
    with zipfile.ZipFile(artifact / "weights.npz") as z:
        names = sorted(z.namelist())
        assert names == ["a_inv.npy", "beta.npy"]
        for info in z.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            header = z.read(info.filename)[:128]
            assert header.startswith(b"\x93NUMPY")
            assert b"'descr': '<f8'" in header


def test_read_manifest_parses_like_the_loader(artifact):
    _raw_manifest("[" * 100_000 + "]" * 100_000)(artifact)
    with pytest.raises(PolicyArtifactError, match=r"nests deeper than 64 levels"):
        read_manifest(artifact)
