"""Policy artifacts: a directory with ``manifest.json`` and ``weights.npz``, never pickle.

``manifest.json`` holds the format version, the policy kind, feature names (and the encoding
they come from), the action catalog, exploration, the kind's settings, the creation time,
training metadata, the sha256 and size of ``weights.npz``, and ``manifest_sha256``: the sha256
of the manifest's own content (:func:`manifest_checksum`), so that an edit that changes what
the policy decides (actions or features reordered, a temperature changed) cannot go unnoticed.
Only a top-level ``notes`` field (any JSON) may be added or edited by hand; reformatting the
file (indentation, key order) is harmless, since the checksum is over the parsed content.
The checksums detect edits and corruption, not forgery: anyone can recompute them.

``weights.npz`` holds uncompressed ``.npy`` arrays of real numbers and is loaded with
``allow_pickle=False``. :func:`load_policy` checks, in this order and before reading any array
data: the manifest (size, JSON depth, fields and their types, checksum), that no file is a
symbolic link, the size of ``weights.npz`` against the manifest, the archive's member names
and every ``.npy`` header (dtype, shape) against what the kind saves for this manifest; then
it hashes the file, loads the very bytes it hashed and checks every value is finite.

Format version 1 (before ``manifest_sha256``) is refused with a message to re-export: its
manifest cannot be checked, and reading it would let anyone bypass the checksum by writing
``"format_version": 1``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from campaignrl._fs import ordinary_mode
from campaignrl.policies.base import Exploration, Policy, SavedArrays, Shape

__all__ = [
    "FEATURE_ENCODINGS",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_ARRAY_ELEMENTS",
    "POLICY_KINDS",
    "PolicyArtifactError",
    "config_keys",
    "config_names",
    "config_number",
    "load_policy",
    "manifest_checksum",
    "read_manifest",
    "register_policy_kind",
    "save_policy",
]

FORMAT = "campaignrl.policy"
FORMAT_VERSION = 2
"""2: ``manifest_sha256`` covers the manifest's content (1 had hashes of the weights only)"""
FEATURE_ENCODINGS = ("campaignrl.envs.observation/v1",)
"""the feature encodings this campaignrl knows (how the named features are computed, scaled)"""
MAX_ARRAY_ELEMENTS = 1 << 27
"""the most numbers a policy's arrays may hold in all (1 GiB of float64)"""
_WEIGHTS = "weights.npz"
_MANIFEST = "manifest.json"
_CHECKSUM = "manifest_sha256"
_NOTES = "notes"
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_JSON_DEPTH = 64
_MAX_NPY_HEADER = 10000
"""numpy's own default limit on a ``.npy`` header's length"""
_ZIP_SLACK = 1024
"""bytes of zip structure allowed beyond the members and their names (end records, zip64)"""
_ZIP_MEMBER_SLACK = 256
"""bytes of zip headers allowed per member besides twice its name (local and central)"""
_MAX_WEIGHTS_BYTES = 8 * MAX_ARRAY_ELEMENTS + 64 * 1024 * 1024
_FIELDS: dict[str, type] = {
    "format": str,
    "format_version": int,
    "kind": str,
    "feature_names": list,
    "feature_encoding": str,
    "action_names": list,
    "exploration": dict,
    "config": dict,
    "created": str,
    "training": dict,
    "files": dict,
    _CHECKSUM: str,
}
"""every field a manifest must have, and its JSON type"""
_HEX64 = re.compile(r"[0-9a-f]{64}")

POLICY_KINDS: dict[str, type[Policy]] = {}
"""Policy classes by artifact kind."""


class PolicyArtifactError(ValueError):
    """An artifact directory that cannot be loaded (missing, malformed or tampered)."""


def register_policy_kind(cls: type[Policy]) -> type[Policy]:
    """Class decorator: make ``cls.kind`` loadable by :func:`load_policy`."""
    POLICY_KINDS[cls.kind] = cls
    return cls


def manifest_checksum(manifest: Mapping[str, Any]) -> str:
    """sha256 of a manifest's content: every field but ``manifest_sha256`` and ``notes``.

    The content is serialized canonically (keys sorted, no spaces, ASCII escapes, Python's
    shortest float repr), so the checksum depends on the parsed values only.

    Examples:
        >>> manifest_checksum({"kind": "constant", "notes": "x"}) == manifest_checksum(
        ...     {"notes": "y", "kind": "constant"})
        True
    """
    body = {k: v for k, v in manifest.items() if k not in (_CHECKSUM, _NOTES)}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# ---------------------------------------------------------------------- kinds' config checks
