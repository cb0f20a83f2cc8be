"""File-system helpers shared by every writer: atomic writes with ordinary permissions."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "TEMP_TAIL",
    "check_new_file",
    "ordinary_mode",
    "remove_orphan_temps",
    "write_table_atomic",
    "write_text_atomic",
]

TEMP_TAIL = re.compile(r"^[a-z0-9_]{8}$")
"""the random part ``tempfile`` appends to a prefix (8 of ``[a-z0-9_]``)"""


def ordinary_mode(directory: bool = False) -> int:
    """The mode ``open()`` / ``mkdir()`` would give under the current umask.

    ``tempfile.mkstemp`` and ``mkdtemp`` create private (0600 / 0700) entries; a file renamed
    into place keeps that mode, so writers chmod their temporary entry to this first.
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_table_atomic(frame: Any, path: str | os.PathLike[str]) -> Path:
    """Write a DataFrame as Parquet (``.parquet``) or CSV (any other suffix), atomically.

    The table is written to a temporary file beside the target and renamed into place, so a
    failure never leaves a half-written file and an existing target stays untouched.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        os.chmod(tmp, ordinary_mode())
        if out.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`write_table_atomic` does."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, ordinary_mode())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def remove_orphan_temps(
    directory: str | os.PathLike[str],
    targets: Iterable[str],
    *,
    contents: Iterable[str] = (),
) -> list[Path]:
    """Remove what atomic writes of ``targets`` left in ``directory`` when killed mid-write.

    An atomic write builds ``.<target>.<8 random characters>`` beside its target and renames
    it in (:func:`write_table_atomic`, ``save_policy``); a process killed in between (SIGKILL,
    power loss) leaves it behind. Only entries of exactly that form are removed: files, and
    directories holding nothing but names in ``contents`` (e.g. a policy's
    ``manifest.json`` and ``weights.npz``). Symbolic links are never followed.

    Returns:
        The paths removed.
    """
    folder = Path(directory)
    if not folder.is_dir() or folder.is_symlink():
        return []
    names, allowed = set(targets), set(contents)
    removed = []
    for entry in folder.iterdir():
        stem, dot, tail = entry.name[1:].rpartition(".")
        if not (entry.name.startswith(".") and dot and stem in names and TEMP_TAIL.match(tail)):
            continue
        if entry.is_symlink() or entry.is_file():
            entry.unlink()
        elif entry.is_dir():
            inside = list(entry.iterdir())
            if any(e.name not in allowed or not e.is_file() or e.is_symlink() for e in inside):
                continue
            shutil.rmtree(entry)
        else:
            continue
        removed.append(entry)
    return removed


def check_new_file(path: str | os.PathLike[str], argument: str, *, overwrite: bool) -> Path:
    """Refuse an output path that is a directory, or an existing file unless ``overwrite``.

    Raises:
        FileExistsError: ``argument --out: 'x' is a directory; give a file path`` or
            ``argument --out: 'x' exists; pass --overwrite to replace it``.
    """
    out = Path(path)
    if out.is_dir():
        raise FileExistsError(f"argument {argument}: {str(out)!r} is a directory; give a file path")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise FileExistsError(
            f"argument {argument}: {str(out)!r} exists; pass --overwrite to replace it"
        )
    return out
