"""The default bridge network end to end: real kernel, runc, the docker CLI, docker-py and testcontainers.

Each test's daemon gets a bridge of the test's own (``--bridge dwt…``, an unused 10.214.x.0/24); "the outside" is
a network namespace the test made, joined to the host by a veth pair, with an HTTP server that reports the address
it was reached from. Nothing leaves the machine; everything is removed afterwards.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Daemon
from netenv import (  # noqa: F401
    Bridge,
    Outside,
    bridge,
    busybox_image,
    free_subnet,
    host_can_network,
    http_get,
    net_daemon,
    nft_tables,
    outside,
    sh,
    veths_on,
)


@pytest.fixture
def nd(tmp_path: Path, bridge: Bridge) -> Iterator[Daemon]:
    d = net_daemon(tmp_path / "d", bridge).start()
    try:
        yield d
    finally:
        d.stop()


def _netns_files(d: Daemon) -> list[str]:
    try:
        return sorted(os.listdir(d.exec_root / "netns"))
    except FileNotFoundError:
        return []


def _ip_of(d: Daemon, cid: str) -> str:
    return d.out("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid)


def _wait_http(url: str, timeout: float = 10.0) -> bytes:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def test_run_reaches_the_outside_through_the_masquerade(nd: Daemon, bridge: Bridge, outside: Outside) -> None:
    img = busybox_image(nd)
    p = nd.docker("run", "--rm", img, "sh", "-c", http_get(outside.address, outside.port, "/file"), check=False)
    assert p.returncode == 0, p.stderr
    # the server saw the host's address on the outside link, not the container's 10.214.x.y: the masquerade
    assert p.stdout.decode() == f"hello from outside /file peer={outside.host_address}\n"
    assert outside.peers() == [outside.host_address]
    # after --rm, nothing of the container is left on the host
    assert veths_on(bridge.name) == [] and _netns_files(nd) == []


def test_inspect_shows_the_endpoint_and_it_is_released(nd: Daemon, bridge: Bridge) -> None:
    img = busybox_image(nd)
    cid = nd.out("run", "-d", img, "sh", "-c", "ip -o -4 addr show eth0; ip link show eth0; ip route; sleep 300")
    st, info = nd.api_json("GET", f"/containers/{cid}/json")
    ns = info["NetworkSettings"]
    ep = ns["Networks"]["bridge"]
    assert ns["IPAddress"] == ep["IPAddress"] and ep["IPAddress"].startswith(bridge.prefix + ".")
    assert ns["Gateway"] == ep["Gateway"] == bridge.gateway and ep["IPPrefixLen"] == 24
    assert re.fullmatch(r"02:42(:[0-9a-f]{2}){4}", ep["MacAddress"]) and len(ep["EndpointID"]) == 64
    assert ep["NetworkID"] == nd.out("network", "inspect", "-f", "{{.Id}}", "bridge")
    # inside: eth0 with that address and MAC, the default route through the gateway
    deadline = time.time() + 5
    while "default" not in (logs := nd.out("logs", cid)) and time.time() < deadline:
        time.sleep(0.05)
    assert f"inet {ep['IPAddress']}/24" in logs and f"link/ether {ep['MacAddress']}" in logs
    assert f"default via {bridge.gateway} dev eth0" in logs
    assert len(veths_on(bridge.name)) == 1 and len(_netns_files(nd)) == 1
    nd.out("stop", "-t", "1", cid)
    st, info = nd.api_json("GET", f"/containers/{cid}/json")
    ep = info["NetworkSettings"]["Networks"]["bridge"]
    assert ep["IPAddress"] == "" and ep["EndpointID"] == "" and ep["NetworkID"]
    assert veths_on(bridge.name) == [] and _netns_files(nd) == []
    nd.out("rm", cid)


def test_two_containers_reach_each_other(nd: Daemon) -> None:
    img = busybox_image(nd)
    server = nd.out("run", "-d", img, "httpd", "-f", "-p", "80", "-h", "/www")
    ip = _ip_of(nd, server)
    p = nd.docker("run", "--rm", img, "sh", "-c",
                  f"for i in 1 2 3 4 5 6 7 8 9 10; do {http_get(ip, 80)} && exit 0; sleep 0.2; done; exit 1",
                  check=False)
    assert p.returncode == 0 and p.stdout == b"hello from the container\n", p.stderr
    nd.out("rm", "-f", server)


def test_none_has_no_route_and_host_sees_the_host(nd: Daemon, bridge: Bridge) -> None:
    img = busybox_image(nd)
    routes = nd.out("run", "--rm", "--network", "none", img, "ip", "route")
    assert routes == ""
    links = nd.out("run", "--rm", "--network", "none", img, "ip", "-o", "link")
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    host_links = nd.out("run", "--rm", "--network", "host", img, "ip", "-o", "link")
    assert bridge.name in host_links
    default_routes = nd.out("run", "--rm", img, "ip", "route")
    assert f"default via {bridge.gateway} dev eth0" in default_routes


def test_published_port_on_loopback_and_docker_port(nd: Daemon) -> None:
    img = busybox_image(nd)
    cid = nd.out("run", "-d", "-p", "127.0.0.1::80", img, "httpd", "-f", "-p", "80", "-h", "/www")
    mapping = nd.out("port", cid)
    m = re.fullmatch(r"80/tcp -> 127\.0\.0\.1:(\d+)", mapping)
    assert m, mapping
    port = int(m.group(1))
    assert nd.out("port", cid, "80") == f"127.0.0.1:{port}"
    assert _wait_http(f"http://127.0.0.1:{port}/") == b"hello from the container\n"
    st, info = nd.api_json("GET", f"/containers/{cid}/json")
    assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    st, rows = nd.api_json("GET", "/containers/json")
    assert [r["Ports"] for r in rows if r["Id"] == cid] == [[{"IP": "127.0.0.1", "PrivatePort": 80,
                                                              "PublicPort": port, "Type": "tcp"}]]
    nd.out("rm", "-f", cid)
    with pytest.raises(OSError):  # released with the container
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_publish_all_with_exposed_ports(nd: Daemon) -> None:
    img = busybox_image(nd)
    cid = nd.out("run", "-d", "-P", "--expose", "80", img, "httpd", "-f", "-p", "80", "-h", "/www")
    mapping = nd.out("port", cid, "80/tcp").splitlines()
    port = int(mapping[0].rsplit(":", 1)[1])
    lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert lo <= port <= hi
    assert _wait_http(f"http://127.0.0.1:{port}/") == b"hello from the container\n"
    if Path("/proc/net/if_inet6").read_text().strip():  # as dockerd: also on [::], the same port
        assert mapping == [f"0.0.0.0:{port}", f"[::]:{port}"]
        assert _wait_http(f"http://[::1]:{port}/") == b"hello from the container\n"
    else:
        assert mapping == [f"0.0.0.0:{port}"]
    nd.out("rm", "-f", cid)


def test_resolv_conf_hosts_and_host_gateway(nd: Daemon, bridge: Bridge) -> None:
    img = busybox_image(nd)
    out = nd.out("run", "--rm", "--add-host", "x:host-gateway", "--add-host", "db:10.1.2.3", "-h", "box", img,
                 "sh", "-c", "cat /etc/hosts; echo ---; ip -4 -o addr show eth0")
    hosts, _, addr = out.partition("---")
    ip = re.search(r"inet (\S+)/24", addr).group(1)  # type: ignore[union-attr]
    assert hosts.strip().splitlines()[-3:] == [f"{bridge.gateway}\tx", "10.1.2.3\tdb", f"{ip}\tbox"]
    assert hosts.startswith("127.0.0.1\tlocalhost\n")
    resolv = nd.out("run", "--rm", "--dns", "10.9.9.9", "--dns-search", "ex.com", "--dns-opt", "ndots:2", img,
                    "cat", "/etc/resolv.conf")
    assert resolv.splitlines() == ["search ex.com", "nameserver 10.9.9.9", "options ndots:2"]
    plain = nd.out("run", "--rm", img, "cat", "/etc/resolv.conf")
    assert "nameserver" in plain and "127.0.0." not in plain


def test_build_run_step_reaches_the_outside(nd: Daemon, outside: Outside, tmp_path: Path) -> None:
    img = busybox_image(nd)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    get = http_get(outside.address, outside.port, "/build")
    (ctx / "Dockerfile").write_text(f"FROM {img}\nRUN {get} > /fetched\nCMD cat /fetched\n")
    p = nd.docker("build", "-t", "fetched:1", str(ctx), check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert nd.out("run", "--rm", "fetched:1") == f"hello from outside /build peer={outside.host_address}"
    again = nd.docker("build", "-t", "fetched:1", str(ctx))
    assert b"Using cache" in again.stdout + again.stderr and len(outside.peers()) == 1
    # docker-py, a RUN that is not cached
    (ctx / "Dockerfile").write_text(f"FROM {img}\nRUN {http_get(outside.address, outside.port, '/build2')}\n")
    client = nd.client()
    image, logs = client.images.build(path=str(ctx), tag="fetched:2")
    assert outside.peers() == [outside.host_address, outside.host_address]
    client.close()


def test_testcontainers_exposed_port(nd: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    tc = pytest.importorskip("testcontainers.core.container")
    img = busybox_image(nd, "busybox:latest")
    monkeypatch.setenv("DOCKER_HOST", nd.host)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")  # the reaper image is not here (no internet)
    container = tc.DockerContainer(img).with_command("httpd -f -p 80 -h /www").with_exposed_ports(80)
    with container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(80)
        assert _wait_http(f"http://{host}:{port}/") == b"hello from the container\n"


def test_kill9_and_restart_keeps_the_survivors_networked(tmp_path: Path, bridge: Bridge) -> None:
    d = net_daemon(tmp_path / "d", bridge).start()
    try:
        img = busybox_image(d)
        ids = [d.out("run", "-d", "-p", "127.0.0.1::80", img, "httpd", "-f", "-p", "80", "-h", "/www")
               for _ in range(3)]
        ips = [_ip_of(d, c) for c in ids]
        ports = [int(d.out("port", c, "80").rsplit(":", 1)[1]) for c in ids]
        short = d.out("run", "-d", "-p", "127.0.0.1::80", img, "sleep", "2")  # ends while the daemon is down
        short_ip, short_ns = _ip_of(d, short), Path(d.out("inspect", "-f", "{{.NetworkSettings.SandboxKey}}", short))
        d.kill9()
        time.sleep(3)
        assert short_ns.exists()  # nobody released it yet
        d.start()
        assert not short_ns.exists() and len(veths_on(bridge.name)) == 3  # released at the restart
        assert d.out("inspect", "-f", "{{.State.Status}} {{.NetworkSettings.IPAddress}}", short) == "exited"
        allocated = json.loads((d.data_root / "network" / "bridge-ipam.json").read_text())["allocations"]
        assert sorted(allocated) == sorted(ips) and short_ip not in allocated
        for c, ip, port in zip(ids, ips, ports, strict=True):
            assert _ip_of(d, c) == ip
            assert _wait_http(f"http://127.0.0.1:{port}/") == b"hello from the container\n"
        new = d.out("run", "-d", img, "sleep", "300")
        assert _ip_of(d, new) not in ips  # no duplicate address handed out
        # a new container reaches a survivor by address
        got = d.out("run", "--rm", img, "sh", "-c", http_get(ips[1], 80))
        assert got == "hello from the container"
        st, net = d.api_json("GET", "/networks/bridge")
        assert st == 200 and sorted(net["Containers"]) == sorted([*ids, new])
        d.out("rename", new, "renamed-survivor")  # the network's view follows a rename
        st, net = d.api_json("GET", "/networks/bridge")
        assert net["Containers"][new]["Name"] == "renamed-survivor"
        for c in [*ids, new, short]:
            d.out("rm", "-f", c)
        assert veths_on(bridge.name) == [] and _netns_files(d) == []
        assert d.out("network", "ls", "--format", "{{.Name}} {{.Driver}}").splitlines() == \
            ["bridge bridge", "host host", "none null"]
    finally:
        d.stop()
    assert f"dockwright_{bridge.name}" not in nft_tables()  # a clean stop removes its rules


def test_network_ids_are_stable_across_restarts(tmp_path: Path, bridge: Bridge) -> None:
    d = net_daemon(tmp_path / "d", bridge).start()
    try:
        first = d.out("network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}")
        d.stop()
        d.start()
        assert d.out("network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}") == first
        st, body = d.api_json("GET", "/networks/nope")
        assert st == 404 and body == {"message": "network nope not found"}
    finally:
        d.stop()


def test_without_the_bridge_the_daemon_runs_and_ports_get_a_clear_error(tmp_path: Path, bridge: Bridge) -> None:
    d = Daemon(tmp_path / "d", "--bridge", "dwtmissing0").start()  # names a bridge that does not exist
    try:
        img = busybox_image(d)
        assert d.out("run", "--rm", img, "ip", "-o", "link").count(":") >= 1  # a loopback-only namespace
        p = d.docker("run", "--rm", "-p", "8080:80", img, "true", check=False)
        assert p.returncode != 0 and b"bridge network is not available" in p.stderr
        warnings = [line for line in d.log().splitlines() if "WARNING dockwright.network" in line]
        assert len(warnings) == 1 and "bridge device dwtmissing0 not found" in warnings[0]  # logged once
    finally:
        d.stop()


def test_iptables_false_installs_no_rules(tmp_path: Path, bridge: Bridge) -> None:
    d = net_daemon(tmp_path / "d", bridge, "--iptables=false").start()
    try:
        assert f"dockwright_{bridge.name}" not in nft_tables()
        img = busybox_image(d)
        out = d.out("run", "--rm", img, "ip", "route")
        assert f"default via {bridge.gateway}" in out
    finally:
        d.stop()


def _bridge_json(d: Daemon) -> dict:  # type: ignore[type-arg]
    return json.loads(d.out("network", "inspect", "bridge"))[0]


def test_the_daemon_makes_its_default_bridge(tmp_path: Path) -> None:
    """Without --bridge, the daemon creates dockwright0 with dockerd's default subnet (or --bip's), installs its
    table, and removes the table (not the bridge, as docker0) at a clean stop."""
    reason = host_can_network()
    if reason:
        pytest.skip(reason)
    if sh("ip", "link", "show", "dockwright0", check=False).returncode == 0:
        pytest.skip("dockwright0 exists already on this host (another dockwright daemon owns it)")
    prefix = free_subnet(216)
    d = Daemon(tmp_path / "d", "--bridge", "dockwright0", "--bip", f"{prefix}.1/24", "--mtu", "1400")
    try:
        d.start()
        link = json.loads(sh("ip", "-j", "-d", "addr", "show", "dockwright0").stdout)[0]
        assert link["linkinfo"]["info_kind"] == "bridge" and link["mtu"] == 1400
        assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] == \
            [(f"{prefix}.1", 24)]
        assert "dockwright_dockwright0" in nft_tables()
        img = busybox_image(d)
        out = d.out("run", "--rm", img, "sh", "-c", "ip -o -4 addr show eth0; ip link show eth0")
        assert f"inet {prefix}.2/24" in out and "mtu 1400" in out
        net = json.loads(d.out("network", "inspect", "bridge"))[0]
        assert net["IPAM"]["Config"] == [{"Subnet": f"{prefix}.0/24", "Gateway": f"{prefix}.1"}]
        assert net["Options"]["com.docker.network.bridge.name"] == "dockwright0"
        d.stop()
        assert "dockwright_dockwright0" not in nft_tables()
        # a restart keeps the bridge's address (dockerd's selectBIP) and the network's ID
        d2 = Daemon(tmp_path / "d", "--bridge", "dockwright0").start()
        assert json.loads(d2.out("network", "inspect", "bridge"))[0]["Id"] == net["Id"]
        assert json.loads(d2.out("network", "inspect", "bridge"))[0]["IPAM"]["Config"][0]["Subnet"] == \
            f"{prefix}.0/24"
        d2.stop()
    finally:
        d.stop()
        sh("ip", "link", "del", "dockwright0", check=False)


def test_without_a_packet_filter_ports_go_through_the_proxy(tmp_path: Path, bridge: Bridge) -> None:
    """A host without nft and iptables: the daemon says so once, containers still get the bridge, and published
    ports work for loopback clients through the userland proxy."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("ip", "runc", "nsenter", "tar", "unshare", "mount", "umount", "busybox"):
        path = shutil.which(tool)
        if path:
            (tools / tool).symlink_to(path)
    d = net_daemon(tmp_path / "d", bridge)
    d.env = {"PATH": f"{tools}:/usr/local/bin:/usr/bin:/bin"}  # /usr/sbin (nft, iptables) is not on it
    try:
        d.start()
        warnings = [line for line in d.log().splitlines() if "WARNING dockwright.network" in line]
        assert len(warnings) == 1 and "no packet filter rules" in warnings[0], warnings
        assert f"dockwright_{bridge.name}" not in nft_tables()
        img = busybox_image(d)
        cid = d.out("run", "-d", "-p", "127.0.0.1::80", img, "httpd", "-f", "-p", "80", "-h", "/www")
        port = int(d.out("port", cid, "80").rsplit(":", 1)[1])
        assert _wait_http(f"http://127.0.0.1:{port}/") == b"hello from the container\n"
        d.out("rm", "-f", cid)
    finally:
        d.stop()