def config_keys(config: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """Refuse a saved ``config`` that is not an object, lacks a key or has an unknown one."""
    if not isinstance(config, dict):
        raise TypeError(f"field 'config' must be an object, got {config!r}")
    for key in required:
        if key not in config:
            raise ValueError(f"field 'config' lacks key {key!r}")
    allowed = set(required) | set(optional)
    for key in config:
        if key not in allowed:
            raise ValueError(f"field 'config' has unknown key {key!r}; known: {sorted(allowed)}")


def config_number(config: dict[str, Any], key: str, *, min_val: float = -math.inf) -> float:
    """``config[key]`` as a float: a JSON number (not a boolean), finite, ``>= min_val``."""
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"field 'config.{key}' must be a number, got {value!r}")
    if not math.isfinite(value) or value < min_val:
        raise ValueError(
            f"field 'config.{key}' must be a finite number >= {min_val}, got {value!r}"
        )
    return float(value)


def config_names(config: dict[str, Any], key: str) -> tuple[str, ...]:
    """``config[key]`` as a tuple of distinct strings (absent: empty)."""
    value = config.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"field 'config.{key}' must be a list of names, got {value!r}")
    if len(set(value)) != len(value):
        twice = next(v for i, v in enumerate(value) if v in value[:i])
        raise ValueError(f"field 'config.{key}' must not repeat a name, got {twice!r} twice")
    return tuple(value)


