"""BuildKit builds compared with a real dockerd 20.10 and its built-in BuildKit (v0.8), the reference.

The same contexts are built by both with the same client, Debian's docker CLI 20.10 (``/usr/bin/docker``) with
``DOCKER_BUILDKIT=1``: it opens a session (``POST /session``) and sends ``POST /build?version=2``. Then, for every
image: the same files (``docker export`` of a container of each: path, type, mode, owner, size, content of regular
files), the same config, the same history (``created_by``, ``empty_layer``), the same vertexes in the plain
progress, the same ``CACHED`` steps on a rebuild and after an edit, and the same errors (exit code and message).
Both build with ``--network=none``: the reference runs without a bridge. What dockerd 20.10's frontend lacks
(``COPY --link``, heredocs, ``RUN --network``) is checked on dockwright alone. Skipped, with the reason, only where
dockerd or the 20.10 CLI cannot run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, Daemon
from dockerd import Dockerd, dockerd_unavailable

CLI = "/usr/bin/docker"  # the 20.10 CLI speaks BuildKit itself; CLI 28 needs the buildx plugin

pytestmark = [
    pytest.mark.skipif(dockerd_unavailable() is not None, reason=str(dockerd_unavailable())),
    pytest.mark.skipif(not os.path.exists(CLI), reason=f"no docker 20.10 CLI at {CLI} (Debian's docker.io)"),
]

DOCKERFILE = """\
ARG BASE=bb:1
FROM ${BASE} AS base
ENV A=1
WORKDIR /app
COPY a.txt .
COPY sub/ ./sub/
ARG V=2
RUN echo "v=$V a=$A" > /app/v.txt && echo to-stdout && echo to-stderr >&2
FROM base AS builder
ARG GREETING
RUN echo "built $GREETING" > /built
FROM bb:1 AS unused
RUN echo never > /never
FROM bb:1 AS final
COPY --from=builder /built /built
COPY --from=base /app /app
COPY --chown=1:1 --chmod=0750 a.txt /owned.txt
RUN --mount=type=bind,from=base,source=/app,target=/m cat /m/v.txt > /from-bind.txt
RUN --mount=type=tmpfs,target=/t echo x > /t/x && ls /t > /tmpfs.txt
LABEL stage=final
EXPOSE 8080
USER 1000
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/v.txt"]
"""

_ID = re.compile(r"\b(sha256:)?[0-9a-f]{64}\b")


def _context(base: Path) -> Path:
    ctx = base / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "a.txt").write_text("hello\n")
    (ctx / "sub" / "s.txt").write_text("sub\n")
    (ctx / "ignored.txt").write_text("not sent\n")
    (ctx / ".dockerignore").write_text("ignored.txt\n")
    return ctx


def bk(host: str, config: Path, *args: str, check: bool = True, timeout: float = 180,
       cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """The 20.10 CLI with BuildKit against ``host``."""
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": str(config), "DOCKER_BUILDKIT": "1",
           "BUILDKIT_PROGRESS": "plain", "DOCKER_CLI_HINTS": "false"}
    env.pop("DOCKER_CONTEXT", None)
    p = subprocess.run([CLI, *args], capture_output=True, env=env, timeout=timeout, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({p.returncode}):\n{p.stderr.decode(errors='replace')}")
    return p


class Side:
    """One daemon as the tests drive it."""

    def __init__(self, name: str, host: str, config: Path) -> None:
        self.name, self.host, self.config = name, host, config

    def build(self, ctx: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return bk(self.host, self.config, "build", "--progress=plain", "--network=none", *args, str(ctx),
                  check=check)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return bk(self.host, self.config, *args, check=check)


@pytest.fixture(scope="module")
def sides(shared_daemon: Daemon) -> Iterator[tuple[Side, Side]]:
    real = Dockerd(shared_daemon.docker_config)
    try:
        why = real.start()
        if why is not None:
            pytest.skip(why)
        real.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
        shared_daemon.docker("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
        yield (Side("dockwright", shared_daemon.host, shared_daemon.docker_config),
               Side("dockerd", real.host, shared_daemon.docker_config))
    finally:
        real.stop()


# ---- what is compared --------------------------------------------------------------------------------------------
def vertexes(stderr: bytes) -> list[tuple[str, str]]:
    """The plain progress as (vertex name, outcome): DONE, CACHED or ERROR, in the order they finished."""
    names: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    for line in stderr.decode(errors="replace").splitlines():
        m = re.match(r"#(\d+) (.*)$", line)
        if not m:
            continue
        n, rest = m.groups()
        if n not in names and not rest.startswith(("sha256:", "DONE", "CACHED", "ERROR")):
            names[n] = rest
            continue
        for outcome in ("DONE", "CACHED", "ERROR"):
            if rest.startswith(outcome) and n in names:
                out.append((names[n], outcome))
    return out


def names(stderr: bytes) -> list[str]:
    """The vertex names, sorted; a FROM shared by stages is one vertex whose prefix dockerd takes from either
    stage, so FROM vertexes are compared without it."""
    return sorted(re.sub(r"^\[[^]]*\] FROM ", "FROM ", n) for n, _ in vertexes(stderr))


def steps(stderr: bytes) -> dict[str, str]:
    """The build's steps (``[stage i/n] …`` vertexes but FROM, whose outcome dockerd decides by other things than
    the cache) with their outcome."""
    return {name: outcome for name, outcome in vertexes(stderr)
            if name.startswith("[") and not name.startswith("[internal]") and " FROM " not in name}


def saved_config(side: Side, image: str) -> dict[str, Any]:
    data = side.docker("save", image).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        return json.load(tf.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]


INIT_LAYER = {".dockerenv", "dev/console", "dev/pts", "dev/shm", "etc/mtab", "etc/hosts", "etc/hostname",
              "etc/resolv.conf", "proc", "sys", "dev", "etc"}


def listing(side: Side, image: str) -> list[tuple[Any, ...]]:
    cid = side.docker("create", image, "true").stdout.decode().strip()
    try:
        data = side.docker("export", cid).stdout
    finally:
        side.docker("rm", cid)
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            name = m.name.removeprefix("./").rstrip("/")
            if name in ("", ".") or name in INIT_LAYER:
                continue
            digest = ""
            if m.isreg():
                f = tf.extractfile(m)
                assert f is not None
                digest = hashlib.sha256(f.read()).hexdigest()[:16]
            out.append((name, m.type, m.mode & 0o7777, m.uid, m.gid, m.size if m.isreg() else 0, m.linkname, digest))
    return sorted(out)


def history(cfg: dict[str, Any]) -> list[tuple[str, bool, str]]:
    return [(h.get("created_by", ""), bool(h.get("empty_layer")), h.get("comment", "")) for h in cfg["history"]]


def compare_images(ours: Side, theirs: Side, image: str) -> None:
    c1, c2 = saved_config(ours, image), saved_config(theirs, image)
    assert history(c1) == history(c2)
    assert c1["config"] == c2["config"]
    assert (c1["architecture"], c1["os"]) == (c2["architecture"], c2["os"])
    assert len(c1["rootfs"]["diff_ids"]) == len(c2["rootfs"]["diff_ids"])
    assert c1["rootfs"]["diff_ids"][0] == c2["rootfs"]["diff_ids"][0]
    assert listing(ours, image) == listing(theirs, image)


# ---- the tests ---------------------------------------------------------------------------------------------------
def test_multistage_build_like_dockerd(sides: tuple[Side, Side], tmp_path: Path) -> None:
    ours, theirs = sides
    ctx = _context(tmp_path)
    args = ("--build-arg", "GREETING=hey", "--label", "by=test", "-t", "bk/multi:1")
    r1, r2 = ours.build(ctx, *args), theirs.build(ctx, *args)
    assert names(r1.stderr) == names(r2.stderr)
    assert not any("never" in n for n in names(r1.stderr))  # the unused stage is skipped
    compare_images(ours, theirs, "bk/multi:1")
    # logs of a RUN, both streams
    assert b"to-stdout" in r1.stderr and b"to-stderr" in r1.stderr

    # an unchanged rebuild: every step cached, on both; the same image
    id1 = ours.docker("image", "inspect", "-f", "{{.Id}}", "bk/multi:1").stdout
    r1, r2 = ours.build(ctx, *args), theirs.build(ctx, *args)
    assert steps(r1.stderr) == steps(r2.stderr)
    assert set(steps(r1.stderr).values()) == {"CACHED"}
    assert ours.docker("image", "inspect", "-f", "{{.Id}}", "bk/multi:1").stdout == id1

    # one file edited: the steps after the COPY of it rerun, the others are cached, as on dockerd
    (ctx / "a.txt").write_text("edited\n")
    r1, r2 = ours.build(ctx, *args), theirs.build(ctx, *args)
    assert steps(r1.stderr) == steps(r2.stderr)
    assert "DONE" in steps(r1.stderr).values() and "CACHED" in steps(r1.stderr).values()
    compare_images(ours, theirs, "bk/multi:1")


def test_target_builds_only_what_it_needs(sides: tuple[Side, Side], tmp_path: Path) -> None:
    ours, theirs = sides
    ctx = _context(tmp_path)
    r1 = ours.build(ctx, "--target", "builder", "--build-arg", "GREETING=t", "-t", "bk/target:1")
    r2 = theirs.build(ctx, "--target", "builder", "--build-arg", "GREETING=t", "-t", "bk/target:1")
    assert names(r1.stderr) == names(r2.stderr)
    assert not any("[final" in n for n in names(r1.stderr))
    compare_images(ours, theirs, "bk/target:1")


@pytest.mark.parametrize("dockerfile", [
    "FROM bb:1\nRUN echo before\nRUN exit 3\n",
    "FROM bb:1\nFOO bar\n",
    "FROM bb:1\nCOPY missing.txt /m\n",
    "FROM bb:1\nCOPY a.txt\n",
])
def test_errors_like_dockerd(sides: tuple[Side, Side], tmp_path: Path, dockerfile: str) -> None:
    ours, theirs = sides
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "Dockerfile").write_text(dockerfile)
    r1, r2 = ours.build(ctx, check=False), theirs.build(ctx, check=False)
    assert (r1.returncode, r2.returncode) == (1, 1)
    last1 = r1.stderr.decode().strip().splitlines()[-1]
    last2 = r2.stderr.decode().strip().splitlines()[-1]
    assert _ID.sub("<id>", last1) == _ID.sub("<id>", last2)
    errs1 = [n for n, o in vertexes(r1.stderr) if o == "ERROR"]
    errs2 = [n for n, o in vertexes(r2.stderr) if o == "ERROR"]
    assert errs1 == errs2


CACHE_DOCKERFILE = """\
FROM bb:1
ARG N
RUN --mount=type=cache,target=/cache,id=counter sh -c 'echo $N >> /cache/c; wc -l < /cache/c > /count'
"""


def test_cache_mount_persists_across_builds(sides: tuple[Side, Side], tmp_path: Path) -> None:
    ours, theirs = sides
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(CACHE_DOCKERFILE)
    counts = []
    for side in (ours, theirs):
        got = []
        for n in ("1", "2"):  # a new build arg: the step runs again, with the same cache directory
            side.build(ctx, "--build-arg", f"N={n}", "-t", "bk/cache:1")
            cid = side.docker("create", "bk/cache:1", "true").stdout.decode().strip()
            data = side.docker("cp", f"{cid}:/count", "-").stdout
            side.docker("rm", cid)
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                f = tf.extractfile("count")
                assert f is not None
                got.append(int(f.read()))
        counts.append(got)
    assert counts[0] == counts[1]
    assert counts[0][1] == counts[0][0] + 1
    compare_images(ours, theirs, "bk/cache:1")


SECRET_DOCKERFILE = """\
FROM bb:1
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen-len && wc -c < /run/secrets/tok > /seen-len
"""


def test_secret_is_read_in_run_and_is_in_no_layer(sides: tuple[Side, Side], tmp_path: Path) -> None:
    ours, theirs = sides
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(SECRET_DOCKERFILE)
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t-value-xyz")
    for side in (ours, theirs):
        side.build(ctx, "--secret", f"id=tok,src={secret}", "-t", "bk/secret:1")
        data = side.docker("save", "bk/secret:1").stdout
        assert b"s3cr3t-value-xyz" not in data  # in no layer, config or history
    compare_images(ours, theirs, "bk/secret:1")


AGENTLS_C = r"""
/* the identities of the SSH agent at $SSH_AUTH_SOCK (SSH2_AGENTC_REQUEST_IDENTITIES): "identities N", then each
   key's comment; "no agent: <why>" when there is none */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static int readn(int fd, unsigned char *b, size_t n) {
  size_t g = 0;
  while (g < n) { ssize_t r = read(fd, b + g, n - g); if (r <= 0) return -1; g += r; }
  return 0;
}
static unsigned u32(const unsigned char *p) { return (unsigned)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
int main(void) {
  const char *path = getenv("SSH_AUTH_SOCK");
  if (!path) { printf("no agent: SSH_AUTH_SOCK unset\n"); return 2; }
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { printf("no agent: cannot connect\n"); return 2; }
  unsigned char req[5] = {0, 0, 0, 1, 11}, len[4];
  if (write(fd, req, 5) != 5 || readn(fd, len, 4) < 0) { printf("no agent: no answer\n"); return 2; }
  unsigned n = u32(len);
  unsigned char *b = malloc(n);
  if (readn(fd, b, n) < 0 || b[0] != 12) { printf("no agent: bad answer\n"); return 2; }
  unsigned keys = u32(b + 1), off = 5;
  printf("identities %u\n", keys);
  for (unsigned i = 0; i < keys; i++) {
    unsigned bl = u32(b + off); off += 4 + bl;
    unsigned cl = u32(b + off); off += 4;
    printf("%.*s\n", (int)cl, b + off); off += cl;
  }
  return 0;
}
"""

SSH_DOCKERFILE = """\
FROM bb:1
COPY agentls /agentls
RUN --mount=type=ssh /agentls > /agent.txt; echo "$SSH_AUTH_SOCK" > /sock.txt
RUN --mount=type=ssh,id=other,target=/o.sock /agentls > /other.txt; echo "$SSH_AUTH_SOCK" >> /other.txt
"""


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A real ssh-agent holding one new key, and a static program that lists an agent's keys: (socket, program)."""
    for tool in ("ssh-agent", "ssh-add", "ssh-keygen", "gcc"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} on this machine (openssh-client, gcc)")
    prog = tmp_path / "agentls"
    (tmp_path / "agentls.c").write_text(AGENTLS_C)
    p = subprocess.run(["gcc", "-static", "-O2", "-o", str(prog), str(tmp_path / "agentls.c")], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"gcc cannot link a static program here: {p.stderr.decode(errors='replace')[:200]}")
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dockwright-agent-key", "-f", str(key)],
                   check=True)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        subprocess.run(["ssh-add", str(key)], env={**os.environ, "SSH_AUTH_SOCK": str(sock)}, check=True,
                       capture_output=True)
        yield sock, prog
    finally:
        agent.terminate()
        agent.wait(10)


