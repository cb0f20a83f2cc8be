"""Tests for campaignrl.simulators.spec: WorldSpec validation, serialization, arrays."""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields, replace

import numpy as np
import pytest

from campaignrl.catalog import Catalog, Channel, Offer
from campaignrl.simulators import SegmentSpec, WorldSpec, get_world, world_names

RETAIL = get_world("retail")


def with_segment(index: int, **changes) -> dict:
    """``segments=`` override that changes one field of one retail segment."""
    segs = list(RETAIL.segments)
    segs[index] = replace(segs[index], **changes)
    return {"segments": tuple(segs)}


def with_offer_taste(index: int, row) -> dict:
    rows = list(RETAIL.offer_tastes)
    rows[index] = row
    return {"offer_tastes": tuple(rows)}


# (changes to the retail world, error, regex the message must match: field and value)
INVALID_WORLDS = [
    # segment model
    pytest.param(
        with_segment(0, share=0.20),
        ValueError,
        r"`WorldSpec\.segments` shares must sum to 1, got 1\.05",
        id="shares-sum-above-1",
    ),
    pytest.param(
        {"segments": RETAIL.segments[:4]},
        ValueError,
        r"`WorldSpec\.segments` shares must sum to 1, got 0\.75",
        id="shares-sum-below-1",
    ),
    pytest.param(
        with_segment(1, share=1.5),
        ValueError,
        r"`WorldSpec\.segments\[1\]\.share` must be <= 1\.0, got 1\.5",
        id="share-above-1",
    ),
    pytest.param(
        with_segment(1, organic_rate=-0.1),
        ValueError,
        r"`WorldSpec\.segments\[1\]\.organic_rate` must be >= 0\.0, got -0\.1",
        id="organic-rate-negative",
    ),
    pytest.param(
        with_segment(4, churn_base=1.2),
        ValueError,
        r"`WorldSpec\.segments\[4\]\.churn_base` must be <= 1\.0, got 1\.2",
        id="churn-base-above-1",
    ),
    pytest.param(
        with_segment(2, open_rates=(0.3, 0.9)),
        ValueError,
        r"`WorldSpec\.segments\[2\]\.open_rates` must be a sequence of 3 numbers, got 2: "
        r"\(0\.3, 0\.9\)",
        id="open-rates-too-short",
    ),
    pytest.param(
        with_segment(2, open_rates=(0.3, 1.2, 0.1)),
        ValueError,
        r"`WorldSpec\.segments\[2\]\.open_rates\[1\]` must be <= 1\.0, got 1\.2",
        id="open-rate-above-1",
    ),
    pytest.param(
        with_segment(2, open_rates=(0.3, -0.2, 0.1)),
        ValueError,
        r"`WorldSpec\.segments\[2\]\.open_rates\[1\]` must be >= 0\.0, got -0\.2",
        id="open-rate-negative",
    ),
    pytest.param(
        with_segment(3, taste_mean=(0.0, 0.3, -0.2)),
        ValueError,
        r"`WorldSpec\.segments\[3\]\.taste_mean` must be a sequence of 4 numbers, got 3",
        id="taste-mean-wrong-length",
    ),
    pytest.param(
        with_segment(3, taste_mean=(0.0, float("nan"), 0.0, 0.0)),
        ValueError,
        r"`WorldSpec\.segments\[3\]\.taste_mean\[1\]` must be finite, got nan",
        id="taste-mean-nan",
    ),
    pytest.param(
        with_segment(0, basket_median=-10.0),
        ValueError,
        r"`WorldSpec\.segments\[0\]\.basket_median` must be > 0\.0, got -10\.0",
        id="basket-median-negative",
    ),
    pytest.param(
        with_segment(0, basket_median=0.0),
        ValueError,
        r"`WorldSpec\.segments\[0\]\.basket_median` must be > 0\.0, got 0\.0",
        id="basket-median-zero",
    ),
    pytest.param(
        with_segment(0, basket_sigma=-0.5),
        ValueError,
        r"`WorldSpec\.segments\[0\]\.basket_sigma` must be >= 0\.0, got -0\.5",
        id="basket-sigma-negative",
    ),
    pytest.param(
        with_segment(0, conversion_logit=25.0),
        ValueError,
        r"`WorldSpec\.segments\[0\]\.conversion_logit` must be <= 20\.0, got 25\.0",
        id="conversion-logit-huge",
    ),
    pytest.param(
        with_segment(0, discount_sensitivity=-1.0),
        ValueError,
        r"`WorldSpec\.segments\[0\]\.discount_sensitivity` must be >= 0\.0, got -1\.0",
        id="discount-sensitivity-negative",
    ),
    pytest.param(
        with_segment(3, recency_range=(5, 2)),
        ValueError,
        r"`WorldSpec\.segments\[3\]\.recency_range` must be two integers 0 <= lo <= hi, "
        r"got \(5, 2\)",
        id="recency-range-reversed",
    ),
    pytest.param(
        with_segment(3, recency_range=(-1, 2)),
        ValueError,
        r"`WorldSpec\.segments\[3\]\.recency_range` .*got \(-1, 2\)",
        id="recency-range-negative",
    ),
    pytest.param(
        with_segment(3, recency_range=(1.0, 2)),
        ValueError,
        r"`WorldSpec\.segments\[3\]\.recency_range` .*got \(1\.0, 2\)",
        id="recency-range-float",
    ),
    pytest.param(
        with_segment(3, recency_range=(1, 2, 3)),
        ValueError,
        r"`WorldSpec\.segments\[3\]\.recency_range` .*got \(1, 2, 3\)",
        id="recency-range-three-values",
    ),
    pytest.param(
        with_segment(2, consent_multipliers=(1.0, -0.7, 1.2)),
        ValueError,
        r"`WorldSpec\.segments\[2\]\.consent_multipliers\[1\]` must be >= 0\.0, got -0\.7",
        id="consent-multiplier-negative",
    ),
    pytest.param(
        with_segment(0, name=""),
        ValueError,
        r"`WorldSpec\.segments\[0\]\.name` must be a non-empty string, got ''",
        id="segment-name-empty",
    ),
    pytest.param(
        with_segment(1, name="loyal"),
        ValueError,
        r"`WorldSpec\.segments` names must be unique, got \['loyal', 'loyal'",
        id="segment-names-duplicate",
    ),
    pytest.param(
        {"segments": ()},
        ValueError,
        r"`WorldSpec\.segments` must hold at least one SegmentSpec, got none",
        id="no-segments",
    ),
    pytest.param(
        {"segments": (*RETAIL.segments[:4], {"name": "dormant", "share": 0.25})},
        TypeError,
        r"`WorldSpec\.segments\[4\]` must be a SegmentSpec, got dict",
        id="segment-not-a-SegmentSpec",
    ),
    # recommendation model
    pytest.param(
        {"offer_tastes": RETAIL.offer_tastes[:5]},
        ValueError,
        r"`WorldSpec\.offer_tastes` must have one row per offer \(6\), got 5",
        id="offer-tastes-missing-row",
    ),
    pytest.param(
        with_offer_taste(3, (0.1, 0.2, 0.6)),
        ValueError,
        r"`WorldSpec\.offer_tastes\[3\]` must be a sequence of 4 numbers, got 3",
        id="offer-tastes-short-row",
    ),
    pytest.param(
        with_offer_taste(0, ()),
        ValueError,
        r"`WorldSpec\.offer_tastes` rows must have at least one dimension, got 0",
        id="offer-tastes-empty-row",
    ),
    # per-channel vectors
    pytest.param(
        {"unsubscribe_base": (0.002, 0.012)},
        ValueError,
        r"`WorldSpec\.unsubscribe_base` must be a sequence of 3 numbers, got 2: \(0\.002, 0\.012\)",
        id="unsubscribe-base-too-short",
    ),
    pytest.param(
        {"unsubscribe_base": (0.002, 1.5, 0.01)},
        ValueError,
        r"`WorldSpec\.unsubscribe_base\[1\]` must be <= 1\.0, got 1\.5",
        id="unsubscribe-base-above-1",
    ),
    pytest.param(
        {"channel_conversion": (1.0, 0.45, 0.8, 0.5)},
        ValueError,
        r"`WorldSpec\.channel_conversion` must be a sequence of 3 numbers, got 4",
        id="channel-conversion-too-long",
    ),
    pytest.param(
        {"channel_conversion": (1.0, -0.45, 0.8)},
        ValueError,
        r"`WorldSpec\.channel_conversion\[1\]` must be >= 0\.0, got -0\.45",
        id="channel-conversion-negative",
    ),
    # dynamics scalars
    pytest.param(
        {"contact_cap": 5, "cap_window": 4},
        ValueError,
        r"`WorldSpec\.contact_cap` must be <= 4, got 5",
        id="contact-cap-above-window",
    ),
    pytest.param(
        {"contact_cap": 0},
        ValueError,
        r"`WorldSpec\.contact_cap` must be >= 1, got 0",
        id="contact-cap-zero",
    ),
    pytest.param(
        {"contact_cap": 3.0},
        TypeError,
        r"`WorldSpec\.contact_cap` must be of type int, got float 3\.0",
        id="contact-cap-float",
    ),
    pytest.param(
        {"cap_window": 0, "contact_cap": 1},
        ValueError,
        r"`WorldSpec\.cap_window` must be >= 1, got 0",
        id="cap-window-zero",
    ),
    pytest.param(
        {"fatigue_decay": 1.0},
        ValueError,
        r"`WorldSpec\.fatigue_decay` must be < 1\.0, got 1\.0",
        id="fatigue-decay-1",
    ),
    pytest.param(
        {"fatigue_decay": -0.1},
        ValueError,
        r"`WorldSpec\.fatigue_decay` must be >= 0\.0, got -0\.1",
        id="fatigue-decay-negative",
    ),
    pytest.param(
        {"margin_rate": 1.5},
        ValueError,
        r"`WorldSpec\.margin_rate` must be <= 1\.0, got 1\.5",
        id="margin-rate-above-1",
    ),
    pytest.param(
        {"winback_open_factor": -0.5},
        ValueError,
        r"`WorldSpec\.winback_open_factor` must be >= 0\.0, got -0\.5",
        id="winback-factor-negative",
    ),
    pytest.param(
        {"churn_max": 2.0},
        ValueError,
        r"`WorldSpec\.churn_max` must be <= 1\.0, got 2\.0",
        id="churn-max-above-1",
    ),
    pytest.param(
        {"lapse_after": 0},
        ValueError,
        r"`WorldSpec\.lapse_after` must be >= 1, got 0",
        id="lapse-after-zero",
    ),
    pytest.param(
        {"lapse_after": True},
        TypeError,
        r"`WorldSpec\.lapse_after` must be of type int, got bool True",
        id="lapse-after-bool",
    ),
    pytest.param(
        {"taste_noise": -1.0},
        ValueError,
        r"`WorldSpec\.taste_noise` must be >= 0\.0, got -1\.0",
        id="taste-noise-negative",
    ),
    pytest.param(
        {"discount_sensitivity_noise": 3.0},
        ValueError,
        r"`WorldSpec\.discount_sensitivity_noise` must be <= 2\.0, got 3\.0",
        id="discount-sensitivity-noise-huge",
    ),
    pytest.param(
        {"unsubscribe_fatigue_slope": float("inf")},
        ValueError,
        r"`WorldSpec\.unsubscribe_fatigue_slope` must be finite, got inf",
        id="unsubscribe-slope-inf",
    ),
    pytest.param(
        {"name": ""},
        ValueError,
        r"`WorldSpec\.name` must be a non-empty string, got ''",
        id="name-empty",
    ),
    pytest.param(
        {"catalog": {"offers": []}},
        TypeError,
        r"`WorldSpec\.catalog` must be a Catalog, got dict",
        id="catalog-not-a-Catalog",
    ),
    # unknown fields
    pytest.param(
        {"fatige_decay": 0.5},
        ValueError,
        r"unknown WorldSpec field\(s\) \['fatige_decay'\]",
        id="unknown-field",
    ),
]


