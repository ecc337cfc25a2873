"""network.firewall against the real kernel, entirely inside network namespaces of our own, so that the host's
tables are never touched.

Each test builds a small lab (``dwfw`` + 6 hex characters): a "host" namespace (where the Firewall runs, through
``nsenter --net=…``) with the bridge ``dwfbr<hex>`` on 10.213.0.1/24, "container" namespaces on that bridge by
veth pairs (10.213.0.2, .3, default route via the bridge), and an "outside" namespace joined to the host one by
a veth on 10.214.0.0/30 (host .1, outside .2) that has no route to the containers' subnet. Servers are small
Python HTTP responders that answer ``peer=<the client address they see>``; clients are ``busybox wget`` with a
timeout. Removing the namespaces in the teardown takes every veth, bridge, nft table and iptables chain with it.
Skipped (with the reason) when not root or without ``ip netns``, ``nsenter``, ``nft`` or ``busybox``.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

from dockwright.errors import Conflict, InvalidArgument
from dockwright.network import firewall as fw
from dockwright.network.endpoint import PortMapping

SUBNET = IPv4Network("10.213.0.0/24")
GATEWAY = "10.213.0.1"
HOST_OUT = "10.214.0.1"  # the host namespace's address towards the outside
OUTSIDE = "10.214.0.2"

SERVER = r"""
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
def handle(c, peer):
    with c:
        c.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
            body = ("peer=%s\n" % peer[0]).encode()
            head = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            c.sendall(head + body)
        except OSError:
            pass
while True:
    conn, peer = s.accept()
    threading.Thread(target=handle, args=(conn, peer), daemon=True).start()
