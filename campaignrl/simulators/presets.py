"""Preset worlds: ``retail`` (default), ``fatigue`` and ``sparse``.

:func:`load_world` also reads fitted simulator directories.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from campaignrl._checks import check_choice
from campaignrl.catalog import default_catalog
from campaignrl.simulators.spec import SegmentSpec, WorldSpec

__all__ = ["WORLDS", "get_world", "load_world", "world_names"]

# Channels are (email, sms, push). Open rates follow DESIGN.md's calibration table: email
# 15-35%, SMS ~90%, push 5-12%; per-period (weekly) organic purchase rates and basket sizes
# are those of a mid-size apparel retailer. Taste axes are loosely: 0 brand/novelty,
# 1 price, 2 convenience, 3 loyalty programme.
_SEGMENTS = (
    SegmentSpec(
        name="loyal",
        share=0.15,
        organic_rate=0.18,
        basket_median=85.0,
        basket_sigma=0.6,
        open_rates=(0.35, 0.95, 0.12),
        conversion_logit=-2.3,
        discount_sensitivity=0.15,
        fatigue_sensitivity=0.05,
        churn_base=0.002,
        recency_range=(0, 3),
        frequency_mean=14.0,
        taste_mean=(1.0, -0.4, 0.0, 0.6),
    ),
    SegmentSpec(
        name="bargain",
        share=0.25,
        organic_rate=0.04,
        basket_median=45.0,
        basket_sigma=0.5,
        open_rates=(0.28, 0.93, 0.09),
        conversion_logit=-3.4,
        discount_sensitivity=0.9,
        fatigue_sensitivity=0.08,
        churn_base=0.004,
        recency_range=(1, 8),
        frequency_mean=5.0,
        taste_mean=(-0.3, 1.0, 0.2, 0.0),
    ),
    SegmentSpec(
        name="new",
        share=0.15,
        organic_rate=0.06,
        basket_median=55.0,
        basket_sigma=0.55,
        open_rates=(0.38, 0.95, 0.14),
        conversion_logit=-2.8,
        discount_sensitivity=0.5,
        fatigue_sensitivity=0.10,
        churn_base=0.008,
        recency_range=(0, 4),
        frequency_mean=1.0,
        taste_mean=(0.2, 0.3, 1.0, -0.2),
        consent_multipliers=(1.0, 0.7, 1.2),
    ),
    SegmentSpec(
        name="lapsing",
        share=0.20,
        organic_rate=0.02,
        basket_median=60.0,
        basket_sigma=0.6,
        open_rates=(0.25, 0.92, 0.08),
        conversion_logit=-3.2,
        discount_sensitivity=0.6,
        fatigue_sensitivity=0.10,
        churn_base=0.006,
        recency_range=(9, 20),
        frequency_mean=3.0,
        taste_mean=(0.0, 0.3, -0.2, 0.8),
    ),
    SegmentSpec(
        name="dormant",
        share=0.25,
        organic_rate=0.004,
        basket_median=50.0,
        basket_sigma=0.6,
        open_rates=(0.18, 0.90, 0.06),
        conversion_logit=-4.0,
        discount_sensitivity=0.5,
        fatigue_sensitivity=0.12,
        churn_base=0.010,
        recency_range=(26, 52),
        frequency_mean=0.6,
        taste_mean=(-0.2, 0.0, 0.3, 0.2),
    ),
)

# Offer vectors in the same taste space, rows in catalog order:
# content, pct10, pct20, freeship, bundle, points2x.
_OFFER_TASTES = (
    (0.6, -0.5, 0.2, 0.0),
    (-0.1, 0.5, 0.0, 0.1),
    (-0.3, 0.7, 0.0, 0.1),
    (0.1, 0.2, 0.6, 0.0),
    (0.5, 0.1, -0.2, 0.1),
    (0.3, -0.2, -0.3, 0.8),
)


def retail() -> WorldSpec:
    """Mild fatigue, a cap of 3 contacts in 4 weeks: acting greedily is close to optimal."""
    return WorldSpec(
        name="retail",
        segments=_SEGMENTS,
        offer_tastes=_OFFER_TASTES,
        catalog=default_catalog(),
    )


def fatigue() -> WorldSpec:
    """A responsive audience that tires fast: strong long-term effects of every contact.

    Offers convert better than in ``retail`` (+1.5 log-odds), but weekly sends are allowed
    (no binding cap), fatigue decays slowly (0.85 a week), lowers opens six times as fast,
    lowers organic buying (annoyance) and multiplies opt-outs. Sending the best offer every
    week earns less than sending nothing; sending it about once every five weeks earns more.
    """
    segments = tuple(
        replace(
            s,
            fatigue_sensitivity=6 * s.fatigue_sensitivity,
            conversion_logit=s.conversion_logit + 1.5,
        )
        for s in _SEGMENTS
    )
    return replace(
        retail(),
        name="fatigue",
        segments=segments,
        fatigue_decay=0.85,
        fatigue_organic_penalty=0.08,
        unsubscribe_fatigue_slope=1.5,
        contact_cap=4,
        cap_window=4,
    )


def sparse() -> WorldSpec:
    """Rare conversions (under 1% per contact) and rare organic purchases: a needle world."""
    segments = tuple(
        replace(s, conversion_logit=s.conversion_logit - 2.6, organic_rate=0.3 * s.organic_rate)
        for s in _SEGMENTS
    )
    return replace(retail(), name="sparse", segments=segments)


WORLDS: dict[str, Callable[[], WorldSpec]] = {
    "retail": retail,
    "fatigue": fatigue,
    "sparse": sparse,
}
"""Preset factories by name."""


def world_names() -> tuple[str, ...]:
    """Names of the preset worlds."""
    return tuple(WORLDS)


def get_world(name: str = "retail", **overrides: Any) -> WorldSpec:
    """A preset world by name, with optional field overrides (validated).

    Examples:
        >>> get_world("fatigue").fatigue_decay
        0.85
        >>> get_world("retail", margin_rate=1.5)
        Traceback (most recent call last):
        ...
        ValueError: `WorldSpec.margin_rate` must be <= 1.0, got 1.5
    """
    check_choice(name, "world", world_names())
    spec = WORLDS[name]()
    return spec.replace(**overrides) if overrides else spec


def load_world(name_or_dir: str | os.PathLike[str], **overrides: Any) -> WorldSpec:
    """A preset by name (as :func:`get_world`) or a fitted simulator directory (SIMDIR).

    A SIMDIR is what ``campaignrl fit-sim`` writes (``manifest.json`` + ``arrays.npz``); its
    checksums are verified before the world is returned. Overrides apply to either source,
    validated as :meth:`WorldSpec.replace` does: downstream code cannot tell the two apart.

    Raises:
        ValueError: If ``name_or_dir`` is neither a preset name nor a simulator directory, or
            the directory is malformed or tampered with (naming the file and the defect).

    Examples:
        >>> load_world("fatigue").fatigue_decay
        0.85
        >>> load_world("nowhere")
        Traceback (most recent call last):
        ...
        ValueError: `world` must be a preset (retail, fatigue, sparse) or a simulator ...
    """
    if isinstance(name_or_dir, str) and name_or_dir in WORLDS:
        return get_world(name_or_dir, **overrides)
    if not isinstance(name_or_dir, (str, os.PathLike)):
        raise TypeError(
            f"`world` must be a preset name or a directory path, got {type(name_or_dir).__name__}"
        )
    path = Path(name_or_dir)
    if not path.is_dir():
        raise ValueError(
            f"`world` must be a preset ({', '.join(world_names())}) or a simulator directory "
            f"written by `campaignrl fit-sim`, got {str(name_or_dir)!r}"
        )
    from campaignrl.simulators.fit.artifact import read_world

    spec = read_world(path)
    return spec.replace(**overrides) if overrides else spec
