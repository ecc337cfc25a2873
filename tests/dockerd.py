"""A private, real dockerd (Debian's docker.io, 20.10) for comparison tests: the reference dockwright is held to.

:func:`dockerd_unavailable` says why one cannot run here (``None`` if it can); :class:`Dockerd` starts one on its
own socket, data root and exec root under a short ``/tmp`` path (containerd's socket path must stay under 108
bytes), without iptables or a bridge unless ``network_args`` say otherwise, and drives it with the same docker CLI
the dockwright tests use.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from conftest import DOCKER

__all__ = ["Dockerd", "dockerd_unavailable"]


def dockerd_unavailable() -> str | None:
    """Why a private dockerd cannot run on this host, or None."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    if shutil.which("dockerd") is None:
        return "dockerd (Debian docker.io) is not installed"
    if DOCKER is None:
        return "no docker CLI"
    return None


class Dockerd:
    """A dockerd process of its own. ``start()`` returns None on success, else why it did not start."""

    def __init__(self, docker_config: Path,
                 network_args: tuple[str, ...] = ("--iptables=false", "--bridge=none")) -> None:
        self.network_args = network_args
        self.base = Path("/tmp") / f"dwd-{os.getpid()}-{os.urandom(3).hex()}"
        self.sock = self.base / "docker.sock"
        self.docker_config = docker_config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout: float = 60) -> str | None:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "log", "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--host", self.host, "--data-root", str(self.base / "root"), "--exec-root",
             str(self.base / "exec"), "--pidfile", str(self.base / "pid"), *self.network_args],
            stdout=log, stderr=log, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return "dockerd exited: " + self.log()[-500:]
            if self.docker("version", check=False).returncode == 0:
                return None
            time.sleep(0.3)
        return "dockerd did not start: " + self.log()[-500:]

    def log(self) -> str:
        try:
            return (self.base / "log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def env(self) -> dict[str, str]:
        env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.docker_config),
               "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}
        env.pop("DOCKER_CONTEXT", None)
        return env

    def docker(self, *args: str, input: bytes | None = None, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        assert DOCKER is not None
        p = subprocess.run([DOCKER, *args], input=input, capture_output=True, env=self.env(), timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"dockerd: docker {' '.join(args)} failed ({p.returncode}):\n"
                                 f"stdout: {p.stdout.decode(errors='replace')}\n"
                                 f"stderr: {p.stderr.decode(errors='replace')}")
        return p

    def out(self, *args: str, input: bytes | None = None) -> str:
        return self.docker(*args, input=input).stdout.decode().strip()

    def stop(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
            self.proc = None
        for mounted in ("root", "exec/netns/default", "exec"):  # its layers; the host namespace's bind mount
            subprocess.run(["umount", "-R", str(self.base / mounted)], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
