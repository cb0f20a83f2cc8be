"""Policy artifacts: manifest content, npz without pickle, atomic save, tampered dirs refused."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

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
from campaignrl.policies.artifacts import FORMAT, FORMAT_VERSION

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


def _rehash(d: Path) -> None:
    """Fix the manifest's sha256 and size of weights.npz after rewriting it."""
    m = _manifest(d)
    w = d / "weights.npz"
    m["files"]["weights.npz"] = {"sha256": _sha(w), "bytes": w.stat().st_size}
    _write_manifest(d, m)


# ---------------------------------------------------------------------- manifest and weights
def test_manifest_has_every_field(artifact):
    m = _manifest(artifact)
    assert m["format"] == FORMAT == "campaignrl.policy"
    assert m["format_version"] == FORMAT_VERSION == 1
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


# ---------------------------------------------------------------------- round trips
def _round_trip_cases() -> list[tuple[str, Callable[[], Policy]]]:
    rng = np.random.default_rng(9)
    return [
        ("constant", lambda: ConstantPolicy(FEATURES, ACTIONS, rng.normal(size=4))),
        ("linear", _linear),
        (
            "tabular",
            lambda: TabularPolicy(
                FEATURES, ACTIONS, ["recency", "spend"], [[0.0, 1.0], []], rng.normal(size=(3, 4))
            ),
        ),
        (
            "mlp",
            lambda: MLPPolicy(
                FEATURES,
                ACTIONS,
                [rng.normal(size=(5, 3)), rng.normal(size=(3, 4))],
                [rng.normal(size=3), rng.normal(size=4)],
                "relu",
            ),
        ),
        (
            "thompson",
            lambda: BetaThompsonPolicy(
                FEATURES,
                ACTIONS,
                ["recency"],
                [[0.0, 1.0]],
                rng.uniform(1, 50, size=(3, 4)),
                rng.uniform(1, 500, size=(3, 4)),
                Exploration(epsilon=0.05),
            ),
        ),
        (
            "thompson",
            lambda: GaussianThompsonPolicy(
                FEATURES,
                ACTIONS,
                rng.normal(size=(4, 10)),
                np.stack([np.linalg.inv(np.eye(10) * (1 + i)) for i in range(4)]),
                0.7,
                interact_with=["seg_a", "seg_b"],
            ),
        ),
    ]


@pytest.mark.parametrize(
    ("kind", "factory"), _round_trip_cases(), ids=[c[0] for c in _round_trip_cases()]
)
def test_round_trip_parameters_identical(kind, factory, tmp_path):
    pol = factory()
    loaded = load_policy(save_policy(pol, tmp_path / kind))
    assert loaded.kind == kind
    assert loaded.config() == pol.config()
    orig, back = pol.parameters(), loaded.parameters()
    assert sorted(orig) == sorted(back)
    for k in orig:
        np.testing.assert_array_equal(back[k], orig[k])


# ---------------------------------------------------------------------- refuse tampered
def _flip_bytes(d: Path) -> None:
    w = d / "weights.npz"
    data = bytearray(w.read_bytes())
    mid = len(data) // 2
    data[mid] ^= 0xFF
    w.write_bytes(bytes(data))


def _replace_weights(d: Path) -> None:
    np.savez(d / "weights.npz", beta=np.zeros((4, 5)), a_inv=np.zeros((4, 5, 5)))


def _truncate_weights(d: Path) -> None:
    w = d / "weights.npz"
    w.write_bytes(w.read_bytes()[:100])


def _edit(**changes) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        m = _manifest(d)
        m.update(changes)
        _write_manifest(d, m)

    return apply


def _drop(key: str) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        m = _manifest(d)
        del m[key]
        _write_manifest(d, m)

    return apply


def _files(files: object) -> Callable[[Path], None]:
    return _edit(files=files)


def _pickled_object_array(d: Path) -> None:
    # A valid npz whose array is an object array (needs pickle), re-hashed so only
    # allow_pickle=False stands between it and the loader.
    np.savez(
        d / "weights.npz",
        beta=np.array([{"__reduce__": "os.system"}, None], dtype=object),
        a_inv=np.zeros((4, 5, 5)),
    )
    _rehash(d)


def _rehashed_arrays(**arrays: np.ndarray) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        with np.load(d / "weights.npz", allow_pickle=False) as npz:
            current = {k: npz[k] for k in npz.files}
        current.update(arrays)
        for k in [k for k, v in arrays.items() if v is None]:
            del current[k]
        np.savez(d / "weights.npz", **current)
        _rehash(d)

    return apply


def _write_raw_manifest(text: str | bytes) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        p = d / "manifest.json"
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)

    return apply


REQUIRED = (
    "format",
    "format_version",
    "kind",
    "feature_names",
    "action_names",
    "exploration",
    "config",
    "files",
)