@pytest.mark.parametrize(("changes", "err", "match"), INVALID_WORLDS)
def test_replace_refuses_invalid_value_naming_the_field(changes, err, match):
    with pytest.raises(err, match=match):
        RETAIL.replace(**changes)


# In JSON a segment and a catalog are dicts by definition: those two rows do not apply.
INVALID_WORLD_DICTS = [
    p for p in INVALID_WORLDS if p.id not in ("segment-not-a-SegmentSpec", "catalog-not-a-Catalog")
]


@pytest.mark.parametrize(("changes", "err", "match"), INVALID_WORLD_DICTS)
def test_from_dict_refuses_invalid_value_naming_the_field(changes, err, match):
    # The same table through the JSON path (how a fitted or edited world comes back).
    data = RETAIL.to_dict()
    for key, value in changes.items():
        if key == "segments":
            value = [_seg_dict(v) for v in value]
        data[key] = value
    data = json.loads(json.dumps(data))  # lists, not tuples, as in a real file
    with pytest.raises(err, match=match):
        WorldSpec.from_dict(data)


def _seg_dict(seg: SegmentSpec) -> dict:
    return {f.name: getattr(seg, f.name) for f in fields(seg)}


def test_from_dict_refuses_unknown_segment_key_by_name():
    data = RETAIL.to_dict()
    data["segments"][0]["loyalty_tier"] = 3
    with pytest.raises(TypeError, match="loyalty_tier"):
        WorldSpec.from_dict(data)


