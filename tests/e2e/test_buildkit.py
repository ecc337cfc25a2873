"""BuildKit builds through the real client (the docker CLI 20.10 with ``DOCKER_BUILDKIT=1``) for what dockerd
20.10's frontend cannot build and the comparison test therefore cannot cover: heredocs, ``COPY --link``,
``--exclude``/``--parents``, ``ADD`` of a git repository, ``RUN --network``; and the daemon's side of a build:
the incremental context (a rebuild after one edit transfers one file), inline cache from a registry image,
cancellation and a kill -9 in the middle of a build."""

from __future__ import annotations

import http.server
import io
import os
import signal
import subprocess
import tarfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, Daemon
from registry import Registry, registry  # noqa: F401 - the fixture

CLI = "/usr/bin/docker"

pytestmark = pytest.mark.skipif(not os.path.exists(CLI), reason=f"no docker 20.10 CLI at {CLI} (Debian's docker.io)")


def bk(d: Daemon, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.docker_config), "DOCKER_BUILDKIT": "1",
           "BUILDKIT_PROGRESS": "plain", "DOCKER_CLI_HINTS": "false"}
    env.pop("DOCKER_CONTEXT", None)
    p = subprocess.run([CLI, *args], capture_output=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({p.returncode}):\n{p.stderr.decode(errors='replace')}")
    return p


def build(d: Daemon, ctx: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return bk(d, "build", "--progress=plain", *args, str(ctx), check=check)


def outcome(stderr: bytes, name: str) -> str:
    """DONE, CACHED or ERROR: how the vertex whose name ends with ``name`` ended (the plain progress)."""
    number = ""
    for line in stderr.decode(errors="replace").splitlines():
        if not number and line.startswith("#") and line.endswith(name):
            number = line.split()[0]
        elif number and line.startswith(number + " "):
            word = line.split()[1]
            if word in ("DONE", "CACHED", "ERROR"):
                return word
    raise AssertionError(f"no vertex {name!r} in:\n{stderr.decode(errors='replace')}")


def read_file(d: Daemon, image: str, path: str) -> bytes:
    cid = bk(d, "create", image, "true").stdout.decode().strip()
    try:
        data = bk(d, "cp", f"{cid}:{path}", "-").stdout
    finally:
        bk(d, "rm", cid)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        f = tf.extractfile(tf.getmembers()[0])
        assert f is not None
        return f.read()


def files_of(d: Daemon, image: str) -> set[str]:
    cid = bk(d, "create", image, "true").stdout.decode().strip()
    try:
        data = bk(d, "export", cid).stdout
    finally:
        bk(d, "rm", cid)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return {m.name.rstrip("/") for m in tf.getmembers()}


@pytest.fixture(scope="module")
def d(shared_daemon: Daemon) -> Daemon:
    shared_daemon.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
    return shared_daemon


def test_heredocs_in_run_and_copy(d: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM bb:1\n"
        "RUN <<EOT\necho one > /h1\necho two >> /h1\nEOT\n"
        "RUN <<EOT sh\necho fed > /h2\nEOT\n"
        "RUN <<EOT\n#!/bin/sh\necho shebang > /h3\nEOT\n"
        "ARG WHO=you\n"
        "COPY <<EOF /greet.txt\nhello $WHO\nEOF\n")
    build(d, tmp_path, "-t", "bk/heredoc:1")
    assert read_file(d, "bk/heredoc:1", "/h1") == b"one\ntwo\n"
    assert read_file(d, "bk/heredoc:1", "/h2") == b"fed\n"
    assert read_file(d, "bk/heredoc:1", "/h3") == b"shebang\n"
    assert read_file(d, "bk/heredoc:1", "/greet.txt") == b"hello you\n"


def test_copy_link_is_cached_when_the_base_changes(d: Daemon, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("linked\n")
    (tmp_path / "Dockerfile").write_text("FROM bb:1\nARG B=1\nRUN echo $B > /b\nCOPY --link a.txt /l/\n")
    build(d, tmp_path, "-t", "bk/link:1")
    r = build(d, tmp_path, "--build-arg", "B=2", "-t", "bk/link:2")  # the layer below changes
    assert outcome(r.stderr, "COPY --link a.txt /l/") == "CACHED"
    assert outcome(r.stderr, "RUN echo 2 > /b") == "DONE"
    assert read_file(d, "bk/link:2", "/l/a.txt") == b"linked\n"
    assert read_file(d, "bk/link:2", "/b") == b"2\n"


def test_copy_exclude_and_parents(d: Daemon, tmp_path: Path) -> None:
    (tmp_path / "src" / "a" / "b").mkdir(parents=True)
    (tmp_path / "src" / "a" / "b" / "f.txt").write_text("f\n")
    (tmp_path / "src" / "a" / "b" / "g.log").write_text("g\n")
    (tmp_path / "Dockerfile").write_text("FROM bb:1\nCOPY --exclude=**/*.log src/ /ex/\n"
                                         "COPY --parents src/a/b/f.txt /par/\n")
    build(d, tmp_path, "-t", "bk/exclude:1")
    names = files_of(d, "bk/exclude:1")
    assert "ex/a/b/f.txt" in names and "ex/a/b/g.log" not in names
    assert "par/src/a/b/f.txt" in names


def test_add_of_a_git_repository(d: Daemon, tmp_path: Path) -> None:
    repo = tmp_path / "work"
    repo.mkdir()
    git = partial(subprocess.run, check=True, capture_output=True, cwd=repo)
    git(["git", "init", "-q"])
    (repo / "README").write_text("readme\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "d.txt").write_text("deep\n")
    git(["git", "add", "."])
    git(["git", "-c", "user.email=a@b", "-c", "user.name=n", "commit", "-qm", "init"])
    www = tmp_path / "www"
    git(["git", "clone", "-q", "--bare", ".", str(www / "repo.git")])
    git(["git", "-C", str(www / "repo.git"), "update-server-info"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/repo.git"
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM bb:1\nADD {url} /g/\nADD {url}#HEAD:sub /s/\n")
        build(d, ctx, "-t", "bk/git:1")
    finally:
        server.shutdown()
        server.server_close()
    names = files_of(d, "bk/git:1")
    assert {"g/README", "g/sub/d.txt", "s/d.txt"} <= names
    assert not any(n.startswith("g/.git") for n in names)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def test_run_network_none_has_only_loopback(d: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM bb:1\nRUN --network=none ls /sys/class/net > /nets\n")
    build(d, tmp_path, "-t", "bk/net:1")
    assert read_file(d, "bk/net:1", "/nets").split() == [b"lo"]


def test_rebuild_after_one_edit_transfers_one_file(d: Daemon, tmp_path: Path) -> None:
    for i in range(200):
        (tmp_path / f"f{i:03}.txt").write_text(f"file {i}\n" * 200)
    (tmp_path / "Dockerfile").write_text("FROM bb:1\nCOPY . /ctx/\n")
    first = build(d, tmp_path, "-t", "bk/ctx:1").stderr.decode()
    same = build(d, tmp_path, "-t", "bk/ctx:1").stderr.decode()
    (tmp_path / "f007.txt").write_text("edited\n" * 200)
    second = build(d, tmp_path, "-t", "bk/ctx:1").stderr.decode()

    def transferred(out: str) -> int:
        for line in out.splitlines():
            if "load build context" in line:
                n = line.split()[0]
                for later in out.splitlines():
                    if later.startswith(n + " transferring context:"):
                        size = later.split("transferring context:")[1].split()[0]
                        return _bytes(size)
        raise AssertionError(out)

    # what is counted is every packet received, as fsutil counts it: the listing's stats, then the contents asked for
    listing = transferred(same)  # nothing changed: the stats alone
    assert 200 * 20 < listing < 200 * 60
    assert transferred(first) > listing + 200 * 1400
    assert 1400 <= transferred(second) - listing < 1400 + 100  # the edited file (a REQ's answer), nothing more

    def dockerfile_sent(out: str) -> int:
        return next(_bytes(line.split("transferring dockerfile:")[1].split()[0]) for line in out.splitlines()
                    if "transferring dockerfile:" in line)

    # the Dockerfile is kept per client context too: a rebuild sends its stat alone (dockerd: 32B)
    assert dockerfile_sent(first) - dockerfile_sent(same) >= len("FROM bb:1\nCOPY . /ctx/\n")
    assert dockerfile_sent(same) < 64
    assert read_file(d, "bk/ctx:1", "/ctx/f007.txt") == b"edited\n" * 200


def _bytes(s: str) -> int:
    units = {"B": 1, "kB": 1000, "MB": 1000 ** 2, "GB": 1000 ** 3}
    for u in ("kB", "MB", "GB", "B"):
        if s.endswith(u):
            return int(float(s[: -len(u)]) * units[u])
    raise ValueError(s)


def test_cancelled_build_leaves_no_step_running(d: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM bb:1\nRUN sleep 300\n")
    env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.docker_config), "DOCKER_BUILDKIT": "1"}
    p = subprocess.Popen([CLI, "build", "--progress=plain", str(tmp_path)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    assert p.stdout is not None
    deadline = time.time() + 60
    seen = b""
    while b"RUN sleep 300" not in seen and time.time() < deadline:
        seen += p.stdout.read1(4096)  # type: ignore[attr-defined]
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    p.wait(30)
    deadline = time.time() + 20
    while time.time() < deadline and _sleepers():
        time.sleep(0.2)
    assert not _sleepers()


def _sleepers() -> list[str]:
    out = subprocess.run(["pgrep", "-f", "^sleep 300$"], capture_output=True).stdout.decode().split()
    return out


def test_kill9_during_a_build_leaves_no_half_image(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "d").start()
    try:
        d.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM bb:1\nRUN --mount=type=cache,target=/c echo x >> /c/n\n"
                                        "RUN echo one > /one\nRUN sleep 300\n")
        env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.docker_config), "DOCKER_BUILDKIT": "1"}
        p = subprocess.Popen([CLI, "build", "--progress=plain", "-t", "bk/killed:1", str(ctx)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert p.stdout is not None
        seen = b""
        deadline = time.time() + 60
        while b"RUN sleep 300" not in seen and time.time() < deadline:
            seen += p.stdout.read1(4096)  # type: ignore[attr-defined]
        time.sleep(1)
        d.kill9()
        p.wait(30)
        d.start()
        assert not _sleepers()  # the step a crash left running was killed at start-up
        assert "bk/killed" not in d.out("images", "--format", "{{.Repository}}")
        mounts = Path("/proc/mounts").read_text()
        assert str(d.data_root) not in mounts or "overlay" not in "".join(
            line for line in mounts.splitlines() if str(d.data_root) + "/tmp" in line)
        # the cache is intact: the steps before the one that was running are cached
        (ctx / "Dockerfile").write_text("FROM bb:1\nRUN --mount=type=cache,target=/c echo x >> /c/n\n"
                                        "RUN echo one > /one\n")
        out = build(d, ctx, "-t", "bk/killed:1").stderr.decode()
        assert out.count("CACHED") >= 2
    finally:
        d.stop()


def test_inline_cache_from_a_registry_image(tmp_path: Path, registry: Registry) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "Dockerfile").write_text("FROM bb:1\nCOPY a.txt /\nRUN echo built > /built\n")
    name = f"{registry.host}/bk/inline:1"
    first = Daemon(tmp_path / "one").start()
    try:
        first.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
        build(first, ctx, "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t", name)
        first.docker("push", name)
    finally:
        first.stop()
    second = Daemon(tmp_path / "two").start()  # a machine that never built it
    try:
        second.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
        out = build(second, ctx, "--cache-from", name, "-t", "bk/inline:2").stderr.decode()
        assert f"importing cache manifest from {name}" in out
        assert out.count("CACHED") >= 2  # COPY and RUN, on the pulled image's layers
        assert read_file(second, "bk/inline:2", "/built") == b"built\n"
    finally:
        second.stop()


def test_cli_without_docker_buildkit_chooses_buildkit_by_ping(d: Daemon, tmp_path: Path) -> None:
    # /_ping answers Builder-Version: 2, so the 20.10 CLI builds with BuildKit unless told otherwise
    (tmp_path / "Dockerfile").write_text("FROM bb:1\nRUN echo hi > /hi\n")
    env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.docker_config), "BUILDKIT_PROGRESS": "plain"}
    env.pop("DOCKER_BUILDKIT", None)
    p = subprocess.run([CLI, "build", "-t", "bk/default:1", str(tmp_path)], env=env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert b"[internal] load build definition from Dockerfile" in p.stderr
    classic = subprocess.run([CLI, "build", "-t", "bk/classic:1", str(tmp_path)], env={**env, "DOCKER_BUILDKIT": "0"},
                             capture_output=True, timeout=120)
    assert classic.returncode == 0 and b"Step 1/2 : FROM bb:1" in classic.stdout


def test_base_image_pulled_with_the_clients_credentials(tmp_path: Path) -> None:
    # the daemon has no credentials of its own: the base comes with the ones the CLI serves on its session
    d = Daemon(tmp_path / "d").start()
    try:
        with Registry(tmp_path / "reg", auth="htpasswd") as reg:
            user, pw = reg.credentials  # type: ignore[misc]
            d.docker("login", "-u", user, "--password-stdin", reg.host, input=pw.encode() + b"\n")
            d.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
            base = f"{reg.host}/auth/base:1"
            d.docker("tag", "bb:1", base)
            d.docker("push", base)
            d.docker("rmi", base)
            ctx = tmp_path / "ctx"
            ctx.mkdir()
            (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN echo on-private-base > /p\n")
            build(d, ctx, "-t", "bk/private:1")
            assert read_file(d, "bk/private:1", "/p") == b"on-private-base\n"
            d.docker("logout", reg.host)
            d.docker("rmi", base)
            r = build(d, ctx, "--no-cache", "-t", "bk/private:2", check=False)
            assert r.returncode == 1
            assert b"load metadata for" in r.stderr and b"ERROR" in r.stderr
    finally:
        d.stop()