# ---------------------------------------------------------------------- save
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
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            raise TypeError(f"policy parameter {name!r} must be a numeric ndarray of real numbers")
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
            "feature_encoding": FEATURE_ENCODINGS[0],
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
        # The checksum of the content as the loader will parse it (tuples become lists,
        # numpy floats plain floats).
        content = json.loads(json.dumps(manifest, allow_nan=False))
        content[_CHECKSUM] = manifest_checksum(content)
        (tmp / _MANIFEST).write_text(json.dumps(content, indent=2, allow_nan=False) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ---------------------------------------------------------------------- load
def _fail(directory: Path, message: str) -> PolicyArtifactError:
    return PolicyArtifactError(f"policy artifact {str(directory)!r}: {message}")


def _open_regular(root: Path, real: Path, name: str) -> IO[bytes]:
    """Open ``real / name`` for reading: a regular file, not a symbolic link (nor a FIFO)."""
    path = real / name
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        if name == _MANIFEST:
            raise _fail(root, f"has no {_MANIFEST}") from None
        raise _fail(root, f"file {name!r} listed in the manifest is missing") from None
    except OSError as exc:
        raise _fail(root, f"file {name!r} cannot be read ({exc.strerror})") from None
    if stat.S_ISLNK(before.st_mode):
        raise _fail(
            root,
            f"file {name!r} is a symbolic link; an artifact's files must be regular files "
            "inside its directory",
        )
    if not stat.S_ISREG(before.st_mode):
        raise _fail(root, f"file {name!r} is not a regular file")
    # O_NOFOLLOW: a link swapped in after the lstat is refused too; O_NONBLOCK: so is a FIFO.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise _fail(root, f"file {name!r} cannot be opened ({exc.strerror})") from None
    after = os.fstat(fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise _fail(root, f"file {name!r} was replaced while being opened")
    return os.fdopen(fd, "rb")


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} does not fit in a float")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= _MAX_JSON_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, level + 1) for child in children)
    return deepest


def _read_manifest(root: Path, real: Path) -> dict[str, Any]:
    """The parsed manifest object: size-capped, strict JSON, not too deep."""
    with _open_regular(root, real, _MANIFEST) as fh:
        size = os.fstat(fh.fileno()).st_size
        raw = fh.read(_MAX_MANIFEST_BYTES + 1) if size <= _MAX_MANIFEST_BYTES else b""
    if size > _MAX_MANIFEST_BYTES or len(raw) > _MAX_MANIFEST_BYTES:
        raise _fail(
            root, f"{_MANIFEST} is {max(size, len(raw))} bytes, more than {_MAX_MANIFEST_BYTES}"
        )
    try:
        manifest = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_refuse_duplicate_keys,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise _fail(root, f"{_MANIFEST} nests deeper than {_MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise _fail(root, f"{_MANIFEST} is not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(manifest, dict):
        raise _fail(root, f"{_MANIFEST} must hold a JSON object, got {type(manifest).__name__}")
    if _depth(manifest) > _MAX_JSON_DEPTH:
        raise _fail(root, f"{_MANIFEST} nests deeper than {_MAX_JSON_DEPTH} levels")
    return manifest


def _check_names(root: Path, manifest: dict[str, Any], field: str) -> tuple[str, ...]:
    names = manifest[field]
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise _fail(root, f"field {field!r} must hold strings, got {name!r} at {i}")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise _fail(root, f"field {field!r} lists {name!r} twice (at {seen[name]} and {i})")
        seen[name] = i
    return tuple(names)


def _check_manifest(root: Path, manifest: dict[str, Any]) -> type[Policy]:
    """Refuse a manifest of another format or version, edited, or with ill-typed fields."""
    for key in manifest:
        if key not in _FIELDS and key != _NOTES:
            raise _fail(
                root, f"{_MANIFEST} has unknown field {key!r} (only {_NOTES!r} may be added)"
            )
    for key in _FIELDS:
        if key not in manifest:
            raise _fail(root, f"{_MANIFEST} is missing field {key!r}")
    if manifest["format"] != FORMAT:
        raise _fail(root, f"field 'format' must be {FORMAT!r}, got {manifest['format']!r}")
    version = manifest["format_version"]
    if version == 1 and not isinstance(version, bool):
        raise _fail(
            root,
            "field 'format_version' 1 is an older format whose manifest is not checksummed; "
            "re-export the policy with this campaignrl (save_policy, or train it again)",
        )
    if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT_VERSION:
        raise _fail(
            root,
            f"field 'format_version' {version!r} is not supported "
            f"(this campaignrl reads version {FORMAT_VERSION})",
        )
    recorded = manifest[_CHECKSUM]
    if not isinstance(recorded, str) or not _HEX64.fullmatch(recorded):
        raise _fail(root, f"field {_CHECKSUM!r} must be 64 hex digits, got {recorded!r}")
    if manifest_checksum(manifest) != recorded:
        raise _fail(
            root,
            f"{_MANIFEST} was edited after export: its content does not match "
            f"{_CHECKSUM!r} (only {_NOTES!r} may be changed by hand; re-export the policy)",
        )
    # Checked even with a matching checksum: the checksum is not a signature.
    for key, kind in _FIELDS.items():
        value = manifest[key]
        if not isinstance(value, kind):
            raise _fail(
                root,
                f"field {key!r} must be a JSON {_JSON_TYPE[kind]}, got "
                f"{type(value).__name__} {str(value)[:80]!r}",
            )
    kind = manifest["kind"]
    if kind not in POLICY_KINDS:
        raise _fail(root, f"field 'kind' {kind!r} is unknown; known: {sorted(POLICY_KINDS)}")
    if manifest["feature_encoding"] not in FEATURE_ENCODINGS:
        raise _fail(
            root,
            f"field 'feature_encoding' {manifest['feature_encoding']!r} is unknown; "
            f"known: {list(FEATURE_ENCODINGS)}",
        )
    try:
        datetime.fromisoformat(manifest["created"])
    except ValueError:
        raise _fail(
            root, f"field 'created' must be an ISO 8601 time, got {manifest['created'][:80]!r}"
        ) from None
    return POLICY_KINDS[kind]


_JSON_TYPE = {str: "string", int: "integer", list: "array", dict: "object"}


def _check_files(root: Path, files: dict[str, Any]) -> dict[str, int | str]:
    """The manifest's entry for ``weights.npz`` (the only file besides the manifest)."""
    for name in files:
        if name in ("", ".", "..") or Path(name).name != name or any(c in name for c in "/\\\0"):
            raise _fail(root, f"field 'files' names a path outside the artifact: {name!r}")
        if name != _WEIGHTS:
            raise _fail(root, f"field 'files' lists {name!r}; an artifact holds only {_WEIGHTS}")
    if _WEIGHTS not in files:
        raise _fail(root, f"field 'files' must list {_WEIGHTS}")
    meta = files[_WEIGHTS]
    if (
        not isinstance(meta, dict)
        or set(meta) != {"sha256", "bytes"}
        or not isinstance(meta["sha256"], str)
        or not _HEX64.fullmatch(meta["sha256"])
        or not isinstance(meta["bytes"], int)
        or isinstance(meta["bytes"], bool)
        or meta["bytes"] < 0
    ):
        raise _fail(
            root,
            f"field 'files.{_WEIGHTS}' must hold a sha256 (64 hex digits) and bytes (an "
            f"integer >= 0), got {str(meta)[:200]}",
        )
    return meta


def _show(shape: Shape) -> str:
    inner = ", ".join("any" if s is None else str(s) for s in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _npy_header(
    fh: IO[bytes], info: zipfile.ZipInfo
) -> tuple[tuple[tuple[int, ...], bool, np.dtype[Any]], int]:
    """A stored member's ``.npy`` header (shape, Fortran order, dtype) and its length.

    Read from the file directly, at most ``_MAX_NPY_HEADER`` bytes past the member's local
    header: through ``ZipFile.open`` a small member would be read whole (and its CRC checked,
    so a flipped data bit would read as a broken archive instead of a sha256 mismatch).
    """
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise ValueError("no zip local header where the directory says")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    fh.seek(info.header_offset + 30 + name_len + extra_len)
    head = io.BytesIO(fh.read(min(info.file_size, 12 + _MAX_NPY_HEADER)))
    version = npy_format.read_magic(head)
    if version == (1, 0):
        header = npy_format.read_array_header_1_0(head, _MAX_NPY_HEADER)
    elif version == (2, 0):
        header = npy_format.read_array_header_2_0(head, _MAX_NPY_HEADER)
    else:
        raise ValueError(f".npy format version {version} is not supported")
    return header, head.tell()


def _npy_headers(
    root: Path, fh: IO[bytes], spec: SavedArrays, what: str
) -> dict[str, tuple[tuple[int, ...], np.dtype[Any], int]]:
    """Each member's declared shape, dtype and size, checked against ``spec``; no data read."""
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise _fail(root, f"{_WEIGHTS} is not a zip archive ({exc})") from None
    with archive:
        infos = archive.infolist()
        seen: set[str] = set()
        for info in infos:  # names first: nothing of an unknown member is read
            stem = info.filename[:-4] if info.filename.endswith(".npy") else None
            if stem is None or stem not in spec.shapes:
                raise _fail(
                    root,
                    f"{_WEIGHTS} has unknown member {info.filename[:80]!r}; {what} saves "
                    f"{sorted(n + '.npy' for n in spec.shapes)}",
                )
            if stem in seen:
                raise _fail(root, f"{_WEIGHTS} has member {info.filename!r} twice")
            seen.add(stem)
        missing = sorted(set(spec.shapes) - seen - spec.optional)
        if missing:
            raise _fail(root, f"{_WEIGHTS} lacks member {missing[0] + '.npy'!r} ({what})")
        declared: dict[str, tuple[tuple[int, ...], np.dtype[Any], int]] = {}
        elements = 0
        for info in infos:
            name, stem = info.filename, info.filename[:-4]
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                raise _fail(
                    root,
                    f"{_WEIGHTS} member {name!r} is compressed or encrypted (method "
                    f"{info.compress_type}); save_policy writes plain members",
                )
            try:
                header, header_bytes = _npy_header(fh, info)
            except (ValueError, OSError, EOFError) as exc:
                raise _fail(
                    root, f"{_WEIGHTS} member {name!r} is not a .npy array ({str(exc)[:200]})"
                ) from None
            shape, _, dtype = header
            if dtype.kind not in "biuf" or dtype.itemsize > 8 or dtype.fields is not None:
                raise _fail(
                    root,
                    f"{_WEIGHTS} member {name!r} has dtype {dtype}; policy arrays are real "
                    "numbers (bool, int or float of at most 8 bytes)",
                )
            want = spec.shapes[stem]
            if len(shape) != len(want) or any(
                w is not None and w != s for s, w in zip(shape, want, strict=False)
            ):
                raise _fail(
                    root,
                    f"{_WEIGHTS} member {name!r} declares shape {shape}; {what} saves "
                    f"shape {_show(want)}",
                )
            count = math.prod(shape)
            elements += count
            if elements > MAX_ARRAY_ELEMENTS:
                raise _fail(
                    root,
                    f"{_WEIGHTS} member {name!r} declares shape {shape}: more than "
                    f"{MAX_ARRAY_ELEMENTS} numbers in all, the most a policy may hold",
                )
            size = header_bytes + count * dtype.itemsize
            if info.file_size != size or info.compress_size != size:
                raise _fail(
                    root,
                    f"{_WEIGHTS} member {name!r} is {info.file_size} bytes, but its header "
                    f"(shape {shape}, dtype {dtype}) makes {size}",
                )
            declared[stem] = (tuple(shape), dtype, size)
    return declared


def _read_weights(
    root: Path, real: Path, meta: dict[str, Any], spec: SavedArrays, what: str
) -> dict[str, np.ndarray]:
    """The arrays of ``weights.npz``: sizes and headers checked first, then hash, then data."""
    with _open_regular(root, real, _WEIGHTS) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size != meta["bytes"]:
            raise _fail(
                root, f"file {_WEIGHTS!r} is {size} bytes, the manifest says {meta['bytes']}"
            )
        if size > _MAX_WEIGHTS_BYTES:
            raise _fail(root, f"file {_WEIGHTS!r} is {size} bytes, more than any policy may hold")
        declared = _npy_headers(root, fh, spec, what)
        need = _ZIP_SLACK + sum(
            nbytes + 2 * len(stem) + 8 + _ZIP_MEMBER_SLACK
            for stem, (_, _, nbytes) in declared.items()
        )
        if size > need:
            raise _fail(
                root,
                f"file {_WEIGHTS!r} is {size} bytes, more than its arrays need (at most {need})",
            )
        fh.seek(0)
        data = fh.read(size + 1)
    if len(data) != size:
        raise _fail(root, f"file {_WEIGHTS!r} changed while being read")
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise _fail(root, f"file {_WEIGHTS!r} does not match its sha256 (tampered or corrupt)")
    # The bytes just hashed are the ones loaded: no second read of the file.
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _fail(root, f"{_WEIGHTS} cannot be read without pickle ({exc})") from None
    if {k: (a.shape, a.dtype) for k, a in arrays.items()} != {
        k: (shape, dtype) for k, (shape, dtype, _) in declared.items()
    }:
        raise _fail(root, f"file {_WEIGHTS!r} changed while being read")
    for key, arr in arrays.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise _fail(
                root,
                f"{_WEIGHTS} member {key + '.npy'!r} holds {arr[idx]} at index {idx}; "
                "policy arrays must be finite",
            )
    return arrays


def load_policy(directory: str | os.PathLike[str]) -> Policy:
    """Load any policy kind from an artifact directory, checking it whole first.

    The directory itself may be a symbolic link (a deployment's ``current`` link to the
    version it serves): it is resolved once, and every file is read from the directory it
    points to. The files in it must be regular files, not links.

    Raises:
        PolicyArtifactError: A ``ValueError`` naming the directory and what is wrong: the
            directory, manifest or weights missing, malformed, too large, edited after export
            (``manifest_sha256``), of an unknown kind or version, a name listed twice, a file
            that is a link, an array of the wrong dtype, shape or size, a non-finite value,
            or weights that do not match their recorded size and sha256.
    """
    root = Path(directory)
    real = Path(os.path.realpath(root))
    if not real.is_dir():
        raise _fail(root, "is not a directory")
    manifest = _read_manifest(root, real)
    cls = _check_manifest(root, manifest)
    feature_names = _check_names(root, manifest, "feature_names")
    action_names = _check_names(root, manifest, "action_names")
    if not action_names:
        raise _fail(root, "field 'action_names' must name at least one action, got []")
    try:
        exploration = Exploration(**manifest["exploration"])
    except (TypeError, ValueError) as exc:
        raise _fail(root, f"field 'exploration': {exc}") from None
    meta = _check_files(root, manifest["files"])
    kind, config = manifest["kind"], manifest["config"]
    what = f"a {kind!r} policy with {len(action_names)} actions and {len(feature_names)} features"
    try:
        spec = cls.saved_arrays(feature_names, action_names, config)
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(root, f"inconsistent {kind!r} policy: {exc}") from None
    arrays = _read_weights(root, real, meta, spec, what)
    try:
        return cls.from_saved(feature_names, action_names, exploration, config, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(root, f"inconsistent {kind!r} policy: {exc}") from None


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an artifact, parsed as :func:`load_policy` parses it.

    Only the file itself is checked (a regular file, size, JSON, depth), not its checksum
    or fields: use :func:`load_policy` to load.
    """
    root = Path(directory)
    return _read_manifest(root, Path(os.path.realpath(root)))
