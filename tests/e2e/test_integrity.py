"""Issue 11: leases, one garbage collector, start-up recovery — through the real daemon, docker CLI and docker-py.

Each test reproduces one report: a prune during a pull, ``rmi -f`` during a save and a push, kill -9 during a build,
registry faults (a DiffID that does not match, a redirect loop, a manifest without a config); then a crash test
(kill -9 at seeded moments of every operation) and a concurrency test (parallel pulls, loads and builds against
prunes, removals and tags). The store's invariants are checked the same way everywhere: every blob re-hashes to
its name, nothing is mounted under the data root, every listed image inspects and saves, and ``dockwright fsck``
on the stopped store finds nothing missing and nothing left over.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import io
import json
import os
import random
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import DOCKER, Daemon, make_rootfs_tar, small_tar
from registry import FaultProxy, Registry, make_image, push_image, registry  # noqa: F401

pytestmark = pytest.mark.skipif(DOCKER is None, reason="no docker CLI on this host")


# ---- the store's invariants ------------------------------------------------------------------------------------
def blobs(d: Daemon) -> set[str]:
    root = d.data_root / "content" / "blobs" / "sha256"
    return {"sha256:" + p.name for p in root.iterdir()} if root.is_dir() else set()


def ingests(d: Daemon) -> list[str]:
    root = d.data_root / "content" / "ingest"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def rehash_all(d: Daemon) -> None:
    for b in blobs(d):
        h = hashlib.sha256()
        with open(d.data_root / "content" / "blobs" / "sha256" / b[7:], "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert "sha256:" + h.hexdigest() == b, f"blob {b} does not re-hash to its name"


def mounts_below(*roots: Path) -> list[str]:
    out = []
    bases = [os.path.realpath(r) for r in roots]
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split(" ")[4]
            if any(mp.startswith(b + "/") for b in bases):
                out.append(mp)
    return out


def fsck(d: Daemon) -> str:
    """Run ``dockwright fsck`` on the stopped store; returns its output."""
    p = subprocess.run([sys.executable, "-m", "dockwright.cli.main", "fsck", "--data-root", str(d.data_root)],
                       capture_output=True, timeout=120)
    out = p.stdout.decode()
    assert "missing blobs: 0" in out, out + p.stderr.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    return out


def assert_clean_fsck(d: Daemon) -> None:
    """Stop the daemon, fsck finds nothing missing and nothing orphaned, start it again."""
    d.stop()
    out = fsck(d)
    assert "orphan blobs removed: 0" in out and "unfinished ingests removed: 0" in out, out
    d.start()


def images_inspect_and_save(d: Daemon) -> None:
    s, rows = d.api_json("GET", "/images/json?all=1")
    assert s == 200
    for row in rows:
        s, _ = d.api_json("GET", f"/images/{row['Id']}/json")
        assert s == 200, row
        s, _, body = d.api("GET", f"/images/get?names={row['Id']}")
        assert s == 200, body[:200]
        assert_complete_archive(body)


def assert_complete_archive(data: bytes, layers: int | None = None) -> None:
    """A docker save archive whose manifest.json names a config and layers that are all in it."""
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        names = set(t.getnames())
        manifest = json.load(t.extractfile("manifest.json"))  # type: ignore[arg-type]
    for entry in manifest:
        assert entry["Config"] in names
        assert all(lay in names for lay in entry["Layers"])
        if layers is not None:
            assert len(entry["Layers"]) == layers


def tar_of(files: dict[str, bytes]) -> bytes:
    return small_tar(files)


def wait_for(cond: Any, timeout: float = 30.0, step: float = 0.02) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError("condition not met in time")


def docker_popen(d: Daemon, *args: str) -> subprocess.Popen[bytes]:
    assert DOCKER is not None
    env = {**os.environ, "DOCKER_HOST": d.host, "DOCKER_CONFIG": str(d.docker_config), "DOCKER_BUILDKIT": "0",
           "DOCKER_CLI_HINTS": "false"}
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.Popen([DOCKER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


# ---- item 1: a prune during a pull ---------------------------------------------------------------------------
def test_prune_during_pull_keeps_the_pulled_image_whole(daemon: Daemon, registry: Registry) -> None:
    a, b = small_tar({"a": b"a" * 1000}), small_tar({"b": b"b" * 2000})
    c = small_tar({"c.bin": os.urandom(2 << 20)})
    push_image(registry, "it/base", "1", [a, b])
    big = push_image(registry, "it/big", "1", [a, b, c])
    with FaultProxy(registry, delay_per_chunk=0.02) as proxy:
        daemon.docker("pull", f"{proxy.host}/it/base:1")
        pull = docker_popen(daemon, "pull", f"{proxy.host}/it/big:1")
        # the prune lands while big's own layer is downloading (its shared layers are "Already exists")
        wait_for(lambda: proxy.bytes_for(big["layer_digests"][2]) > 64 << 10)
        daemon.docker("image", "prune", "-a", "-f")
        out, err = pull.communicate(timeout=120)
        assert pull.returncode == 0, err.decode()
        assert b"Already exists" in out
    x = daemon.base / "x.tar"
    daemon.docker("save", "-o", str(x), f"{proxy.host}/it/big:1")
    assert_complete_archive(x.read_bytes(), layers=3)
    rehash_all(daemon)
    assert_clean_fsck(daemon)
    # and prune -a now takes everything: nothing is left
    daemon.docker("image", "prune", "-a", "-f")
    assert blobs(daemon) == set() and ingests(daemon) == []


# ---- item 2: rmi -f during a save and a push ------------------------------------------------------------------
def _unix_get(d: Daemon, path: str) -> tuple[socket.socket, http.client.HTTPResponse]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(d.sock))
    conn = http.client.HTTPConnection("localhost")
    conn.sock = s
    conn.request("GET", path)
    return s, conn.getresponse()


def test_rmi_during_save_and_push_leaves_no_blobs(daemon: Daemon, registry: Registry) -> None:
    baseline = blobs(daemon)
    with FaultProxy(registry) as proxy:
        name = f"{proxy.host}/it/heavy:1"
        daemon.docker("import", "-", name, input=small_tar({"big.bin": os.urandom(48 << 20)}))
        image_blobs = blobs(daemon) - baseline
        assert len(image_blobs) == 3
        sock, resp = _unix_get(daemon, f"/images/get?names={name}")
        assert resp.status == 200
        first = resp.read(64 << 10)
        push = docker_popen(daemon, "push", name)
        wait_for(lambda: any(m in ("PATCH", "PUT", "POST") and "/blobs/uploads" in p
                             for m, p, _ in list(proxy.requests)), timeout=60, step=0.005)
        rmi = daemon.docker("rmi", "-f", name)
        assert b"Deleted" in rmi.stdout
        rest = resp.read()
        sock.close()
        out, err = push.communicate(timeout=120)
        assert push.returncode == 0, err.decode()
    assert_complete_archive(first + rest, layers=1)
    with tarfile.open(fileobj=io.BytesIO(first + rest)) as t:
        assert any(m.size >= 48 << 20 for m in t.getmembers())  # the whole layer
    wait_for(lambda: blobs(daemon) == baseline, timeout=10)
    assert ingests(daemon) == []
    assert daemon.out("images", "-aq") == ""
    assert_clean_fsck(daemon)


# ---- item 3: kill -9 during a build ---------------------------------------------------------------------------
def test_kill9_during_build_leaves_no_context_and_no_mount(daemon: Daemon, tmp_path: Path) -> None:
    daemon.docker("import", "-", "it/run:1", input=make_rootfs_tar())
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "big.bin").write_bytes(os.urandom(8 << 20))
    (ctx / "Dockerfile").write_text("FROM it/run:1\nCOPY big.bin /big.bin\nRUN sleep 60\n")
    build = docker_popen(daemon, "build", "-t", "it/built:1", str(ctx))
    tmp = daemon.data_root / "tmp"
    wait_for(lambda: any(tmp.glob("build-*/ctx")) and daemon.api_json("GET", "/containers/json")[1], timeout=60)
    # what a kill during a COPY leaves mounted (the window is short; made here so the test is deterministic)
    stale = tmp / "extract-step-stale"
    stale.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(stale)], check=True)
    daemon.kill9()
    build.kill()
    build.communicate()
    daemon.start()
    assert list(tmp.iterdir()) == []
    assert "startup recovery reclaimed" in daemon.log()
    daemon.remove_all_containers()
    assert mounts_below(daemon.data_root, daemon.exec_root) == []
    daemon.docker("image", "prune", "-a", "-f")
    assert blobs(daemon) == set()
    assert_clean_fsck(daemon)


# ---- item 6: registry faults leave nothing behind ------------------------------------------------------------
class _FakeRegistry:
    """A registry that serves fixed manifests and blobs, and answers some blob GETs with a redirect to themselves."""

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}
        self.loop: set[str] = set()
        parent = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802
                self.do_GET()

            def do_GET(self) -> None:  # noqa: N802
                p = self.path.split("?")[0]
                if p == "/v2/":
                    return self._send(200, b"{}", {"Content-Type": "application/json"})
                if "/manifests/" in p:
                    key = p.split("/v2/", 1)[1]
                    if key not in parent.manifests:
                        return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')
                    mt, body = parent.manifests[key]
                    return self._send(200, body, {"Content-Type": mt, "Docker-Content-Digest":
                                                  "sha256:" + hashlib.sha256(body).hexdigest()})
                if "/blobs/" in p:
                    dg = p.rsplit("/", 1)[1]
                    if dg in parent.loop:
                        return self._send(307, b"", {"Location": self.path})
                    if dg in parent.blobs:
                        return self._send(200, parent.blobs[dg], {"Content-Type": "application/octet-stream"})
                return self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}')

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, repo: str, tag: str, img: dict[str, Any], manifest: dict[str, Any] | None = None) -> None:
        body = json.dumps(manifest).encode() if manifest is not None else img["manifest_bytes"]
        self.manifests[f"{repo}/manifests/{tag}"] = (img["media_type"], body)
        self.manifests[f"{repo}/manifests/sha256:{hashlib.sha256(body).hexdigest()}"] = (img["media_type"], body)
        self.blobs[img["config_digest"]] = img["config_bytes"]
        for dg, blob in zip(img["layer_digests"], img["layer_blobs"], strict=True):
            self.blobs[dg] = blob

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_registry() -> Iterator[_FakeRegistry]:
    r = _FakeRegistry()
    yield r
    r.close()


def test_registry_faults_leave_nothing_behind(daemon: Daemon, fake_registry: _FakeRegistry) -> None:
    baseline = blobs(daemon)
    layer = small_tar({"f": os.urandom(256 << 10)})
    # a DiffID that does not match the configuration's
    bad = make_image([layer], {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}})
    fake_registry.add("it/mismatch", "1", bad)
    p = daemon.docker("pull", f"{fake_registry.host}/it/mismatch:1", check=False)
    assert p.returncode != 0
    assert b"layers from manifest don't match image configuration" in p.stderr, p.stderr
    assert blobs(daemon) == baseline and ingests(daemon) == []
    # a blob redirect loop
    loop = make_image([small_tar({"g": os.urandom(64 << 10)})])
    fake_registry.add("it/loop", "1", loop)
    fake_registry.loop.add(loop["layer_digests"][0])
    p = daemon.docker("pull", f"{fake_registry.host}/it/loop:1", check=False)
    assert p.returncode != 0
    assert b"stopped after 10 redirects" in p.stderr, p.stderr
    assert blobs(daemon) == baseline and ingests(daemon) == []
    # a manifest without a config: a clear message, not a Python KeyError
    nocfg = make_image([layer])
    m = dict(nocfg["manifest"])
    del m["config"]
    fake_registry.add("it/nocfg", "1", nocfg, manifest=m)
    p = daemon.docker("pull", f"{fake_registry.host}/it/nocfg:1", check=False)
    assert p.returncode != 0
    assert b"'config'" not in p.stderr and b"invalid manifest" in p.stderr, p.stderr
    assert blobs(daemon) == baseline and ingests(daemon) == []
    assert list((daemon.data_root / "tmp").iterdir()) == []
    assert_clean_fsck(daemon)


# ---- kill -9 at seeded moments of every operation -------------------------------------------------------------
def du(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames + dirnames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
            except OSError:
                pass
    return total


def check_store(d: Daemon) -> None:
    """After a restart: every listed image inspects and saves, every blob re-hashes, nothing stale is mounted."""
    images_inspect_and_save(d)
    rehash_all(d)
    s, rows = d.api_json("GET", "/containers/json")
    running = {r["Id"] for r in rows} if s == 200 else set()
    stale = [m for m in mounts_below(d.data_root, d.exec_root) if not any(cid in m for cid in running)]
    assert stale == [], stale
    assert list((d.data_root / "tmp").iterdir()) == []


@pytest.mark.slow
def test_kill9_at_seeded_moments_of_every_operation(daemon: Daemon, registry: Registry, tmp_path: Path) -> None:
    rng = random.Random(1111)
    push_image(registry, "crash/base", "1", [make_rootfs_tar()])
    big = push_image(registry, "crash/big", "1", [make_rootfs_tar(), small_tar({"x.bin": os.urandom(3 << 20)})])
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.bin").write_bytes(os.urandom(2 << 20))
    with FaultProxy(registry, delay_per_chunk=0.004) as proxy:
        base = f"{proxy.host}/crash/base:1"
        (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY f.bin /f.bin\nRUN echo hi > /hi\n")
        daemon.docker("pull", base)
        archive = tmp_path / "big.tar"
        daemon.docker("pull", f"{proxy.host}/crash/big:1")
        daemon.docker("save", "-o", str(archive), f"{proxy.host}/crash/big:1")
        cid = daemon.out("create", base, "true")
        n = [0]

        def fresh_name() -> str:
            n[0] += 1
            return f"{proxy.host}/crash/t{n[0]}:1"

        def setup_rmi() -> list[str]:
            name = fresh_name()
            daemon.docker("load", "-i", str(archive))
            daemon.docker("tag", f"{proxy.host}/crash/big:1", name)
            return ["rmi", "-f", f"{proxy.host}/crash/big:1", name]

        def setup_push() -> list[str]:
            name = fresh_name()
            daemon.docker("import", "-", name, input=small_tar({"p.bin": os.urandom(4 << 20)}))
            return ["push", name]

        ops: dict[str, Any] = {
            "pull": lambda: (daemon.docker("rmi", "-f", f"{proxy.host}/crash/big:1", check=False),
                             ["pull", f"{proxy.host}/crash/big:1"])[1],
            "load": lambda: (daemon.docker("rmi", "-f", f"{proxy.host}/crash/big:1", check=False),
                             ["load", "-i", str(archive)])[1],
            "build": lambda: ["build", "--no-cache", "-t", fresh_name(), str(ctx)],
            "commit": lambda: ["commit", cid, fresh_name()],
            "rmi": setup_rmi,
            "prune": lambda: (setup_rmi(), ["image", "prune", "-a", "-f"])[1],
            "push": setup_push,
        }
        resumed = 0
        for op, setup in ops.items():
            t0 = time.time()
            args = setup()
            t0 = time.time()
            p = docker_popen(daemon, *args)
            p.communicate(timeout=120)
            duration = max(0.2, time.time() - t0)
            for _ in range(10):
                daemon.docker("pull", base)  # whatever a prune took
                args = setup()
                p = docker_popen(daemon, *args)
                time.sleep(rng.uniform(0, duration))
                daemon.kill9()
                p.kill()
                p.communicate()
                daemon.start()
                check_store(daemon)
                if op == "pull":
                    data = daemon.data_root / "content" / "ingest" / ("pull-" + big["layer_digests"][1][7:]) / "data"
                    left = data.is_file() and data.stat().st_size > 0
                    proxy.reset()
                    daemon.docker("pull", f"{proxy.host}/crash/big:1")
                    if left:
                        assert proxy.ranges_for(big["layer_digests"][1]), "an interrupted pull resumes"
                        resumed += 1
        daemon.remove_all_containers()
        daemon.docker("image", "prune", "-a", "-f")
        assert daemon.out("images", "-aq") == ""
    check_store(daemon)
    assert blobs(daemon) == set()
    daemon.stop()
    out = fsck(daemon)
    assert "orphan blobs removed: 0" in out, out
    fresh = Daemon(tmp_path / "fresh")
    fresh.start()
    fresh.stop()
    size, fresh_size = du(daemon.data_root), du(fresh.data_root)
    assert size - fresh_size <= 2 << 20, (size, fresh_size)
    daemon.start()


# ---- concurrency: pulls, loads and builds against prunes, removals and tags ------------------------------------
def _clear_error(stderr: bytes) -> bool:
    text = stderr.decode(errors="replace")
    last = text.strip().splitlines()[-1] if text.strip() else ""
    return bool(last) and "Traceback" not in text and "KeyError" not in text and not last.startswith("'")


def test_parallel_operations_against_prune_rmi_and_tag(daemon: Daemon, registry: Registry, tmp_path: Path) -> None:
    shared = make_rootfs_tar()
    for i in range(3):
        push_image(registry, f"cc/img{i}", "1", [shared, small_tar({f"l{i}": os.urandom(512 << 10)})])
    with FaultProxy(registry, delay_per_chunk=0.001) as proxy:
        names = [f"{proxy.host}/cc/img{i}:1" for i in range(3)]
        daemon.docker("pull", names[0])
        archive = tmp_path / "a.tar"
        daemon.docker("save", "-o", str(archive), names[0])
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM {names[0]}\nCOPY f /f\n")
        (ctx / "f").write_bytes(os.urandom(256 << 10))
        failures: list[tuple[list[str], bytes]] = []
        lock = threading.Lock()

        def run(args: list[str]) -> None:
            p = docker_popen(daemon, *args)
            _, err = p.communicate(timeout=300)
            if p.returncode != 0:
                with lock:
                    failures.append((args, err))

        def worker(k: int) -> None:
            for j in range(3):
                kind = (k + j) % 3
                if kind == 0:
                    run(["pull", names[(k + j) % 3]])
                elif kind == 1:
                    run(["load", "-i", str(archive)])
                else:
                    run(["build", "-t", f"cc/built{k}:{j}", str(ctx)])

        def disturber() -> None:
            for j in range(6):
                run(["image", "prune", "-a", "-f"])
                run(["rmi", "-f", names[j % 3]])
                run(["tag", names[0], f"cc/tagged:{j}"])
                run(["rmi", f"cc/tagged:{j}"])

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        threads.append(threading.Thread(target=disturber))
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        for args, err in failures:
            assert _clear_error(err), (args, err)
        check_store(daemon)
        # after the last command nothing is orphaned: fsck (stopped store) removes nothing, misses nothing
        daemon.stop()
        out = fsck(daemon)
        assert "orphan blobs removed: 0" in out, out
        daemon.start()
        daemon.docker("image", "prune", "-a", "-f")
        assert blobs(daemon) == set()
