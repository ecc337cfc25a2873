"""``docker cp``: ``HEAD``/``GET``/``PUT /containers/{id}/archive``, side by side with a real dockerd 20.10 and through
the docker CLIs (28 and 20.10), docker-py and testcontainers; hostile containers and archives.

The side-by-side tests run the same containers on both engines (the dockerd-made busybox image loaded into each, or
the same rootfs imported into each) and compare what each answers: the ``X-Docker-Container-Path-Stat`` JSON, the
tar listings (names, types, modes, owners and their names, sizes, link targets), status codes and messages (host
paths of the rootfs aside), the trees ``docker cp`` makes on both sides, and the ``archive-path``/``extract-to-dir``
events. The hostile tests need no dockerd: containers whose symlinks point at host paths (a canary outside the
rootfs, ``/etc/shadow``), archives with ``../`` names, absolute symlinks and hard links out, and a container that
swaps a directory for such a symlink while files are copied in and out; nothing outside the rootfs may be read or
written. Skipped, with the reason, only where containers (root, runc, busybox) or dockerd cannot run.
"""

from __future__ import annotations

import base64
import calendar
import gzip
import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES, Daemon, busybox_path, make_rootfs_tar
from dockerd import Dockerd, dockerd_unavailable

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None or busybox_path() is None,
    reason="containers need root, runc and busybox-static (apt-get install runc busybox-static)")

needs_dockerd = pytest.mark.skipif(dockerd_unavailable() is not None, reason=str(dockerd_unavailable()))

CLI_28 = "/usr/local/bin/docker"
CLI_20 = "/usr/bin/docker"
APPLETS = ("sh", "ls", "cat", "echo", "true", "sleep", "mkdir", "ln", "rm", "mv", "touch", "chmod", "mkfifo",
           "test", "[", "id")
# what a container made by the tests has: a directory tree with a setuid file, a fifo, a hard link, symlinks to a
# directory, to a host path, climbing out, dangling
TREE = ("mkdir -p /d/sub /w /tmp && echo hi > /d/a && echo x > /d/sub/b && ln -s /d /dl && ln -s /etc/shadow /sl && "
        "ln -s ../../../../etc/passwd /d/rel && ln /d/a /d/hard && chmod 4755 /d/a && ln -s /nope /dangling && "
        "mkfifo /d/fifo && echo f > /w/f && mkdir /w/f_d && ln -s /w /wl")


# --------------------------------------------------------------------------------------------------
# helpers


