"""network.ipam: dockerd's pool choice against fake host routes, the default bridge's configuration from
--bip/--fixed-cidr/--bridge, the persistent address allocator, MAC derivation. Pure: nothing touches the host."""

from __future__ import annotations

import json
import threading
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from dockwright.errors import Conflict, InvalidArgument
from dockwright.network.ipam import (
    DEFAULT_ADDRESS_POOLS,
    DEFAULT_BRIDGE_NAME,
    AddressAllocator,
    AddressesExhausted,
    AddressInUse,
    AddressOutOfRange,
    AddressPool,
    BridgeIPAM,
    NoMoreSubnets,
    Route,
    choose_subnet,
    default_bridge_ipam,
    mac_from_ip,
    nameserver_networks,
    parse_address_pools,
    parse_ip_route_json,
    parse_proc_net_route,
    random_mac,
    reserved_networks,
)

N = IPv4Network


# ------------------------------------------------------------------------------------------------ pools / routes


def test_default_pools_are_mobys() -> None:
    assert DEFAULT_BRIDGE_NAME == "dockwright0"
    assert [(str(p.base), p.size) for p in DEFAULT_ADDRESS_POOLS] == [
        ("172.17.0.0/16", 16), ("172.18.0.0/16", 16), ("172.19.0.0/16", 16), ("172.20.0.0/14", 16),
        ("172.24.0.0/14", 16), ("172.28.0.0/14", 16), ("192.168.0.0/16", 20),
    ]


def test_nothing_reserved_gives_172_17() -> None:
    assert choose_subnet(reserved=[]) == N("172.17.0.0/16")
    conf = default_bridge_ipam(reserved=[])
    assert conf == BridgeIPAM(N("172.17.0.0/16"), IPv4Address("172.17.0.1"))
    assert str(conf.bridge_address) == "172.17.0.1/16"


@pytest.mark.parametrize(
    ("reserved", "expected"),
    [
        (["172.17.0.0/16"], "172.18.0.0/16"),
        (["172.17.5.0/24"], "172.18.0.0/16"),  # a partial overlap takes the whole /16 out
        (["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16"], "172.20.0.0/16"),
        (["172.16.0.0/12"], "192.168.0.0/20"),  # one big route covers every 172 pool
        (["172.16.0.0/12", "192.168.0.0/20"], "192.168.16.0/20"),
        (["172.16.0.0/12", "192.168.1.0/24"], "192.168.16.0/20"),
        (["172.16.0.0/12", "192.168.20.7/32"], "192.168.0.0/20"),
        (["172.20.0.0/16", "172.17.0.0/16"], "172.18.0.0/16"),  # unsorted input
    ],
)
def test_pool_choice_skips_reserved(reserved: list[str], expected: str) -> None:
    assert choose_subnet(reserved=[N(r) for r in reserved]) == N(expected)


def test_pool_choice_skips_allocated_and_exhausts() -> None:
    allocated = [N("172.17.0.0/16"), N("172.21.0.0/16")]
    assert choose_subnet(reserved=[N("172.18.0.0/15")], allocated=allocated) == N("172.20.0.0/16")
    assert choose_subnet(reserved=[N("172.16.0.0/12"), N("192.168.0.0/17")]) == N("192.168.128.0/20")
    with pytest.raises(NoMoreSubnets, match="all predefined address pools have been fully subnetted"):
        choose_subnet(reserved=[N("172.16.0.0/12"), N("192.168.0.0/16")])


