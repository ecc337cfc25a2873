"""The values dispatchers check as BuildKit does: EXPOSE port specs, STOPSIGNAL signals, WORKDIR paths."""

from __future__ import annotations

import ipaddress

from .text import DockerfileError, go_lower, go_upper

__all__ = ["check_signal", "normalize_workdir", "parse_port_spec"]


def _parse_uint16(s: str) -> int:
    if not s or not all("0" <= c <= "9" for c in s):
        raise ValueError(s)
    n = int(s)
    if n > 0xFFFF:
        raise ValueError(s)
    return n


def _parse_port_range(ports: str) -> tuple[int, int]:
    """go-connections ``nat.ParsePortRange``."""
    if ports == "":
        raise ValueError("Empty string specified for ports")
    if "-" not in ports:
        start = _parse_uint16(ports)
        return start, start
    parts = ports.split("-")
    start = _parse_uint16(parts[0])
    end = _parse_uint16(parts[1])
    if end < start:
        raise ValueError(f"Invalid range specified for the Port: {ports}")
    return start, end


def _split_host_port(hostport: str) -> str:
    """``net.SplitHostPort`` for a ``[host]:`` form: the host, or the AddrError message."""

    def err(why: str) -> ValueError:
        return ValueError(f"address {hostport}: {why}")

    i = hostport.rfind(":")
    if i < 0:
        raise err("missing port in address")
    end = hostport.find("]")
    if end < 0:
        raise err("missing ']' in address")
    if end + 1 == len(hostport):
        raise err("missing port in address")
    if end + 1 != i:
        if hostport[end + 1] == ":":
            raise err("too many colons in address")
        raise err("missing port in address")
    host = hostport[1:end]
    if "[" in hostport[1:]:
        raise err("unexpected '[' in address")
    if "]" in hostport[end + 1 :]:
        raise err("unexpected ']' in address")
    return host


def _is_ip(s: str) -> bool:
    """``net.ParseIP(s) != nil``."""
    if "%" in s:
        return False
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def parse_port_spec(raw: str) -> list[str]:
    """go-connections ``nat.ParsePortSpec``: the container ports of ``[ip:][hostPort:]port[/proto]``."""
    parts = raw.split(":")
    if len(parts) == 1:
        ip, host_port, container_port = "", "", parts[0]
    elif len(parts) == 2:
        ip, host_port, container_port = "", parts[0], parts[1]
    else:
        ip, host_port, container_port = ":".join(parts[:-2]), parts[-2], parts[-1]
    port, _, proto = container_port.partition("/")
    if port == "":
        proto = ""
    elif proto == "":
        proto = "tcp"
    container_port = port
    proto = go_lower(proto)
    if proto not in ("tcp", "udp", "sctp"):
        raise DockerfileError("invalid proto: " + proto)
    if ip and ip[0] == "[":
        try:
            ip = _split_host_port(ip + ":")
        except ValueError as exc:
            raise DockerfileError(f"invalid IP address {ip}: {exc}") from None
    if ip and not _is_ip(ip):
        raise DockerfileError("invalid IP address: " + ip)
    if container_port == "":
        raise DockerfileError(f"no port specified: {raw}<empty>")
    try:
        start, end = _parse_port_range(container_port)
    except ValueError:
        raise DockerfileError("invalid containerPort: " + container_port) from None
    if host_port:
        try:
            host_start, host_end = _parse_port_range(host_port)
        except ValueError:
            raise DockerfileError("invalid hostPort: " + host_port) from None
        if end - start != host_end - host_start and end != start:
            raise DockerfileError(
                f"invalid ranges specified for container and host Ports: {container_port} and {host_port}"
            )
    return [f"{p}/{proto}" for p in range(start, end + 1)]


# moby/sys/signal signal_linux.go
_SIGNALS = frozenset(
    [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX",
        *(f"RTMIN+{i}" for i in range(1, 16)),
        *(f"RTMAX-{i}" for i in range(1, 15)),
    ]
)  # fmt: skip


def check_signal(raw: str) -> None:
    """moby/sys/signal ``ParseSignal``: a nonzero number, or a name with or without ``SIG``."""
    digits = raw[1:] if raw[:1] in ("+", "-") else raw
    if digits and all("0" <= c <= "9" for c in digits) and -(1 << 63) <= int(raw) < (1 << 63):
        if int(raw) == 0:
            raise DockerfileError(f"invalid signal: {raw}")
        return
    name = go_upper(raw)
    name = name[3:] if name.startswith("SIG") else name
    if name not in _SIGNALS:
        raise DockerfileError(f"invalid signal: {raw}")


def _clean_path(p: str) -> str:
    """Go's ``path.Clean``."""
    if p == "":
        return "."
    rooted = p[0] == "/"
    n = len(p)
    out: list[str] = []
    r = 0
    dotdot = 0
    if rooted:
        out.append("/")
        r = dotdot = 1
    while r < n:
        if p[r] == "/":
            r += 1
        elif p[r] == "." and (r + 1 == n or p[r + 1] == "/"):
            r += 1
        elif p[r] == "." and p[r + 1] == "." and (r + 2 == n or p[r + 2] == "/"):
            r += 2
            if len(out) > dotdot:
                w = len(out) - 1
                while w > dotdot and out[w] != "/":
                    w -= 1
                del out[w:]
            elif not rooted:
                if out:
                    out.append("/")
                out += [".", "."]
                dotdot = len(out)
        else:
            if (rooted and len(out) != 1) or (not rooted and len(out) != 0):
                out.append("/")
            while r < n and p[r] != "/":
                out.append(p[r])
                r += 1
    return "".join(out) or "."


def normalize_workdir(current: str, requested: str) -> str:
    """dispatchers_unix.go ``normalizeWorkdir``."""
    if requested == "":
        raise DockerfileError("cannot normalize nothing")
    if not requested.startswith("/"):
        return _clean_path("/".join(e for e in ("/", current, requested) if e))
    return _clean_path(requested)
