"""COPY/ADD checksums against values a real dockerd 20.10 recorded, and the names and dates of ADD URLs.

The expected strings were read from ``docker history --no-trunc`` of images dockerd 20.10.24 built from the
same files (the docker CLI sends the context with uid/gid 0 and the permission bits as the mode)."""

from __future__ import annotations

import hashlib
import os
import pwd
from pathlib import Path

import pytest

from dockwright.builder.remote_add import parse_http_date, url_filename
from dockwright.builder.srchash import combine, context_entry_header, entry_hash, follow_in_scope, source_hash

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the files must be root's, as dockerd's were")


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "sub").mkdir(parents=True)
    (root / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"
                                 "app:x:1000:1000::/home/app:/bin/sh\n")
    (root / "group").write_text("root:x:0:\nnogroup:x:65534:\napp:x:1000:\n")
    (root / "a.txt").write_text("hello\n")
    (root / "sub" / "s.txt").write_text("sub\n")
    (root / "link").symlink_to("a.txt")
    for p in root.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    os.chmod(root / "sub", 0o755)
    return root


def test_context_checksums_are_dockerds(ctx: Path) -> None:
    # COPY passwd group /etc/
    assert combine([source_hash(ctx, "passwd"), source_hash(ctx, "group")]) == \
        "multi:8224e97926ae2a31f783b2648f4129efa9146fb2f3f17ed924d4ce6c989ddcaf"
    # COPY a.txt sub /app/  (a file and a directory)
    assert combine([source_hash(ctx, "a.txt"), source_hash(ctx, ctx / "sub")]) == \
        "multi:37fd3f5b38d951f5dac1a084c6ced2661c48a3725a15b8bd00a890e8122edfa7"
    # COPY link /linked  (a symlink: the checksum of what it points to)
    assert source_hash(ctx, "link") == "file:00ec16333078d287782d462baefc8bb9eb0231dc3aefba3ca3e2f7e5cf0cadda"
    assert source_hash(ctx, "a.txt") == source_hash(ctx, "link")


def test_context_entry_header_matches_reconstruction(ctx: Path) -> None:
    """What an extractor computes from the tar header equals what is computed from the extracted file."""
    data = (ctx / "a.txt").read_bytes()
    streamed = hashlib.sha256(context_entry_header("a.txt", 0o644, 0, 0, len(data), "0") + data).hexdigest()
    assert streamed == entry_hash(ctx, "a.txt") == "00ec16333078d287782d462baefc8bb9eb0231dc3aefba3ca3e2f7e5cf0cadda"
    # and known hashes are used as they are (no file is read again)
    assert source_hash(ctx, "a.txt", known={str(ctx / "a.txt"): "f" * 64}) == "file:" + "f" * 64


def test_lazy_checksums_are_dockerds(tmp_path: Path) -> None:
    # COPY --from=builder /out /from-builder, /out/v.txt written by a RUN as root
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "v.txt").write_text("v=1\n")
    os.chmod(tmp_path / "out", 0o755)
    os.chmod(tmp_path / "out" / "v.txt", 0o644)
    if pwd.getpwuid(0).pw_name != "root":
        pytest.skip("uid 0 is not named root here")
    assert source_hash(tmp_path, "out", lazy=True) == \
        "dir:5b8b6d57327f95108dee7342801e6c308c1bbbd5a14281deef37731f036e48e4"
    # ADD http://…/r.txt: a 0600 download named by the URL
    (tmp_path / "r.txt").write_text("remote content\n")
    os.chmod(tmp_path / "r.txt", 0o600)
    assert entry_hash(tmp_path, "r.txt", lazy=True) == \
        "1a83081daaa1f98ed49feadf750c9c6b7345647fb379f5104b1331b8045252c7"


def test_follow_in_scope(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "abs").symlink_to("/d")
    (tmp_path / "d" / "up").symlink_to("../../../..")
    assert follow_in_scope(tmp_path, "d/abs/x") == "d/x"
    assert follow_in_scope(tmp_path, "d/up") == "."
    assert follow_in_scope(tmp_path, "/a/../../b") == "b"


def test_url_names_and_dates() -> None:
    assert url_filename("http://h/a/b.txt?x=1") == "b.txt"
    assert url_filename("http://h/dir/") == "" and url_filename("http://h") == ""
    assert parse_http_date("Sun, 13 Sep 2020 12:26:40 GMT") == 1600000000
    assert parse_http_date("Sunday, 13-Sep-20 12:26:40 GMT") == 1600000000
    assert parse_http_date("Sun Sep 13 12:26:40 2020") == 1600000000
    assert parse_http_date("yesterday") is None