def test_custom_pools_replace_the_defaults_and_large_pools_are_cheap() -> None:
    pools = parse_address_pools(["base=10.10.0.0/16,size=24"])
    assert pools == [AddressPool(N("10.10.0.0/16"), 24)]
    assert choose_subnet(pools, reserved=[N("10.10.0.0/24"), N("10.10.1.128/25")]) == N("10.10.2.0/24")
    big = parse_address_pools([{"base": "10.0.0.0/8", "size": 30}, {"base": "fd00::/8", "size": 64}])
    assert big == [AddressPool(N("10.0.0.0/8"), 30)]  # IPv6 is a later slice
    assert choose_subnet(big, reserved=[N("10.0.0.0/9"), N("10.128.0.0/30")]) == N("10.128.0.4/30")
    with pytest.raises(InvalidArgument):
        parse_address_pools(["base=10.0.0.0/16,size=8"])
    with pytest.raises(InvalidArgument):
        parse_address_pools(["base=10.0.0.0/16"])
    with pytest.raises(InvalidArgument):
        parse_address_pools(["base=10.0.0.0/16,siz=24"])


IP_ROUTE_JSON = json.dumps([
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0", "flags": []},
    {"dst": "172.17.0.0/16", "dev": "docker0", "protocol": "kernel", "scope": "link", "prefsrc": "172.17.0.1",
     "flags": ["linkdown"]},
    {"dst": "172.18.0.0/16", "gateway": "192.0.2.9", "dev": "eth0", "flags": []},  # not on-link: not reserved
    {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "192.0.2.2",
     "flags": []},
])

PROC_NET_ROUTE = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
    "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    "eth0\t000012AC\t090200C0\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
)


@pytest.mark.parametrize("routes", [parse_ip_route_json(IP_ROUTE_JSON), parse_proc_net_route(PROC_NET_ROUTE)])
def test_host_route_sources_agree_and_a_routed_172_17_moves_the_bridge(routes: list[Route]) -> None:
    assert [(str(r.dst) if r.dst else None, r.scope) for r in routes] == [
        (None, "global"), ("172.17.0.0/16", "link"), ("172.18.0.0/16", "global"), ("192.0.2.0/24", "link"),
    ]
    reserved = reserved_networks(routes, nameservers=[N("10.255.255.53/32")])
    assert reserved == [N("10.255.255.53/32"), N("172.17.0.0/16"), N("192.0.2.0/24")]
    # a docker0 on the same host holds 172.17/16: dockwright0 takes the next pool, as a second dockerd would
    assert default_bridge_ipam(reserved=reserved) == BridgeIPAM(N("172.18.0.0/16"), IPv4Address("172.18.0.1"))


def test_nameservers() -> None:
    text = "# c\nnameserver 172.17.0.53\nnameserver ::1\nnameserver fe80::1%eth0\nsearch x\nnameserver bad\n"
    assert nameserver_networks(text) == [N("172.17.0.53/32")]
    assert choose_subnet(reserved=nameserver_networks(text)) == N("172.18.0.0/16")


# ------------------------------------------------------------------------------------------------ bip / fixed-cidr


def test_bip_gives_subnet_and_gateway() -> None:
    conf = default_bridge_ipam(bip="192.168.1.5/24", reserved=[N("192.168.1.0/24")])  # bip wins over routes
    assert conf == BridgeIPAM(N("192.168.1.0/24"), IPv4Address("192.168.1.5"))
    # the docs' example
    conf = default_bridge_ipam(bip="192.168.1.1/24", fixed_cidr="192.168.1.0/25")
    assert (conf.subnet, conf.gateway, conf.sub_pool) == (N("192.168.1.0/24"), IPv4Address("192.168.1.1"),
                                                          N("192.168.1.0/25"))
    assert conf.allocation_range == N("192.168.1.0/25")


