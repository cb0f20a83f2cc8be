"""Tests for campaignrl.catalog: the flat action index, names, costs and their checks."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from campaignrl.catalog import NO_CONTACT, Catalog, Channel, Offer, default_catalog


def small_catalog() -> Catalog:
    return Catalog(
        offers=(Offer("a"), Offer("b", discount_rate=0.1, incentive=0.1), Offer("c")),
        channels=(
            Channel("x", cost_per_contact=0.0, consent_rate=1.0, fatigue_weight=1.0),
            Channel("y", cost_per_contact=0.5, consent_rate=0.5, fatigue_weight=2.0),
        ),
    )


CATALOGS = [
    pytest.param(default_catalog, id="default"),
    pytest.param(small_catalog, id="small"),
]


# ---------------------------------------------------------------- the flat index


@pytest.mark.parametrize("make", CATALOGS)
def test_flat_index_round_trips_for_every_action(make):
    cat = make()
    assert cat.n_actions == 1 + cat.n_offers * cat.n_channels
    assert len(cat.action_names) == cat.n_actions
    assert cat.offer_of.shape == cat.channel_of.shape == (cat.n_actions,)
    seen = set()
    for a in range(1, cat.n_actions):
        o, c = int(cat.offer_of[a]), int(cat.channel_of[a])
        assert 0 <= o < cat.n_offers and 0 <= c < cat.n_channels
        # The documented layout: 1 + o * n_channels + c.
        assert a == 1 + o * cat.n_channels + c
        assert cat.action_names[a] == f"{cat.offers[o].name}@{cat.channels[c].name}"
        assert cat.action_index(cat.action_names[a]) == a
        seen.add((o, c))
    assert len(seen) == cat.n_offers * cat.n_channels  # every pair exactly once


@pytest.mark.parametrize("make", CATALOGS)
def test_action_zero_is_no_contact(make):
    cat = make()
    assert cat.action_names[0] == NO_CONTACT == "no_contact"
    assert cat.action_index("no_contact") == 0
    assert cat.offer_of[0] == -1 and cat.channel_of[0] == -1


def test_default_catalog_known_layout():
    cat = default_catalog()
    assert cat.n_actions == 19
    assert cat.action_names[:4] == ("no_contact", "content@email", "content@sms", "content@push")
    assert cat.action_index("pct10@sms") == 5
    assert cat.action_index("points2x@push") == 18
    assert [c.name for c in cat.channels] == ["email", "sms", "push"]


def test_action_indices_vectorized_matches_scalar():
    cat = default_catalog()
    names = ["pct20@email", "no_contact", "bundle@push", "pct20@email"]
    out = cat.action_indices(names)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [cat.action_index(n) for n in names])


def test_unknown_action_name_is_named_in_the_error():
    cat = default_catalog()
    with pytest.raises(ValueError, match=re.escape("'pct50@fax'")):
        cat.action_index("pct50@fax")
    with pytest.raises(ValueError, match=r"unknown action 'pct50@fax' at row 1"):
        cat.action_indices(["no_contact", "pct50@fax"])


def test_index_arrays_are_read_only():
    cat = default_catalog()
    with pytest.raises(ValueError):
        cat.offer_of[1] = 3
    with pytest.raises(ValueError):
        cat.channel_of[1] = 3


# ---------------------------------------------------------------- construction checks


@pytest.mark.parametrize(
    ("offers", "channels", "match"),
    [
        ((), (Channel("x", 0.0, 1.0, 1.0),), "`offers` must hold at least one Offer"),
        ((Offer("a"),), (), "`channels` must hold at least one Channel"),
        (
            (Offer("a"), Offer("b"), Offer("a")),
            (Channel("x", 0.0, 1.0, 1.0),),
            re.escape("`offers` names must be unique, got duplicates ['a']"),
        ),
        (
            (Offer("a"),),
            (Channel("x", 0.0, 1.0, 1.0), Channel("x", 1.0, 0.5, 1.0)),
            re.escape("`channels` names must be unique, got duplicates ['x']"),
        ),
    ],
    ids=["no-offers", "no-channels", "duplicate-offer", "duplicate-channel"],
)
def test_catalog_refuses_empty_or_duplicate(offers, channels, match):
    with pytest.raises(ValueError, match=match):
        Catalog(offers, channels)


# (kwargs, error type, field, value repr shown in the message)
INVALID_OFFERS = [
    ({"name": ""}, ValueError, "Offer.name", "''"),
    ({"name": "a@b"}, ValueError, "Offer.name", "'a@b'"),
    ({"name": "a b"}, ValueError, "Offer.name", "'a b'"),
    ({"name": "a,b"}, ValueError, "Offer.name", "'a,b'"),
    ({"name": 3}, ValueError, "Offer.name", "3"),
    ({"discount_rate": 1.5}, ValueError, "Offer.discount_rate", "1.5"),
    ({"discount_rate": -0.1}, ValueError, "Offer.discount_rate", "-0.1"),
    ({"discount_rate": "0.1"}, TypeError, "Offer.discount_rate", "'0.1'"),
    ({"discount_rate": float("nan")}, ValueError, "Offer.discount_rate", "nan"),
    ({"fixed_cost": -2.0}, ValueError, "Offer.fixed_cost", "-2.0"),
    ({"fixed_cost": True}, TypeError, "Offer.fixed_cost", "True"),
    ({"basket_multiplier": 0.0}, ValueError, "Offer.basket_multiplier", "0.0"),
    ({"basket_multiplier": -1}, ValueError, "Offer.basket_multiplier", "-1"),
    ({"incentive": 1.2}, ValueError, "Offer.incentive", "1.2"),
    ({"incentive": None}, TypeError, "Offer.incentive", "None"),
]


@pytest.mark.parametrize(("kwargs", "err", "field", "shown"), INVALID_OFFERS)
def test_offer_refuses_invalid_field(kwargs, err, field, shown):
    kwargs = {"name": "ok", **kwargs}
    with pytest.raises(err, match=rf"`{re.escape(field)}`.*{re.escape(shown)}"):
        Offer(**kwargs)


INVALID_CHANNELS = [
    ({"name": ""}, ValueError, "Channel.name", "''"),
    ({"name": "e@mail"}, ValueError, "Channel.name", "'e@mail'"),
    ({"cost_per_contact": -0.01}, ValueError, "Channel.cost_per_contact", "-0.01"),
    ({"cost_per_contact": "free"}, TypeError, "Channel.cost_per_contact", "'free'"),
    ({"cost_per_contact": float("inf")}, ValueError, "Channel.cost_per_contact", "inf"),
    ({"consent_rate": 1.1}, ValueError, "Channel.consent_rate", "1.1"),
    ({"consent_rate": -0.5}, ValueError, "Channel.consent_rate", "-0.5"),
    ({"fatigue_weight": -1.0}, ValueError, "Channel.fatigue_weight", "-1.0"),
    ({"fatigue_weight": [1.0]}, TypeError, "Channel.fatigue_weight", "[1.0]"),
]


@pytest.mark.parametrize(("kwargs", "err", "field", "shown"), INVALID_CHANNELS)
def test_channel_refuses_invalid_field(kwargs, err, field, shown):
    base = {"name": "ok", "cost_per_contact": 0.0, "consent_rate": 0.5, "fatigue_weight": 1.0}
    with pytest.raises(err, match=rf"`{re.escape(field)}`.*{re.escape(shown)}"):
        Channel(**{**base, **kwargs})


def test_valid_edge_values_are_accepted():
    Offer("x", discount_rate=1.0, incentive=0.0, fixed_cost=0, basket_multiplier=1e-9)
    Channel("x", cost_per_contact=0, consent_rate=0.0, fatigue_weight=0.0)
    Channel("y", cost_per_contact=0, consent_rate=1, fatigue_weight=0.0)


# ---------------------------------------------------------------- serialization


@pytest.mark.parametrize("make", CATALOGS)
def test_to_dict_is_plain_json_and_round_trips(make):
    cat = make()
    data = json.loads(json.dumps(cat.to_dict()))
    assert data["action_names"] == list(cat.action_names)
    restored = Catalog.from_dict(data)
    assert restored.offers == cat.offers
    assert restored.channels == cat.channels
    assert restored.action_names == cat.action_names
    np.testing.assert_array_equal(restored.offer_of, cat.offer_of)
    np.testing.assert_array_equal(restored.channel_of, cat.channel_of)
    assert restored.to_dict() == cat.to_dict()


@pytest.mark.parametrize("make", CATALOGS)
def test_round_trip_compares_equal_to_the_original(make):
    # A frozen dataclass is expected to compare by value (and hash): a restored catalog
    # (from a manifest or a log) must equal the one it was saved from.
    cat = make()
    restored = Catalog.from_dict(json.loads(json.dumps(cat.to_dict())))
    assert restored == cat
    assert hash(restored) == hash(cat)


def test_from_dict_refuses_bad_offer_field_by_name():
    data = small_catalog().to_dict()
    data["offers"][1]["discount_rate"] = 2.0
    with pytest.raises(ValueError, match=r"`Offer\.discount_rate`.*2\.0"):
        Catalog.from_dict(data)
