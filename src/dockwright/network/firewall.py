"""The packet filter of the default bridge network, as dockerd's bridge driver sets it up (moby
``libnetwork/drivers/bridge/setup_ip_tables.go`` and the port mapper), for one bridge.

This module owns:

* the **backend choice** (``detect_backend``): nftables through ``nft`` when it works, else iptables through
  ``iptables``/``iptables-save``/``iptables-restore``; ``None`` with the reason (not installed, not permitted)
  when neither does, so that the daemon can say once what is missing and run without NAT;
* **one place per daemon** holding all of its rules, so that daemons with different bridges coexist: with nft
  the table ``ip dockwright_<bridge>`` (chains ``prerouting``/``output`` hooked at dstnat -100, ``postrouting``
  at srcnat 100, ``forward`` at filter 0, and ``ports`` with the DNAT rules); with iptables the chains
  ``DW-<bridge>-PRE``/``-OUT``/``-POST``/``-PORTS`` in ``nat`` and ``DW-<bridge>-FWD`` in ``filter``, each
  jumped to once from the built-in chain of the same hook;
* the **rules** (``Firewall.install``): masquerade of the subnet leaving through any other interface
  (``--ip-masq``); forwarding from the bridge to elsewhere, established/related traffic back into it,
  bridge-to-bridge accepted or dropped (``--icc``), and everything else routed into the bridge dropped (as
  dockerd ≥ 28: containers are reached through published ports only);
* the **published ports** (``set_ports``/``remove_ports``, per owner — a container): DNAT of the host port on
  the host's local addresses (``fib daddr type local`` / ``-m addrtype --dst-type LOCAL``), limited to the
  mapping's host address when it has one, not from the bridge and not to 127.0.0.0/8 while the userland proxy
  serves those; a forward accept to the container's port; dockerd's hairpin masquerade. With
  ``userland_proxy=False`` loopback is DNATed too, its source masqueraded into the bridge, and the bridge gets
  ``route_localnet=1``;
* the **iptables FORWARD policy** seen by the nft backend: when a ``filter`` table's FORWARD chain drops by
  policy (dockerd sets it), our nft accept does not help, so the chain ``DW-<bridge>`` accepting the bridge's
  traffic is jumped to from that FORWARD (iptables-nft's and, when its tables are loaded, iptables-legacy's);
* ``set_ip_forward``: ``net.ipv4.ip_forward=1``, as dockerd's ``--ip-forward``.

Every change is one atomic transaction that replaces the whole rule set: ``nft -f -`` with ``table`` + ``delete
table`` + the table, or ``iptables-restore --noflush`` whose chain declarations flush the chains first. So
``install`` is idempotent and replaces what a crashed daemon left behind; ``remove`` takes everything away and is
quiet when it is gone. Commands can run inside a network namespace given by path (``nsenter --net=<path>``).
Every failure is a ``FirewallError`` naming the command and its message.

It knows nothing of containers or the engine: owners are opaque strings, addresses and ports are given.
IPv6 is not handled (mappings with an IPv6 host address are left out).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import NamedTuple

from dockwright.errors import Conflict, InvalidArgument, SystemError_, Unavailable
from dockwright.network.endpoint import PortMapping

__all__ = [
    "FirewallError",
    "FirewallUnavailable",
    "run_command",
    "detect_backend",
    "set_ip_forward",
    "default_table_name",
    "chain_prefix",
    "Firewall",
]

COMMAND_TIMEOUT = 30.0
PROTOCOLS = ("tcp", "udp", "sctp")
LOOPBACK = IPv4Network("127.0.0.0/8")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_COMMENT_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/-]")
IPTABLES_CHAIN_MAX = 28


class FirewallError(SystemError_):
    """A firewall command failed: ``argv``, ``returncode`` and ``stderr`` are kept for callers that look."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        status = "timed out" if returncode is None else f"exit status {returncode}"
        super().__init__(f"{' '.join(self.argv)}: {status}: {self.stderr or 'no message'}")


class FirewallUnavailable(Unavailable):
    """Neither nft nor iptables can be used (not installed, not permitted)."""