@pytest.mark.parametrize("bad", ["10.1.2.3", "10.1.2.3/33", "nope/8", "10.1.2.0/24", "10.1.2.255/24"])
def test_bad_bip(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        default_bridge_ipam(bip=bad, reserved=[])


def test_fixed_cidr_alone_is_the_subnet() -> None:
    conf = default_bridge_ipam(fixed_cidr="10.20.0.0/24", reserved=[])
    assert conf == BridgeIPAM(N("10.20.0.0/24"), IPv4Address("10.20.0.1"), N("10.20.0.0/24"))
    with pytest.raises(InvalidArgument, match="not within"):
        default_bridge_ipam(bip="10.1.0.1/16", fixed_cidr="10.2.0.0/24")


def test_user_managed_bridge() -> None:
    with pytest.raises(InvalidArgument, match="-b & --bip, mutually exclusive"):
        default_bridge_ipam(bridge="br0", bip="10.0.0.1/24")
    addrs = [IPv4Interface("10.9.0.1/24"), IPv4Interface("10.8.0.254/16")]
    conf = default_bridge_ipam(bridge="br0", bridge_addresses=addrs, reserved=[])
    assert conf == BridgeIPAM(N("10.9.0.0/24"), IPv4Address("10.9.0.1"))
    conf = default_bridge_ipam(bridge="br0", bridge_addresses=addrs, fixed_cidr="10.8.4.0/24", reserved=[])
    assert conf == BridgeIPAM(N("10.8.0.0/16"), IPv4Address("10.8.0.254"), N("10.8.4.0/24"))
    # fixed-cidr outside every bridge address: dockerd warns and allocates from the whole subnet
    conf = default_bridge_ipam(bridge="br0", bridge_addresses=addrs[:1], fixed_cidr="10.7.0.0/24", reserved=[])
    assert conf == BridgeIPAM(N("10.9.0.0/24"), IPv4Address("10.9.0.1"), None)


def test_existing_daemon_bridge_address_is_kept_unless_fixed_cidr_moved() -> None:
    existing = [IPv4Interface("10.50.0.7/24")]
    assert default_bridge_ipam(bridge_addresses=existing, reserved=[]) == BridgeIPAM(
        N("10.50.0.0/24"), IPv4Address("10.50.0.7"))
    # fixed-cidr bigger than the bridge's subnet: keep the address, widen the subnet
    conf = default_bridge_ipam(bridge_addresses=existing, fixed_cidr="10.50.0.0/16", reserved=[])
    assert conf == BridgeIPAM(N("10.50.0.0/16"), IPv4Address("10.50.0.7"), N("10.50.0.0/16"))
    # fixed-cidr elsewhere: the old address is ignored
    conf = default_bridge_ipam(bridge_addresses=existing, fixed_cidr="10.60.0.0/24", reserved=[])
    assert conf == BridgeIPAM(N("10.60.0.0/24"), IPv4Address("10.60.0.1"), N("10.60.0.0/24"))


# ------------------------------------------------------------------------------------------------ allocator


def _conf(subnet: str = "10.213.7.0/29", gateway: str | None = None, sub: str | None = None) -> BridgeIPAM:
    net = N(subnet)
    return BridgeIPAM(net, IPv4Address(gateway) if gateway else net.network_address + 1, N(sub) if sub else None)


def test_allocation_order_reserved_addresses_and_exhaustion(tmp_path) -> None:
    alloc = AddressAllocator(tmp_path / "ipam.json", _conf())  # .0 net, .1 gw, .7 broadcast: .2-.6 free
    assert alloc.capacity == 5
    got = [alloc.allocate(f"c{i}") for i in range(5)]
    assert [str(a) for a in got] == ["10.213.7.2", "10.213.7.3", "10.213.7.4", "10.213.7.5", "10.213.7.6"]
    with pytest.raises(AddressesExhausted, match="no available addresses on this pool"):
        alloc.allocate("c5")
    assert alloc.allocate("c3") == IPv4Address("10.213.7.5")  # an owner asking again gets its own back


def test_release_and_lowest_first_reuse(tmp_path) -> None:
    alloc = AddressAllocator(tmp_path / "ipam.json", _conf("10.213.8.0/24"))
    a, b, c = (alloc.allocate(o) for o in "abc")
    assert alloc.release(b) == "b"
    assert alloc.release(b) is None  # twice is harmless
    assert alloc.allocate("d") == b
    assert alloc.release_owner("a") == a
    assert alloc.release_owner("a") is None
    assert alloc.allocate("e") == a
    assert alloc.allocations() == {a: "e", b: "d", c: "c"}


def test_persistence_across_instances(tmp_path) -> None:
    path = tmp_path / "sub" / "ipam.json"
    first = AddressAllocator(path, _conf("10.213.9.0/24"))
    a = first.allocate("one")
    b = first.allocate("two", preferred="10.213.9.200")
    first.allocate("three")
    first.release(a)
    del first
    state = json.loads(path.read_text())
    assert state["subnet"] == "10.213.9.0/24" and state["gateway"] == "10.213.9.1"
    assert state["allocations"] == {"10.213.9.200": "two", "10.213.9.3": "three"}
    assert not [p for p in path.parent.iterdir() if p.name != "ipam.json"]  # no temporary files left

    second = AddressAllocator(path, _conf("10.213.9.0/24"))  # the daemon restarted
    assert second.allocations() == {IPv4Address("10.213.9.3"): "three", b: "two"}
    assert second.address_of("two") == b
    assert second.allocate("four") == a
    with pytest.raises(AddressInUse):
        second.allocate("five", preferred=b)


def test_preferred_addresses(tmp_path) -> None:
    alloc = AddressAllocator(tmp_path / "ipam.json", _conf("10.213.10.0/24", sub="10.213.10.128/25"))
    assert alloc.allocate("x") == IPv4Address("10.213.10.128")  # the sub-pool's first (not the subnet's network)
    assert alloc.allocate("y", preferred="10.213.10.9") == IPv4Address("10.213.10.9")  # anywhere in the subnet
    for bad in ("10.213.10.1", "10.213.10.0", "10.213.10.255"):
        with pytest.raises(AddressInUse):
            alloc.allocate("z", preferred=bad)
    with pytest.raises(AddressOutOfRange):
        alloc.allocate("z", preferred="10.213.11.2")
    with pytest.raises(Conflict):
        alloc.allocate("x", preferred="10.213.10.50")


def test_changed_subnet_keeps_what_fits(tmp_path) -> None:
    path = tmp_path / "ipam.json"
    old = AddressAllocator(path, _conf("10.213.12.0/24"))
    old.allocate("a")  # .2
    old.allocate("b", preferred="10.213.12.130")
    new = AddressAllocator(path, _conf("10.213.12.128/25"))
    assert new.allocations() == {IPv4Address("10.213.12.130"): "b"}
    assert new.dropped == {IPv4Address("10.213.12.2"): "a"}
    assert json.loads(path.read_text())["subnet"] == "10.213.12.128/25"


def test_unreadable_state_is_an_error(tmp_path) -> None:
    path = tmp_path / "ipam.json"
    path.write_text("{not json")
    with pytest.raises(Conflict, match="unreadable"):
        AddressAllocator(path, _conf())


def test_concurrent_allocations_are_distinct(tmp_path) -> None:
    alloc = AddressAllocator(tmp_path / "ipam.json", _conf("10.213.13.0/24"))
    out: list[IPv4Address] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        a = alloc.allocate(f"w{i}")
        with lock:
            out.append(a)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 40
    assert len(AddressAllocator(tmp_path / "ipam.json", _conf("10.213.13.0/24")).allocations()) == 40


def test_slash_31(tmp_path) -> None:
    alloc = AddressAllocator(tmp_path / "a.json", BridgeIPAM(N("10.213.14.0/31"), IPv4Address("10.213.14.0")))
    assert alloc.allocate("p") == IPv4Address("10.213.14.1")
    with pytest.raises(AddressesExhausted):
        alloc.allocate("q")


# ------------------------------------------------------------------------------------------------ MAC


def test_mac_from_ip() -> None:
    assert mac_from_ip("172.17.0.2") == "02:42:ac:11:00:02"
    assert mac_from_ip(IPv4Address("192.168.255.254")) == "02:42:c0:a8:ff:fe"


def test_random_mac_is_local_unicast() -> None:
    macs = {random_mac() for _ in range(64)}
    assert len(macs) > 60
    for m in macs:
        first = int(m.split(":")[0], 16)
        assert first & 0x01 == 0 and first & 0x02 == 2 and len(m) == 17
