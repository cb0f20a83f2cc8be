"""Policy versions on disk: validate, sign and verify, swap atomically, roll back.

Every version the service accepts is kept as an artifact directory ``root/v000001/``,
``root/v000002/``... (copied in under a temporary name, validated there, then renamed in),
and ``root/current.json`` records the version serving and the ones served before it, so a
restart serves the same version and :meth:`PolicyVersions.rollback` returns to the previous.

**Signature.** With a signing key configured, an artifact must hold a file ``signature``
whose text is the lowercase hex HMAC-SHA256, under the key, of the exact bytes of its
``manifest.json`` (a trailing newline is allowed). The manifest records the sha256 of every
other file of the artifact and :func:`~campaignrl.policies.load_policy` checks them all, so
the signature covers the weights too. :func:`sign_artifact` writes it; from a shell::

    CAMPAIGNRL_SIGNING_KEY=... python -m campaignrl.service.versions sign DIR
    python -m campaignrl.service.versions sign DIR --key-file key.txt

**Swaps.** The serving version is one immutable :class:`PolicyVersion` (version number,
loaded policy, manifest, directory) held by a single reference: a swap is one assignment,
so a reader (``versions.current``) sees the old version or the new one, never a mix. An
artifact that fails any check is refused with :class:`PolicyRefused` naming the field, and
the old version keeps serving.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from campaignrl._fs import ordinary_mode
from campaignrl.policies import PolicyArtifactError, load_policy
from campaignrl.service.decider import ServedPolicy

try:  # POSIX: several worker processes may share one root
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per root
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CURRENT_FILE",
    "KEY_ENV",
    "SIGNATURE_FILE",
    "NoPolicyError",
    "PolicyRefused",
    "PolicyVersion",
    "PolicyVersions",
    "VersionInfo",
    "artifact_signature",
    "main",
    "read_signing_key",
    "sign_artifact",
    "verify_signature",
]

SIGNATURE_FILE = "signature"
"""the artifact file holding the hex HMAC-SHA256 of ``manifest.json``"""
CURRENT_FILE = "current.json"
"""the pointer file in the versions root"""
KEY_ENV = "CAMPAIGNRL_SIGNING_KEY"
"""environment variable :func:`read_signing_key` reads the key from"""
_MANIFEST = "manifest.json"
_VERSION_DIR = re.compile(r"^v(\d{6,})$")
_MAX_SIGNATURE_BYTES = 1024


class PolicyRefused(ValueError):
    """An artifact (or version) the service will not serve; ``field`` says what failed."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class NoPolicyError(RuntimeError):
    """The versions root holds no version yet: propose one first."""


@dataclass(frozen=True)
class PolicyVersion(ServedPolicy):
    """A served version: its number, the loaded policy, its manifest and directory."""

    path: Path = field(default=Path())
    """the version's artifact directory, ``root/v000001``"""
    manifest: dict[str, Any] = field(default_factory=dict)
    """the parsed ``manifest.json``"""


@dataclass(frozen=True)
class VersionInfo:
    """One stored version, as :meth:`PolicyVersions.list` reports it."""

    version: int
    path: Path
    kind: str
    created: str
    signed: bool
    """whether the directory holds a ``signature`` file (checked when loaded with a key)"""
    current: bool


# ---------------------------------------------------------------------------- signatures


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
        raise ValueError(f"`signing_key` must be non-empty bytes, got {type(key).__name__}")
    return bytes(key)


def artifact_signature(directory: str | os.PathLike[str], key: bytes) -> str:
    """Hex HMAC-SHA256 of the artifact's ``manifest.json`` bytes under ``key``.

    Raises:
        PolicyRefused: If the directory has no ``manifest.json``.
    """
    path = Path(directory) / _MANIFEST
    if not path.is_file():
        raise PolicyRefused("manifest", f"artifact {str(directory)!r} has no {_MANIFEST}")
    return hmac.new(_check_key(key), path.read_bytes(), hashlib.sha256).hexdigest()


