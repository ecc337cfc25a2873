"""Tests of dockwright.tar.walker: entries and bodies handed to sinks, and the refusals in Go's words."""

from __future__ import annotations

import pytest

from dockwright.tar.walker import GO_INVALID_HEADER, GO_UNEXPECTED_EOF, EntrySink, TarFormatError, TarWalker

from conftest import files_tar


class _Collect:
    def __init__(self, out: dict[str, bytes], name: str) -> None:
        self.out, self.name, self.data = out, name, b""

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.out[self.name] = self.data

    def abort(self) -> None:
        pass



def _walk(data: bytes, piece: int = 7) -> dict[str, bytes]:
    out: dict[str, bytes] = {}

    def on_entry(name: str, typeflag: int, size: int, link: str) -> EntrySink | None:
        return _Collect(out, name)

    walker = TarWalker(on_entry)
    for i in range(0, len(data), piece):
        walker.feed(data[i : i + piece])
    walker.finish()
    return out


def test_entries_and_bodies_in_any_pieces() -> None:
    files = {"a": b"hello", "d/" + "n" * 150: b"x" * 1000, "\u00e9": b""}
    assert _walk(files_tar(files)) == files
    assert _walk(files_tar(files), piece=1 << 20) == files


def test_truncated_and_corrupt() -> None:
    data = files_tar({"a": b"hello" * 200})
    with pytest.raises(TarFormatError, match="the tar stream is truncated") as info:
        _walk(data[:700])
    assert info.value.go_error == GO_UNEXPECTED_EOF
    bad = bytearray(data)
    bad[0] ^= 1
    with pytest.raises(TarFormatError, match="checksum mismatch at offset 0") as info:
        _walk(bytes(bad))
    assert info.value.go_error == GO_INVALID_HEADER


def test_errors_made_by_the_caller() -> None:
    class Mine(Exception):
        pass

    walker = TarWalker(lambda *a: None, lambda message, go: Mine(message, go))
    walker.feed(files_tar({"a": b"x"})[:300])  # inside the first header
    with pytest.raises(Mine):
        walker.finish()