def test_a_configuration_dockerd_refuses_stops_the_daemon(tmp_path: Path, bridge: Bridge) -> None:
    d = Daemon(tmp_path / "d", "--bridge", bridge.name, "--bip", "10.214.0.1/24")
    with pytest.raises(RuntimeError, match="daemon exited with 1"):
        d.start()
    assert "You specified -b & --bip, mutually exclusive options. Please specify only one" in d.log()
    d.proc = None
    bad = Daemon(tmp_path / "e", "--bridge", "dockwright0", "--bip", "10.214.0.0/24")  # the network's own address
    with pytest.raises(RuntimeError, match="daemon exited with 1"):
        bad.start()
    assert "invalid bridge address 10.214.0.0/24" in bad.log()
    bad.proc = None
    assert f"dockwright_{bridge.name}" not in nft_tables() and sh("ip", "link", "show", "dockwright0",
                                                                   check=False).returncode != 0


def test_containers_start_in_parallel_with_distinct_addresses(nd: Daemon, bridge: Bridge) -> None:
    img = busybox_image(nd)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(lambda _: nd.out("run", "-d", img, "sleep", "60"), range(6)))
    addresses = [_ip_of(nd, c) for c in ids]
    assert len(set(addresses)) == 6 and all(a.startswith(bridge.prefix + ".") for a in addresses)
    assert len(veths_on(bridge.name)) == 6 and len(_netns_files(nd)) == 6
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda c: nd.out("rm", "-f", c), ids))
    assert veths_on(bridge.name) == [] and _netns_files(nd) == []


def test_without_the_userland_proxy_loopback_goes_through_dnat(tmp_path: Path, bridge: Bridge) -> None:
    d = net_daemon(tmp_path / "d", bridge, "--userland-proxy=false").start()
    try:
        img = busybox_image(d)
        cid = d.out("run", "-d", "-p", "127.0.0.1::80", img, "httpd", "-f", "-p", "80", "-h", "/www")
        port = int(d.out("port", cid, "80").rsplit(":", 1)[1])
        assert _wait_http(f"http://127.0.0.1:{port}/") == b"hello from the container\n"
        # no listener of the daemon's own on that port: the kernel's DNAT answered
        listeners = sh("ss", "-Htlnp", f"sport = :{port}", check=False).stdout
        assert "python" not in listeners
        assert Path(f"/proc/sys/net/ipv4/conf/{bridge.name}/route_localnet").read_text().strip() == "1"
        d.out("rm", "-f", cid)
    finally:
        d.stop()


def test_icc_false_separates_containers(tmp_path: Path, bridge: Bridge) -> None:
    d = net_daemon(tmp_path / "d", bridge, "--icc=false").start()
    try:
        img = busybox_image(d)
        server = d.out("run", "-d", img, "httpd", "-f", "-p", "80", "-h", "/www")
        ip = _ip_of(d, server)
        assert _wait_http(f"http://{ip}/") == b"hello from the container\n"  # up, and the host reaches it
        p = d.docker("run", "--rm", img, "sh", "-c", http_get(ip, 80), check=False)
        assert p.returncode != 0 and b"hello" not in p.stdout
        # the gateway (the host) is still reachable from a container: only container-to-container is dropped
        gw = d.docker("run", "--rm", img, "ping", "-c", "1", "-W", "2", bridge.gateway, check=False)
        assert gw.returncode == 0, gw.stdout + gw.stderr
        d.out("rm", "-f", server)
    finally:
        d.stop()


def test_build_network_modes_and_extra_hosts(nd: Daemon, bridge: Bridge, outside: Outside, tmp_path: Path) -> None:
    img = busybox_image(nd)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    get = http_get(outside.address, outside.port, "/none")
    (ctx / "Dockerfile").write_text(f"FROM {img}\nRUN {get}\n")
    p = nd.docker("build", "--network", "none", str(ctx), check=False)
    assert p.returncode != 0 and outside.peers() == []  # no route out of a `none` step
    (ctx / "Dockerfile").write_text(f"FROM {img}\nRUN grep -E 'gw|db' /etc/hosts > /h && ip route > /r\n"
                                    f"RUN cat /h /r\n")
    out = nd.docker("build", "--no-cache", "--add-host", "gw:host-gateway", "--add-host", "db:10.1.2.3",
                    str(ctx)).stdout.decode()
    assert f"{bridge.gateway}\tgw" in out and "10.1.2.3\tdb" in out  # every step gets the extra hosts
    assert f"default via {bridge.gateway} dev eth0" in out
    (ctx / "Dockerfile").write_text(f"FROM {img}\nRUN ip route\n")
    hostnet = nd.docker("build", "--no-cache", "--network", "host", str(ctx), check=False)
    assert hostnet.returncode == 0 and bridge.name in hostnet.stdout.decode()  # the host's routes