def sign_artifact(directory: str | os.PathLike[str], key: bytes) -> Path:
    """Write the artifact's ``signature`` file (atomically); return its path."""
    signature = artifact_signature(directory, key)
    target = Path(directory) / SIGNATURE_FILE
    fd, tmp = tempfile.mkstemp(prefix=f".{SIGNATURE_FILE}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(signature + "\n")
        os.chmod(tmp, ordinary_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def verify_signature(directory: str | os.PathLike[str], key: bytes) -> None:
    """Check the artifact's ``signature`` against its manifest under ``key``.

    Raises:
        PolicyRefused: ``field == "signature"`` if it is missing or does not match (a wrong
            key, or a manifest changed after signing).
    """
    path = Path(directory) / SIGNATURE_FILE
    if not path.is_file():
        raise PolicyRefused(
            "signature", f"artifact {str(directory)!r} is unsigned: no {SIGNATURE_FILE!r} file"
        )
    raw = path.read_bytes()[: _MAX_SIGNATURE_BYTES + 1]
    given = raw.decode("ascii", errors="replace").strip()
    expected = artifact_signature(directory, key)
    if len(raw) > _MAX_SIGNATURE_BYTES or not hmac.compare_digest(given, expected):
        raise PolicyRefused(
            "signature",
            f"artifact {str(directory)!r}: {SIGNATURE_FILE!r} does not match {_MANIFEST} "
            f"(signed with another key, or the manifest changed after signing)",
        )


def read_signing_key(key_file: str | os.PathLike[str] | None = None) -> bytes | None:
    """The signing key from a file or the environment, or ``None`` if neither gives one.

    The bytes of ``key_file`` (trailing whitespace removed), else the UTF-8 bytes of
    ``$CAMPAIGNRL_SIGNING_KEY`` (stripped).

    Raises:
        ValueError: If the key file or variable is empty.
    """
    if key_file is not None:
        key = Path(key_file).read_bytes().rstrip()
        if not key:
            raise ValueError(f"`key_file` {str(key_file)!r} is empty")
        return key
    value = os.environ.get(KEY_ENV)
    if value is None:
        return None
    if not value.strip():
        raise ValueError(f"`{KEY_ENV}` is set but empty")
    return value.strip().encode()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m campaignrl.service.versions sign DIR [--key-file F]``: sign an artifact.

    The key comes from ``--key-file`` or ``$CAMPAIGNRL_SIGNING_KEY``, never from the command
    line (other users can read a process's arguments). Prints the signature; exit code 2
    with one line on error.
    """
    parser = argparse.ArgumentParser(
        prog="python -m campaignrl.service.versions", description="Sign a policy artifact."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sign = sub.add_parser("sign", help="write DIR/signature: HMAC-SHA256 of DIR/manifest.json")
    sign.add_argument("directory")
    sign.add_argument("--key-file", default=None, help=f"key file (default: ${KEY_ENV})")
    args = parser.parse_args(argv)
    try:
        key = read_signing_key(args.key_file)
        if key is None:
            raise ValueError(f"no signing key: pass --key-file or set {KEY_ENV}")
        path = sign_artifact(args.directory, key)
    except (OSError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(path.read_text().strip())
    return 0


# ---------------------------------------------------------------------------- versions


def _version_dir(version: int) -> str:
    return f"v{version:06d}"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system can fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _same_names(field: str, new: Sequence[str], old: Sequence[str], serving: int) -> None:
    """Refuse an artifact whose ``field`` names differ from the serving version's."""
    new, old = list(new), list(old)
    if new == old:
        return
    if sorted(new) == sorted(old):
        raise PolicyRefused(
            field,
            f"`{field}` are the serving version's (v{serving:06d}) in another order: got "
            f"{new}, serving {old}",
        )
    missing = [n for n in old if n not in new]
    unknown = [n for n in new if n not in old]
    raise PolicyRefused(
        field,
        f"`{field}` differ from the serving version's (v{serving:06d}): missing {missing}, "
        f"unknown {unknown}",
    )


class PolicyVersions:
    """Every served policy version, the one serving now, swaps and rollbacks.

    Thread-safe; several processes may share a root (writes take a file lock, and
    :meth:`refresh` picks up another process's swap).

    Args:
        root_dir: Directory of the versions (created if missing).
        signing_key: With a key, every artifact (and every stored version loaded) must carry
            a valid ``signature``; ``None`` checks none.

    Raises:
        PolicyRefused: If the version ``current.json`` names fails its checks on load.
    """

    def __init__(self, root_dir: str | os.PathLike[str], *, signing_key: bytes | None) -> None:
        self.root = Path(root_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._key = None if signing_key is None else _check_key(signing_key)
        self._write_lock = threading.RLock()
        self._loaded: dict[int, PolicyVersion] = {}
        self._history: builtins.list[int] = []
        self._current: PolicyVersion | None = None
        pointer = self._read_pointer()
        if pointer is not None:
            version, history = pointer
            self._current = self._load(version)
            self._history = history

    # -------------------------------------------------------------- reading

    @property
    def current(self) -> PolicyVersion:
        """The version serving now (one reference read: never half of a swap).

        Raises:
            NoPolicyError: If no version was ever proposed.
        """
        current = self._current
        if current is None:
            raise NoPolicyError(f"no policy version in {str(self.root)!r} yet: propose one")
        return current

    @property
    def empty(self) -> bool:
        """Whether no version serves yet."""
        return self._current is None

    @property
    def history(self) -> builtins.list[int]:
        """Versions served, oldest first; the last is the current one."""
        return list(self._history)

    def versions(self) -> builtins.list[int]:
        """Stored version numbers, ascending."""
        found = []
        for entry in self.root.iterdir():
            match = _VERSION_DIR.match(entry.name)
            if match and entry.is_dir():
                found.append(int(match.group(1)))
        return sorted(found)

    def list(self) -> builtins.list[VersionInfo]:
        """Every stored version, ascending, with its kind, creation time and signature."""
        current = None if self._current is None else self._current.version
        out = []
        for version in self.versions():
            path = self.root / _version_dir(version)
            try:
                manifest = json.loads((path / _MANIFEST).read_text())
                kind, created = str(manifest.get("kind")), str(manifest.get("created"))
            except (OSError, ValueError, AttributeError):
                kind, created = "unreadable", ""
            out.append(
                VersionInfo(
                    version,
                    path,
                    kind,
                    created,
                    (path / SIGNATURE_FILE).is_file(),
                    version == current,
                )
            )
        return out

    # -------------------------------------------------------------- changing

    def propose(
        self, artifact_dir: str | os.PathLike[str], *, activate: bool = True
    ) -> PolicyVersion:
        """Validate an artifact, store it as the next version and (by default) serve it.

        The artifact's files are copied beside the versions first and every check runs on
        that copy, so what was checked is what is served: the signature (with a key), the
        checksums and schema (:func:`~campaignrl.policies.load_policy`), and the same
        ``feature_names`` and ``action_names``, in the same order, as the serving version.

        Returns:
            The new version.

        Raises:
            PolicyRefused: Naming the field that failed; nothing changes, the old version
                keeps serving.
        """
        source = Path(artifact_dir)
        if not source.is_dir():
            raise PolicyRefused("artifact", f"artifact {str(source)!r} is not a directory")
        with self._locked():
            self._sync_locked()
            staging = Path(tempfile.mkdtemp(prefix=".incoming.", dir=self.root))
            try:
                os.chmod(staging, ordinary_mode(directory=True))
                self._copy_files(source, staging)
                loaded = self._validate(staging, shown=source)
                version = self._store(staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            entry = PolicyVersion(
                version, loaded.policy, self.root / _version_dir(version), loaded.manifest
            )
            self._loaded[version] = entry
            if activate:
                self._serve_locked(entry, [*self._history, version])
            return entry

    def activate(self, version: int) -> PolicyVersion:
        """Serve stored ``version`` (verified again when first loaded).

        Raises:
            PolicyRefused: If it does not exist or fails its checks.
        """
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"`version` must be an int, got {type(version).__name__}")
        with self._locked():
            self._sync_locked()
            entry = self._load(version)
            if self._current is not None and self._current.version == version:
                return entry
            self._serve_locked(entry, [*self._history, version])
            return entry

    def rollback(self) -> PolicyVersion:
        """Serve the version served before the current one again.

        Raises:
            PolicyRefused: If no version was served before the current one.
        """
        with self._locked():
            self._sync_locked()
            if len(self._history) < 2:
                raise PolicyRefused(
                    "version", f"no previous version to roll back to (history {self._history})"
                )
            history = self._history[:-1]
            entry = self._load(history[-1])
            self._serve_locked(entry, history)
            return entry

    def refresh(self) -> bool:
        """Serve what ``current.json`` names if another process changed it; True if swapped."""
        with self._write_lock:
            return self._sync_locked()

    # -------------------------------------------------------------- internals

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The in-process lock and, on POSIX, an exclusive lock on ``root/.lock``."""
        with self._write_lock:
            if fcntl is None:  # pragma: no cover
                yield
                return
            with (self.root / ".lock").open("a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _sync_locked(self) -> bool:
        pointer = self._read_pointer()
        if pointer is None:
            return False
        version, history = pointer
        if self._current is not None and version == self._current.version:
            self._history = history
            return False
        self._current = self._load(version)
        self._history = history
        return True

    def _read_pointer(self) -> tuple[int, builtins.list[int]] | None:
        path = self.root / CURRENT_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            version = data["version"]
            history = [int(v) for v in data["history"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise PolicyRefused(
                "current", f"{str(path)!r} is not a valid pointer ({exc})"
            ) from None
        if isinstance(version, bool) or not isinstance(version, int) or not history:
            raise PolicyRefused("current", f"{str(path)!r} holds no valid version: {data!r}")
        return version, history

    def _serve_locked(self, entry: PolicyVersion, history: builtins.list[int]) -> None:
        """Write the pointer durably, then swap (a failed write changes nothing)."""
        pointer = {
            "version": entry.version,
            "history": history,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{CURRENT_FILE}.", dir=self.root)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(pointer, fh)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, ordinary_mode())
            os.replace(tmp, self.root / CURRENT_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.root)
        self._history = history
        self._current = entry  # the swap: one reference assignment

    @staticmethod
    def _copy_files(source: Path, staging: Path) -> None:
        for entry in source.iterdir():
            if entry.is_symlink() or not entry.is_file():
                raise PolicyRefused(
                    "artifact",
                    f"artifact {str(source)!r}: {entry.name!r} is not a regular file "
                    f"(artifacts hold plain files only)",
                )
            target = staging / entry.name
            shutil.copyfile(entry, target)
            with target.open("rb") as fh:
                os.fsync(fh.fileno())

    def _validate(self, directory: Path, *, shown: Path) -> PolicyVersion:
        """All checks on a directory; the loaded version (numbered 0) if it passes."""
        if self._key is not None:
            try:
                verify_signature(directory, self._key)
            except PolicyRefused as exc:
                message = str(exc).replace(str(directory), str(shown))
                raise PolicyRefused(exc.field, message) from None
        try:
            policy = load_policy(directory)
        except PolicyArtifactError as exc:
            raise PolicyRefused("artifact", str(exc).replace(str(directory), str(shown))) from None
        manifest = json.loads((directory / _MANIFEST).read_text())
        current = self._current
        if current is not None:
            _same_names(
                "feature_names", policy.feature_names, current.policy.feature_names, current.version
            )
            _same_names(
                "action_names", policy.action_names, current.policy.action_names, current.version
            )
        return PolicyVersion(0, policy, directory, manifest)

    def _store(self, staging: Path) -> int:
        """Rename ``staging`` to the next free ``vNNNNNN``; return its number."""
        existing = self.versions()
        version = (existing[-1] if existing else 0) + 1
        while True:
            target = self.root / _version_dir(version)
            try:
                os.rename(staging, target)  # fails if the target exists (and is not empty)
            except OSError:
                if not target.exists():
                    raise
                version += 1
                continue
            _fsync_dir(self.root)
            return version

    def _load(self, version: int) -> PolicyVersion:
        """A stored version, loaded and verified once (then cached)."""
        cached = self._loaded.get(version)
        if cached is not None:
            return cached
        path = self.root / _version_dir(version)
        if not path.is_dir():
            raise PolicyRefused(
                "version", f"version {version} does not exist in {str(self.root)!r}"
            )
        loaded = self._validate(path, shown=path)
        entry = PolicyVersion(version, loaded.policy, path, loaded.manifest)
        self._loaded[version] = entry
        return entry


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
