"""network.bridge against the real kernel: a test-unique bridge (``dwt`` + 6 hex characters), network namespaces
of our own (``ip netns add dwt-<hex>``, ``unshare --net``), veth pairs between them, and ICMP only between the host's
bridge address and those namespaces, on a 10.213.x.0/24 the host does not route. Everything is removed in the
fixtures' teardown, whatever happens. Skipped (with the reason) when not root, without ``ip``/``nsenter``/a
ping, or when the kernel will not make a bridge."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from dockwright.errors import Conflict, InvalidArgument
from dockwright.network import bridge as br
from dockwright.network.ipam import (
    AddressAllocator,
    AddressPool,
    BridgeIPAM,
    choose_subnet,
    host_routes,
    mac_from_ip,
)


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "bridge tests need root"
    for tool in ("ip", "nsenter", "unshare"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not (shutil.which("ping") or shutil.which("busybox")):
        return "no ping (iputils-ping or busybox)"
    name = "dwt" + secrets.token_hex(3)
    proc = subprocess.run(["ip", "link", "add", name, "type", "bridge"], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"cannot create a bridge: {proc.stderr.strip()}"
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    return None


SKIP = _skip_reason()
if SKIP:
    print(f"tests/unit/network/test_bridge.py skipped: {SKIP}")
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


def _ping(netns: str, address: IPv4Address | str) -> subprocess.CompletedProcess[str]:
    ping = [shutil.which("ping")] if shutil.which("ping") else [shutil.which("busybox"), "ping"]
    argv = ["nsenter", f"--net={netns}", "--", *ping, "-c1", "-W1", str(address)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10)


def _host_used_networks() -> list[IPv4Network]:
    """Every IPv4 destination the host routes (any table, any scope) and every address it carries."""
    used = [r.dst for r in host_routes() if r.dst is not None]
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True)
    for r in json.loads(out.stdout or "[]"):
        dst = r.get("dst", "default")
        if dst != "default":
            try:
                used.append(IPv4Network(dst, strict=False))
            except ValueError:
                pass
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True)
    for link in json.loads(out.stdout or "[]"):
        for a in link.get("addr_info", []):
            used.append(IPv4Interface(f"{a['local']}/{a['prefixlen']}").network)
    return used


@pytest.fixture
def subnet() -> IPv4Network:
    return choose_subnet([AddressPool(IPv4Network("10.213.0.0/16"), 24)], reserved=_host_used_networks())


@pytest.fixture
def bridge_name() -> Iterator[str]:
    name = "dwt" + secrets.token_hex(3)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
        assert not br.link_exists(name)


@pytest.fixture
def netns() -> Iterator[str]:
    name = "dwt-" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def ipam(subnet: IPv4Network) -> BridgeIPAM:
    return BridgeIPAM(subnet, subnet.network_address + 1)


def _veths_on(bridge: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True)
    return [link["ifname"] for link in json.loads(out.stdout or "[]")]


def test_ensure_bridge_is_idempotent_and_exclusive(bridge_name: str, ipam: BridgeIPAM) -> None:
    assert br.bridge_addresses(bridge_name) == []
    assert br.delete_bridge(bridge_name) is False
    br.ensure_bridge(bridge_name, ipam.bridge_address, mtu=1450)
    br.ensure_bridge(bridge_name, ipam.bridge_address, mtu=1450)
    info = br.link_info(bridge_name)
    assert info is not None and info["linkinfo"]["info_kind"] == "bridge"
    assert info["mtu"] == 1450 and "UP" in info["flags"]
    assert br.bridge_addresses(bridge_name) == [ipam.bridge_address]

    # a stale address from an earlier configuration is replaced; the MTU follows the configuration
    other = IPv4Interface((ipam.subnet.network_address + 9, ipam.subnet.prefixlen))
    subprocess.run(["ip", "addr", "add", str(other), "dev", bridge_name], check=True)
    br.ensure_bridge(bridge_name, ipam.bridge_address, mtu=1500)
    assert br.bridge_addresses(bridge_name) == [ipam.bridge_address]
    assert br.link_info(bridge_name)["mtu"] == 1500
    assert br.delete_bridge(bridge_name) is True
    assert not br.link_exists(bridge_name)


def test_ensure_bridge_refuses_another_kind_and_bad_input(bridge_name: str, ipam: BridgeIPAM) -> None:
    peer = "dwq" + secrets.token_hex(3)
    subprocess.run(["ip", "link", "add", bridge_name, "type", "veth", "peer", "name", peer], check=True)
    with pytest.raises(Conflict, match="not a bridge"):
        br.ensure_bridge(bridge_name, ipam.bridge_address)
    with pytest.raises(Conflict):
        br.delete_bridge(bridge_name)
    with pytest.raises(InvalidArgument):
        br.ensure_bridge("a-name-too-long-for-linux", ipam.bridge_address)
    with pytest.raises(InvalidArgument):
        br.ensure_bridge("dwt0", ipam.bridge_address, mtu=20)


def test_attach_reaches_the_gateway_and_detach_removes_it(
    bridge_name: str, netns: str, ipam: BridgeIPAM, tmp_path
) -> None:
    br.ensure_bridge(bridge_name, ipam.bridge_address, mtu=1500)
    alloc = AddressAllocator(tmp_path / "ipam.json", ipam)
    addr = alloc.allocate("container-1")
    assert addr == ipam.subnet.network_address + 2
    iface = IPv4Interface((addr, ipam.subnet.prefixlen))
    ep = br.attach(bridge_name, netns, address=iface, gateway=ipam.gateway, mac=mac_from_ip(addr), mtu=1400)
    try:
        assert ep.host_ifname.startswith("veth") and len(ep.host_ifname) == 11
        assert _veths_on(bridge_name) == [ep.host_ifname]
        got = br.interface_info(netns)
        assert got == {"mac": mac_from_ip(addr), "mtu": 1400, "up": True, "addresses": [iface],
                       "gateway": ipam.gateway}
        lo = br.link_info("lo", netns)
        assert lo is not None and "UP" in lo["flags"]
        ok = _ping(netns, ipam.gateway)
        if ok.returncode != 0:  # the port may still be in the bridge's learning state for a moment
            time.sleep(1)
            ok = _ping(netns, ipam.gateway)
        assert ok.returncode == 0, ok.stdout + ok.stderr
    finally:
        assert br.detach(ep) is True
    assert br.detach(ep) is False
    assert _veths_on(bridge_name) == []
    assert br.link_info("eth0", netns) is None


def test_attach_by_proc_pid_path_and_cleanup_on_failure(bridge_name: str, ipam: BridgeIPAM) -> None:
    br.ensure_bridge(bridge_name, ipam.bridge_address)
    holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        deadline = time.monotonic() + 5
        while os.readlink(path) == os.readlink("/proc/self/ns/net") and time.monotonic() < deadline:
            time.sleep(0.02)  # unshare has not switched yet
        addr = IPv4Interface((ipam.subnet.network_address + 3, ipam.subnet.prefixlen))
        ep = br.attach(bridge_name, path, address=addr, gateway=ipam.gateway, mac="02:42:0a:d5:00:03")
        assert br.interface_info(path)["addresses"] == [addr]
        assert _ping(path, ipam.gateway).returncode == 0 or _ping(path, ipam.gateway).returncode == 0

        # a second eth0 cannot be made: the error names ip's message and the half-made veth is gone again
        with pytest.raises(br.IPCommandError) as err:
            br.attach(bridge_name, path, address=addr, gateway=ipam.gateway, mac="02:42:0a:d5:00:04")
        assert "ip" in str(err.value) and err.value.stderr
        assert _veths_on(bridge_name) == [ep.host_ifname]

        # the namespace going away takes its end with it
        holder.kill()
        holder.wait()
        deadline = time.monotonic() + 5
        while br.link_exists(ep.host_ifname) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert br.detach(ep) is False
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_attach_refuses_missing_bridge_and_namespace(bridge_name: str, netns: str, ipam: BridgeIPAM) -> None:
    addr = IPv4Interface((ipam.subnet.network_address + 2, ipam.subnet.prefixlen))
    with pytest.raises(InvalidArgument, match="does not exist"):
        br.attach(bridge_name, netns, address=addr, gateway=None, mac="02:42:00:00:00:02")
    br.ensure_bridge(bridge_name, ipam.bridge_address)
    with pytest.raises(InvalidArgument, match="does not exist"):
        br.attach(bridge_name, "/run/netns/dwt-nonexistent", address=addr, gateway=None, mac="02:42:00:00:00:02")
    assert _veths_on(bridge_name) == []
    # no gateway: no default route
    ep = br.attach(bridge_name, netns, address=addr, gateway=None, mac="02:42:00:00:00:02")
    try:
        assert br.interface_info(netns)["gateway"] is None
    finally:
        br.detach(ep)
