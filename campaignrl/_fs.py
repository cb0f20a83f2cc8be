"""File-system helpers shared by every writer: atomic writes with ordinary permissions."""

from __future__ import annotations

import os

__all__ = ["ordinary_mode"]


def ordinary_mode(directory: bool = False) -> int:
    """The mode ``open()`` / ``mkdir()`` would give under the current umask.

    ``tempfile.mkstemp`` and ``mkdtemp`` create private (0600 / 0700) entries; a file renamed
    into place keeps that mode, so writers chmod their temporary entry to this first.
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask
