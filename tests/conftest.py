"""Shared fixtures: a real dockwright daemon on a temp socket, the real docker CLI and docker-py, test images."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


def find_docker_cli() -> str | None:
    for cand in ("/usr/local/bin/docker", shutil.which("docker") or "", "/usr/bin/docker"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


DOCKER = find_docker_cli()

SLOW_TIMEOUT = 1200  # seconds: the default (pyproject's `timeout`) is for ordinary tests


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.slow`` tests (e.g. the 1 GiB save/load) get a longer pytest-timeout limit, unless they set
    their own ``@pytest.mark.timeout``."""
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


class Daemon:
    """A dockwright daemon process on its own socket and data root."""

    def __init__(self, base: Path, *extra: str) -> None:
        self.base = base
        self.sock = base / "dw.sock"
        self.data_root = base / "root"
        self.exec_root = base / "exec"
        self.log_path = base / "daemon.log"
        # networking is what tests/e2e/test_network*.py test: other daemons run without the bridge (dockerd's
        # --bridge=none), so that they change nothing on the host and may run side by side
        bridge_given = any(a in ("-b", "--bridge") or a.startswith("--bridge=") for a in extra)
        self.extra = list(extra) if bridge_given else ["--bridge=none", *extra]
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}  # set in the daemon's environment over the test's own
        self.docker_config = base / "docker-config"
        self.docker_config.mkdir(parents=True, exist_ok=True)
        (self.docker_config / "config.json").write_text("{}")
        self.certs_d = base / "certs.d"  # beside daemon.json, as <config dir>/certs.d

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout: float = 20.0) -> Daemon:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockwright.cli.main", "serve", "-H", self.host, "--data-root",
             str(self.data_root), "--exec-root", str(self.exec_root), "--no-fsync",
             "--config-file", str(self._daemon_json()),
             *self.extra],
            stdout=log, stderr=log, env={**os.environ, **self.env})
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            if self.sock.exists():
                try:
                    self.api("GET", "/_ping")
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not start:\n{self.log()}")

    def _daemon_json(self) -> Path:
        p = self.base / "daemon.json"
        if not p.exists():
            p.write_text("{}")
        return p

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def remove_all_containers(self) -> None:
        """Containers outlive their daemon (as dockerd's with live-restore): tests clean theirs up."""
        try:
            status, rows = self.api_json("GET", "/containers/json?all=1")
            for row in rows if status == 200 and isinstance(rows, list) else []:
                self.api("DELETE", f"/containers/{row['Id']}?force=1")
        except OSError:
            pass

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0, *, clean: bool = True) -> int | None:
        if self.proc is None:
            return None
        if clean and sig == signal.SIGTERM and self.proc.poll() is None:
            self.remove_all_containers()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    # -- raw HTTP over the unix socket -------------------------------------------------------------------
    def api(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        import http.client
        import socket as _socket

        class Conn(http.client.HTTPConnection):
            def connect(self_inner) -> None:  # noqa: N805
                s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                s.settimeout(60)
                s.connect(str(self.sock))
                self_inner.sock = s

        c = Conn("localhost")
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def api_json(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, object]:
        status, _, data = self.api(method, path, body, headers)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data.decode(errors="replace")

    # -- the docker CLI ----------------------------------------------------------------------------------
    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        if DOCKER is None:
            pytest.skip("no docker CLI on this host (install docker.io or the docker CLI)")
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.docker_config),
               "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}
        env.pop("DOCKER_CONTEXT", None)
        p = subprocess.run([DOCKER, *args], input=input, capture_output=True, env=env, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({p.returncode}):\nstdout: "
                                 f"{p.stdout.decode(errors='replace')}\nstderr: {p.stderr.decode(errors='replace')}")
        return p

    def out(self, *args: str, input: bytes | None = None) -> str:
        return self.docker(*args, input=input).stdout.decode().strip()

    def client(self, version: str = "auto"):  # type: ignore[no-untyped-def]
        import docker
        return docker.DockerClient(base_url=self.host, version=version, timeout=120)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "d").start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("shared")).start()
    try:
        yield d
    finally:
        d.stop()


def overlay_or_skip(tmp: Path) -> None:
    """Skip (with the reason) unless this process can mount overlayfs: root and a kernel that has it."""
    if os.geteuid() != 0:
        pytest.skip("overlay mounts need root")
    probe = tmp / "overlay-probe"
    for d in ("l1", "l2", "m"):
        (probe / d).mkdir(parents=True)
    opts = f"lowerdir={probe / 'l1'}:{probe / 'l2'}"
    proc = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(probe / "m")],
                          check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"overlayfs unavailable: {proc.stderr.strip()}")
    subprocess.run(["umount", str(probe / "m")], check=True)


def busybox_path() -> Path | None:
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(cand):
            return Path(cand)
    return None


def make_rootfs_tar(extra: dict[str, bytes] | None = None, *, with_busybox: bool = True,
                    applets: tuple[str, ...] = ("sh", "ls", "cat", "echo", "true")) -> bytes:
    """A small rootfs tar: busybox (if present) with a few applet links, plus ``extra`` files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add_dir(name: str) -> None:
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            ti.mtime = 1700000000
            tf.addfile(ti)
        add_dir("bin")
        add_dir("etc")
        bb = busybox_path()
        if with_busybox and bb is not None:
            data = bb.read_bytes()
            ti = tarfile.TarInfo("bin/busybox")
            ti.size = len(data)
            ti.mode = 0o755
            ti.mtime = 1700000000
            tf.addfile(ti, io.BytesIO(data))
            for a in applets:
                li = tarfile.TarInfo(f"bin/{a}")
                li.type = tarfile.SYMTYPE
                li.linkname = "busybox"
                li.mtime = 1700000000
                tf.addfile(li)
        for name, content in (extra or {}).items():
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in ("bin", "etc") and d not in tf.getnames():
                    add_dir(d)
            ti = tarfile.TarInfo(name)
            ti.size = len(content)
            ti.mode = 0o644
            ti.mtime = 1700000000
            tf.addfile(ti, io.BytesIO(content))
    return buf.getvalue()


def files_tar(files: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar of just these regular files (no parent directories; TarInfo's defaults otherwise)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def small_tar(files: dict[str, bytes]) -> bytes:
    return make_rootfs_tar(files, with_busybox=False)