def test_ssh_agent_is_forwarded_like_dockerd(sides: tuple[Side, Side], tmp_path: Path, ssh_agent: tuple[Path, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = sides
    sock, prog = ssh_agent
    monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shutil.copy(prog, ctx / "agentls")
    (ctx / "Dockerfile").write_text(SSH_DOCKERFILE)
    for side in (ours, theirs):
        side.build(ctx, "--ssh", "default", "-t", "bk/ssh:1")
        cid = side.docker("create", "bk/ssh:1", "true").stdout.decode().strip()
        data = side.docker("export", cid).stdout
        side.docker("rm", cid)
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            got = {n: tf.extractfile(n).read() for n in ("agent.txt", "sock.txt", "other.txt")}  # type: ignore[union-attr]
            names = tf.getnames()
        # the key reached the step through the forwarded agent; the optional mount of an agent the client does not
        # forward is left out (SSH_AUTH_SOCK names the first ssh mount's target either way); no socket in a layer
        assert got == {"agent.txt": b"identities 1\ndockwright-agent-key\n",
                       "sock.txt": b"/run/buildkit/ssh_agent.0\n",
                       "other.txt": b"no agent: cannot connect\n/o.sock\n"}, side.name
        assert "run/buildkit/ssh_agent.0" not in names and "o.sock" not in names
    compare_images(ours, theirs, "bk/ssh:1")

    # required: without --ssh, and with an ID the client does not have
    (ctx / "Dockerfile").write_text("FROM bb:1\nRUN --mount=type=ssh,required=true true\n")
    (ctx / "Dockerfile.other").write_text("FROM bb:1\nRUN --mount=type=ssh,id=other,required=true true\n")
    for args in ((), ("--ssh", "default", "-f", str(ctx / "Dockerfile.other"))):
        r1, r2 = ours.build(ctx, *args, check=False), theirs.build(ctx, *args, check=False)
        assert (r1.returncode, r2.returncode) == (1, 1)
        last1 = r1.stderr.decode().strip().splitlines()[-1]
        last2 = r2.stderr.decode().strip().splitlines()[-1]
        assert last1 == last2, (args, last1, last2)


def test_output_local_and_tar_like_dockerd(sides: tuple[Side, Side], tmp_path: Path) -> None:
    ours, theirs = sides
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "Dockerfile").write_text("FROM bb:1 AS b\nRUN echo built > /built\nFROM scratch\nCOPY --from=b /built /\n"
                                    "COPY a.txt /sub/a.txt\n")
    trees = []
    tars = []
    for side in (ours, theirs):
        out = tmp_path / f"out-{side.name}"
        side.build(ctx, "--output", f"type=local,dest={out}")
        trees.append(sorted((str(p.relative_to(out)), p.read_bytes() if p.is_file() else b"")
                            for p in out.rglob("*")))
        tar_path = tmp_path / f"out-{side.name}.tar"
        side.build(ctx, "--output", f"type=tar,dest={tar_path}")
        with tarfile.open(tar_path) as tf:
            tars.append(sorted((m.name.rstrip("/"), m.type, m.size) for m in tf.getmembers()))
    assert trees[0] == trees[1]
    assert trees[0] == [("built", b"built\n"), ("sub", b""), ("sub/a.txt", b"a\n")]
    assert tars[0] == tars[1]


def test_builder_prune_and_df_after_buildkit_builds(sides: tuple[Side, Side], tmp_path: Path) -> None:
    ours, _ = sides
    ctx = _context(tmp_path)
    ours.build(ctx, "--build-arg", "GREETING=df", "-t", "bk/df:1")
    df = json.loads(ours.docker("system", "df", "--format", "{{json .}}").stdout.decode().splitlines()[-1])
    assert df["Type"] == "Build Cache" and int(df["TotalCount"]) > 0
    verbose = ours.docker("system", "df", "-v").stdout.decode()
    assert "source.local" in verbose and "regular" in verbose
    out = ours.docker("builder", "prune", "-a", "-f").stdout.decode()
    assert "Total reclaimed space" in out
    # the image keeps its layers: a container of it still has its files
    assert any(name == "built" for name, *_ in listing(ours, "bk/df:1"))
    r = ours.build(ctx, "--build-arg", "GREETING=df", "-t", "bk/df:1")
    assert "DONE" in steps(r.stderr).values()  # the cache is gone: steps run again
