"""Policy uploads: a tar (optionally gzip/bz2/xz) or zip archive unpacked safely into a folder.

``PUT /v1/policy`` takes an artifact as one archive. Archives are hostile input: a member may
be named ``../../etc/cron.d/x`` or ``/abs/path``, be a symlink or a hard link to a file
outside, a device, or a "zip bomb" that inflates a few kilobytes to gigabytes. Nothing here
calls ``extractall``: each member is checked, then its bytes are copied by hand into a file
this module creates (``O_EXCL``), counting every byte against a limit.

An artifact is a flat folder (``manifest.json``, ``weights.npz``, maybe ``signature``): the
archive holds those files at its top level or inside one top-level folder (``tar -czf p.tgz
policy/`` works as well as ``tar -czf p.tgz -C policy .``).
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import re
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Any

__all__ = ["MAX_MEMBERS", "ArchiveRefused", "unpack_artifact"]

MAX_MEMBERS = 64
"""most entries an artifact archive may hold"""
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_CHUNK = 1 << 16


class ArchiveRefused(ValueError):
    """An upload that is not a safe artifact archive (the message says which member, why)."""


def _parts(name: str) -> tuple[str, ...]:
    """The path parts of a member name, refusing absolute, parent and odd names."""
    if not name or "\\" in name or "\x00" in name:
        raise ArchiveRefused(f"archive member {name!r}: not a plain relative path")
    path = PurePosixPath(name)
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise ArchiveRefused(f"archive member {name!r}: absolute paths are refused")
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if any(p == ".." for p in parts):
        raise ArchiveRefused(f"archive member {name!r}: '..' (path traversal) is refused")
    if len(parts) > 2:
        raise ArchiveRefused(
            f"archive member {name!r}: an artifact is flat (files at the top, or in one folder)"
        )
    for part in parts:
        if not _NAME.match(part):
            raise ArchiveRefused(
                f"archive member {name!r}: names may hold only letters, digits, '.', '_', '-'"
            )
    return parts


def _copy(source: IO[bytes], target: Path, budget: list[int], limit: int) -> None:
    """Copy ``source`` into a new file ``target``, counting bytes against ``budget``."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = source.read(_CHUNK)
            if not chunk:
                break
            budget[0] += len(chunk)
            if budget[0] > limit:
                raise ArchiveRefused(
                    f"the archive unpacks to more than {limit} bytes (max_artifact_bytes)"
                )
            out.write(chunk)


