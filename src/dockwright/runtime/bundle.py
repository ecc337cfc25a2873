"""OCI bundles: a :class:`ContainerSpec` plus an already mounted rootfs become ``config.json`` (runtime spec 1.0.2).

The spec starts from moby's ``oci.DefaultLinuxSpec`` (capabilities, the /proc, /dev, /dev/pts, /dev/shm,
/dev/mqueue, /sys and cgroup mounts, masked and read-only paths, the device cgroup rules, the namespaces) and
adds what dockerd's ``createSpec`` adds for a container: the user resolved against the rootfs' passwd and group
files, the environment (``PATH`` default, ``HOSTNAME``, ``TERM=xterm`` for a tty, then the configured
variables), ``RLIMIT_NOFILE``, bind mounts (a volume is a bind mount of its directory, with the propagation asked for),
tmpfs mounts (``noexec,nosuid,nodev`` merged with the options asked for, as dockerd's ``MergeTmpfsOptions``),
a cgroup namespace when ``cgroupns`` is ``private``, resources, and ``/etc/hostname``, ``/etc/hosts`` and
``/etc/resolv.conf`` generated as files in the bundle directory and bind mounted like dockerd's.

Network modes:

* ``"host"``: no network namespace; ``/etc/hosts`` and ``/etc/resolv.conf`` are copies of the host's.
* ``"none"``: a private network namespace with only the loopback device (runc brings ``lo`` up).
* ``"default"`` / ``"bridge"``: the network namespace the network service prepared (``netns_path``: a veth on
  the bridge, ``ip_address``), which ``/etc/hosts`` maps the hostname to; without one (the bridge is off or
  unavailable) a private loopback-only namespace as ``"none"``, the hostname mapped to 127.0.0.1.
  ``/etc/resolv.conf`` is the host's without loopback or IPv6 nameservers (8.8.8.8 and 8.8.4.4 if none
  remain), as dockerd writes it for the default bridge. ``host-gateway`` in ``extra_hosts`` is
  ``host_gateway_ip`` (the bridge's gateway, or ``--host-gateway-ip``).

It knows no images, layers or runc invocations.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument, SystemError_
from .users import ExecUser, resolve_in_root, resolve_user

__all__ = [
    "ContainerSpec",
    "build_bundle",
    "build_config",
    "default_capabilities",
    "merge_env",
    "merge_tmpfs_options",
    "DEFAULT_PATH_ENV",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "OCI_VERSION",
]

OCI_VERSION = "1.0.2"
DEFAULT_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
DEFAULT_NOFILE = 1048576  # what a container of dockerd/containerd gets, unless the daemon's limit is lower
NETWORK_MODES = ("default", "bridge", "none", "host")

_DEFAULT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

_MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

_READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

_DEFAULT_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)

DEFAULT_MASKED_PATHS = _MASKED_PATHS  # what inspect shows as HostConfig.MaskedPaths / ReadonlyPaths
DEFAULT_READONLY_PATHS = _READONLY_PATHS

_HOST_RESOLV = Path("/etc/resolv.conf")
_SYSTEMD_RESOLV = Path("/run/systemd/resolve/resolv.conf")
_MEMSW = Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


@dataclass
class ContainerSpec:
    """What dockerd derives from the image config and the create request, for one run of a container.

    ``rootfs`` is an already mounted directory. ``user`` is ``""``, ``"name"``, ``"uid"``, ``"uid:gid"`` or
    ``"name:group"`` and is resolved against the rootfs. ``binds`` are ``(host source, container
    destination, read-only)`` or ``(…, propagation)`` (``rprivate`` when not given). ``memory``, ``memory_swap``
    and ``shm_size`` are bytes; ``memory_swap`` 0 means twice ``memory`` (where swap accounting exists) and -1
    unlimited.
    """

    id: str
    rootfs: Path
    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    open_stdin: bool = False
    network_mode: str = "default"
    binds: list[tuple[str | Path, str, bool] | tuple[str | Path, str, bool, str]] = field(default_factory=list)
    readonly_rootfs: bool = False
    memory: int = 0
    memory_swap: int = 0
    cpu_shares: int = 0
    shm_size: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    extra_hosts: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    cgroup_parent: str = ""
    netns_path: str = ""  # a prepared network namespace (the bridge's veth in it); "" = runc makes one
    ip_address: str = ""  # the container's address there, for /etc/hosts
    host_gateway_ip: str = ""  # what ``host-gateway`` in extra_hosts stands for
    cgroupns: str = ""  # "private": a cgroup namespace of its own (dockerd's CgroupnsMode)
    tmpfs: list[tuple[str, str]] = field(default_factory=list)  # (destination, options as given: "size=1m,exec")


def default_capabilities() -> list[str]:
    """moby's ``caps.DefaultCapabilities()``."""
    return list(_DEFAULT_CAPS)