def request(sock: Path | str, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a daemon's unix socket: status, headers (lower-case names), body."""

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(120)
            s.connect(str(sock))
            self.sock = s

    c = Conn("localhost")
    try:
        c.request(method, path, body=body, headers={"Content-Type": "application/x-tar"} if body is not None else {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def path_stat(headers: dict[str, str]) -> dict[str, Any] | None:
    raw = headers.get("x-docker-container-path-stat")
    return json.loads(base64.b64decode(raw)) if raw else None


def listing(data: bytes) -> list[tuple[Any, ...]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [(m.name, m.type, oct(m.mode), m.uid, m.gid, m.uname, m.gname, m.size, m.linkname)
                for m in tf.getmembers()]


def raw_names(data: bytes) -> list[bytes]:
    """The names exactly as the headers hold them (tarfile strips a directory's trailing slash)."""
    out, off = [], 0
    while off + 512 <= len(data):
        block = data[off : off + 512]
        if block == bytes(512):
            break
        size = int(block[124:136].rstrip(b"\0 ") or b"0", 8)
        out.append(block[0:100].rstrip(b"\0"))
        off += 512 + (size + 511) // 512 * 512
    return out


_ROOTFS = re.compile(r"/\S*?/(?:merged|rootfs)(?=[/:\s]|$)")


def message(body: bytes) -> str:
    """A JSON error's message with the host path of the rootfs (dockerd's overlay2 merged dir, our rootfs) cut."""
    try:
        text = json.loads(body)["message"]
    except ValueError:
        return body.decode(errors="replace")
    return _ROOTFS.sub("<rootfs>", text)


def make_tar(entries: list[tuple[Any, ...]], *, compress: bool = False) -> bytes:
    """A tar of ``(name, kind[, data or link target])`` entries: kind f(ile), d(ir), l (symlink), h (hard link)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            name, kind = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.uid, ti.gid = 1700000000, 1234, 4321
            if kind == "f":
                data = e[2] if len(e) > 2 else b"data\n"
                ti.size, ti.mode = len(data), 0o640
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o750
                tf.addfile(ti)
            else:
                ti.type = tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE
                ti.linkname = e[2]
                tf.addfile(ti)
    data = buf.getvalue()
    return gzip.compress(data) if compress else data


class Engine:
    """One engine (ours or the reference dockerd) as the tests drive it: its socket and the docker CLIs."""

    def __init__(self, name: str, sock: Path, env: dict[str, str]) -> None:
        self.name, self.sock, self.env = name, sock, env

    def cli(self, *args: str, cli: str = CLI_28, check: bool = True, input: bytes | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
        p = subprocess.run([cli, *args], input=input, capture_output=True, env=self.env, timeout=180, cwd=cwd)
        if check and p.returncode != 0:
            raise AssertionError(f"{self.name}: docker {' '.join(args)} failed ({p.returncode}): "
                                 f"{p.stdout.decode(errors='replace')} {p.stderr.decode(errors='replace')}")
        return p

    def out(self, *args: str) -> str:
        return self.cli(*args).stdout.decode().strip()

    def api(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        return request(self.sock, method, path, body)

    def fresh(self, name: str, *run: str, image: str = "bb:1") -> str:
        """``docker run`` of a new container ``name`` (the last of ``run`` its shell script, the rest options)."""
        self.cli("rm", "-f", name, check=False)
        return self.out("run", "--name", name, "--network", "none", *run[:-1], image, "sh", "-c", run[-1])

    def events(self, since: float, cid: str) -> list[str]:
        out = self.out("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}", "--filter",
                       f"container={cid}", "--format", "{{.Action}}")
        return [a for a in out.splitlines() if a in ("archive-path", "extract-to-dir")]


def _engine_env(host: str, config: Path) -> dict[str, str]:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": str(config), "DOCKER_CLI_HINTS": "false"}
    env.pop("DOCKER_CONTEXT", None)
    return env


def _load_images(e: Engine) -> None:
    e.cli("load", "-i", str(FIXTURES / "dockerd-20.10-save-busybox.tar"))
    rootfs = make_rootfs_tar({"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
                              "etc/group": b"root:x:0:\napp:x:1000:\nstaff:x:50:\n"}, applets=APPLETS)
    e.cli("import", "-c", 'CMD ["sh"]', "-c", "ENV PATH=/bin", "-", "bbs:1", input=rootfs)


@pytest.fixture(scope="module")
def ours(shared_daemon: Daemon) -> Engine:
    e = Engine("dockwright", shared_daemon.sock, _engine_env(shared_daemon.host, shared_daemon.docker_config))
    _load_images(e)
    return e


@pytest.fixture(scope="module")
def theirs(shared_daemon: Daemon) -> Iterator[Engine]:
    why = dockerd_unavailable()
    if why is not None:
        pytest.skip(why)
    real = Dockerd(shared_daemon.docker_config)
    try:
        why = real.start()
        if why is not None:
            pytest.skip(f"dockerd did not start here: {why}")
        e = Engine("dockerd", real.sock, real.env())
        _load_images(e)
        yield e
    finally:
        real.stop()


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A directory of the host, outside every rootfs, with a secret in it; it must stay as it is."""
    d = tmp_path / "canary"
    d.mkdir()
    (d / "shadow").write_bytes(b"host-secret-canary\n")
    before = sorted(os.listdir(d))
    yield d
    assert sorted(os.listdir(d)) == before, "something was written outside the container's rootfs"
    assert (d / "shadow").read_bytes() == b"host-secret-canary\n"


# --------------------------------------------------------------------------------------------------
# side by side with dockerd 20.10: HEAD and GET

STAT_PATHS = ["/etc/hostname", "/d", "/d/", "/d/.", "d", "/dl", "/dl/", "/dl/.", "/sl", "/d/rel", "/dangling", "/",
              "/d/./sub/../a", "/d/hard", "/d/fifo", "/nope", "/nope/x", "/dangling/", "/d/a/", "/d/a/.", "/d/a/x",
              "/loop", "/loop/x", "/d/sub/dang", "/d/sub/dang/", "/./d/../dl/sub"]


def _compare_get(ours: Engine, theirs: Engine, ref: str, path: str) -> None:
    q = f"/containers/{ref}/archive?path={path}"
    h1, h2 = ours.api("HEAD", q), theirs.api("HEAD", q)
    assert h1[0] == h2[0], (path, h1[0], h2[0])
    g1, g2 = ours.api("GET", q), theirs.api("GET", q)
    assert g1[0] == g2[0] == h1[0], (path, g1[0], g2[0])
    if g1[0] != 200:
        assert message(g1[2]) == message(g2[2]), path
        assert g1[1]["content-type"] == "application/json"
        return
    s1, s2 = path_stat(h1[1]), path_stat(h2[1])
    assert s1 is not None and s2 is not None
    assert list(s1) == ["name", "size", "mode", "mtime", "linkTarget"] == list(s2)
    assert {k: v for k, v in s1.items() if k != "mtime"} == {k: v for k, v in s2.items() if k != "mtime"}, path
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", s1["mtime"])
    assert path_stat(g1[1]) == s1  # GET carries the same header
    assert g1[1]["content-type"] == "application/x-tar"
    if path == "/":  # the root: what both images have (dockerd's init layer and mount points aside)
        keep = re.compile(rb"^/(bin/.*|d/.*|sl|dl|dangling|w/.*|wl)?$")
        n1 = [n for n in raw_names(g1[2]) if keep.match(n)]
        n2 = [n for n in raw_names(g2[2]) if keep.match(n)]
        assert n1 == n2 and n1[0] == b"/" and b"/bin/" in n1
        return
    assert raw_names(g1[2]) == raw_names(g2[2]), path
    assert listing(g1[2]) == listing(g2[2]), path
    with tarfile.open(fileobj=io.BytesIO(g1[2])) as tf:  # mtimes in whole seconds, the stat's
        top = tf.getmembers()[0]
    assert top.mtime == calendar.timegm(time.strptime(s1["mtime"][:19], "%Y-%m-%dT%H:%M:%S"))


@needs_dockerd
def test_stat_and_archive_like_dockerd(ours: Engine, theirs: Engine) -> None:
    for e in (ours, theirs):
        e.fresh("st1", TREE + " && ln -s /nowhere/x /d/sub/dang && ln -s loop /loop")
    for path in STAT_PATHS:
        _compare_get(ours, theirs, "st1", path)
    # the container by ID prefix, and errors before the lookup
    for e in (ours, theirs):
        cid = e.out("inspect", "-f", "{{.Id}}", "st1")
        st, _, body = e.api("GET", f"/containers/{cid[:12]}/archive?path=/d/a")
        assert st == 200 and listing(body)[0][0] == "a"
    for q in ("/containers/nope/archive?path=/", "/containers/st1/archive", "/containers/st1/archive?path=",
              "/containers/nope/archive"):
        r1, r2 = ours.api("GET", q), theirs.api("GET", q)
        assert (r1[0], message(r1[2])) == (r2[0], message(r2[2])), q
        assert ours.api("HEAD", q)[0] == theirs.api("HEAD", q)[0]
    st, _, body = ours.api("GET", "/containers/st1/archive?path=/nope")
    assert (st, json.loads(body)) == (404, {"message": "Could not find the file /nope in container st1"})
    assert json.loads(ours.api("GET", "/containers/st1/archive")[2]) == {
        "message": "bad parameter: pathcannot be empty"}


@needs_dockerd
def test_names_and_owners_like_dockerd(ours: Engine, theirs: Engine) -> None:
    """Owners by number and by name (the container's passwd and group), set-id bits, a long name, a file with
    capabilities, the etc files of a start, a running container."""
    long_name = "n" * 120
    script = (f"mkdir -p /o && touch /o/{long_name} && echo a > /o/app && echo b > /o/num && "
              "chown 1000:1000 /o/app && chown 4242:50 /o/num && chmod 2751 /o && sleep 300")
    for e in (ours, theirs):
        e.fresh("ow1", "-d", script, image="bbs:1")
        deadline = time.time() + 30
        while e.cli("exec", "ow1", "test", "-e", "/o/num", check=False).returncode != 0 and time.time() < deadline:
            time.sleep(0.2)
    try:
        for path in ("/o", "/o/", "/etc/hostname", "/etc/hosts", "/etc/passwd"):
            _compare_get(ours, theirs, "ow1", path)
        st, _, body = ours.api("GET", "/containers/ow1/archive?path=/o")
        rows = {r[0]: r for r in listing(body)}
        assert rows["o/app"][3:7] == (1000, 1000, "app", "app")
        assert rows["o/num"][3:7] == (4242, 50, "", "staff")
        assert rows["o"][2] == oct(0o42751)
        assert f"o/{long_name}" in rows
        hostname = ours.out("inspect", "-f", "{{.Config.Hostname}}", "ow1")
        assert ours.cli("cp", "ow1:/etc/hostname", "-").stdout.startswith(b"hostname")
        st, _, body = ours.api("GET", "/containers/ow1/archive?path=/etc/hostname")
        with tarfile.open(fileobj=io.BytesIO(body)) as tf:
            assert tf.extractfile("hostname").read() == f"{hostname}\n".encode()  # type: ignore[union-attr]
    finally:
        for e in (ours, theirs):
            e.cli("rm", "-f", "ow1", check=False)


# --------------------------------------------------------------------------------------------------
# side by side: PUT

def _global_header_tar() -> bytes:
    """A PAX global header renaming what follows (Go's reader, unlike tarfile, applies it to nothing)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"path": "renamed"}) as tf:
        ti = tarfile.TarInfo("gh.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"gh\n"))
    return buf.getvalue()


PUTS: list[tuple[str, bytes]] = [
    ("path=/tmp", make_tar([("n", "d"), ("n/f", "f"), ("n/s", "l", "f")])),
    ("path=/tmp", make_tar([("../evil", "f")])),
    ("path=/tmp", make_tar([("a/../../evil2", "f")])),
    ("path=/tmp", make_tar([("up", "l", "../../../../../"), ("up/evil3", "f")])),
    ("path=/tmp", make_tar([("abs", "l", "/"), ("abs/evil4", "f")])),
    ("path=/tmp", make_tar([("abs2", "l", "/etc"), ("abs2/evil5", "f")])),
    ("path=/tmp", make_tar([("hl", "h", "../../etc/hostname")])),
    ("path=/tmp", make_tar([("/abs/path/f", "f"), ("hl2", "h", "/n/f")])),
    ("path=/", make_tar([("../../top", "f"), ("tmp/../rooted", "d")])),
    ("path=/w&noOverwriteDirNonDir=1", make_tar([("f_d", "f")])),
    ("path=/w&noOverwriteDirNonDir=true", make_tar([("f", "d")])),
    ("path=/w&noOverwriteDirNonDir=0", make_tar([("./", "d"), ("f_d", "f")])),
    ("path=/w/f", make_tar([("x", "f")])),
    ("path=/nope", make_tar([("x", "f")])),
    ("path=/nope/deeper/", make_tar([("x", "f")])),
    ("path=/w/f/x", make_tar([("x", "f")])),
    ("path=/wl", make_tar([("via-link", "f")])),
    ("path=wl/", make_tar([("via-link2", "f")])),
    ("path=/w/f_d/.", make_tar([("x", "f")])),
    ("x=1", make_tar([("x", "f")])),
    ("path=/w", b""),
    ("path=/w", b"garbage\n"),
    ("path=/w", b"x" * 1024),
    ("path=/w", make_tar([("t1", "d"), ("t1/f", "f")])[:700]),
    ("path=/w", make_tar([("t2", "d"), ("t2/f", "f")])[:1300]),
    ("path=/w", make_tar([("t3", "d"), ("t3/f", "f")])[:1024]),
    ("path=/w", make_tar([("t4", "d"), ("t4/f", "f", b"y" * 3000)])[:2000]),
    ("path=/w", make_tar([("gz", "d"), ("gz/f", "f")], compress=True)),
    ("path=/w", _global_header_tar()),
]


def _tree(e: Engine, ref: str, path: str) -> list[tuple[Any, ...]]:
    st, _, body = e.api("GET", f"/containers/{ref}/archive?path={path}")
    assert st == 200, (e.name, path, body)
    return [(r[0], r[1], r[2], r[3], r[4], r[7], r[8]) for r in listing(body)]


@needs_dockerd
def test_put_like_dockerd(ours: Engine, theirs: Engine) -> None:
    for e in (ours, theirs):
        e.fresh("pt1", TREE)
    for query, body in PUTS:
        q = f"/containers/pt1/archive?{query}"
        r1, r2 = ours.api("PUT", q, body), theirs.api("PUT", q, body)
        assert (r1[0], message(r1[2])) == (r2[0], message(r2[2])), query
        if r1[0] == 200:
            assert r1[2] == b""
    for path in ("/tmp", "/w", "/etc/evil5", "/evil4", "/top", "/rooted"):
        # (a file whose body was cut short is left half made by both, its mode and length aside)
        t1, t2 = ([r for r in _tree(e, "pt1", path) if r[0] not in ("w/t3/f", "w/t4/f")] for e in (ours, theirs))
        assert t1 == t2, path
    # what the errors say, in dockerd's words
    st, _, body = ours.api("PUT", "/containers/pt1/archive?path=/tmp", make_tar([("../evil", "f")]))
    assert (st, json.loads(body)["message"]) == (
        500, 'Error processing tar file(exit status 1): "../evil" is outside of "/tmp"')
    st, _, body = ours.api("PUT", "/containers/nope/archive?path=/", b"")
    assert (st, json.loads(body)) == (404, {"message": "No such container: nope"})


@needs_dockerd
def test_read_only_rootfs_and_binds_like_dockerd(ours: Engine, theirs: Engine, tmp_path: Path) -> None:
    ok = make_tar([("n", "d"), ("n/f", "f")])
    for e in (ours, theirs):
        rw, ro = tmp_path / e.name / "rw", tmp_path / e.name / "ro"
        rw.mkdir(parents=True)
        ro.mkdir(parents=True)
        (rw / "inbind.txt").write_bytes(b"in the bind\n")
        e.cli("rm", "-f", "ro1", check=False)
        e.out("create", "--name", "ro1", "--read-only", "--network", "none", "-v", f"{rw}:/vol",
              "-v", f"{ro}:/volro:ro", "bb:1", "true")
    for query in ("path=/", "path=/vol", "path=/volro", "path=/vol/../bin", "path=/nope"):
        q = f"/containers/ro1/archive?{query}"
        r1, r2 = ours.api("PUT", q, ok), theirs.api("PUT", q, ok)
        assert (r1[0], message(r1[2])) == (r2[0], message(r2[2])), query
    for path in ("/vol", "/vol/inbind.txt", "/vol/n", "/volro"):
        q = f"/containers/ro1/archive?path={path}"
        h1, h2 = ours.api("HEAD", q), theirs.api("HEAD", q)
        s1, s2 = path_stat(h1[1]), path_stat(h2[1])
        assert s1 is not None and s2 is not None
        assert (s1["name"], s1["mode"], s1["linkTarget"]) == (s2["name"], s2["mode"], s2["linkTarget"])
    # what went into the bind is in the bind's source, on both; the read-only one is untouched
    for e in (ours, theirs):
        assert (tmp_path / e.name / "rw" / "n" / "f").read_bytes() == b"data\n"
        assert os.listdir(tmp_path / e.name / "ro") == []
    st, _, body = ours.api("GET", "/containers/ro1/archive?path=/vol/inbind.txt")
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        assert tf.extractfile("inbind.txt").read() == b"in the bind\n"  # type: ignore[union-attr]
    st, _, body = ours.api("PUT", "/containers/ro1/archive?path=/", ok)
    assert (st, json.loads(body)) == (500, {"message": "container rootfs is marked read-only"})
    for e in (ours, theirs):
        e.cli("rm", "-f", "ro1")


# --------------------------------------------------------------------------------------------------
# side by side: the docker CLIs

def _cli_flows(e: Engine, cli: str, out: Path, src: Path) -> dict[str, Any]:
    """``docker cp`` both ways with ``cli`` on engine ``e``: what it printed, the trees it made, the events."""
    e.cli("rm", "-f", "k1", check=False)
    e.out("run", "-d", "--name", "k1", "--network", "none", "bbs:1", "sh", "-c",
          "mkdir -p /tmp /dir2 && echo two > /dir2/x && ln -s /dir2 /dl2 && sleep 300")
    cid = e.out("inspect", "-f", "{{.Id}}", "k1")
    since = time.time() - 1
    results: dict[str, Any] = {}

    def cp(key: str, *args: str, input: bytes | None = None) -> None:
        p = e.cli("cp", *args, cli=cli, check=False, input=input)
        err = [ln for ln in p.stderr.decode(errors="replace").splitlines()
               if "level=error" not in ln]  # the CLI's own log of a pipe the daemon closed (timing)
        results[key] = (p.returncode, err, listing(p.stdout) if key == "stdout" else p.stdout)

    out.mkdir(parents=True)
    cp("put", str(src / "dir"), "k1:/tmp/")
    cp("put-a", "-a", str(src / "dir"), "k1:/tmp/arch")
    cp("put-file", str(src / "dir" / "a.txt"), "k1:/tmp/renamed.txt")
    cp("put-stdin", "-", "k1:/tmp", input=make_tar([("from-stdin", "f")]))
    cp("get", "k1:/tmp/dir", str(out / "out"))
    cp("get-a", "-a", "k1:/tmp/arch", str(out / "outa"))
    cp("get-dot", "k1:/tmp/dir/.", str(out / "outdot"))
    cp("get-link", "k1:/dl2", str(out / "link"))
    cp("get-L", "-L", "k1:/dl2", str(out / "follow"))
    cp("get-file", "k1:/dir2/x", str(out / "x.txt"))
    cp("stdout", "k1:/tmp/dir/a.txt", "-")
    cp("err-missing", "k1:/nope", str(out / "x"))
    cp("err-nodir", str(src / "dir" / "a.txt"), "k1:/nope/")
    cp("err-notdir", str(src / "dir" / "a.txt"), "k1:/dir2/x/")
    cp("err-dir-on-file", str(src / "dir"), "k1:/dir2/x")
    cp("err-container", "zz:/x", str(out / "x"))
    results["events"] = e.events(since, cid)
    results["tree"] = _tree(e, "k1", "/tmp")
    results["local"] = sorted(
        (str(p.relative_to(out)), p.is_symlink(), p.is_dir(), oct(p.lstat().st_mode), p.lstat().st_uid,
         p.lstat().st_gid, p.read_bytes() if p.is_file() and not p.is_symlink() else os.readlink(p)
         if p.is_symlink() else b"")
        for p in out.rglob("*"))
    e.cli("rm", "-f", "k1")
    return results


@needs_dockerd
@pytest.mark.parametrize("cli", [CLI_28, CLI_20])
def test_docker_cp_like_dockerd(ours: Engine, theirs: Engine, tmp_path: Path, cli: str) -> None:
    if not os.access(cli, os.X_OK):
        pytest.skip(f"no docker CLI at {cli}")
    src = tmp_path / "src"
    (src / "dir" / "sub").mkdir(parents=True)
    (src / "dir" / "a.txt").write_bytes(b"hello\n")
    (src / "dir" / "sub" / "b.txt").write_bytes(b"sub\n")
    (src / "dir" / "link").symlink_to("a.txt")
    for p in [src / "dir", *(src / "dir").rglob("*")]:
        os.lchown(p, 1234, 5678)
    r1 = _cli_flows(ours, cli, tmp_path / "ours", src)
    r2 = _cli_flows(theirs, cli, tmp_path / "theirs", src)
    for key in r2:
        assert r1[key] == r2[key], key
    assert r1["put"][0] == 0 and r1["err-missing"][0] == 1
    assert ("tmp/dir/a.txt", tarfile.REGTYPE, oct(0o100644), 1234, 5678, 6, "") in r1["tree"]
    assert "archive-path" in r1["events"] and "extract-to-dir" in r1["events"]


# --------------------------------------------------------------------------------------------------
# ours alone: clients, states, hostile containers and archives


def test_docker_py_and_testcontainers(ours: Engine, shared_daemon: Daemon, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import docker.errors

    client = shared_daemon.client()
    c = client.containers.run("bbs:1", ["sleep", "300"], name="dpy1", detach=True, network_mode="none")
    try:
        assert c.put_archive("/etc", make_tar([("hello.txt", "f", b"hi\n"), ("sub", "d"), ("sub/x", "f")]))
        bits, st = c.get_archive("/etc/hello.txt")
        data = b"".join(bits)
        assert st["name"] == "hello.txt" and st["size"] == 3 and st["mode"] == 0o640
        assert st["mtime"] == "2023-11-14T22:13:20Z" and st["linkTarget"] == ""
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            assert tf.extractfile("hello.txt").read() == b"hi\n"  # type: ignore[union-attr]
        bits, st = c.get_archive("/etc/sub", chunk_size=7)
        assert [r[0] for r in listing(b"".join(bits))] == ["sub", "sub/x"]
        assert st["mode"] == 0o750 | (1 << 31)
        with pytest.raises(docker.errors.NotFound, match="Could not find the file /nope in container"):
            c.get_archive("/nope")
        with pytest.raises(docker.errors.NotFound, match="Could not find the file /nope in container"):
            c.put_archive("/nope", make_tar([("x", "f")]))
        with pytest.raises(docker.errors.NotFound, match="No such container: zz"):
            client.api.get_archive("zz", "/")
        with pytest.raises(docker.errors.APIError, match="extraction point is not a directory"):
            c.put_archive("/etc/hello.txt", make_tar([("x", "f")]))
    finally:
        c.remove(force=True)
        client.close()
    tc = pytest.importorskip("testcontainers.core.container")
    if not hasattr(tc.DockerContainer, "copy_into_container"):
        pytest.skip("this testcontainers has no copy_into_container")
    monkeypatch.setenv("DOCKER_HOST", shared_daemon.host)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # the reaper image is not here (no internet)
    with tc.DockerContainer("bbs:1").with_command("sleep 300").with_kwargs(network_mode="none") as box:
        box.copy_into_container(b"payload\n", "/tmp/deep/x.txt")
        (tmp_path / "dir").mkdir()
        (tmp_path / "dir" / "y.txt").write_bytes(b"from a dir\n")
        box.copy_into_container(tmp_path / "dir", "/tmp/")
        box.copy_from_container("/tmp/deep/x.txt", tmp_path / "x.txt")
        assert (tmp_path / "x.txt").read_bytes() == b"payload\n"
        box.copy_from_container("/tmp/dir/y.txt", tmp_path / "y.txt")
        assert (tmp_path / "y.txt").read_bytes() == b"from a dir\n"


def _rootfs(d: Daemon, ref: str) -> Path:
    cid = d.out("inspect", "-f", "{{.Id}}", ref)
    return d.data_root / "containers" / cid / "rootfs"


def test_stopped_created_and_running_containers(ours: Engine, shared_daemon: Daemon, tmp_path: Path) -> None:
    d = shared_daemon
    ok = make_tar([("made", "d"), ("made/f", "f")])
    # never started: the rootfs is mounted for the operation only
    d.out("create", "--name", "cr1", "--network", "none", "bbs:1", "true")
    rootfs = _rootfs(d, "cr1")
    assert ours.api("PUT", "/containers/cr1/archive?path=/", ok)[0] == 200
    st, _, body = ours.api("GET", "/containers/cr1/archive?path=/made")
    assert st == 200 and [r[0] for r in listing(body)] == ["made", "made/f"]
    assert not os.path.ismount(rootfs)
    # a client that goes away in the middle of an archive: the rootfs is let go all the same
    for _ in range(3):
        gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        gone.connect(str(d.sock))
        gone.sendall(b"GET /containers/cr1/archive?path=/bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert gone.recv(65536).startswith(b"HTTP/1.1 200")
        gone.close()
    deadline = time.time() + 30
    while os.path.ismount(rootfs) and time.time() < deadline:
        time.sleep(0.2)
    assert not os.path.ismount(rootfs)
    # it starts with what was copied in, and what it writes comes out while it runs
    d.out("start", "cr1")
    d.out("rm", "-f", "cr1")
    cid = d.out("run", "-d", "--name", "run1", "--network", "none", "bbs:1", "sh", "-c",
                "echo live > /live.txt; sleep 300")
    rootfs = _rootfs(d, "run1")
    deadline = time.time() + 30
    while ours.api("HEAD", "/containers/run1/archive?path=/live.txt")[0] != 200 and time.time() < deadline:
        time.sleep(0.2)
    assert d.docker("cp", "run1:/live.txt", "-").returncode == 0
    assert ours.api("PUT", "/containers/run1/archive?path=/tmp", ok)[0] == 404  # no /tmp in this image
    d.docker("exec", "run1", "mkdir", "-p", "/tmp")
    assert ours.api("PUT", "/containers/run1/archive?path=/tmp", ok)[0] == 200
    assert d.docker("exec", "run1", "cat", "/tmp/made/f").stdout == b"data\n"  # seen inside at once
    assert os.path.ismount(rootfs)  # still the running container's
    # a GET that is read slowly holds the rootfs: the container's exit and removal wait for it, then it goes
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.connect(str(d.sock))
    stream.sendall(f"GET /containers/{cid}/archive?path=/bin HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    first = stream.recv(4096)
    assert first.startswith(b"HTTP/1.1 200")
    d.out("stop", "-t", "0", "run1")
    assert os.path.ismount(rootfs)  # held by the GET
    removal = subprocess.Popen([CLI_28, "rm", "run1"], env=ours.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1)
    assert removal.poll() is None  # waits for the copy, as dockerd's container lock
    stream.settimeout(60)
    received = bytearray(first)
    while not received.endswith(b"\r\n0\r\n\r\n"):  # the last chunk of the chunked body
        chunk = stream.recv(1 << 20)
        assert chunk, "the connection closed before the archive ended"
        received += chunk
    stream.close()
    assert removal.wait(60) == 0
    assert len(received) > 1_000_000  # busybox came through
    assert not rootfs.exists() or not os.path.ismount(rootfs)
    assert "run1" not in d.out("ps", "-a", "--format", "{{.Names}}")


def test_copy_uid_gid(ours: Engine, shared_daemon: Daemon) -> None:
    d = shared_daemon
    d.out("create", "--name", "cu1", "--user", "app", "--network", "none", "bbs:1", "true")
    d.out("create", "--name", "cu2", "--user", "1000:50", "--network", "none", "bbs:1", "true")
    d.out("create", "--name", "cu3", "--user", "ghost", "--network", "none", "bbs:1", "true")
    tar = make_tar([("o", "d"), ("o/f", "f"), ("o/l", "l", "f")])
    try:
        for ref, owner in (("cu1", (1000, 1000)), ("cu2", (1000, 50))):
            assert ours.api("PUT", f"/containers/{ref}/archive?path=/&copyUIDGID=1", tar)[0] == 200
            rows = _tree(ours, ref, "/o")
            assert {r[3:5] for r in rows} == {owner}, ref
            assert ours.api("PUT", f"/containers/{ref}/archive?path=/&copyUIDGID=0", tar)[0] == 200
            assert {r[3:5] for r in _tree(ours, ref, "/o")} == {(1234, 4321)}  # the archive's owners
        st, _, body = ours.api("PUT", "/containers/cu3/archive?path=/&copyUIDGID=true", tar)
        assert (st, json.loads(body)["message"]) == (
            400, "unable to find user ghost: no matching entries in passwd file")
        # the CLI's archive mode
        src = make_tar([("cli.txt", "f")])
        p = shared_daemon.docker("cp", "-a", "-", "cu1:/", input=src)
        assert p.returncode == 0
        assert _tree(ours, "cu1", "/cli.txt")[0][3:5] == (1000, 1000)
    finally:
        for ref in ("cu1", "cu2", "cu3"):
            d.docker("rm", "-f", ref, check=False)


def test_hostile_symlinks_never_read_the_host(ours: Engine, shared_daemon: Daemon, canary: Path) -> None:
    """Symlinks in the container to host paths (a canary outside the rootfs, /etc/shadow), absolute and climbing:
    they resolve inside the container, where those paths do not exist."""
    d = shared_daemon
    script = (f"ln -s {canary}/shadow /leak && ln -s {canary} /leakdir && ln -s /etc/shadow /shadow && "
              f"mkdir -p /a/b && ln -s ../../../../../../../..{canary} /a/b/up && ln -s /a/b/up/shadow /a/deep")
    d.out("run", "--name", "hs1", "--network", "none", "bbs:1", "sh", "-c", script)
    try:
        secret = (canary / "shadow").read_bytes()
        for path in ("/leak", "/leakdir", "/shadow", "/a/b/up", "/a/deep"):
            st, headers, body = ours.api("GET", f"/containers/hs1/archive?path={path}")
            assert st == 200 and secret not in body
            s = path_stat(headers)
            assert s is not None and s["mode"] & (1 << 27)  # the symlink itself
            assert [r[1] for r in listing(body)] == [tarfile.SYMTYPE]
        for path in ("/leak/", "/leakdir/", "/leakdir/shadow", "/leakdir/.", "/a/b/up/shadow", "/a/deep/",
                     "/shadow/"):
            st, _, body = ours.api("GET", f"/containers/hs1/archive?path={path}")
            assert st == 404 and secret not in body, path
            assert json.loads(body)["message"] == f"Could not find the file {path} in container hs1"
        st, headers, _ = ours.api("HEAD", "/containers/hs1/archive?path=/a/deep")
        assert path_stat(headers)["linkTarget"] == f"{canary}/shadow"  # type: ignore[index] # in the container
        for args in (("-L", "hs1:/leak", "-"), ("-L", "hs1:/shadow", "-"), ("hs1:/leakdir/", "-")):
            p = d.docker("cp", *args, check=False)
            assert p.returncode != 0 and secret not in p.stdout
        p = d.docker("cp", "hs1:/", "-")
        assert p.returncode == 0 and secret not in p.stdout
        # copying in through them lands in the container
        st, _, body = ours.api("PUT", "/containers/hs1/archive?path=/leakdir", make_tar([("x", "f")]))
        assert st == 404
        d.out("cp", "-", "hs1:/", input=make_tar([(f"{canary.relative_to('/')}", "d")]))
        assert ours.api("PUT", "/containers/hs1/archive?path=/leakdir", make_tar([("x", "f")]))[0] == 200
        assert ours.api("PUT", "/containers/hs1/archive?path=/a/b/up/", make_tar([("y", "f")]))[0] == 200
        names = [r[0] for r in _tree(ours, "hs1", str(canary))]
        assert names == [canary.name, f"{canary.name}/x", f"{canary.name}/y"]
    finally:
        d.docker("rm", "-f", "hs1", check=False)


def test_hostile_archives_never_write_the_host(ours: Engine, shared_daemon: Daemon, canary: Path) -> None:
    """``../`` names, absolute names, absolute symlinks to host paths followed by entries through them, hard links
    out: refused as dockerd refuses them, or written inside the container — never next to the canary."""
    d = shared_daemon
    d.out("run", "--name", "ha1", "--network", "none", "bbs:1", "sh", "-c",
          f"mkdir -p /tmp/in {canary} && ln -s {canary} /tmp/in/to-canary")  # the same path, in the container
    up = "../" * 12 + str(canary).lstrip("/")
    cases: list[tuple[str, bytes, int]] = [
        ("/tmp/in", make_tar([(f"{up}/evil", "f")]), 500),
        ("/tmp/in", make_tar([("esc", "l", "../" * 12 + str(canary).lstrip("/")), ("esc/evil", "f")]), 500),
        ("/tmp/in", make_tar([("hl", "h", f"{up}/shadow")]), 500),
        ("/tmp/in", make_tar([("abs", "l", str(canary)), ("abs/evil", "f"), ("abs/shadow", "f", b"overwritten")]),
         200),
        ("/tmp/in", make_tar([("to-canary/evil2", "f"), ("to-canary/shadow", "f", b"overwritten")]), 200),
        ("/tmp/in/to-canary", make_tar([("evil3", "f")]), 200),
        ("/", make_tar([(f"{up}/evil4", "f"), (f"/{canary}/evil5", "f"), ("hl2", "h", f"{up}/shadow")]), 200),
    ]
    try:
        for path, tar, status in cases:
            st, _, body = ours.api("PUT", f"/containers/ha1/archive?path={path}", tar)
            assert st == status, (path, body)
        st, _, body = ours.api("PUT", "/containers/ha1/archive?path=/tmp/in", cases[0][1])
        assert json.loads(body)["message"] == (f'Error processing tar file(exit status 1): "{up}/evil" is outside of '
                                               f'"/tmp/in"')
        inside = sorted(n for n in ("evil", "evil2", "evil3", "evil4", "evil5", "shadow")
                        if ours.api("HEAD", f"/containers/ha1/archive?path={canary}/{n}")[0] == 200)
        assert inside == ["evil", "evil2", "evil3", "evil4", "evil5", "shadow"]  # the container's copy of the path
        st, _, body = ours.api("GET", f"/containers/ha1/archive?path={canary}/shadow")
        with tarfile.open(fileobj=io.BytesIO(body)) as tf:
            assert tf.extractfile("shadow").read() == b"overwritten"  # type: ignore[union-attr]
        st, _, body = ours.api("GET", "/containers/ha1/archive?path=/hl2")
        assert listing(body)[0][7] == len(b"overwritten")  # a hard link to the container's file
    finally:
        d.docker("rm", "-f", "ha1", check=False)


def test_hostile_container_racing_a_copy(ours: Engine, shared_daemon: Daemon, canary: Path) -> None:
    """A running container swaps a directory for a symlink to the host canary as fast as it can while files are
    copied in and out of it: every copy reads and writes the container's tree only."""
    d = shared_daemon
    swap = (f"mkdir -p /data; while true; do rm -rf /data/x; mkdir -p /data/x; echo inside > /data/x/f; "
            f"rm -rf /data/x; ln -s {canary} /data/x; done")
    d.out("run", "-d", "--name", "race1", "--network", "none", "bbs:1", "sh", "-c", swap)
    secret = (canary / "shadow").read_bytes()
    errors: list[str] = []
    stop = time.time() + 6

    def getter() -> None:
        while time.time() < stop:
            for path in ("/data/x/", "/data/x/shadow", "/data", "/data/x/."):
                st, _, body = ours.api("GET", f"/containers/race1/archive?path={path}")
                if secret in body:
                    errors.append(f"GET {path} read the host")

    def putter() -> None:
        n = 0
        while time.time() < stop:
            n += 1
            ours.api("PUT", "/containers/race1/archive?path=/data/x", make_tar([(f"put{n}", "f")]))
            ours.api("PUT", "/containers/race1/archive?path=/data", make_tar([(f"x/deep{n}", "f"), ("x/shadow", "f")]))

    try:
        threads = [threading.Thread(target=getter), threading.Thread(target=putter)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors
    finally:
        d.docker("rm", "-f", "race1", check=False)


def test_events_and_head_of_a_symlink_chain(ours: Engine, shared_daemon: Daemon) -> None:
    d = shared_daemon
    d.out("run", "--name", "ev1", "--network", "none", "bbs:1", "sh", "-c",
          "mkdir -p /t && ln -s /t /l1 && ln -s l1 /l2 && ln -s /l2/ /l3 && echo z > /t/z && ln -s self /self")
    cid = d.out("inspect", "-f", "{{.Id}}", "ev1")
    try:
        since = time.time() - 1
        for path, target in (("/l1", "/t"), ("/l2", "/t"), ("/l3", "/t"), ("/l3/z", ""), ("/self", "/self")):
            st, headers, _ = ours.api("HEAD", f"/containers/ev1/archive?path={path}")
            if path == "/self":  # a loop: dockerd's "too many links" (500)
                assert st == 500
                continue
            assert st == 200 and path_stat(headers)["linkTarget"] == target, path  # type: ignore[index]
        st, _, body = ours.api("GET", "/containers/ev1/archive?path=/self/x")
        assert st == 500 and "too many links" in json.loads(body)["message"]
        assert ours.api("GET", "/containers/ev1/archive?path=/l3/")[0] == 200
        assert ours.api("PUT", "/containers/ev1/archive?path=/l2", make_tar([("p", "f")]))[0] == 200
        assert ours.api("GET", "/containers/ev1/archive?path=/nope")[0] == 404  # no event for a failure
        assert ours.events(since, cid) == ["archive-path", "extract-to-dir"]
        assert _tree(ours, "ev1", "/t") == [("t", tarfile.DIRTYPE, oct(0o40755), 0, 0, 0, ""),
                                            ("t/p", tarfile.REGTYPE, oct(0o100640), 1234, 4321, 5, ""),
                                            ("t/z", tarfile.REGTYPE, oct(0o100644), 0, 0, 2, "")]
    finally:
        d.docker("rm", "-f", "ev1", check=False)

