"""COPY/ADD checksums and metadata-step history texts against values a real dockerd 20.10 recorded.

The expected strings were read from ``docker history --no-trunc`` of images dockerd 20.10.24 built from the
same files (the docker CLI sends the context with uid/gid 0 and the permission bits as the mode)."""

from __future__ import annotations

import hashlib
import os
import pwd
from pathlib import Path

import pytest

from dockwright.build.changes import builder_dispatch, go_duration
from dockwright.build.remote_add import parse_http_date, url_filename
from dockwright.build.srchash import combine, context_entry_header, entry_hash, follow_in_scope, source_hash

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


@pytest.mark.parametrize(("instruction", "message"), [
    ('ENV A=1 B="two words"', "ENV A=1 B=two words"),
    ("ENV C $A", "ENV C=1"),
    ('LABEL l1=x "l 2"="y z"', "LABEL l1=x l 2=y z"),
    ("EXPOSE 8080 53/udp", "EXPOSE 53/udp 8080"),
    ("EXPOSE 80/tcp 1000-1002", "EXPOSE 1000-1002 80/tcp"),
    ("VOLUME /data /logs", "VOLUME [/data /logs]"),
    ('SHELL ["/bin/sh", "-c"]', "SHELL [/bin/sh -c]"),
    ("STOPSIGNAL SIGTERM", "STOPSIGNAL SIGTERM"),
    ("HEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD cat /x.txt",
     """HEALTHCHECK &{["CMD-SHELL" "cat /x.txt"] "5s" "3s" "0s" '\\x02'}"""),
    ("HEALTHCHECK NONE", """HEALTHCHECK &{["NONE"] "0s" "0s" "0s" '\\x00'}"""),
    ("ONBUILD RUN echo onbuild", "ONBUILD RUN echo onbuild"),
    ('ENTRYPOINT ["/bin/sh", "-c"]', 'ENTRYPOINT ["/bin/sh" "-c"]'),
    ('CMD ["cat /x.txt"]', 'CMD ["cat /x.txt"]'),
    ("CMD echo hi", 'CMD ["/bin/sh" "-c" "echo hi"]'),
    ("WORKDIR rel", "WORKDIR /rel"),
    ("USER $E", "USER /p/q"),
    ("MAINTAINER $E", "MAINTAINER $E"),
])
def test_history_texts_are_dockerds(instruction: str, message: str) -> None:
    d = builder_dispatch({"Env": ["PATH=/bin"]}, instruction, env=["PATH=/bin", "A=1", "E=/p/q"])
    assert d.message == message


def test_builder_dispatch_config() -> None:
    d = builder_dispatch({"Env": ["PATH=/bin"], "Cmd": ["x"]}, "ENTRYPOINT top", cmd_set=False)
    assert d.config["Entrypoint"] == ["/bin/sh", "-c", "top"] and d.config["Cmd"] is None
    d = builder_dispatch({"Cmd": ["x"]}, "ENTRYPOINT top", cmd_set=True)
    assert d.config["Cmd"] == ["x"]
    d = builder_dispatch({}, "ENV X=$ARG", env=["ARG=from-arg"])
    assert d.config["Env"] == ["X=from-arg"]  # build args expand, but do not land in Env
    assert builder_dispatch({}, "MAINTAINER me").maintainer == "me"


def test_go_duration() -> None:
    assert [go_duration(n) for n in (0, 5_000_000_000, 90_000_000_000, 1_500_000_000, 3_600_000_000_000,
                                     100_000_000, 1_500)] == ["0s", "5s", "1m30s", "1.5s", "1h0m0s", "100ms", "1.5µs"]


def test_url_names_and_dates() -> None:
    assert url_filename("http://h/a/b.txt?x=1") == "b.txt"
    assert url_filename("http://h/dir/") == "" and url_filename("http://h") == ""
    assert parse_http_date("Sun, 13 Sep 2020 12:26:40 GMT") == 1600000000
    assert parse_http_date("Sunday, 13-Sep-20 12:26:40 GMT") == 1600000000
    assert parse_http_date("Sun Sep 13 12:26:40 2020") == 1600000000
    assert parse_http_date("yesterday") is None