def merge_env(defaults: list[str], overrides: list[str]) -> list[str]:
    """moby's ``ReplaceOrAppendEnvValues``: ``K=V`` replaces or appends, a bare ``K`` removes."""
    result: list[str | None] = list(defaults)
    cache = {e.partition("=")[0]: i for i, e in enumerate(defaults)}
    for value in overrides:
        if "=" not in value:
            if value in cache:
                result[cache[value]] = None
            continue
        key = value.partition("=")[0]
        if key in cache:
            result[cache[key]] = value
        else:
            result.append(value)
    return [e for e in result if e]


def _container_env(spec: ContainerSpec) -> list[str]:
    """dockerd's ``CreateDaemonEnvironment`` followed by the container's own variables."""
    env = [f"PATH={DEFAULT_PATH_ENV}", f"HOSTNAME={spec.hostname}"]
    if spec.tty:
        env.append("TERM=xterm")
    return merge_env(env, list(spec.env))


def _mount(dest: str, typ: str, source: str, options: list[str]) -> dict[str, Any]:
    return {"destination": dest, "type": typ, "source": source, "options": options}


def _default_mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    shm = spec.shm_size or DEFAULT_SHM_SIZE
    return [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts",
               ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        _mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", ["ro", "nosuid", "noexec", "nodev"]),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount("/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"]),
    ]


