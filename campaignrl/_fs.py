"""File-system helpers shared by every writer: atomic writes with ordinary permissions."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["ordinary_mode", "write_table_atomic"]


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