class _Layout:
    """Collects member names, checks they form one flat artifact, maps them to file names."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}  # member name -> file name
        self.folders: set[str] = set()

    def directory(self, name: str) -> None:
        parts = _parts(name)
        if len(parts) > 1:
            raise ArchiveRefused(f"archive member {name!r}: an artifact holds no sub-folders")
        if parts:
            self.folders.add(parts[0])

    def file(self, name: str) -> None:
        parts = _parts(name)
        if not parts:
            raise ArchiveRefused(f"archive member {name!r}: not a file name")
        if len(parts) == 2:
            self.folders.add(parts[0])
        if len(self.files) >= MAX_MEMBERS:
            raise ArchiveRefused(f"the archive holds more than {MAX_MEMBERS} files")
        self.files[name] = parts[-1]
        prefixes = {tuple(_parts(n)[:-1]) for n in self.files}
        if len(prefixes) > 1 or len(self.folders) > 1:
            raise ArchiveRefused(
                "an artifact archive holds its files at the top level or in one folder, "
                f"got files in {sorted('/'.join(p) or '.' for p in prefixes)}"
            )
        if list(self.files.values()).count(parts[-1]) > 1:
            raise ArchiveRefused(f"archive member {name!r}: the file is in the archive twice")


def _decompressed(data: bytes, limit: int) -> bytes:
    """``data`` gunzipped, bunzipped or unxz-ed if compressed, refusing more than ``limit`` bytes.

    Decompressed here, with a bound, before tarfile sees it: tarfile reads some headers (pax,
    GNU long names) whole into memory, so a small compressed bomb could exhaust it.
    """
    if data[:2] == b"\x1f\x8b":
        decompressor: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif data[:3] == b"BZh":
        decompressor = bz2.BZ2Decompressor()
    elif data[:6] == b"\xfd7zXZ\x00":
        decompressor = lzma.LZMADecompressor()
    else:
        return data
    # The tar stream is larger than its files: a 512-byte header per member, padding to 512
    # bytes, and a 10 kB record at the end. The files themselves are counted in _copy.
    bound = limit + 1024 * (MAX_MEMBERS + 1) + 20480
    try:
        out = decompressor.decompress(data, bound + 1)
    except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        raise ArchiveRefused(f"not a readable compressed archive ({exc})") from None
    if len(out) > bound:
        raise ArchiveRefused(f"the archive unpacks to more than {limit} bytes (max_artifact_bytes)")
    return out


def _unpack_tar(data: bytes, target: Path, limit: int) -> None:
    data = _decompressed(data, limit)
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveRefused(f"not a readable tar archive ({exc})") from None
    layout, budget = _Layout(), [0]
    with archive:
        count = 0
        try:
            for member in archive:
                count += 1
                if count > MAX_MEMBERS:
                    raise ArchiveRefused(f"the archive holds more than {MAX_MEMBERS} entries")
                if member.isdir():
                    layout.directory(member.name)
                    continue
                if not member.isreg():
                    kind = (
                        "a symlink"
                        if member.issym()
                        else "a hard link"
                        if member.islnk()
                        else ("a device or special file")
                    )
                    raise ArchiveRefused(
                        f"archive member {member.name!r} is {kind}: artifacts hold plain files only"
                    )
                if member.size > limit:
                    raise ArchiveRefused(
                        f"archive member {member.name!r} is {member.size} bytes, more than "
                        f"{limit} (max_artifact_bytes)"
                    )
                layout.file(member.name)
                source = archive.extractfile(member)
                if source is None:  # pragma: no cover - isreg() members always have data
                    raise ArchiveRefused(f"archive member {member.name!r} has no data")
                with source:
                    _copy(source, target / layout.files[member.name], budget, limit)
        except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError) as exc:
            if isinstance(exc, ArchiveRefused):
                raise
            raise ArchiveRefused(f"not a readable tar archive ({exc})") from None
    if not layout.files:
        raise ArchiveRefused("the archive holds no files")


def _unpack_zip(data: bytes, target: Path, limit: int) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveRefused(f"not a readable zip archive ({exc})") from None
    layout, budget = _Layout(), [0]
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ArchiveRefused(f"the archive holds more than {MAX_MEMBERS} entries")
        try:
            for info in infos:
                mode = (info.external_attr >> 16) & 0o170000
                if info.is_dir():
                    layout.directory(info.filename)
                    continue
                if mode not in (0, 0o100000):  # 0: made on a system without Unix modes
                    raise ArchiveRefused(
                        f"archive member {info.filename!r} is not a regular file (a symlink or "
                        f"special file): artifacts hold plain files only"
                    )
                if info.file_size > limit:
                    raise ArchiveRefused(
                        f"archive member {info.filename!r} is {info.file_size} bytes, more "
                        f"than {limit} (max_artifact_bytes)"
                    )
                layout.file(info.filename)
                with archive.open(info) as source:
                    _copy(source, target / layout.files[info.filename], budget, limit)
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            NotImplementedError,  # an unsupported compression method
            RuntimeError,  # an encrypted member
            EOFError,
            OSError,
            ValueError,
            UnicodeError,
        ) as exc:
            if isinstance(exc, ArchiveRefused):
                raise
            raise ArchiveRefused(f"not a readable zip archive ({exc})") from None
    if not layout.files:
        raise ArchiveRefused("the archive holds no files")


def unpack_artifact(data: bytes, target: str | os.PathLike[str], *, limit: int) -> Path:
    """Unpack an artifact archive (tar, tar.gz/bz2/xz or zip, by content) into ``target``.

    Args:
        data: The archive's bytes.
        target: An existing, empty folder (a fresh temporary one): files are created in it.
        limit: Most bytes the files may hold in total (and each).

    Returns:
        ``target``.

    Raises:
        ArchiveRefused: If the bytes are no archive, or a member is not a plain file of a
            flat artifact (absolute, ``..``, a link, a device, a sub-folder, a repeated name),
            or the archive holds too many members or unpacks to more than ``limit`` bytes.

    Examples:
        >>> import tempfile
        >>> buffer = io.BytesIO()
        >>> with zipfile.ZipFile(buffer, "w") as z:
        ...     z.writestr("../evil", "x")
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     unpack_artifact(buffer.getvalue(), tmp, limit=1000)
        Traceback (most recent call last):
        ...
        campaignrl.service.uploads.ArchiveRefused: archive member '../evil': '..' (path ...
    """
    out = Path(target)
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"`data` must be bytes, got {type(data).__name__}")
    if not data:
        raise ArchiveRefused("the upload is empty: send a tar or zip archive of the artifact")
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        _unpack_zip(bytes(data), out, limit)
    else:
        _unpack_tar(bytes(data), out, limit)
    return out