def _device_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for major, minor in ((1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)):
        rules.append({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"})
    rules.append({"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"})
    return rules


_BIND_NOT_ABSOLUTE = "invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute"


def _clean_dest(dest: str) -> str:
    if not dest.startswith("/"):
        raise InvalidArgument(_BIND_NOT_ABSOLUTE.format(dest))
    return os.path.normpath(dest).replace("//", "/")


def _user_mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    out = []
    for bind in spec.binds:
        src, dst, ro = bind[0], bind[1], bind[2]
        propagation = bind[3] if len(bind) > 3 else "rprivate"
        source = Path(src)
        if not source.is_absolute():
            raise InvalidArgument(_BIND_NOT_ABSOLUTE.format(src))
        if not source.exists():
            # dockerd creates a missing source directory for a -v bind
            source.mkdir(parents=True, exist_ok=True)
        options = ["rbind", str(propagation or "rprivate")]
        if ro:
            options.append("ro")
        out.append(_mount(_clean_dest(dst), "bind", str(source), options))
    for dst, data in spec.tmpfs:
        opts = ["noexec", "nosuid", "nodev", "rprivate"] + ([w for w in data.split(",")] if data else [])
        out.append(_mount(_clean_dest(dst), "tmpfs", "tmpfs", merge_tmpfs_options(opts)))
    return out


# the mount flags of a tmpfs: words of one group cancel each other (the last given wins)
_TMPFS_FLAG_GROUPS = (("ro", "rw"), ("nosuid", "suid"), ("nodev", "dev"), ("noexec", "exec"), ("sync", "async"),
                      ("dirsync",), ("remount",), ("mand", "nomand"), ("noatime", "atime"),
                      ("nodiratime", "diratime"), ("relatime", "norelatime"), ("strictatime", "nostrictatime"),
                      ("bind", "rbind"), ("private", "rprivate", "shared", "rshared", "slave", "rslave",
                                          "unbindable", "runbindable"))
_TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol")


def merge_tmpfs_options(options: list[str]) -> list[str]:
    """moby's ``MergeTmpfsOptions``: later words override earlier ones of the same flag group or data key; an
    unknown word is ``Invalid tmpfs option``."""
    groups = {word: i for i, group in enumerate(_TMPFS_FLAG_GROUPS) for word in group}
    seen_flags: set[int] = set()
    seen_data: set[str] = set()
    out: list[str] = []
    for option in reversed(options):
        if option == "defaults":
            continue
        if option in groups:
            if groups[option] not in seen_flags:
                out.insert(0, option)
                seen_flags.add(groups[option])
            continue
        key, sep, _ = option.partition("=")
        if not sep or key not in _TMPFS_DATA:
            shown = " ".join(option.split("=", 1))
            raise InvalidArgument(f'Invalid tmpfs option ["{shown}"]' if not sep else
                                  f'Invalid tmpfs option ["{key}" "{option.split("=", 1)[1]}"]')
        if key not in seen_data:
            out.insert(0, option)
            seen_data.add(key)
    return out


# --------------------------------------------------------------------------------------------------
# /etc/hosts, /etc/resolv.conf, /etc/hostname


def _parse_extra_host(entry: str) -> tuple[str, str]:
    """``name:ip`` (or ``name=ip``): the first separator splits, so ``name:::1`` is an IPv6 address."""
    if "=" in entry:
        name, _, ip = entry.partition("=")
    else:
        name, _, ip = entry.partition(":")
    if not name or not ip:
        raise InvalidArgument(f"bad format for add-host: \"{entry}\"")
    host_ip = ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip
    try:
        ipaddress.ip_address(host_ip)
    except ValueError:
        raise InvalidArgument(f"invalid IP address in add-host: \"{ip}\"") from None
    return name, host_ip


def hosts_content(spec: ContainerSpec, host_hosts: Path = Path("/etc/hosts")) -> str:
    """The container's ``/etc/hosts``, as libnetwork's ``etchosts.Build`` writes it."""
    extra = "".join(f"{ip}\t{name}\n" for name, ip in (_extra_host(spec, e) for e in spec.extra_hosts))
    if spec.network_mode == "host":
        try:
            base = host_hosts.read_text(errors="replace")
        except OSError:
            base = _DEFAULT_HOSTS
        if base and not base.endswith("\n"):
            base += "\n"
        return base + extra
    content = _DEFAULT_HOSTS + extra
    if spec.network_mode != "none" and spec.hostname:
        names = spec.hostname
        if spec.domainname:
            names = f"{spec.hostname}.{spec.domainname} {spec.hostname}"
        content += f"{spec.ip_address or '127.0.0.1'}\t{names}\n"
    return content


def _extra_host(spec: ContainerSpec, entry: str) -> tuple[str, str]:
    """An ``ExtraHosts`` entry, ``host-gateway`` replaced by the host's address on the bridge (dockerd's
    ``HostGatewayIP``)."""
    name, sep, ip = entry.partition("=") if "=" in entry else entry.partition(":")
    if sep and ip == "host-gateway":
        if not spec.host_gateway_ip:
            raise InvalidArgument("unable to derive the IP value for host-gateway")
        return name, spec.host_gateway_ip
    return _parse_extra_host(entry)


_NS_RE = re.compile(r"^\s*nameserver\s+(\S+)\s*$")
_SEARCH_RE = re.compile(r"^\s*(?:search|domain)\s+(.*?)\s*$")
_OPTIONS_RE = re.compile(r"^\s*options\s+(.*?)\s*$")


def _host_resolv_path() -> Path:
    """moby's ``resolvconf.Path``: systemd-resolved's upstream file when /etc/resolv.conf is its stub."""
    try:
        ns = [m.group(1) for line in _HOST_RESOLV.read_text().splitlines() if (m := _NS_RE.match(line))]
    except OSError:
        return _HOST_RESOLV
    if ns == ["127.0.0.53"] and _SYSTEMD_RESOLV.exists():
        return _SYSTEMD_RESOLV
    return _HOST_RESOLV


def _is_loopback_or_v6(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.version == 6


def resolv_content(spec: ContainerSpec, host_resolv: Path | None = None) -> str:
    """The container's ``/etc/resolv.conf``: the host's (copied for ``host``, filtered otherwise) or,
    when ``dns``/``dns_search``/``dns_options`` are given, built from them like ``resolvconf.Build``."""
    path = host_resolv or _host_resolv_path()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        text = ""
    lines = text.splitlines()
    host_mode = spec.network_mode == "host"
    if not (spec.dns or spec.dns_search or spec.dns_options):
        if host_mode:
            return text
        kept = [line for line in lines if not ((m := _NS_RE.match(line)) and _is_loopback_or_v6(m.group(1)))]
        out = "\n".join(kept) + ("\n" if kept else "")
        if not any(_NS_RE.match(line) for line in kept):
            # FilterResolvDNS appends the defaults after a blank line
            out += "\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        return out
    nameservers = list(spec.dns)
    if not nameservers:
        nameservers = [m.group(1) for line in lines if (m := _NS_RE.match(line))]
        if not host_mode:
            nameservers = [n for n in nameservers if not _is_loopback_or_v6(n)] or ["8.8.8.8", "8.8.4.4"]
    search = list(spec.dns_search)
    if not search:
        for line in lines:
            if m := _SEARCH_RE.match(line):
                search = m.group(1).split()
    options = list(spec.dns_options)
    if not options:
        for line in lines:
            if m := _OPTIONS_RE.match(line):
                options = m.group(1).split()
    out = ""
    if search and " ".join(search).strip(" ") != ".":
        out += "search " + " ".join(search) + "\n"
    out += "".join(f"nameserver {n}\n" for n in nameservers)
    if options and " ".join(options).strip(" "):
        out += "options " + " ".join(options) + "\n"
    return out


# --------------------------------------------------------------------------------------------------
# config.json


def _nofile_limit() -> int:
    """``RLIMIT_NOFILE`` for the container: 1048576, or the daemon's hard limit when lower (raising a
    hard limit needs CAP_SYS_RESOURCE, which a daemon in a container may not have)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 0:
        return DEFAULT_NOFILE
    return min(hard, DEFAULT_NOFILE)


def _memory_resources(spec: ContainerSpec) -> dict[str, Any] | None:
    if spec.memory <= 0:
        return None
    mem: dict[str, Any] = {"limit": spec.memory}
    if _MEMSW.exists():
        if spec.memory_swap > 0:
            mem["swap"] = spec.memory_swap
        elif spec.memory_swap == 0:
            mem["swap"] = spec.memory * 2
        else:
            mem["swap"] = -1
    return mem


def build_config(spec: ContainerSpec, bundle_dir: Path, user: ExecUser) -> dict[str, Any]:
    """The OCI runtime spec (as a JSON-ready dict) for ``spec``; the etc files are expected in ``bundle_dir``."""
    caps = default_capabilities()
    nofile = _nofile_limit()
    user_mounts = _user_mounts(spec)
    user_dests = {m["destination"] for m in user_mounts}
    mounts = []
    for m in _default_mounts(spec):
        if m["destination"] in user_dests:
            continue
        if "/dev" in user_dests and m["destination"].startswith("/dev/"):
            continue
        mounts.append(m)
    for name, dest in (("resolv.conf", "/etc/resolv.conf"), ("hostname", "/etc/hostname"), ("hosts", "/etc/hosts")):
        if dest not in user_dests:
            mounts.append(_mount(dest, "bind", str(bundle_dir / name), ["rbind", "rprivate"]))
    # dockerd sorts user mounts by depth so that a parent is mounted before its children
    mounts.extend(sorted(user_mounts, key=lambda m: len(Path(m["destination"]).parts)))

    namespaces: list[dict[str, str]] = [{"type": "mount"}]
    if spec.netns_path:
        namespaces.append({"type": "network", "path": spec.netns_path})
    elif spec.network_mode != "host":
        namespaces.append({"type": "network"})
    namespaces += [{"type": "uts"}, {"type": "pid"}, {"type": "ipc"}]
    if spec.cgroupns == "private":
        namespaces.append({"type": "cgroup"})

    resources: dict[str, Any] = {"devices": _device_rules()}
    if (mem := _memory_resources(spec)) is not None:
        resources["memory"] = mem
    if spec.cpu_shares > 0:
        resources["cpu"] = {"shares": spec.cpu_shares}

    linux: dict[str, Any] = {
        "resources": resources,
        "cgroupsPath": f"{(spec.cgroup_parent or '/dockwright').rstrip('/')}/{spec.id}",
        "namespaces": namespaces,
        "maskedPaths": list(_MASKED_PATHS),
        "readonlyPaths": list(_READONLY_PATHS),
    }
    if spec.network_mode != "host":
        # dockerd sets these for every container with its own network namespace
        linux["sysctl"] = {
            "net.ipv4.ip_unprivileged_port_start": "0",
            "net.ipv4.ping_group_range": "0 2147483647",
        }

    process_user: dict[str, Any] = {"uid": user.uid, "gid": user.gid}
    # the primary group is a supplementary group too, as dockerd 20.10.24 / containerd 1.6.18 set it (the fix of
    # CVE-2023-25173): `id` shows groups=<gid>
    process_user["additionalGids"] = list(dict.fromkeys([user.gid, *user.sgids]))
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": bool(spec.tty),
            "user": process_user,
            "args": list(spec.args),
            "env": _container_env(spec),
            "cwd": spec.cwd or "/",
            "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": str(Path(spec.rootfs).absolute()), "readonly": bool(spec.readonly_rootfs)},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if spec.domainname:
        config["domainname"] = spec.domainname
    if spec.labels:
        config["annotations"] = {str(k): str(v) for k, v in spec.labels.items()}
    return config


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def build_bundle(spec: ContainerSpec, bundle_dir: Path) -> Path:
    """Write ``config.json``, ``hostname``, ``hosts`` and ``resolv.conf`` into ``bundle_dir`` and return it.

    The working directory is created in the rootfs when missing, as dockerd does before a start. Raises
    :class:`InvalidArgument` for a missing command or rootfs, an unknown network mode, a user or group
    name that the rootfs does not know, or a malformed extra host.
    """
    if not spec.args:
        raise InvalidArgument("No command specified")
    if spec.network_mode not in NETWORK_MODES:
        raise InvalidArgument(f"network mode {spec.network_mode!r} is not supported "
                              f"(use one of {', '.join(NETWORK_MODES)})")
    rootfs = Path(spec.rootfs)
    if not rootfs.is_dir():
        raise InvalidArgument(f"rootfs {rootfs} is not a directory")
    cwd = spec.cwd or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"the working directory '{cwd}' is invalid, it needs to be an absolute path")
    user = resolve_user(rootfs, spec.user)

    bundle_dir = Path(bundle_dir)
    bundle_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # only the daemon, the shim and runc read it
    if os.stat(bundle_dir).st_mode & 0o7777 != 0o700:
        os.chmod(bundle_dir, 0o700)
    try:
        wd = resolve_in_root(rootfs, cwd)
        if not wd.exists():
            wd.mkdir(mode=0o755, parents=True, exist_ok=True)
        _write_atomic(bundle_dir / "hostname", (spec.hostname + "\n").encode())
        _write_atomic(bundle_dir / "hosts", hosts_content(spec).encode())
        _write_atomic(bundle_dir / "resolv.conf", resolv_content(spec).encode())
        config = build_config(spec, bundle_dir, user)
        _write_atomic(bundle_dir / "config.json", json.dumps(config, indent=1).encode(), 0o600)
    except OSError as exc:
        raise SystemError_(f"cannot write the bundle for {spec.id}: {exc}") from exc
    return bundle_dir