def test_shares_within_rounding_of_one_are_accepted():
    segs = list(RETAIL.segments)
    segs[0] = replace(segs[0], share=segs[0].share + 5e-7)
    assert math.isclose(sum(s.share for s in RETAIL.replace(segments=segs).segments), 1.0 + 5e-7)


def test_replace_returns_a_validated_copy_and_leaves_the_original():
    changed = RETAIL.replace(margin_rate=0.5, contact_cap=4)
    assert changed.margin_rate == 0.5 and changed.contact_cap == 4
    assert RETAIL.margin_rate == 0.35 and RETAIL.contact_cap == 3
    assert changed.segments == RETAIL.segments


def test_sequences_are_normalized_to_tuples():
    spec = RETAIL.replace(
        unsubscribe_base=[0.001, 0.01, 0.01],
        channel_conversion=[1.0, 0.5, 0.5],
        offer_tastes=[list(r) for r in RETAIL.offer_tastes],
        segments=list(RETAIL.segments),
    )
    assert spec.unsubscribe_base == (0.001, 0.01, 0.01)
    assert spec.channel_conversion == (1.0, 0.5, 0.5)
    assert spec.offer_tastes == RETAIL.offer_tastes
    assert isinstance(spec.segments, tuple)


def test_properties():
    assert RETAIL.n_latent == 4
    assert RETAIL.segment_names == ("loyal", "bargain", "new", "lapsing", "dormant")


