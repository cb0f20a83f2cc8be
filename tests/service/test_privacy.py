"""Customer hashes: HMAC-SHA256 under the configured key, checked against hmac by hand."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from campaignrl.service.privacy import CustomerHasher

KEY = b"k" * 16


def test_hash_is_hmac_sha256_hex_of_the_utf8_id() -> None:
    hasher = CustomerHasher(KEY)
    expected = hmac.new(KEY, "cüstomer-42".encode(), hashlib.sha256).hexdigest()
    assert hasher("cüstomer-42") == expected
    assert len(expected) == 64


def test_a_known_value() -> None:
    # computed once with: hmac.new(b"0123456789abcdef", b"customer-42", "sha256").hexdigest()
    want = "08784800cc1101f6f73149fe5cce052ad77b45908e76d9411a7239646ee8a310"
    assert CustomerHasher(b"0123456789abcdef")("customer-42") == want
    assert CustomerHasher("0123456789abcdef")("customer-42") == want  # a str key: its UTF-8


def test_stable_across_instances_and_keyed() -> None:
    assert CustomerHasher(KEY)("a") == CustomerHasher(KEY)("a")
    assert CustomerHasher(KEY)("a") != CustomerHasher(b"j" * 16)("a")
    assert CustomerHasher(KEY)(42) == CustomerHasher(KEY)("42")


def test_repr_hides_the_key() -> None:
    assert "k" * 16 not in repr(CustomerHasher(KEY))


BAD_KEYS = [
    (b"", ValueError, "`customer_hash_key` must be at least 16 bytes, got 0 bytes"),
    (b"x" * 15, ValueError, "`customer_hash_key` must be at least 16 bytes, got 15 bytes"),
    ("", ValueError, "`customer_hash_key` must be at least 16 bytes, got 0 bytes"),
    (None, TypeError, "`customer_hash_key` must be bytes or str, got NoneType"),
    (1234567890123456, TypeError, "`customer_hash_key` must be bytes or str, got int"),
]


@pytest.mark.parametrize(("key", "error", "message"), BAD_KEYS)
def test_bad_keys_name_the_setting(key: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        CustomerHasher(key)  # type: ignore[arg-type]


def test_the_setting_name_is_configurable() -> None:
    with pytest.raises(ValueError, match="`CAMPAIGNRL_HASH_KEY` must be at least 16 bytes"):
        CustomerHasher(b"short", setting="CAMPAIGNRL_HASH_KEY")


@pytest.mark.parametrize(
    ("customer_id", "error", "message"),
    [
        ("", ValueError, "`customer_id` must not be empty"),
        (None, TypeError, "`customer_id` must be a str or an int, got NoneType"),
        (True, TypeError, "`customer_id` must be a str or an int, got bool"),
        (1.5, TypeError, "`customer_id` must be a str or an int, got float"),
    ],
)
def test_bad_customer_ids(customer_id: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        CustomerHasher(KEY)(customer_id)  # type: ignore[arg-type]


def test_many_hashes_each_id_as_one_call_does() -> None:
    hasher = CustomerHasher(KEY)
    ids: list[str | int] = ["a", "cüstomer-42", 42, "a", "\U0001f600"]
    expected = [hmac.new(KEY, str(c).encode(), hashlib.sha256).hexdigest() for c in ids]
    assert hasher.many(ids) == expected
    assert hasher.many([]) == []


@pytest.mark.parametrize(
    ("customer_id", "error", "message"),
    [
        ("", ValueError, "`customer_id` must not be empty"),
        (None, TypeError, "`customer_id` must be a str or an int, got NoneType"),
        (True, TypeError, "`customer_id` must be a str or an int, got bool"),
    ],
)
def test_many_refuses_what_one_call_refuses(customer_id: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        CustomerHasher(KEY).many(["ok", customer_id])  # type: ignore[list-item]


@pytest.mark.parametrize("length", [16, 63, 64, 65, 200])
def test_keys_of_any_length_give_hmac_sha256(length: int) -> None:
    # HMAC pads a key to SHA-256's 64-byte block and hashes a longer one first: the keyed
    # states are built by hand, so check keys on each side of the block size against hmac.
    key = bytes(range(7, 7 + length % 249)) + b"\xff" * (length - length % 249)
    assert len(key) == length
    ids: list[str | int] = ["customer-1", "cüstomer-42", "x" * 300, 7]
    hasher = CustomerHasher(key)
    expected = [hmac.new(key, str(c).encode(), hashlib.sha256).hexdigest() for c in ids]
    assert hasher.many(ids) == expected
    assert [hasher(c) for c in ids] == expected