"""


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "firewall tests need root"
    for tool in ("ip", "nsenter", "nft", "busybox"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    name = "dwfw" + secrets.token_hex(3)
    proc = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"cannot create a network namespace: {proc.stderr.strip()}"
    try:
        proc = subprocess.run(["nsenter", f"--net=/run/netns/{name}", "--", "nft", "list", "tables"],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return f"nft does not work in a network namespace: {proc.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


SKIP = _skip_reason()
if SKIP:
    print(f"tests/unit/network/test_firewall.py skipped: {SKIP}")


def _iptables_works() -> str | None:
    if SKIP:
        return SKIP
    for tool in ("iptables", "iptables-save", "iptables-restore"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    name = "dwfw" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        proc = subprocess.run(["nsenter", f"--net=/run/netns/{name}", "--", "iptables-restore", "--noflush"],
                              input="*nat\n:DW-probe - [0:0]\n-A DW-probe -m addrtype --dst-type LOCAL "
                                    "-j MASQUERADE\nCOMMIT\n", capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return f"iptables does not work in a network namespace: {proc.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


IPTABLES_SKIP = _iptables_works()
BACKENDS = [
    "nft",
    pytest.param("iptables", marks=pytest.mark.skipif(IPTABLES_SKIP is not None, reason=IPTABLES_SKIP or "")),
]

kernel = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def _run(*argv: str, check: bool = True, timeout: float = 30, input: str | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout, input=input)


class Lab:
    """The namespaces, links and servers of one test; ``close`` removes them all."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = "dwfbr" + self.tag
        self.namespaces: list[str] = []
        self.servers: list[subprocess.Popen[str]] = []
        self.host = self.add_namespace("h")
        self.ns_run(self.host, "ip", "link", "set", "lo", "up")
        self.ns_run(self.host, "ip", "link", "add", self.bridge, "type", "bridge")
        self.ns_run(self.host, "ip", "addr", "add", f"{GATEWAY}/24", "dev", self.bridge)
        self.ns_run(self.host, "ip", "link", "set", self.bridge, "up")
        self.ns_run(self.host, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        self.outside = self.add_namespace("o")
        self._veth(self.outside, "out0", f"{OUTSIDE}/30", None)
        self.ns_run(self.host, "ip", "addr", "add", f"{HOST_OUT}/30", "dev", "out0")
        self.containers: dict[str, str] = {}

    def path(self, ns: str) -> str:
        return f"/run/netns/{ns}"

    def add_namespace(self, suffix: str) -> str:
        name = f"dwfw{self.tag}{suffix}"
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        return name

    def ns_run(self, ns: str, *argv: str, check: bool = True, timeout: float = 30,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        return _run("nsenter", f"--net={self.path(ns)}", "--", *argv, check=check, timeout=timeout, input=input)

    def _veth(self, ns: str, host_end: str, address: str, gateway: str | None) -> None:
        self.ns_run(self.host, "ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
                    "netns", self.path(ns))
        self.ns_run(ns, "ip", "addr", "add", address, "dev", "eth0")
        self.ns_run(ns, "ip", "link", "set", "lo", "up")
        self.ns_run(ns, "ip", "link", "set", "eth0", "up")
        self.ns_run(self.host, "ip", "link", "set", host_end, "up")
        if gateway:
            self.ns_run(ns, "ip", "route", "add", "default", "via", gateway)

    def add_container(self, index: int) -> tuple[str, str]:
        """A container namespace on the bridge: (namespace, address)."""
        ns = self.add_namespace(f"c{index}")
        address = str(SUBNET.network_address + 1 + index)
        self.ns_run(self.host, "ip", "link", "add", f"c{index}", "type", "veth", "peer", "name", "eth0",
                    "netns", self.path(ns))
        self.ns_run(self.host, "ip", "link", "set", f"c{index}", "master", self.bridge)
        self.ns_run(ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        self.ns_run(ns, "ip", "link", "set", "lo", "up")
        self.ns_run(ns, "ip", "link", "set", "eth0", "up")
        self.ns_run(self.host, "ip", "link", "set", f"c{index}", "up")
        self.ns_run(ns, "ip", "route", "add", "default", "via", GATEWAY)
        self.containers[ns] = address
        return ns, address

    def serve(self, ns: str, address: str, port: int) -> None:
        proc = subprocess.Popen(["nsenter", f"--net={self.path(ns)}", "--", sys.executable, "-c", SERVER,
                                 address, str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.servers.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        line = proc.stdout.readline() if ready else ""
        assert line.strip() == "ready", f"server in {ns} on {address}:{port} did not start: {line!r}"

    def fetch(self, ns: str, address: str, port: int, timeout: float = 10) -> str | None:
        """The body ``busybox wget`` gets from ``address:port`` inside ``ns``; None when it fails or times out."""
        try:
            proc = self.ns_run(ns, "busybox", "wget", "-qO-", f"http://{address}:{port}/", check=False,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    def firewall(self, **kwargs: object) -> fw.Firewall:
        return fw.Firewall(self.bridge, SUBNET, netns=self.path(self.host), **kwargs)  # type: ignore[arg-type]

    def nft_tables(self) -> list[str]:
        out = json.loads(self.ns_run(self.host, "nft", "-j", "list", "tables").stdout)
        return [item["table"]["name"] for item in out["nftables"] if "table" in item]

    def iptables_save(self, table: str, binary: str = "iptables") -> str:
        return self.ns_run(self.host, f"{binary}-save", "-t", table).stdout

    def close(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        left = set(os.listdir("/run/netns")) & set(self.namespaces) if os.path.isdir("/run/netns") else set()
        assert not left, f"namespaces left behind: {left}"


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


FAIL_FAST = 3.0  # seconds a request that must not get through is given


# --- without the kernel ---------------------------------------------------------------------------------------


def test_arguments_are_checked() -> None:
    with pytest.raises(InvalidArgument):
        fw.Firewall("bad name", SUBNET)
    with pytest.raises(InvalidArgument):
        fw.Firewall('br"0', SUBNET)
    with pytest.raises(InvalidArgument):
        fw.Firewall("br0", SUBNET, backend="pf")
    with pytest.raises(InvalidArgument):
        fw.Firewall("br0", SUBNET, table="1; flush ruleset")
    f = fw.Firewall("br0", SUBNET, backend="nft")
    with pytest.raises(InvalidArgument, match="protocol"):
        f.set_ports("a", [(PortMapping(80, "icmp", "", 8080), "10.213.0.2")])
    with pytest.raises(InvalidArgument, match="host port"):
        f.set_ports("a", [(PortMapping(80, "tcp", "", 70000), "10.213.0.2")])
    with pytest.raises(InvalidArgument, match="container address"):
        f.set_ports("a", [(PortMapping(80, "tcp", "", 8080), "nonsense")])
    with pytest.raises(InvalidArgument, match="host address"):
        f.set_ports("a", [(PortMapping(80, "tcp", "1.2.3", 8080), "10.213.0.2")])
    with pytest.raises(Conflict, match="twice"):
        f.set_ports("a", [(PortMapping(80, "tcp", "", 8080), "10.213.0.2"),
                          (PortMapping(81, "tcp", "10.0.0.1", 8080), "10.213.0.2")])
    assert f.ports() == {}
    assert fw.chain_prefix("dwfbr123456789a") == "DW-dwfbr123456789a"
    assert len(fw.chain_prefix("x" * 15) + "-PORTS") <= fw.IPTABLES_CHAIN_MAX
    assert fw.default_table_name("docker0") == "dockwright_docker0"


def test_missing_tools_and_failing_commands(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing installed
    assert fw.detect_backend() == (None, "nft and iptables are not installed")
    with pytest.raises(fw.FirewallUnavailable, match="not installed"):
        _ = fw.Firewall("br0", SUBNET).backend
    with pytest.raises(fw.FirewallUnavailable, match="nft is not installed"):
        fw.run_command(["nft", "list", "tables"])
    monkeypatch.undo()
    with pytest.raises(fw.FirewallError, match="sh -c echo oops >&2; exit 3: exit status 3: oops") as err:
        fw.run_command(["sh", "-c", "echo oops >&2; exit 3"])
    assert err.value.returncode == 3 and err.value.stderr == "oops"
    with pytest.raises(fw.FirewallError, match="timed out"):
        fw.run_command(["sleep", "5"], timeout=0.2)
    with pytest.raises(InvalidArgument, match="does not exist"):
        fw.run_command(["true"], netns="/run/netns/dwfw-no-such-namespace")


def test_rendered_rules_follow_dockerd() -> None:
    f = fw.Firewall("br0", SUBNET, backend="nft")
    f._ports["c1"] = (fw._check_mapping(PortMapping(80, "tcp", "", 8080), "10.213.0.2", "c1"),)  # type: ignore
    f._ports["c2"] = tuple(p for p in (  # type: ignore[assignment]
        fw._check_mapping(PortMapping(53, "udp", "10.0.0.1", 5353), "10.213.0.3", "c2"),
        fw._check_mapping(PortMapping(53, "udp", "::", 5353), "10.213.0.3", "c2"),  # the ip6 side: left out
    ) if p is not None)
    text = f.render_nft()
    assert text.startswith("table ip dockwright_br0\ndelete table ip dockwright_br0\n")
    assert 'ip saddr 10.213.0.0/24 oifname != "br0" masquerade' in text
    assert 'iifname != "br0" fib daddr type local jump ports' in text
    assert "ip daddr != 127.0.0.0/8 fib daddr type local jump ports" in text
    assert 'tcp dport 8080 dnat to 10.213.0.2:80 comment "c1"' in text
    assert "ip daddr 10.0.0.1 udp dport 5353 dnat to 10.213.0.3:53" in text
    assert text.count("dnat to") == 2
    assert "ip saddr 10.213.0.2 ip daddr 10.213.0.2 tcp dport 80 masquerade" in text
    assert 'iifname != "br0" oifname "br0" ip daddr 10.213.0.2 tcp dport 80 accept' in text
    assert 'iifname "br0" oifname "br0" accept' in text
    assert "127.0.0.0/8 oifname" not in text

    quiet = fw.Firewall("br0", SUBNET, backend="nft", ip_masq=False, icc=False, userland_proxy=False)
    text = quiet.render_nft()
    assert "10.213.0.0/24" not in text
    assert 'iifname "br0" oifname "br0" drop' in text
    assert 'ip saddr 127.0.0.0/8 oifname "br0" masquerade' in text
    assert "    fib daddr type local jump ports" in text.splitlines()

    rules = f.render_iptables()
    assert "-A DW-br0-POST -s 10.213.0.0/24 ! -o br0 -j MASQUERADE" in rules["nat"]
    assert ("-A DW-br0-PORTS -p tcp -m tcp --dport 8080 -m comment --comment \"c1\" -j DNAT --to-destination "
            "10.213.0.2:80") in rules["nat"]
    assert rules["filter"][-1] == "-A DW-br0-FWD ! -i br0 -o br0 -j DROP"


# --- against the kernel ---------------------------------------------------------------------------------------


@kernel
def test_detect_backend_and_ip_forward(lab: Lab) -> None:
    assert fw.detect_backend(lab.path(lab.host)) == ("nft", "")
    assert lab.firewall().backend == "nft"
    lab.ns_run(lab.host, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")
    assert fw.set_ip_forward(lab.path(lab.host)) is True
    assert lab.ns_run(lab.host, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert fw.set_ip_forward(lab.path(lab.host)) is False


@kernel
@pytest.mark.parametrize("backend", BACKENDS)
def test_masquerade(lab: Lab, backend: str) -> None:
    c1, _ = lab.add_container(1)
    lab.serve(lab.outside, OUTSIDE, 8000)
    assert lab.fetch(c1, OUTSIDE, 8000, timeout=FAIL_FAST) is None  # no route back to the subnet outside

    firewall = lab.firewall(backend=backend)
    firewall.install()
    assert lab.fetch(c1, OUTSIDE, 8000) == f"peer={HOST_OUT}"  # the outside sees the host's address
    firewall.remove()
    assert lab.fetch(c1, OUTSIDE, 8000, timeout=FAIL_FAST) is None

    lab.firewall(backend=backend, ip_masq=False).install()
    assert lab.fetch(c1, OUTSIDE, 8000, timeout=FAIL_FAST) is None


@kernel
@pytest.mark.parametrize("backend", BACKENDS)
def test_published_ports(lab: Lab, backend: str) -> None:
    c1, ip1 = lab.add_container(1)
    lab.serve(c1, ip1, 8080)
    lab.serve(c1, ip1, 9090)  # not published
    firewall = lab.firewall(backend=backend)
    firewall.install()
    assert lab.fetch(lab.outside, HOST_OUT, 18080, timeout=FAIL_FAST) is None

    firewall.set_ports("c1", [(PortMapping(8080, "tcp", "", 18080), ip1)])
    assert firewall.ports() == {"c1": [(PortMapping(8080, "tcp", "", 18080), IPv4Address(ip1))]}
    assert lab.fetch(lab.outside, HOST_OUT, 18080) == f"peer={OUTSIDE}"  # DNAT keeps the client's address
    assert lab.fetch(lab.host, HOST_OUT, 18080) is not None  # from the host itself, to a local address
    # loopback is the userland proxy's: not DNATed (nothing listens here, so it is refused)
    assert lab.fetch(lab.host, "127.0.0.1", 18080, timeout=FAIL_FAST) is None

    # routed straight to the container: the published port only
    lab.ns_run(lab.outside, "ip", "route", "add", str(SUBNET), "via", HOST_OUT)
    assert lab.fetch(lab.outside, ip1, 8080) == f"peer={OUTSIDE}"
    assert lab.fetch(lab.outside, ip1, 9090, timeout=FAIL_FAST) is None

    # a host address limits the mapping to that address
    firewall.set_ports("c1", [(PortMapping(8080, "tcp", GATEWAY, 18080), ip1)])
    assert lab.fetch(lab.outside, HOST_OUT, 18080, timeout=FAIL_FAST) is None
    assert lab.fetch(lab.outside, GATEWAY, 18080) == f"peer={OUTSIDE}"

    # another owner cannot take the same host port; its own ports come and go without touching c1's
    with pytest.raises(Conflict, match="already allocated"):
        firewall.set_ports("c2", [(PortMapping(80, "tcp", "", 18080), "10.213.0.3")])
    firewall.set_ports("c2", [(PortMapping(80, "udp", "", 18080), "10.213.0.3")])
    assert firewall.remove_ports("c2") is True
    assert lab.fetch(lab.outside, GATEWAY, 18080) == f"peer={OUTSIDE}"

    assert firewall.remove_ports("c1") is True
    assert firewall.remove_ports("c1") is False
    assert lab.fetch(lab.outside, GATEWAY, 18080, timeout=FAIL_FAST) is None
    assert lab.fetch(lab.outside, ip1, 8080, timeout=FAIL_FAST) is None


@kernel
@pytest.mark.parametrize("backend", BACKENDS)
def test_without_userland_proxy_loopback_and_hairpin_are_nated(lab: Lab, backend: str) -> None:
    c1, ip1 = lab.add_container(1)
    lab.serve(c1, ip1, 8080)
    # what the bridge driver does for the container's port with --userland-proxy=false
    lab.ns_run(lab.host, "ip", "link", "set", "c1", "type", "bridge_slave", "hairpin", "on")
    firewall = lab.firewall(backend=backend, userland_proxy=False)
    firewall.set_ports("c1", [(PortMapping(8080, "tcp", "", 18080), ip1)])
    firewall.install()
    route_localnet = f"/proc/sys/net/ipv4/conf/{lab.bridge}/route_localnet"
    assert lab.ns_run(lab.host, "cat", route_localnet).stdout.strip() == "1"
    assert lab.fetch(lab.host, "127.0.0.1", 18080) == f"peer={GATEWAY}"  # loopback masqueraded into the bridge
    assert lab.fetch(c1, HOST_OUT, 18080) == f"peer={GATEWAY}"  # hairpin: to itself through the host port
    assert lab.fetch(lab.outside, HOST_OUT, 18080) == f"peer={OUTSIDE}"


@kernel
@pytest.mark.parametrize("backend", BACKENDS)
def test_icc(lab: Lab, backend: str) -> None:
    bridge_nf = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    proc = lab.ns_run(lab.host, "sh", "-c", f"echo 1 > {bridge_nf}", check=False)
    if proc.returncode != 0:
        pytest.skip(f"no br_netfilter in the namespace: {proc.stderr.strip()}")
    c1, _ = lab.add_container(1)
    c2, ip2 = lab.add_container(2)
    lab.serve(c2, ip2, 8080)
    lab.firewall(backend=backend, icc=True).install()
    assert lab.fetch(c1, ip2, 8080) == f"peer={lab.containers[c1]}"
    lab.firewall(backend=backend, icc=False).install()
    assert lab.fetch(c1, ip2, 8080, timeout=FAIL_FAST) is None
    lab.firewall(backend=backend, icc=True).install()
    assert lab.fetch(c1, ip2, 8080) == f"peer={lab.containers[c1]}"


@kernel
def test_nft_install_is_idempotent_and_replaces_a_stale_table(lab: Lab) -> None:
    c1, _ = lab.add_container(1)
    lab.serve(lab.outside, OUTSIDE, 8000)
    firewall = lab.firewall(backend="nft")
    table = f"dockwright_{lab.bridge}"

    # what a crashed daemon may have left: the table with junk that drops everything forwarded
    junk = "chain junk { type filter hook forward priority -10; policy drop; }\nchain ports { }\n"
    lab.ns_run(lab.host, "nft", "-f", "-", input=f"table ip {table} {{\n{junk}}}\n")
    assert lab.fetch(c1, OUTSIDE, 8000, timeout=FAIL_FAST) is None
    firewall.install()
    first = lab.ns_run(lab.host, "nft", "list", "table", "ip", table).stdout
    assert "junk" not in first
    firewall.install()
    assert lab.ns_run(lab.host, "nft", "list", "table", "ip", table).stdout == first
    assert lab.nft_tables().count(table) == 1
    assert lab.fetch(c1, OUTSIDE, 8000) == f"peer={HOST_OUT}"

    # a second daemon with another bridge has a table of its own; each removes only its own
    other = fw.Firewall("dwfother", IPv4Network("10.215.0.0/24"), netns=lab.path(lab.host))
    other.install()
    assert set(lab.nft_tables()) == {table, "dockwright_dwfother"}
    firewall.remove()
    firewall.remove()
    assert lab.nft_tables() == ["dockwright_dwfother"]
    other.remove()
    assert lab.nft_tables() == []


@kernel
@pytest.mark.skipif(IPTABLES_SKIP is not None, reason=IPTABLES_SKIP or "")
def test_iptables_install_is_idempotent_and_removes_everything(lab: Lab) -> None:
    c1, _ = lab.add_container(1)
    lab.serve(lab.outside, OUTSIDE, 8000)
    firewall = lab.firewall(backend="iptables")
    prefix = f"DW-{lab.bridge}"
    # left by a crash: our chain with junk in it, jumped to twice
    lab.ns_run(lab.host, "iptables-restore", "--noflush", input=(
        f"*filter\n:{prefix}-FWD - [0:0]\n-A {prefix}-FWD -j DROP\n-A FORWARD -j {prefix}-FWD\n"
        f"-A FORWARD -j {prefix}-FWD\nCOMMIT\n"))
    firewall.install()
    firewall.install()
    nat, flt = lab.iptables_save("nat"), lab.iptables_save("filter")
    for builtin, chain in (("PREROUTING", "PRE"), ("OUTPUT", "OUT"), ("POSTROUTING", "POST")):
        assert nat.count(f"-A {builtin} -j {prefix}-{chain}\n") == 1
    assert flt.count(f"-A FORWARD -j {prefix}-FWD\n") == 1
    assert f"-A {prefix}-FWD -j DROP" not in flt
    assert lab.fetch(c1, OUTSIDE, 8000) == f"peer={HOST_OUT}"

    firewall.remove()
    firewall.remove()
    assert prefix not in lab.iptables_save("nat")
    assert prefix not in lab.iptables_save("filter")


@kernel
def test_nft_backend_opens_an_iptables_forward_drop_policy(lab: Lab) -> None:
    if not shutil.which("iptables-nft"):
        pytest.skip("iptables-nft is not installed")
    c1, _ = lab.add_container(1)
    lab.serve(lab.outside, OUTSIDE, 8000)
    lab.ns_run(lab.host, "iptables-nft", "-P", "FORWARD", "DROP")  # as a dockerd on this host would
    firewall = lab.firewall(backend="nft")
    firewall.install()
    chain = f"DW-{lab.bridge}"
    saved = lab.iptables_save("filter", "iptables-nft")
    assert f"-A FORWARD -j {chain}" in saved
    assert lab.fetch(c1, OUTSIDE, 8000) == f"peer={HOST_OUT}"
    firewall.install()
    assert lab.iptables_save("filter", "iptables-nft").count(f"-A FORWARD -j {chain}\n") == 1

    # without the companion, the policy drops what our table accepts
    lab.ns_run(lab.host, "iptables-nft", "-D", "FORWARD", "-j", chain)
    assert lab.fetch(c1, OUTSIDE, 8000, timeout=FAIL_FAST) is None
    lab.ns_run(lab.host, "iptables-nft", "-I", "FORWARD", "-j", chain)

    firewall.remove()
    firewall.remove()
    saved = lab.iptables_save("filter", "iptables-nft")
    assert chain not in saved and ":FORWARD DROP" in saved  # the policy is not ours to change
    assert f"dockwright_{lab.bridge}" not in lab.nft_tables()

    # with the policy back to ACCEPT, a companion left behind is removed by the next install
    lab.ns_run(lab.host, "iptables-nft", "-P", "FORWARD", "ACCEPT")
    lab.ns_run(lab.host, "iptables-nft", "-N", chain)
    lab.ns_run(lab.host, "iptables-nft", "-I", "FORWARD", "-j", chain)
    firewall.install()
    assert chain not in lab.iptables_save("filter", "iptables-nft")