# ---------------------------------------------------------------- serialization


@pytest.mark.parametrize("name", world_names())
def test_to_dict_json_from_dict_preserves_every_field(name):
    spec = get_world(name)
    text = json.dumps(spec.to_dict())  # plain JSON, no custom encoder
    restored = WorldSpec.from_dict(json.loads(text))
    for f in fields(WorldSpec):
        if f.name == "catalog":
            assert restored.catalog.offers == spec.catalog.offers
            assert restored.catalog.channels == spec.catalog.channels
        else:
            assert getattr(restored, f.name) == getattr(spec, f.name), f.name
    assert restored.to_dict() == spec.to_dict()


@pytest.mark.parametrize("name", world_names())
def test_to_dict_json_from_dict_equals_the_original(name):
    spec = get_world(name)
    restored = WorldSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert restored == spec


def test_from_dict_without_catalog_uses_the_default_catalog():
    data = RETAIL.to_dict()
    del data["catalog"]
    restored = WorldSpec.from_dict(data)
    assert restored.catalog.action_names == RETAIL.catalog.action_names


# ---------------------------------------------------------------- arrays


def test_arrays_layout_and_known_values():
    w = RETAIL.arrays()
    s_count, c_count = len(RETAIL.segments), RETAIL.catalog.n_channels
    assert w.open_rate.shape == (s_count, c_count)
    assert w.taste_mean.shape == (s_count, 4)
    assert w.offer_taste.shape == (6, 4)
    np.testing.assert_allclose(w.share.sum(), 1.0)
    # loyal: median 85, sigma 0.6 -> E[b] = 85 * exp(0.18)
    assert w.basket_mean[0] == pytest.approx(85.0 * math.exp(0.18), rel=1e-12)
    assert w.basket_mu[0] == pytest.approx(math.log(85.0), rel=1e-12)
    # consent = catalog rate x segment multiplier ("new": (1.0, 0.7, 1.2)), clipped to 1
    np.testing.assert_allclose(w.consent_prob[2], [0.92, 0.45 * 0.7, 0.5 * 1.2])
    np.testing.assert_allclose(w.consent_prob[0], [0.92, 0.45, 0.5])
    np.testing.assert_array_equal(w.action_offer, RETAIL.catalog.offer_of)
    np.testing.assert_array_equal(w.action_channel, RETAIL.catalog.channel_of)
    np.testing.assert_allclose(w.offer_discount, [0, 0.1, 0.2, 0, 0.15, 0.04])
    np.testing.assert_allclose(w.channel_cost, [0.001, 0.02, 0.0])


def test_consent_probability_is_clipped_to_one():
    cat = Catalog(
        (Offer("o"),),
        (Channel("c", cost_per_contact=0.0, consent_rate=0.8, fatigue_weight=1.0),),
    )
    seg = replace(
        RETAIL.segments[0],
        share=1.0,
        open_rates=(0.3,),
        taste_mean=(0.0,),
        consent_multipliers=(2.0,),
    )
    spec = WorldSpec(
        "one",
        (seg,),
        offer_tastes=((1.0,),),
        catalog=cat,
        channel_conversion=(1.0,),
        unsubscribe_base=(0.0,),
    )
    assert spec.arrays().consent_prob[0, 0] == 1.0


def test_error_message_for_segment_shows_the_value():
    # The message names the field with its index path *and* shows the value it got.
    with pytest.raises(ValueError) as info:
        RETAIL.replace(**with_segment(2, open_rates=(0.3, 0.9)))
    assert re.search(r"WorldSpec\.segments\[2\]\.open_rates", str(info.value))
    assert "(0.3, 0.9)" in str(info.value)