def _netns_prefix(netns: str | None) -> list[str]:
    if netns is None:
        return []
    if not os.path.exists(netns):
        raise InvalidArgument(f"network namespace {netns} does not exist")
    nsenter = shutil.which("nsenter")
    if not nsenter:
        raise FirewallUnavailable("the nsenter command is not installed (apt-get install util-linux)")
    return [nsenter, f"--net={netns}", "--"]


def run_command(
    argv: Sequence[str], *, input: str | None = None, netns: str | None = None, check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Runs ``argv`` (inside the namespace file ``netns`` if given) with ``input`` on stdin. Raises
    ``FirewallError`` when ``check`` and it fails or does not finish within ``timeout`` seconds,
    ``FirewallUnavailable`` when the program is not installed."""
    full = _netns_prefix(netns) + list(argv)
    try:
        proc = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise FirewallUnavailable(f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise FirewallError(full, None, f"no answer within {timeout:g}s") from exc
    if check and proc.returncode != 0:
        raise FirewallError(full, proc.returncode, proc.stderr)
    return proc


def detect_backend(netns: str | None = None) -> tuple[str | None, str]:
    """``("nft", "")`` when ``nft`` can list the tables, else ``("iptables", "")`` when iptables can list its
    FORWARD chain and ``iptables-restore`` exists, else ``(None, why)``: "nft and iptables are not installed" or
    the commands' own messages (permission denied, no kernel support)."""
    reasons: list[str] = []
    if shutil.which("nft"):
        proc = run_command(["nft", "list", "tables"], netns=netns, check=False)
        if proc.returncode == 0:
            return "nft", ""
        reasons.append(f"nft: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
    if shutil.which("iptables"):
        if not shutil.which("iptables-restore") or not shutil.which("iptables-save"):
            reasons.append("iptables: iptables-restore/iptables-save are not installed")
        else:
            proc = run_command(["iptables", "-w", "-S", "FORWARD"], netns=netns, check=False)
            if proc.returncode == 0:
                return "iptables", ""
            reasons.append(f"iptables: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
    if not reasons:
        return None, "nft and iptables are not installed"
    return None, "; ".join(reasons)


def _read_write_proc(path: str, value: str, netns: str | None) -> bool:
    """Writes ``value`` to the /proc file ``path`` unless it holds it already (in ``netns``: /proc/sys/net is per
    namespace of the writer, so it is done by a shell there). True when it was changed."""
    if netns is None:
        try:
            with open(path) as f:
                if f.read().strip() == value:
                    return False
            with open(path, "w") as f:
                f.write(value + "\n")
        except OSError as exc:
            raise FirewallError(["write", path], 1, str(exc)) from exc
        return True
    script = '[ "$(cat "$0")" = "$1" ] && echo same || { echo "$1" > "$0" && echo changed; }'
    proc = run_command(["sh", "-c", script, path, value], netns=netns)
    return proc.stdout.strip() == "changed"


def set_ip_forward(netns: str | None = None) -> bool:
    """``net.ipv4.ip_forward=1`` (dockerd's ``--ip-forward=true``); True when it was 0 before."""
    return _read_write_proc("/proc/sys/net/ipv4/ip_forward", "1", netns)


def default_table_name(bridge: str) -> str:
    """The nftables table of ``bridge``'s rules when none is given: ``dockwright_<bridge>``."""
    return f"dockwright_{bridge}"


def chain_prefix(bridge: str) -> str:
    """``DW-<bridge>``: the iptables chains' prefix (the longest suffix, ``-PORTS``, keeps it under 28)."""
    return f"DW-{bridge}"


class _Port(NamedTuple):
    mapping: PortMapping
    container_ip: IPv4Address
    host_ip: IPv4Address | None  # None: every local address
    comment: str


def _owner_comment(owner: str) -> str:
    return _COMMENT_UNSAFE.sub("_", owner)[:64]


def _check_mapping(mapping: PortMapping, container_ip: str | IPv4Address, owner: str) -> _Port | None:
    if mapping.proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {mapping.proto!r}: it must be one of {', '.join(PROTOCOLS)}")
    for what, port in (("host port", mapping.host_port), ("container port", mapping.container_port)):
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidArgument(f"invalid {what} {port!r}: it must be between 1 and 65535")
    try:
        cip = IPv4Address(str(container_ip))
    except ValueError as exc:
        raise InvalidArgument(f"invalid container address {container_ip!r}") from exc
    host_ip: IPv4Address | None = None
    if mapping.host_ip not in ("", "0.0.0.0"):
        try:
            addr = ip_address(mapping.host_ip)
        except ValueError as exc:
            raise InvalidArgument(f"invalid host address {mapping.host_ip!r}") from exc
        if not isinstance(addr, IPv4Address):
            return None  # the ip6 side is not ours
        host_ip = addr
    return _Port(mapping, cip, host_ip, _owner_comment(owner))


def _overlaps(a: _Port, b: _Port) -> bool:
    return (
        a.mapping.proto == b.mapping.proto
        and a.mapping.host_port == b.mapping.host_port
        and (a.host_ip is None or b.host_ip is None or a.host_ip == b.host_ip)
    )


class Firewall:
    """The NAT and filter rules of the bridge ``bridge`` with the subnet ``subnet``.

    ``backend``: "nft", "iptables" or "auto" (nft when it works, else iptables; chosen on first use).
    ``table``: the nft table's name (default ``dockwright_<bridge>``). ``netns``: the path of a network
    namespace to run every command in (tests; None is the daemon's own)."""

    def __init__(
        self,
        bridge: str,
        subnet: IPv4Network | str,
        *,
        backend: str = "auto",
        ip_masq: bool = True,
        icc: bool = True,
        userland_proxy: bool = True,
        table: str | None = None,
        netns: str | None = None,
    ) -> None:
        if not _NAME_RE.match(bridge or ""):
            raise InvalidArgument(f"invalid bridge name {bridge!r}: 1 to 15 of A-Z a-z 0-9 _ . -")
        if backend not in ("auto", "nft", "iptables"):
            raise InvalidArgument(f"invalid firewall backend {backend!r}: auto, nft or iptables")
        self.table = table or default_table_name(bridge)
        if not _TABLE_RE.match(self.table):
            raise InvalidArgument(f"invalid nft table name {self.table!r}")
        self.bridge = bridge
        self.subnet = IPv4Network(subnet)
        self.ip_masq = ip_masq
        self.icc = icc
        self.userland_proxy = userland_proxy
        self.netns = netns
        self.chain_prefix = chain_prefix(bridge)
        self._backend = None if backend == "auto" else backend
        self._ports: dict[str, tuple[_Port, ...]] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Firewall(bridge={self.bridge!r}, subnet={self.subnet}, backend={self._backend or 'auto'!r})"

    # --- the public operations -----------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        """"nft" or "iptables" (resolved on first use with "auto"); ``FirewallUnavailable`` when neither works."""
        with self._lock:
            if self._backend is None:
                found, why = detect_backend(self.netns)
                if found is None:
                    raise FirewallUnavailable(f"no packet filter for the bridge network: {why}")
                self._backend = found
            return self._backend

    def install(self) -> None:
        """Installs (or replaces) the whole rule set with the ports currently set, in one transaction."""
        with self._lock:
            if not self.userland_proxy:
                _read_write_proc(f"/proc/sys/net/ipv4/conf/{self.bridge}/route_localnet", "1", self.netns)
            if self.backend == "nft":
                self._apply_nft()
                self._sync_forward_companion()
            else:
                self._apply_iptables()

    def set_ports(self, owner: str, mappings: Iterable[tuple[PortMapping, str | IPv4Address]]) -> None:
        """Publishes ``mappings`` (each ``(mapping, container_ip)``) for ``owner``, replacing what ``owner`` had,
        and rewrites the rule set. ``Conflict`` when a host port is published already by another owner."""
        if not owner:
            raise InvalidArgument("a port owner is required")
        with self._lock:
            ports = tuple(p for p in (_check_mapping(m, ip, owner) for m, ip in mappings) if p is not None)
            for i, p in enumerate(ports):
                for q in ports[i + 1:]:
                    if _overlaps(p, q):
                        raise Conflict(f"host port {p.mapping.host_port}/{p.mapping.proto} is published twice")
                for other, theirs in self._ports.items():
                    if other != owner and any(_overlaps(p, q) for q in theirs):
                        raise Conflict(
                            f"Bind for {p.host_ip or '0.0.0.0'}:{p.mapping.host_port} failed: port is already "
                            "allocated"
                        )
            old = self._ports.get(owner)
            if ports:
                self._ports[owner] = ports
            else:
                self._ports.pop(owner, None)
            try:
                self._apply()
            except BaseException:
                if old is None:
                    self._ports.pop(owner, None)
                else:
                    self._ports[owner] = old
                raise

    def remove_ports(self, owner: str) -> bool:
        """Withdraws ``owner``'s published ports; False (and nothing run) when it had none."""
        with self._lock:
            old = self._ports.pop(owner, None)
            if old is None:
                return False
            try:
                self._apply()
            except BaseException:
                self._ports[owner] = old
                raise
            return True

    def ports(self) -> dict[str, list[tuple[PortMapping, IPv4Address]]]:
        """The published ports by owner, as set."""
        with self._lock:
            return {o: [(p.mapping, p.container_ip) for p in ps] for o, ps in self._ports.items()}

    def remove(self) -> None:
        """Removes everything installed (table or chains, the jumps to them, the FORWARD companion); quiet when
        already gone. The published ports are kept in memory: a later ``install`` puts them back."""
        with self._lock:
            if self.backend == "nft":
                run_command(["nft", "-f", "-"], input=f"table ip {self.table}\ndelete table ip {self.table}\n",
                            netns=self.netns)
                for variant in self._iptables_variants():
                    save = self._iptables_save(variant, "filter")
                    self._remove_iptables_chains(variant, {"filter": save}, {"filter": [self.chain_prefix]})
            else:
                tables = {t: self._iptables_save("iptables", t) for t in ("nat", "filter")}
                self._remove_iptables_chains("iptables", tables, self._iptables_chain_names())

    # --- rendering -----------------------------------------------------------------------------------------

    def _all_ports(self) -> list[_Port]:
        return [p for owner in sorted(self._ports) for p in self._ports[owner]]

    @staticmethod
    def _port_rules(ports: list[_Port], rule: Callable[[_Port, PortMapping], str]) -> list[str]:
        """``rule`` rendered for each published port (and its mapping), in order: the one loop of both renderers."""
        return [rule(p, p.mapping) for p in ports]

    def _masquerade_rules(self, ports: list[_Port], subnet: str, loopback: str,
                          hairpin: Callable[[_Port, PortMapping], str]) -> list[str]:
        """The postrouting rules in order, each in a backend's syntax: the subnet's masquerade (``ip_masq``), the
        loopback's (without the userland proxy), then each published port's hairpin."""
        rules = [subnet] if self.ip_masq else []
        if not self.userland_proxy:
            rules.append(loopback)
        return rules + self._port_rules(ports, hairpin)

    @staticmethod
    def _nft_dnat(p: _Port, m: PortMapping) -> str:
        daddr = f"ip daddr {p.host_ip} " if p.host_ip is not None else ""
        return (f"    {daddr}{m.proto} dport {m.host_port} dnat to {p.container_ip}:{m.container_port}"
                + (f' comment "{p.comment}"' if p.comment else ""))

    def _iptables_dnat(self, p: _Port, m: PortMapping) -> str:
        daddr = f" -d {p.host_ip}/32" if p.host_ip is not None else ""
        comment = f' -m comment --comment "{p.comment}"' if p.comment else ""
        return (f"-A {self.chain_prefix}-PORTS{daddr} -p {m.proto} -m {m.proto} --dport {m.host_port}{comment} "
                f"-j DNAT --to-destination {p.container_ip}:{m.container_port}")

    def render_nft(self) -> str:
        """The nft script that replaces the table with the current rule set."""
        br = f'"{self.bridge}"'
        t = self.table
        ports = self._all_ports()
        lines = [f"table ip {t}", f"delete table ip {t}", f"table ip {t} {{"]
        lines.append("  chain ports {")
        lines += self._port_rules(ports, self._nft_dnat)
        lines.append("  }")
        from_outside = f"iifname != {br} " if self.userland_proxy else ""
        not_loopback = f"ip daddr != {LOOPBACK} " if self.userland_proxy else ""
        lines += [
            "  chain prerouting {",
            "    type nat hook prerouting priority -100; policy accept;",
            f"    {from_outside}fib daddr type local jump ports",
            "  }",
            "  chain output {",
            "    type nat hook output priority -100; policy accept;",
            f"    {not_loopback}fib daddr type local jump ports",
            "  }",
            "  chain postrouting {",
            "    type nat hook postrouting priority 100; policy accept;",
        ]
        lines += self._masquerade_rules(
            ports,
            f"    ip saddr {self.subnet} oifname != {br} masquerade",
            f"    ip saddr {LOOPBACK} oifname {br} masquerade",
            lambda p, m: f"    ip saddr {p.container_ip} ip daddr {p.container_ip} {m.proto} dport {m.container_port}"
                         " masquerade")
        lines += [
            "  }",
            "  chain forward {",
            "    type filter hook forward priority 0; policy accept;",
            f"    iifname {br} oifname != {br} accept",
            f"    oifname {br} ct state established,related accept",
            f"    iifname {br} oifname {br} {'accept' if self.icc else 'drop'}",
        ]
        lines += self._port_rules(ports, lambda p, m: f"    iifname != {br} oifname {br} ip daddr {p.container_ip} "
                                                      f"{m.proto} dport {m.container_port} accept")
        lines += [
            f"    iifname != {br} oifname {br} drop",
            "  }",
            "}",
        ]
        return "\n".join(lines) + "\n"

    def _iptables_chain_names(self) -> dict[str, list[str]]:
        c = self.chain_prefix
        return {"nat": [f"{c}-PRE", f"{c}-OUT", f"{c}-POST", f"{c}-PORTS"], "filter": [f"{c}-FWD"]}

    def _iptables_jumps(self) -> dict[str, list[tuple[str, str]]]:
        c = self.chain_prefix
        return {
            "nat": [("PREROUTING", f"{c}-PRE"), ("OUTPUT", f"{c}-OUT"), ("POSTROUTING", f"{c}-POST")],
            "filter": [("FORWARD", f"{c}-FWD")],
        }

    def render_iptables(self) -> dict[str, list[str]]:
        """The rules of our iptables chains by table, in ``iptables-restore`` syntax (without declarations)."""
        c = self.chain_prefix
        br = self.bridge
        ports = self._all_ports()
        nat = [
            f"-A {c}-PRE{f' ! -i {br}' if self.userland_proxy else ''} -m addrtype --dst-type LOCAL -j {c}-PORTS",
            f"-A {c}-OUT{f' ! -d {LOOPBACK}' if self.userland_proxy else ''} -m addrtype --dst-type LOCAL "
            f"-j {c}-PORTS",
        ]
        nat += self._masquerade_rules(
            ports,
            f"-A {c}-POST -s {self.subnet} ! -o {br} -j MASQUERADE",
            f"-A {c}-POST -s {LOOPBACK} -o {br} -j MASQUERADE",
            lambda p, m: f"-A {c}-POST -s {p.container_ip}/32 -d {p.container_ip}/32 -p {m.proto} -m {m.proto} "
                         f"--dport {m.container_port} -j MASQUERADE")
        nat += self._port_rules(ports, self._iptables_dnat)
        flt = [
            f"-A {c}-FWD -i {br} ! -o {br} -j ACCEPT",
            f"-A {c}-FWD -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"-A {c}-FWD -i {br} -o {br} -j {'ACCEPT' if self.icc else 'DROP'}",
        ]
        flt += self._port_rules(ports, lambda p, m: f"-A {c}-FWD -d {p.container_ip}/32 ! -i {br} -o {br} "
                                                    f"-p {m.proto} -m {m.proto} --dport {m.container_port} -j ACCEPT")
        flt.append(f"-A {c}-FWD ! -i {br} -o {br} -j DROP")
        return {"nat": nat, "filter": flt}

    # --- applying ------------------------------------------------------------------------------------------

    def _apply(self) -> None:
        if self.backend == "nft":
            self._apply_nft()
        else:
            self._apply_iptables()

    def _apply_nft(self) -> None:
        run_command(["nft", "-f", "-"], input=self.render_nft(), netns=self.netns)

    def _iptables_save(self, variant: str, table: str) -> str:
        return run_command([f"{variant}-save", "-t", table], netns=self.netns).stdout

    def _restore(self, variant: str, script: str) -> None:
        run_command([f"{variant}-restore", "-w", "--noflush"], input=script, netns=self.netns)

    def _apply_iptables(self) -> None:
        chains = self._iptables_chain_names()
        jumps = self._iptables_jumps()
        rules = self.render_iptables()
        script: list[str] = []
        for table in ("nat", "filter"):
            present = _saved_rules(self._iptables_save("iptables", table))
            script.append(f"*{table}")
            script += [f":{name} - [0:0]" for name in chains[table]]  # declared: created, or flushed
            script += rules[table]
            for builtin, target in jumps[table]:
                script += _one_jump(present, builtin, target)
            script.append("COMMIT")
        self._restore("iptables", "\n".join(script) + "\n")

    def _remove_iptables_chains(self, variant: str, saved: dict[str, str], chains: dict[str, list[str]]) -> None:
        script: list[str] = []
        for table, text in saved.items():
            present = _saved_chains(text)
            ours = [name for name in chains.get(table, []) if name in present]
            if not ours:
                continue
            script.append(f"*{table}")
            script += [f":{name} - [0:0]" for name in ours]  # flushed, so that none refers to another
            for line in _saved_rules(text):
                parts = line.split()
                if len(parts) == 4 and parts[0] == "-A" and parts[2] == "-j" and parts[3] in ours \
                        and parts[1] not in ours:
                    script.append("-D " + " ".join(parts[1:]))
            script += [f"-X {name}" for name in ours]
            script.append("COMMIT")
        if script:
            self._restore(variant, "\n".join(script) + "\n")

    # --- the iptables FORWARD policy under the nft backend ---------------------------------------------------

    def _iptables_variants(self) -> list[str]:
        """The iptables flavours whose filter table may be in the way: iptables-nft always (listing creates
        nothing), iptables-legacy only when its tables are loaded here (listing would load them)."""
        variants: list[str] = []
        nft_kind = shutil.which("iptables-nft") and shutil.which("iptables-nft-save")
        legacy_kind = shutil.which("iptables-legacy") and shutil.which("iptables-legacy-save")
        if nft_kind:
            variants.append("iptables-nft")
        if legacy_kind and self._legacy_tables_loaded():
            variants.append("iptables-legacy")
        if not nft_kind and not legacy_kind and shutil.which("iptables") and shutil.which("iptables-save"):
            version = run_command(["iptables", "--version"], netns=self.netns, check=False).stdout
            if "nf_tables" in version or self._legacy_tables_loaded():
                variants.append("iptables")
        return variants

    def _legacy_tables_loaded(self) -> bool:
        if self.netns is None:
            try:
                with open("/proc/net/ip_tables_names") as f:
                    return "filter" in f.read().split()
            except OSError:
                return False
        proc = run_command(["cat", "/proc/net/ip_tables_names"], netns=self.netns, check=False)
        return "filter" in proc.stdout.split()

    def _sync_forward_companion(self) -> None:
        """With a DROP policy in a filter FORWARD chain, ``DW-<bridge>`` accepts the bridge's traffic there (our
        nft table still decides); without one, a companion left from earlier is removed."""
        c = self.chain_prefix
        for variant in self._iptables_variants():
            saved = self._iptables_save(variant, "filter")
            if re.search(r"^:FORWARD DROP\b", saved, re.MULTILINE):
                script = ["*filter", f":{c} - [0:0]", f"-A {c} -i {self.bridge} -j ACCEPT",
                          f"-A {c} -o {self.bridge} -j ACCEPT"]
                script += _one_jump(_saved_rules(saved), "FORWARD", c)
                script.append("COMMIT")
                self._restore(variant, "\n".join(script) + "\n")
            else:
                self._remove_iptables_chains(variant, {"filter": saved}, {"filter": [c]})


def _saved_rules(saved: str) -> list[str]:
    return [line.strip() for line in saved.splitlines() if line.startswith("-A ")]


def _one_jump(present: list[str], builtin: str, target: str) -> list[str]:
    """The restore lines that leave exactly one ``-j target`` in ``builtin`` (first when it is added)."""
    count = present.count(f"-A {builtin} -j {target}")
    if count == 0:
        return [f"-I {builtin} 1 -j {target}"]
    return [f"-D {builtin} -j {target}"] * (count - 1)


def _saved_chains(saved: str) -> set[str]:
    return {line[1:].split()[0] for line in saved.splitlines() if line.startswith(":") and len(line) > 1}
