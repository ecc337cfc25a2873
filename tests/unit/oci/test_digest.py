"""Unit tests of oci/digest.py: digest validation, hashing, ChainIDs and short IDs."""

from __future__ import annotations

import hashlib

import pytest

from dockwright.errors import InvalidArgument
from dockwright.oci.digest import DIGEST_RE, Hasher, chain_ids, hex_of, sha256_digest, short_id, validate_digest

EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_sha256_digest_of_known_inputs() -> None:
    assert sha256_digest(b"") == EMPTY
    assert sha256_digest(b"abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_validate_digest_returns_a_good_digest() -> None:
    assert validate_digest(EMPTY) == EMPTY
    assert DIGEST_RE.match(EMPTY)


@pytest.mark.parametrize("bad", [
    "", "sha256:", EMPTY[:-1], EMPTY + "0", EMPTY.upper(), "sha256:" + "E" * 64, "sha512:" + "a" * 64,
    "a" * 64, EMPTY + "\n", " " + EMPTY, "sha256:" + "g" * 64,
])
def test_validate_digest_refuses(bad: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        validate_digest(bad)
    assert str(exc.value) == f"invalid digest: {bad!r}"


def test_hex_of_and_short_id() -> None:
    assert hex_of(EMPTY) == EMPTY[7:]
    assert hex_of("abcdef") == "abcdef"
    assert short_id(EMPTY) == "e3b0c44298fc"
    assert short_id("0123456789abcdef") == "0123456789ab"


def test_hasher_streams_and_counts() -> None:
    h = Hasher()
    assert h.digest == EMPTY and h.size == 0
    h.update(b"ab")
    h.update(memoryview(b"c"))
    assert h.size == 3
    assert h.digest == sha256_digest(b"abc")


def test_chain_ids_as_the_image_spec_defines_them() -> None:
    a, b, c = (sha256_digest(x) for x in (b"a", b"b", b"c"))
    assert chain_ids([]) == []
    assert chain_ids([a]) == [a]
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([b, a])[1] != ab  # the order matters
