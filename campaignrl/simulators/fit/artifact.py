"""Fitted-simulator directories (SIMDIR): ``manifest.json`` + ``arrays.npz``, never pickle.

``manifest.json`` holds the format name and version, the fitted world
(:meth:`WorldSpec.to_dict`), the segment profile, the notes on what the log could not
identify, the fit's diagnostics and settings, the sha256 and size of ``arrays.npz``, and
``manifest_sha256`` (the sha256 of the manifest's own parsed content, as policy artifacts
have: :func:`campaignrl.policies.artifacts.manifest_checksum`). ``arrays.npz`` holds the
per-customer results (customer ids as unicode, segment, taste vectors) and is read with
``allow_pickle=False`` after its sha256 is checked. Only a top-level ``notes_by_hand`` field
may be edited by hand. The checksums detect edits and corruption, not forgery.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from campaignrl._fs import ordinary_mode
from campaignrl.simulators.spec import WorldSpec

__all__ = [
    "ARRAYS",
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "SimulatorArtifactError",
    "is_simulator_dir",
    "load_fitted",
    "read_world",
    "save_fitted",
]

FORMAT = "campaignrl-fitted-simulator"
"""the manifest's ``format`` value"""
FORMAT_VERSION = 1
"""1: world, profile, notes, diagnostics; arrays customer_ids, segment, tastes"""
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
_ARRAY_NAMES = ("customer_ids", "segment", "tastes")
_CHECKSUM = "manifest_sha256"
_MAX_MANIFEST_BYTES = 32 * 1024 * 1024


class SimulatorArtifactError(ValueError):
    """A simulator directory that cannot be loaded (missing, malformed or tampered)."""


def _checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k not in (_CHECKSUM, "notes_by_hand")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _json_safe(value: Any) -> Any:
    """NaN and infinities become ``None`` (strict JSON has neither)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def save_fitted(fitted: Any, directory: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a :class:`~campaignrl.simulators.fit.FittedSimulator` to ``directory``.

    The files are written into a temporary directory beside the target, which is then
    renamed into place: a failure never leaves a half-written SIMDIR.

    Raises:
        FileExistsError: If ``directory`` exists and ``overwrite`` is false.
    """
    out = Path(directory)
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise FileExistsError(
            f"{str(out)!r} exists; pass overwrite=True (--overwrite) to replace it"
        )
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{str(out)!r} is a file; give a directory path")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, ordinary_mode(directory=True))
        buf = io.BytesIO()
        np.savez(
            buf,
            customer_ids=np.asarray(fitted.customer_ids).astype(str),
            segment=np.asarray(fitted.segment, dtype=np.int64),
            tastes=np.asarray(fitted.tastes, dtype=np.float64),
        )
        data = buf.getvalue()
        (tmp / ARRAYS).write_bytes(data)
        os.chmod(tmp / ARRAYS, ordinary_mode())
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "world": fitted.spec.to_dict(),
            "profile": _json_safe(list(fitted.profile)),
            "notes": list(fitted.notes),
            "diagnostics": _json_safe(dict(fitted.diagnostics)),
            "files": {ARRAYS: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
        }
        manifest[_CHECKSUM] = _checksum(manifest)
        text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
        os.chmod(tmp / MANIFEST, ordinary_mode())
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def is_simulator_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory holding a ``manifest.json``."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).is_file()


def _fail(directory: Path, message: str) -> SimulatorArtifactError:
    return SimulatorArtifactError(f"simulator directory {str(directory)!r}: {message}")


def _read_manifest(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise _fail(root, "not a directory")
    path = root / MANIFEST
    if path.is_symlink() or not path.is_file():
        raise _fail(root, f"no regular file {MANIFEST!r}")
    if path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise _fail(root, f"{MANIFEST!r} is larger than {_MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(root, f"{MANIFEST!r} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise _fail(root, f"{MANIFEST!r} must hold a JSON object")
    if manifest.get("format") != FORMAT:
        raise _fail(root, f"field 'format' must be {FORMAT!r}, got {manifest.get('format')!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _fail(
            root,
            f"format_version {manifest.get('format_version')!r} is not supported "
            f"(this campaignrl reads {FORMAT_VERSION}); refit with `campaignrl fit-sim`",
        )
    if manifest.get(_CHECKSUM) != _checksum(manifest):
        raise _fail(root, f"{MANIFEST!r} does not match its manifest_sha256 (edited or corrupt)")
    return manifest


def _world(root: Path, manifest: dict[str, Any]) -> WorldSpec:
    try:
        return WorldSpec.from_dict(manifest["world"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(root, f"field 'world' is not a valid WorldSpec: {exc}") from None


def _read_arrays(root: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    meta = (manifest.get("files") or {}).get(ARRAYS)
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
        raise _fail(root, f"field 'files.{ARRAYS}' must hold its sha256 and bytes")
    path = root / ARRAYS
    if path.is_symlink() or not path.is_file():
        raise _fail(root, f"no regular file {ARRAYS!r}")
    if path.stat().st_size != meta.get("bytes"):
        raise _fail(
            root,
            f"{ARRAYS!r} has {path.stat().st_size} bytes, the manifest says {meta.get('bytes')}",
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise _fail(root, f"{ARRAYS!r} does not match its sha256 (tampered or corrupt)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if sorted(npz.files) != sorted(_ARRAY_NAMES):
                raise _fail(root, f"{ARRAYS!r} must hold {list(_ARRAY_NAMES)}, got {npz.files}")
            return {k: npz[k] for k in _ARRAY_NAMES}
    except SimulatorArtifactError:
        raise
    except (ValueError, OSError) as exc:
        raise _fail(root, f"{ARRAYS!r} cannot be read: {exc}") from None


def read_world(directory: str | os.PathLike[str]) -> WorldSpec:
    """The fitted :class:`WorldSpec` of a SIMDIR, after checking both files' checksums.

    Raises:
        SimulatorArtifactError: If the directory is missing, malformed or tampered with.
    """
    root = Path(directory)
    manifest = _read_manifest(root)
    _read_arrays(root, manifest)  # a tampered arrays file refuses the whole directory
    return _world(root, manifest)


def load_fitted(directory: str | os.PathLike[str]) -> Any:
    """Load a :class:`~campaignrl.simulators.fit.FittedSimulator` written by :func:`save_fitted`.

    Raises:
        SimulatorArtifactError: If the directory is missing, malformed or tampered with.
    """
    from campaignrl.simulators.fit.fitting import FittedSimulator

    root = Path(directory)
    manifest = _read_manifest(root)
    arrays = _read_arrays(root, manifest)
    return FittedSimulator(
        spec=_world(root, manifest),
        customer_ids=arrays["customer_ids"],
        segment=arrays["segment"],
        tastes=arrays["tastes"],
        profile=list(manifest.get("profile") or []),
        notes=tuple(manifest.get("notes") or ()),
        diagnostics=dict(manifest.get("diagnostics") or {}),
    )
