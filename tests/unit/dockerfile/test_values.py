"""EXPOSE port specs, STOPSIGNAL signals and WORKDIR paths as BuildKit checks them."""

from __future__ import annotations

import pytest

from dockwright.dockerfile.text import DockerfileError
from dockwright.dockerfile.values import check_signal, normalize_workdir, parse_port_spec


def test_port_specs() -> None:
    assert parse_port_spec("80") == ["80/tcp"]
    assert parse_port_spec("8000-8001/udp") == ["8000/udp", "8001/udp"]
    with pytest.raises(DockerfileError, match="invalid proto: sctpx"):
        parse_port_spec("80/sctpx")


def test_signals() -> None:
    check_signal("SIGTERM")
    check_signal("9")
    with pytest.raises(DockerfileError, match="invalid signal: SIGNOPE"):
        check_signal("SIGNOPE")


def test_workdir() -> None:
    assert normalize_workdir("/a", "b/../c") == "/a/c"
    assert normalize_workdir("/a", "/x/./y/") == "/x/y"
