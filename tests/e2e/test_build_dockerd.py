"""The classic builder compared with a real dockerd 20.10 (Debian's docker.io), the reference.

The same context and Dockerfiles are built by both, from the same base image (the dockerd-made busybox fixture
loaded into each, so the base IDs match), with the same docker CLI (``DOCKER_BUILDKIT=0``). Then, for every
image: the same step output (IDs normalised), the same history (``created_by`` and ``empty_layer``, in order, read
from each daemon's saved config), the same config and author, and the same files (path, type, mode, owner, size,
link target) in ``docker export`` of a container of each. Skipped, with the reason, only where dockerd cannot run.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import re
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, Daemon
from dockerd import Dockerd, dockerd_unavailable

pytestmark = pytest.mark.skipif(dockerd_unavailable() is not None, reason=str(dockerd_unavailable()))

# every instruction of the classic builder (COPY --chmod left out: dockerd 20.10 wants BuildKit for it)
DOCKERFILE = """\
ARG BASE=bb:1
FROM ${BASE} AS builder
ARG V=1
RUN mkdir -p /out && echo v=$V > /out/v.txt
FROM bb:1
MAINTAINER someone <a@b.c>
COPY passwd group /etc/
ENV A=1 B="two words"
ENV C $A
LABEL l1=x "l 2"="y z"
ARG X=def
ARG Y
RUN echo $X $Y $A > /x.txt && echo to-stderr >&2
RUN ["echo", "exec form"]
COPY --from=builder /out /from-builder
COPY --chown=1000:1000 a.txt sub /app/
COPY --chown=app:app a.txt /app/named.txt
COPY link /linked
COPY sub/*.txt /globbed/
ADD x.tar /untar/
ADD a.txt rel-add/
WORKDIR /app/w
WORKDIR sub
RUN pwd > /pwd.txt
VOLUME /data /logs /from-builder
RUN ls /from-builder && echo lost > /data/f && echo lost > /from-builder/new && echo kept > /kept.txt
USER app
EXPOSE 8080 53/udp
SHELL ["/bin/sh", "-c"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --start-period=1500ms --retries=2 CMD cat /x.txt
ONBUILD RUN echo triggered $A
ONBUILD COPY a.txt /onbuild.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /x.txt"]
"""

# a child: the ONBUILD triggers, ADD of URLs (a file into a directory, a tar that must not be unpacked, a file
# named by the destination)
CHILD = """\
FROM cmp/all:1
USER root
ADD http://{addr}/r.txt /remote/
ADD http://{addr}/rt.tar /remote/
ADD http://{addr}/r.txt /named
WORKDIR /
"""

CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "User", "WorkingDir", "ExposedPorts", "Volumes", "Labels", "StopSignal",
               "Healthcheck", "OnBuild", "Shell")
# what dockerd's container init layer adds to every container: not part of the image
INIT_LAYER = {".dockerenv", "dev/console", "dev/pts", "dev/shm", "etc/mtab"}


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _context(base: Path) -> Path:
    ctx = base / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"
                                "app:x:1000:1000::/home/app:/bin/sh\n")
    (ctx / "group").write_text("root:x:0:\nnogroup:x:65534:\napp:x:1000:\n")
    (ctx / "a.txt").write_text("hello\n")
    (ctx / "sub" / "s.txt").write_text("sub\n")
    (ctx / "sub" / "t.txt").write_text("tee\n")
    (ctx / "link").symlink_to("a.txt")
    (ctx / "x.tar").write_bytes(_tar({"t.txt": b"intar\n", "d/u.txt": b"deeper\n"}))
    (ctx / "ignored.txt").write_text("not sent\n")
    (ctx / ".dockerignore").write_text("ignored.txt\n")
    return ctx


@pytest.fixture(scope="module")
def dockerd(shared_daemon: Daemon) -> Iterator[Dockerd]:
    real = Dockerd(shared_daemon.docker_config)
    try:
        why = real.start()
        if why is not None:
            pytest.skip(why)
        real.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
        shared_daemon.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
        yield real
    finally:
        real.stop()


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("www")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield root, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


_ID = re.compile(r"\b(sha256:)?([0-9a-f]{64}|[0-9a-f]{12})\b")


def _lines(out: bytes) -> list[str]:
    return [_ID.sub("<id>", line) for line in out.decode().splitlines()]


def _saved_config(run: Callable[..., Any], image: str) -> dict[str, Any]:
    data = run("save", image).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        return json.load(tf.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]


def _listing(run: Callable[..., Any], image: str) -> list[tuple[Any, ...]]:
    cid = run("create", image, "true").stdout.decode().strip()
    try:
        data = run("export", cid).stdout
    finally:
        run("rm", cid)
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            name = m.name.removeprefix("./").rstrip("/")
            if name in ("", ".") or name in INIT_LAYER:
                continue
            out.append((name, m.type, m.mode & 0o7777, m.uid, m.gid, m.size if m.isreg() else 0, m.linkname))
    return sorted(out)


def _compare(ours: Daemon, real: Dockerd, image: str) -> None:
    """The image ``image`` as both daemons have it: history, config, author, files."""
    c1, c2 = _saved_config(ours.docker, image), _saved_config(real.docker, image)
    h1 = [(h.get("created_by", ""), bool(h.get("empty_layer")), h.get("author", "")) for h in c1["history"]]
    h2 = [(h.get("created_by", ""), bool(h.get("empty_layer")), h.get("author", "")) for h in c2["history"]]
    assert h1 == h2
    assert len(c1["rootfs"]["diff_ids"]) == len(c2["rootfs"]["diff_ids"])
    assert c1["rootfs"]["diff_ids"][0] == c2["rootfs"]["diff_ids"][0]  # the same base layer
    assert {k: c1["config"].get(k) for k in CONFIG_KEYS} == {k: c2["config"].get(k) for k in CONFIG_KEYS}
    assert c1.get("author") == c2.get("author")
    assert _listing(ours.docker, image) == _listing(real.docker, image)


def _build(run: Callable[..., Any], ctx: Path, *args: str) -> list[str]:
    return _lines(run("build", *args, str(ctx)).stdout)


def test_every_instruction_like_dockerd(shared_daemon: Daemon, dockerd: Dockerd, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    args = ("--build-arg", "Y=given", "--label", "by=test", "--label", "z=last one", "-t", "cmp/all:1")
    ours = _build(shared_daemon.docker, ctx, *args)
    theirs = _build(dockerd.docker, ctx, *args)
    assert ours == theirs
    assert "Step 1/37 : ARG BASE=bb:1" in ours and " ---> Running in <id>" in ours
    _compare(shared_daemon, dockerd, "cmp/all:1")
    # a rebuild is all cache, as dockerd's
    ours = _build(shared_daemon.docker, ctx, *args)
    theirs = _build(dockerd.docker, ctx, *args)
    assert ours == theirs and ours.count(" ---> Using cache") == 34


def test_onbuild_and_add_url_like_dockerd(shared_daemon: Daemon, dockerd: Dockerd, tmp_path: Path,
                                         http_root: tuple[Path, str]) -> None:
    www, addr = http_root
    (www / "r.txt").write_bytes(b"remote content\n")
    (www / "rt.tar").write_bytes(_tar({"inside.txt": b"not to be unpacked\n"}))
    ctx = _context(tmp_path)
    for run in (shared_daemon.docker, dockerd.docker):
        if run("image", "inspect", "cmp/all:1", check=False).returncode != 0:
            run("build", "--build-arg", "Y=given", "-t", "cmp/all:1", str(ctx))
    (ctx / "Dockerfile").write_text(CHILD.format(addr=addr))
    ours = _build(shared_daemon.docker, ctx, "-t", "cmp/child:1")
    theirs = _build(dockerd.docker, ctx, "-t", "cmp/child:1")
    assert ours == theirs
    assert "# Executing 2 build triggers" in ours
    _compare(shared_daemon, dockerd, "cmp/child:1")
    ours = _build(shared_daemon.docker, ctx, "-t", "cmp/child:1")
    theirs = _build(dockerd.docker, ctx, "-t", "cmp/child:1")
    assert ours == theirs and ours.count(" ---> Using cache") == 7  # 2 triggers, USER, 3 ADD, WORKDIR
    # the remote file changed: its ADD and what follows run again, on both
    (www / "r.txt").write_bytes(b"remote content, changed\n")
    ours = _build(shared_daemon.docker, ctx, "-t", "cmp/child:1")
    theirs = _build(dockerd.docker, ctx, "-t", "cmp/child:1")
    assert ours == theirs and ours.count(" ---> Using cache") == 3


def test_errors_like_dockerd(shared_daemon: Daemon, dockerd: Dockerd, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    for text in ("FROM bb:1\nRUN echo out && exit 3\n", "FROM bb:1\nRUN true\nBOGUS x\n",
                 "FROM bb:1\nONBUILD FROM bb:1\n", "FROM bb:1 AS 1st\n", "FROM bb:1\nCOPY missing /x\n",
                 "FROM bb:1\nADD missing /x\n", "FROM bb:1\nCOPY nothing* /x/\n", "FROM bb:1\nEXPOSE 80/xyz\n",
                 "FROM bb:1\nCOPY a.txt\n", "FROM bb:1\nSHELL /bin/sh\n"):
        (ctx / "Dockerfile").write_text(text)
        p1 = shared_daemon.docker("build", str(ctx), check=False)
        p2 = dockerd.docker("build", str(ctx), check=False)
        assert (p1.returncode, _lines(p1.stdout)) == (p2.returncode, _lines(p2.stdout)), text
        assert _lines(p1.stderr)[-1:] == _lines(p2.stderr)[-1:], text


EDGES = """\
FROM bb:1 AS b
FROM bb:1
COPY . /all/
COPY d /d
COPY d/le /le
COPY --from=b /bin /bb
COPY d/* /glob/
"""


def _edge_context(base: Path) -> Path:
    """Symlinks (to a file, to a directory, dangling), a hard link, a setuid file, an empty file."""
    ctx = base / "edges"
    (ctx / "d" / "e").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(EDGES)
    (ctx / "d" / "a").write_text("a\n")
    os.chmod(ctx / "d" / "a", 0o4755)
    (ctx / "d" / "empty").write_bytes(b"")
    (ctx / "d" / "la").symlink_to("a")
    (ctx / "d" / "le").symlink_to("e")
    (ctx / "d" / "e" / "x").write_text("x\n")
    os.link(ctx / "d" / "e" / "x", ctx / "d" / "hard")
    (ctx / "dangling").symlink_to("nowhere")
    return ctx


@pytest.fixture(scope="module")
def edges(shared_daemon: Daemon, dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str],
                                                                                                     list[str]]:
    ctx = _edge_context(tmp_path_factory.mktemp("edges"))
    return (_build(shared_daemon.docker, ctx, "-t", "cmp/edges:1"), _build(dockerd.docker, ctx, "-t", "cmp/edges:1"))


def test_copy_checksums_of_links_like_dockerd(shared_daemon: Daemon, dockerd: Dockerd,
                                              edges: tuple[list[str], list[str]]) -> None:
    assert edges[0] == edges[1]
    c1, c2 = _saved_config(shared_daemon.docker, "cmp/edges:1"), _saved_config(dockerd.docker, "cmp/edges:1")
    assert [h.get("created_by") for h in c1["history"]] == [h.get("created_by") for h in c2["history"]]


# mount points dockerd's init layer adds to every container's filesystem when the image lacks them
INIT_MOUNT_POINTS = {"dev", "etc", "proc", "sys", "etc/hostname", "etc/hosts", "etc/resolv.conf"}


def test_copy_files_of_links_like_dockerd(shared_daemon: Daemon, dockerd: Dockerd,
                                          edges: tuple[list[str], list[str]]) -> None:
    ours = _listing(shared_daemon.docker, "cmp/edges:1")
    names = {e[0] for e in ours}
    theirs = [e for e in _listing(dockerd.docker, "cmp/edges:1") if e[0] in names or e[0] not in INIT_MOUNT_POINTS]
    assert ours == theirs


def test_docker_py_context_checksums_like_dockerd(shared_daemon: Daemon, dockerd: Dockerd, tmp_path: Path) -> None:
    """docker-py tars the context itself, with the files' own owners (not the CLI's 0:0) and its own header
    layout: the COPY checksums come from those headers on both daemons, so the history is the same."""
    import docker

    ctx = tmp_path / "pyctx"
    (ctx / "app" / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM bb:1\nCOPY app /app\nCOPY app/one.txt /one.txt\nCOPY . /all/\n")
    (ctx / "app" / "one.txt").write_text("one\n")
    (ctx / "app" / "sub" / "two.txt").write_text("two\n")
    os.symlink("one.txt", ctx / "app" / "link")
    for p in (ctx / "app", ctx / "app" / "one.txt", ctx / "app" / "sub", ctx / "app" / "sub" / "two.txt"):
        os.chown(p, 1000, 1000)
    histories = []
    for host in (shared_daemon.host, dockerd.host):
        client = docker.DockerClient(base_url=host, version="1.41")
        try:
            image, _ = client.images.build(path=str(ctx), tag="cmp/py:1", rm=True)
            histories.append([h["CreatedBy"] for h in image.history()])
        finally:
            client.close()
    assert histories[0] == histories[1]
    assert any("COPY dir:" in h for h in histories[0]) and any("COPY file:" in h for h in histories[0])