TAMPERED: list[tuple[str, Callable[[Path], None], str]] = [
    ("weights-bytes-flipped", _flip_bytes, r"'weights\.npz' does not match its sha256"),
    ("weights-replaced", _replace_weights, r"'weights\.npz' does not match its sha256"),
    ("weights-truncated", _truncate_weights, r"'weights\.npz' does not match its sha256"),
    (
        "weights-deleted",
        lambda d: (d / "weights.npz").unlink(),
        r"'weights\.npz' listed in the manifest is missing",
    ),
    ("manifest-deleted", lambda d: (d / "manifest.json").unlink(), r"has no manifest\.json"),
    ("manifest-not-json", _write_raw_manifest("{not json"), r"manifest\.json is not valid JSON"),
    ("manifest-empty", _write_raw_manifest(""), r"manifest\.json is not valid JSON"),
    (
        "manifest-not-utf8",
        _write_raw_manifest(b'{"format": "\xff\xfe"}'),
        r"manifest\.json is not valid JSON",
    ),
    ("manifest-list", _write_raw_manifest("[1, 2]"), r"manifest\.json must hold a JSON object"),
    ("manifest-string", _write_raw_manifest('"x"'), r"manifest\.json must hold a JSON object"),
    *[
        (f"missing-{key}", _drop(key), rf"manifest\.json is missing field '{key}'")
        for key in REQUIRED
    ],
    (
        "wrong-format",
        _edit(format="onnx.model"),
        r"field 'format' must be 'campaignrl\.policy', got 'onnx\.model'",
    ),
    (
        "format-version-2",
        _edit(format_version=2),
        r"field 'format_version' 2 is not supported",
    ),
    (
        "format-version-string",
        _edit(format_version="1"),
        r"field 'format_version' '1' is not supported",
    ),
    ("unknown-kind", _edit(kind="xgboost"), r"field 'kind' 'xgboost' is unknown"),
    ("kind-not-a-string", _edit(kind=["linear"]), r"field 'kind'"),
    ("files-not-a-dict", _files(["weights.npz"]), r"field 'files' must list weights\.npz"),
    ("files-without-weights", _files({}), r"field 'files' must list weights\.npz"),
    (
        "files-parent-path",
        lambda d: _files(
            {"weights.npz": _manifest(d)["files"]["weights.npz"], "../x.npz": {"sha256": "0"}}
        )(d),
        r"field 'files' names a path outside the artifact: '\.\./x\.npz'",
    ),
    (
        "files-absolute-path",
        lambda d: _files(
            {"weights.npz": _manifest(d)["files"]["weights.npz"], "/etc/passwd": {"sha256": "0"}}
        )(d),
        r"field 'files' names a path outside the artifact: '/etc/passwd'",
    ),
    (
        "files-subdir-path",
        lambda d: _files(
            {"weights.npz": _manifest(d)["files"]["weights.npz"], "sub/w.npz": {"sha256": "0"}}
        )(d),
        r"names a path outside the artifact: 'sub/w\.npz'",
    ),
    (
        "files-without-sha256",
        _files({"weights.npz": {"bytes": 10}}),
        r"field 'files\.weights\.npz' must hold a sha256",
    ),
    (
        "files-wrong-sha256",
        _files({"weights.npz": {"sha256": "0" * 64, "bytes": 10}}),
        r"'weights\.npz' does not match its sha256",
    ),
    (
        "pickled-object-array",
        _pickled_object_array,
        r"weights\.npz cannot be read without pickle",
    ),
    (
        "beta-wrong-shape",
        _rehashed_arrays(beta=np.zeros((3, 5))),
        r"inconsistent 'linear' policy: `beta` must have shape \(4, 5\)",
    ),
    (
        "a-inv-wrong-shape",
        _rehashed_arrays(a_inv=np.zeros((4, 5, 4))),
        r"inconsistent 'linear' policy: `a_inv` must have shape",
    ),
    (
        "beta-nan",
        _rehashed_arrays(beta=np.full((4, 5), np.nan)),
        r"inconsistent 'linear' policy: `beta` must be finite",
    ),
    (
        "beta-strings",
        _rehashed_arrays(beta=np.array(["a", "b"])),
        r"inconsistent 'linear' policy: `beta` must be a numeric array",
    ),
    (
        "beta-missing",
        _rehashed_arrays(beta=None),
        r"inconsistent 'linear' policy: .*'beta'",
    ),
    (
        "a-inv-missing-with-alpha",
        _rehashed_arrays(a_inv=None),
        r"inconsistent 'linear' policy: `a_inv` is required",
    ),
    (
        "feature-names-do-not-match-weights",
        _edit(feature_names=["only_one"]),
        r"inconsistent 'linear' policy: `beta` must have shape \(4, 1\)",
    ),
    (
        "config-missing-alpha",
        _edit(config={"interact_with": []}),
        r"inconsistent 'linear' policy: 'alpha'",
    ),
    (
        "exploration-unknown-field",
        _edit(exploration={"kind": "greedy", "beta": 1.0}),
        r"inconsistent 'linear' policy: .*'beta'",
    ),
    (
        "exploration-bad-value",
        _edit(exploration={"kind": "greedy", "epsilon": 2.0, "temperature": 1.0}),
        r"inconsistent 'linear' policy: `Exploration\.epsilon` must be <= 1",
    ),
]


@pytest.mark.parametrize(
    ("tamper", "match"), [row[1:] for row in TAMPERED], ids=[row[0] for row in TAMPERED]
)
def test_load_refuses_tampered_artifact(artifact, tamper, match):
    load_policy(artifact)  # intact it loads
    tamper(artifact)
    with pytest.raises(PolicyArtifactError, match=match) as info:
        load_policy(artifact)
    # every message names the artifact directory it refers to
    assert str(artifact) in str(info.value)


def test_rehashed_consistent_weights_load(artifact):
    # control for the table: re-hashing alone is not what makes the tampered rows fail
    new_beta = np.arange(20, dtype=float).reshape(4, 5)
    _rehashed_arrays(beta=new_beta)(artifact)
    np.testing.assert_array_equal(load_policy(artifact).beta, new_beta)


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
    # no pickle anywhere: every member is a .npy with a non-object dtype header
    with zipfile.ZipFile(artifact / "weights.npz") as z:
        names = sorted(z.namelist())
        assert names == ["a_inv.npy", "beta.npy"]
        for name in names:
            header = z.read(name)[:128]
            assert header.startswith(b"\x93NUMPY")
            assert b"'descr': '<f8'" in header
