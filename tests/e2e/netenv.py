"""Host fixtures for the networking tests: a bridge of the test's own, an "outside" network namespace with an HTTP
server in it, and checks that nothing is left behind.

Everything a fixture creates has a random name (``dwt…`` bridges, ``dwo…`` namespaces and veths) and is removed
again, so tests never touch the host's own interfaces, rules or addresses. Traffic only goes between the host,
loopback and what the test created.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Daemon, make_rootfs_tar

APPLETS = ("sh", "ls", "cat", "echo", "true", "false", "sleep", "wget", "httpd", "nc", "ip", "hostname", "route",
           "ping", "grep", "test", "[", "mkdir", "id", "env", "ifconfig", "netstat", "sed", "printf")

# what the outside server answers: the peer's address, so a test can see the masquerade
SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (f"hello from outside {self.path} peer=" + self.client_address[0] + "\n").encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
        with open(sys.argv[3], "a") as f:
            f.write(self.client_address[0] + " " + self.path + "\n")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


def http_get(host: str, port: int, path: str = "/") -> str:
    """A shell command for inside a container that prints the body of ``GET path`` from host:port and fails when
    nothing answers. (busybox nc: the Debian busybox-static's wget crashes in a rootfs without glibc's NSS
    modules; a real busybox image's wget works, but this machine has none.)"""
    return (f"printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port} > /resp && "
            f"grep -q '^HTTP/1.[01] 200' /resp && sed '1,/^\\r$/d' /resp")


def sh(*argv: str, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                          input=input.decode() if input else None, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc


def host_can_network() -> str:
    """Why these tests cannot run here ("" when they can)."""
    if os.geteuid() != 0:
        return "networking tests need root"
    for tool in ("ip", "runc", "busybox"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            return f"{tool} is not installed"
    probe = "dwprobe" + secrets.token_hex(3)
    r = subprocess.run(["ip", "link", "add", probe, "type", "bridge"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a bridge here: {r.stderr.strip()}"
    subprocess.run(["ip", "link", "del", probe], capture_output=True)
    return ""


def free_subnet(second: int) -> str:
    """A /24 of 10.<second>.x.0 that the host does not route: ``10.<second>.x``."""
    routes = sh("ip", "-j", "-4", "route", "show").stdout
    used = {r.get("dst", "") for r in json.loads(routes or "[]")}
    for _ in range(200):
        third = secrets.randbelow(250) + 2
        prefix = f"10.{second}.{third}"
        if not any(u.startswith(prefix + ".") for u in used):
            return prefix
    raise RuntimeError("no free test subnet")


@dataclass
class Bridge:
    name: str
    prefix: str  # "10.214.7"

    @property
    def gateway(self) -> str:
        return f"{self.prefix}.1"


@dataclass
class Outside:
    """A network namespace joined to the host by a veth pair: ``address`` is "the internet"."""

    ns: str
    host_end: str
    host_address: str
    address: str
    port: int
    log: Path

    def peers(self) -> list[str]:
        try:
            return [line.split()[0] for line in self.log.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []


def make_bridge() -> Bridge:
    name = "dwt" + secrets.token_hex(4)
    prefix = free_subnet(214)
    sh("ip", "link", "add", name, "type", "bridge")
    sh("ip", "addr", "add", f"{prefix}.1/24", "dev", name)
    sh("ip", "link", "set", name, "up")
    return Bridge(name, prefix)


def remove_bridge(bridge: Bridge) -> None:
    sh("ip", "link", "del", bridge.name, check=False)


def nft_tables() -> str:
    return sh("nft", "list", "tables", check=False).stdout


def veths_on(bridge: str) -> list[str]:
    out = sh("ip", "-j", "link", "show", "master", bridge, check=False).stdout
    return [link["ifname"] for link in json.loads(out or "[]")]


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    reason = host_can_network()
    if reason:
        pytest.skip(reason)
    br = make_bridge()
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    try:
        yield br
    finally:
        remove_bridge(br)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(forward)


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Outside]:
    reason = host_can_network()
    if reason:
        pytest.skip(reason)
    tag = secrets.token_hex(3)
    ns, host_end, inner = f"dwo{tag}", f"dwoh{tag}", f"dwoi{tag}"
    prefix = free_subnet(215)
    out = Outside(ns, host_end, f"{prefix}.1", f"{prefix}.2", 8000 + secrets.randbelow(1000), tmp_path / "peers")
    sh("ip", "netns", "add", ns)
    server = None
    try:
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", inner)
        sh("ip", "link", "set", inner, "netns", ns)
        sh("ip", "addr", "add", f"{out.host_address}/30", "dev", host_end)
        sh("ip", "link", "set", host_end, "up")
        sh("ip", "-n", ns, "addr", "add", f"{out.address}/30", "dev", inner)
        sh("ip", "-n", ns, "link", "set", inner, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, out.address,
                                   str(out.port), str(out.log)])
        deadline = time.time() + 10
        while time.time() < deadline:
            r = subprocess.run(["ip", "netns", "exec", ns, "busybox", "wget", "-q", "-O", "/dev/null", "-T", "1",
                                f"http://{out.address}:{out.port}/ready"], capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        out.log.write_text("")
        yield out
    finally:
        if server is not None:
            server.kill()
            server.wait()
        sh("ip", "link", "del", host_end, check=False)
        sh("ip", "netns", "del", ns, check=False)


def net_daemon(base: Path, bridge: Bridge, *extra: str) -> Daemon:
    return Daemon(base, "--bridge", bridge.name, *extra)


def busybox_image(d: Daemon, name: str = "bb:net") -> str:
    rootfs = make_rootfs_tar({"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n", "etc/group": b"root:x:0:\n",
                              "www/index.html": b"hello from the container\n"}, applets=APPLETS)
    d.out("import", "-c", 'CMD ["sh"]', "-c", "ENV PATH=/bin", "-", name, input=rootfs)
    return name
