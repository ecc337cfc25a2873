"""network.port_allocator: the host port allocator as libnetwork's (explicit ports, ranges, sequential ephemeral
ports, conflicts between 0.0.0.0 and specific addresses, all-or-nothing, release, restore), ports another socket of
the host holds (skipped or refused: real sockets on 127.0.0.1 only)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from dockwright.errors import InvalidArgument, NotSupported, SystemError_
from dockwright.network.endpoint import PortMapping
from dockwright.network.port_allocator import (
    DEFAULT_PORT_RANGE,
    HostPortInUse,
    HostPortUnavailable,
    PortAllocator,
    PortAlreadyAllocated,
    PortsExhausted,
    dynamic_port_range,
    parse_reserved_ports,
)
from dockwright.network.ports import Binding, format_host_addr, requested_ports

# ---------------------------------------------------------------------------------------------------- host


def test_dynamic_port_range(tmp_path) -> None:
    f = tmp_path / "range"
    f.write_text("32768\t60999\n")
    assert dynamic_port_range(f) == (32768, 60999)
    f.write_text("garbage\n")
    assert dynamic_port_range(f) == DEFAULT_PORT_RANGE == (49153, 65535)
    assert dynamic_port_range(tmp_path / "missing") == DEFAULT_PORT_RANGE
    begin, end = dynamic_port_range()  # the kernel's
    assert 0 < begin <= end <= 65535


def test_reserved_ports() -> None:
    assert parse_reserved_ports("", 1, 65535) == frozenset()
    assert parse_reserved_ports("8080,9148\n", 1, 65535) == {8080, 9148}
    assert parse_reserved_ports("30000-30003,40000", 30001, 35000) == {30001, 30002, 30003}
    with pytest.raises(InvalidArgument):
        parse_reserved_ports("x", 1, 65535)


def test_format_host_addr() -> None:
    assert format_host_addr("", 80) == "0.0.0.0:80"
    assert format_host_addr("127.0.0.1", 80) == "127.0.0.1:80"
    assert format_host_addr("::1", 80) == "[::1]:80"


# ---------------------------------------------------------------------------------------------------- allocator


def _alloc(port_range: tuple[int, int] = (40000, 40009), **kw) -> PortAllocator:
    kw.setdefault("probe", False)
    kw.setdefault("reserved", ())
    return PortAllocator(port_range, **kw)


def test_ephemeral_ports_are_sequential_and_wrap_around() -> None:
    a = _alloc((40000, 40004))
    got = [a.allocate(f"c{i}", [Binding(80, "tcp")])[0].host_port for i in range(3)]
    assert got == [40000, 40001, 40002]
    a.release("c0")
    # after the last one given, not the lowest free one (libnetwork)
    assert a.allocate("c3", [Binding(80, "tcp")])[0].host_port == 40003
    assert a.allocate("c4", [Binding(80, "tcp")])[0].host_port == 40004
    assert a.allocate("c5", [Binding(80, "tcp")])[0].host_port == 40000  # wrapped, 40000 free again
    with pytest.raises(PortsExhausted, match="^all ports are allocated$"):
        a.allocate("c6", [Binding(80, "tcp")])
    # per protocol: udp has the whole range
    assert a.allocate("c6", [Binding(53, "udp")])[0].host_port == 40000


def test_default_range_is_the_kernels() -> None:
    a = PortAllocator(probe=False)
    assert a.port_range == dynamic_port_range()
    m = a.allocate("c1", [Binding(80, "tcp")])[0]
    assert a.port_range[0] <= m.host_port <= a.port_range[1]


def test_reserved_ports_are_skipped_for_ephemeral_ports_only() -> None:
    a = _alloc((40000, 40004), reserved={40000, 40001})
    assert a.allocate("c1", [Binding(80, "tcp")])[0].host_port == 40002
    assert a.allocate("c2", [Binding(80, "tcp", "", 40000, 40003)])[0].host_port == 40000
    assert a.allocate("c3", [Binding(80, "tcp", "", 40001, 40001)])[0].host_port == 40001


def test_range_gives_the_first_free_port_of_the_range() -> None:
    a = _alloc()
    assert a.allocate("c1", [Binding(80, "tcp", "", 8000, 8010)]) == [PortMapping(80, "tcp", "", 8000)]
    assert a.allocate("c2", [Binding(80, "tcp", "", 8000, 8010)]) == [PortMapping(80, "tcp", "", 8001)]
    a.allocate("c3", [Binding(80, "tcp", "", 8002, 8002)])
    assert a.allocate("c4", [Binding(80, "tcp", "", 8000, 8010)]) == [PortMapping(80, "tcp", "", 8003)]
    with pytest.raises(PortsExhausted):
        a.allocate("c5", [Binding(80, "tcp", "", 8000, 8001)])


def test_explicit_port_conflicts_with_dockerd_message() -> None:
    a = _alloc()
    assert a.allocate("c1", [Binding(80, "tcp", "", 8080, 8080)]) == [PortMapping(80, "tcp", "", 8080)]
    with pytest.raises(PortAlreadyAllocated) as exc:
        a.allocate("c2", [Binding(81, "tcp", "", 8080, 8080)])
    assert str(exc.value) == "Bind for 0.0.0.0:8080 failed: port is already allocated"
    assert isinstance(exc.value, SystemError_)  # dockerd answers 500
    # a specific address conflicts with 0.0.0.0 …
    with pytest.raises(PortAlreadyAllocated, match=r"^Bind for 0\.0\.0\.0:8080 failed"):
        a.allocate("c2", [Binding(81, "tcp", "127.0.0.1", 8080, 8080)])
    # … other protocols and IPv6 addresses do not
    a.allocate("c2", [Binding(81, "udp", "", 8080, 8080), Binding(81, "tcp", "::1", 8080, 8080)])
    assert a.owner_of("udp", "", 8080) == "c2"
    assert a.owner_of("tcp", "0.0.0.0", 8080) == "c1"


def test_unspecified_address_conflicts_with_a_specific_one() -> None:
    a = _alloc()
    a.allocate("c1", [Binding(80, "tcp", "127.0.0.1", 8080, 8080)])
    a.allocate("c2", [Binding(80, "tcp", "127.0.0.2", 8080, 8080)])  # another address: fine
    with pytest.raises(PortAlreadyAllocated, match=r"^Bind for 127\.0\.0\.[12]:8080 failed: port is already"):
        a.allocate("c3", [Binding(80, "tcp", "", 8080, 8080)])
    with pytest.raises(PortAlreadyAllocated, match=r"^Bind for 127\.0\.0\.1:8080 failed"):
        a.allocate("c3", [Binding(80, "tcp", "127.0.0.1", 8080, 8080)])


def test_allocation_is_all_or_nothing() -> None:
    a = _alloc()
    a.allocate("c1", [Binding(80, "tcp", "", 8081, 8081)])
    with pytest.raises(PortAlreadyAllocated):
        a.allocate("c2", [Binding(80, "tcp", "", 8080, 8080), Binding(80, "tcp", "", 8081, 8081)])
    assert a.owner_of("tcp", "", 8080) is None
    assert "c2" not in a.allocations()
    # the same binding twice in one call: the second finds the first
    with pytest.raises(PortAlreadyAllocated):
        a.allocate("c2", [Binding(80, "tcp", "", 8090, 8090), Binding(81, "tcp", "", 8090, 8090)])
    assert a.owner_of("tcp", "", 8090) is None


def test_bindings_differing_only_in_host_address_get_the_same_port() -> None:
    a = _alloc()
    a.allocate("c0", [Binding(1, "tcp", "127.0.0.2", 0, 0)])  # 40000 is taken on 127.0.0.2 only
    got = a.allocate("c1", requested_ports(None, {"80/tcp": [{"HostIp": "127.0.0.1"}, {"HostIp": "127.0.0.2"}]},
                                           False))
    assert [m.host_ip for m in got] == ["127.0.0.1", "127.0.0.2"]
    assert got[0].host_port == got[1].host_port == 40001


def test_release_and_restore() -> None:
    a = _alloc()
    mappings = a.allocate("c1", requested_ports({"80/tcp": {}}, {"53/udp": [{"HostPort": "5353"}]}, True))
    assert mappings == [PortMapping(53, "udp", "", 5353), PortMapping(80, "tcp", "", 40000)]
    assert a.allocations() == {"c1": mappings}
    assert a.release("c1") == mappings
    assert a.release("c1") == []
    assert a.allocations() == {}
    a.allocate("c2", [Binding(80, "tcp", "", 5353, 5353)])  # released: can be taken again

    # a restarted daemon: a new allocator, the recorded mappings restored before anything else is allocated
    b = _alloc()
    b.restore("c1", mappings)
    b.restore("c1", mappings)  # idempotent
    assert b.allocations() == {"c1": mappings}
    assert b.owner_of("tcp", "", 40000) == "c1"
    with pytest.raises(PortAlreadyAllocated, match=r"^Bind for 0\.0\.0\.0:5353 failed"):
        b.allocate("c2", [Binding(53, "udp", "127.0.0.1", 5353, 5353)])
    with pytest.raises(PortAlreadyAllocated):
        b.restore("c3", [PortMapping(1, "tcp", "", 7000), PortMapping(80, "tcp", "", 40000)])
    assert b.owner_of("tcp", "", 7000) is None  # nothing of c3 was restored
    b.release("c1")
    assert b.allocations() == {}


def test_concurrent_allocations_get_distinct_ports() -> None:
    a = _alloc((41000, 41999))
    results: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        for j in range(20):
            port = a.allocate(f"c{i}-{j}", [Binding(80, "tcp")])[0].host_port
            with lock:
                results.append(port)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 160 and len(set(results)) == 160


def test_sctp_allocation_is_refused() -> None:
    with pytest.raises(NotSupported):
        _alloc().allocate("c1", [Binding(132, "sctp", "", 132, 132)])


# ---------------------------------------------------------------------------------------------------- host sockets


@pytest.fixture
def busy_tcp() -> Iterator[int]:
    """A port another "process" listens on, on 127.0.0.1 (picked by the kernel)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture
def busy_udp() -> Iterator[int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def test_explicit_port_in_use_on_the_host_is_refused(busy_tcp: int) -> None:
    a = PortAllocator((40000, 40009), reserved=())
    with pytest.raises(HostPortInUse) as exc:
        a.allocate("c1", [Binding(80, "tcp", "127.0.0.1", busy_tcp, busy_tcp)])
    assert str(exc.value) == f"failed to bind host port 127.0.0.1:{busy_tcp}/tcp: address already in use"
    assert a.allocations() == {}
    # udp on the same port is another socket
    got = a.allocate("c1", [Binding(80, "udp", "127.0.0.1", busy_tcp, busy_tcp)])
    assert got[0].host_port == busy_tcp


def test_explicit_udp_port_in_use_on_the_host_is_refused(busy_udp: int) -> None:
    a = PortAllocator((40000, 40009), reserved=())
    with pytest.raises(HostPortInUse, match=f"^failed to bind host port 127.0.0.1:{busy_udp}/udp: address already"):
        a.allocate("c1", [Binding(53, "udp", "127.0.0.1", busy_udp, busy_udp)])


def test_ports_in_use_on_the_host_are_skipped(busy_tcp: int) -> None:
    # the busy port is the first of the (allocator's) ephemeral range and of a requested range
    a = PortAllocator((busy_tcp, min(busy_tcp + 200, 65535)), reserved=())
    got = a.allocate("c1", [Binding(80, "tcp", "127.0.0.1")])[0].host_port
    assert busy_tcp < got <= busy_tcp + 200
    s = socket.socket()  # and it was free indeed: the probe socket is gone
    s.bind(("127.0.0.1", got))
    s.close()
    end = min(busy_tcp + 200, 65535)
    got = a.allocate("c2", [Binding(80, "tcp", "127.0.0.1", busy_tcp, end)])[0].host_port
    assert busy_tcp < got <= end


def _nonlocal_bind() -> bool:
    try:
        with open("/proc/sys/net/ipv4/ip_nonlocal_bind") as f:
            return f.read().strip() != "0"
    except OSError:
        return False


@pytest.mark.skipif(_nonlocal_bind(), reason="net.ipv4.ip_nonlocal_bind lets any address be bound")
def test_host_address_that_is_not_local_is_an_error() -> None:
    a = PortAllocator((40000, 40009), reserved=())
    with pytest.raises(HostPortUnavailable, match="cannot assign requested address"):
        a.allocate("c1", [Binding(80, "tcp", "192.0.2.1")])  # TEST-NET-1: never a local address; nothing is sent
