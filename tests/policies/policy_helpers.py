"""Helpers shared by the policy test modules (pytest puts this folder on ``sys.path``).

The tests run with ``--import-mode=importlib``, so one test module cannot import another; the
helpers more than one of them needs live here instead. Not a test module: no ``test_`` prefix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def numbered_names(prefix: str, k: int) -> list[str]:
    """``k`` names: ``prefix0``, ``prefix1``, ... ``prefix{k-1}``."""
    return [f"{prefix}{i}" for i in range(k)]


def random_masks(rng: np.random.Generator, n: int, a: int, p_allowed: float = 0.5) -> np.ndarray:
    """Random boolean masks, each row keeping at least one allowed action."""
    m = rng.random((n, a)) < p_allowed
    m[np.arange(n), rng.integers(0, a, n)] = True
    return m


def random_spd_inverse(rng: np.random.Generator, a: int, k: int) -> np.ndarray:
    """``(a, k, k)`` inverses of ``I + X^T X``, as a ridge fit would give."""
    out = np.empty((a, k, k))
    for i in range(a):
        x = rng.normal(size=(3 * k, k))
        out[i] = np.linalg.inv(np.eye(k) + x.T @ x)
    return out


def manifest_sha256(manifest: dict[str, Any]) -> str:
    """The documented ``manifest_sha256``, computed here without campaignrl's code.

    sha256 of the canonical JSON (sorted keys, no spaces, ASCII escapes) of every manifest
    field except ``manifest_sha256`` itself and the hand-editable ``notes``.
    """
    body = {k: v for k, v in manifest.items() if k not in ("manifest_sha256", "notes")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def read_manifest_json(directory: Path) -> dict[str, Any]:
    """``manifest.json`` of an artifact, parsed."""
    return json.loads((directory / "manifest.json").read_text())


def reseal(directory: Path, edit: Callable[[dict[str, Any]], object] | None = None) -> None:
    """Edit ``manifest.json`` (in place, by ``edit``) and record its checksum again.

    What a careful forger (or a buggy writer) would do: the loader's other checks must still
    refuse whatever is wrong with the edited content.
    """
    manifest = read_manifest_json(directory)
    if edit is not None:
        edit(manifest)
    if "manifest_sha256" in manifest:
        manifest["manifest_sha256"] = manifest_sha256(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))


def rehash_weights(directory: Path) -> None:
    """Record the current sha256 and size of ``weights.npz`` in the manifest, and reseal it."""
    weights = directory / "weights.npz"
    data = weights.read_bytes()

    def edit(manifest: dict[str, Any]) -> None:
        manifest["files"]["weights.npz"] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }

    reseal(directory, edit)


def saved_arrays(directory: Path) -> dict[str, np.ndarray]:
    """The arrays of an artifact's ``weights.npz``."""
    with np.load(directory / "weights.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
