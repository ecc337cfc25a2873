"""Unit tests of api/versions.py: parsing, ordering and the supported range (dockerd 28: 1.24 to 1.51)."""

from __future__ import annotations

import pytest

from dockwright.api.versions import DEFAULT, MINIMUM, parse_version


@pytest.mark.parametrize("raw,expected", [
    ("1.41", (1, 41)), ("1.4", (1, 4)), ("1.51", (1, 51)), ("2", (2, 0)), ("1.", (1, 0)), ("", (0, 0)),
    ("1.2.3", (1, 2, 3)), ("1.x", (1, 0)), ("01.041", (1, 41)),
])
def test_parse_version(raw: str, expected: tuple[int, ...]) -> None:
    assert parse_version(raw) == expected


def test_versions_compare_numerically_not_as_text() -> None:
    assert parse_version("1.9") < parse_version("1.10") < parse_version("1.41")
    assert parse_version("1.100") > parse_version("1.51")
    assert parse_version("1.44") >= (1, 44) and parse_version("1.43") < (1, 44)


def test_supported_range_is_dockerd_28s() -> None:
    # IMPLEMENTER-NOTES §1: Docker 28.x sets DefaultVersion=1.51 and MinSupportedAPIVersion=1.24
    assert DEFAULT == (1, 51)
    assert MINIMUM == (1, 24)
    assert parse_version("1.24") >= MINIMUM and parse_version("1.23") < MINIMUM
    assert parse_version("1.51") <= DEFAULT and parse_version("1.52") > DEFAULT
