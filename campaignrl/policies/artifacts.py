"""Policy artifacts: a directory with ``manifest.json`` and ``weights.npz``, never pickle.

``manifest.json`` holds the format version, the policy kind, feature names (and the encoding
they come from), the action catalog, exploration, the kind's settings, the creation time,
training metadata and the sha256 and size of every other file. ``weights.npz`` holds numeric
arrays only and is loaded with ``allow_pickle=False``. Loading re-hashes every file, so a
tampered, truncated or incomplete artifact is refused with a message naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from campaignrl._fs import ordinary_mode
from campaignrl.policies.base import Exploration, Policy

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "POLICY_KINDS",
    "PolicyArtifactError",
    "load_policy",
    "read_manifest",
    "register_policy_kind",
    "save_policy",
]

FORMAT = "campaignrl.policy"
FORMAT_VERSION = 1
_WEIGHTS = "weights.npz"
_MANIFEST = "manifest.json"
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024

POLICY_KINDS: dict[str, type[Policy]] = {}
"""Policy classes by artifact kind."""


class PolicyArtifactError(ValueError):
    """An artifact directory that cannot be loaded (missing, malformed or tampered)."""


def register_policy_kind(cls: type[Policy]) -> type[Policy]:
    """Class decorator: make ``cls.kind`` loadable by :func:`load_policy`."""
    POLICY_KINDS[cls.kind] = cls
    return cls


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_policy(
    policy: Policy,
    directory: str | os.PathLike[str],
    *,
    training: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``policy`` to ``directory`` atomically (built beside it, then renamed in).

    Args:
        policy: The policy to save.
        directory: Target directory; must not exist or be empty unless ``overwrite``.
        training: JSON-able training metadata (agent, world, seed, timesteps...).
        overwrite: Replace an existing artifact.

    Returns:
        The directory written.
    """
    if policy.kind not in POLICY_KINDS:
        raise ValueError(f"policy kind {policy.kind!r} is not registered; cannot be loaded back")
    target = Path(directory)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"`directory` {str(target)!r} exists and is not empty")
    arrays = policy.parameters()
    for name, arr in arrays.items():
        if not isinstance(arr, np.ndarray) or arr.dtype == object:
            raise TypeError(f"policy parameter {name!r} must be a numeric ndarray")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(tmp, ordinary_mode(directory=True))
        np.savez(tmp / _WEIGHTS, **arrays)  # type: ignore[arg-type]  # numpy's stub types allow_pickle
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": policy.kind,
            "feature_names": list(policy.feature_names),
            "feature_encoding": "campaignrl.envs.observation/v1",
            "action_names": list(policy.action_names),
            "exploration": policy.exploration.to_dict(),
            "config": policy.config(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "training": training or {},
            "files": {
                _WEIGHTS: {
                    "sha256": _sha256(tmp / _WEIGHTS),
                    "bytes": (tmp / _WEIGHTS).stat().st_size,
                }
            },
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _fail(directory: Path, message: str) -> PolicyArtifactError:
    return PolicyArtifactError(f"policy artifact {str(directory)!r}: {message}")


def load_policy(directory: str | os.PathLike[str]) -> Policy:
    """Load any policy kind from an artifact directory, checking every file's sha256.

    Raises:
        PolicyArtifactError: If the directory, manifest or weights are missing, malformed,
            of an unknown kind or version, or do not match their recorded hashes.
    """
    root = Path(directory)
    if not root.is_dir():
        raise _fail(root, "is not a directory")
    mpath = root / _MANIFEST
    if not mpath.is_file():
        raise _fail(root, f"has no {_MANIFEST}")
    if mpath.stat().st_size > _MAX_MANIFEST_BYTES:
        raise _fail(root, f"{_MANIFEST} is larger than {_MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(root, f"{_MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise _fail(root, f"{_MANIFEST} must hold a JSON object")
    required = (
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
    )
    for key in required:
        if key not in manifest:
            raise _fail(root, f"{_MANIFEST} is missing field {key!r}")
    if manifest["format"] != FORMAT:
        raise _fail(root, f"field 'format' must be {FORMAT!r}, got {manifest['format']!r}")
    version = manifest["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT_VERSION:
        raise _fail(
            root,
            f"field 'format_version' {manifest['format_version']!r} is not supported "
            f"(this campaignrl reads version {FORMAT_VERSION})",
        )
    kind = manifest["kind"]
    if not isinstance(kind, str) or kind not in POLICY_KINDS:
        raise _fail(root, f"field 'kind' {kind!r} is unknown; known: {sorted(POLICY_KINDS)}")
    files = manifest["files"]
    if not isinstance(files, dict) or _WEIGHTS not in files:
        raise _fail(root, f"field 'files' must list {_WEIGHTS}")
    for name, meta in files.items():
        path = root / name
        if Path(name).name != name:
            raise _fail(root, f"field 'files' names a path outside the artifact: {name!r}")
        if not path.is_file():
            raise _fail(root, f"file {name!r} listed in the manifest is missing")
        if not isinstance(meta, dict) or "sha256" not in meta:
            raise _fail(root, f"field 'files.{name}' must hold a sha256")
        if _sha256(path) != meta["sha256"]:
            raise _fail(root, f"file {name!r} does not match its sha256 (tampered or corrupt)")
    try:
        with np.load(root / _WEIGHTS, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise _fail(root, f"{_WEIGHTS} cannot be read without pickle ({exc})") from None
    try:
        exploration = Exploration(**manifest["exploration"])
        return POLICY_KINDS[kind].from_saved(
            tuple(manifest["feature_names"]),
            tuple(manifest["action_names"]),
            exploration,
            manifest["config"],
            arrays,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(root, f"inconsistent {kind!r} policy: {exc}") from None


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an artifact (no hash checks; use :func:`load_policy` to load)."""
    return json.loads((Path(directory) / _MANIFEST).read_text())
