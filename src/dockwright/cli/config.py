"""The daemon's configuration as dockerd takes it: the ``serve`` flags (:func:`build_parser`), daemon.json
(:func:`load_daemon_json`, dockerd's key names and JSON types, :data:`NETWORK_KEYS`…), the API's TLS settings
(:func:`resolve_tls`) and their merge into :class:`DaemonOptions` (:func:`merge_options`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from .. import __version__
from ..network.config import NetworkConfig
from ..network.ipam import parse_address_pools

__all__ = [
    "DEFAULT_SOCKET", "DEFAULT_DATA_ROOT", "DEFAULT_EXEC_ROOT", "DEFAULT_CONFIG_FILE", "DEFAULT_TLS_HOST",
    "DEFAULT_SOCKET_GROUP", "NETWORK_KEYS", "KNOWN_KEYS", "IGNORED_KEYS", "ConfigError", "DaemonOptions",
    "parse_host", "load_daemon_json", "build_parser", "TLSSettings", "default_cert_dir", "resolve_tls",
    "merge_options", "network_config",
]

log = logging.getLogger("dockwright")

DEFAULT_SOCKET = "unix:///run/dockwright.sock"
DEFAULT_DATA_ROOT = "/var/lib/dockwright"
DEFAULT_EXEC_ROOT = "/run/dockwright"
DEFAULT_CONFIG_FILE = "/etc/dockwright/daemon.json"
DEFAULT_TLS_HOST = "tcp://localhost:2376"  # dockerd's opts.DefaultTLSHost: -H unset and TLS on
DEFAULT_SOCKET_GROUP = "docker"  # dockerd's -G default; a missing "docker" group is only a warning

# the default bridge network: daemon.json key → (flag attribute, JSON type) as dockerd's Config fields
NETWORK_KEYS: dict[str, tuple[str, type]] = {
    "bridge": ("bridge", str), "bip": ("bip", str), "fixed-cidr": ("fixed_cidr", str), "mtu": ("mtu", int),
    "default-address-pools": ("default_address_pool", list), "iptables": ("iptables", bool),
    "ip-masq": ("ip_masq", bool), "ip-forward": ("ip_forward", bool), "icc": ("icc", bool),
    "userland-proxy": ("userland_proxy", bool), "ip": ("ip", str), "dns": ("dns", list),
    "dns-search": ("dns_search", list), "dns-opts": ("dns_opt", list), "host-gateway-ip": ("host_gateway_ip", str),
}
# daemon.json keys dockwright uses (dockerd's names)
KNOWN_KEYS = {"hosts", "data-root", "exec-root", "registry-mirrors", "insecure-registries",
              "max-concurrent-downloads", "max-concurrent-uploads", "log-level", "pidfile", "debug",
              "experimental", "labels", "registry-mirrors-by-host", "group", "tls", "tlsverify", "tlscacert",
              "tlscert", "tlskey", *NETWORK_KEYS}
# dockerd keys accepted without effect (no warning: they describe things dockwright does not have)
IGNORED_KEYS = {"storage-driver", "storage-opts", "ip6tables", "log-driver",
                "log-opts", "live-restore", "features", "builder", "default-runtime", "runtimes",
                "containerd", "userland-proxy-path",
                "cgroup-parent", "exec-opts", "default-ulimits", "ipv6", "fixed-cidr-v6",
                "seccomp-profile", "selinux-enabled", "userns-remap", "max-download-attempts", "shutdown-timeout",
                "debug-key"}
# the JSON type of the daemon.json keys whose type dockwright checks (dockerd's Config field types)
_KEY_TYPES: dict[str, type] = {"tls": bool, "tlsverify": bool, "tlscacert": str, "tlscert": str, "tlskey": str,
                               "group": str, **{k: t for k, (_, t) in NETWORK_KEYS.items()}}


_GO_TYPES = {bool: "bool", str: "string", int: "int", list: "[]string"}


class ConfigError(Exception):
    """A configuration dockerd refuses too (bad flag, daemon.json or TLS files): the daemon does not start."""


def parse_host(h: str) -> tuple[str, str | tuple[str, int]]:
    """``unix://PATH`` → ("unix", path); ``tcp://HOST:PORT`` → ("tcp", (host, port))."""
    if h.startswith("unix://"):
        path = h[len("unix://"):] or "/run/dockwright.sock"
        return "unix", path
    if h.startswith("tcp://") or h.startswith("http://"):
        # dockerd's opts.ParseTCPAddr: a missing host is localhost, a missing port 2375 (also with TLS)
        rest = h.split("://", 1)[1].rstrip("/")
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]")
            port = port[1:] if port.startswith(":") else ""
        elif rest.count(":") == 1 or ":" not in rest:
            host, _, port = rest.partition(":")
        else:
            raise ConfigError(f"invalid bind address format: {h}")
        port = port or "2375"
        if not port.isdigit() or int(port) == 0 or int(port) > 65535:
            raise ConfigError(f"invalid bind address ({h}): invalid port: {port}")
        return "tcp", (host or "localhost", int(port))
    if h.startswith("/"):
        return "unix", h
    raise ConfigError(f"invalid bind address format: {h} (use unix://PATH or tcp://HOST:PORT)")


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def load_daemon_json(path: str, explicit: bool) -> dict[str, Any]:
    """daemon.json as a dict (empty when the default file is missing); a missing ``--config-file``, bad JSON or a
    key of the wrong JSON type is dockerd's ConfigError; unknown keys are logged."""
    p = Path(path)
    if not p.exists():
        if explicit:
            raise ConfigError(f"unable to configure the Docker daemon with file {path}: open {path}: "
                              "no such file or directory")
        return {}
    try:
        data = json.loads(p.read_text() or "{}")
    except ValueError as exc:
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"unable to configure the Docker daemon with file {path}: not a JSON object")
    for key, want in _KEY_TYPES.items():
        if data.get(key) is None:
            data.pop(key, None)  # JSON null leaves a Go field unset
        elif not isinstance(data[key], want):
            raise ConfigError(f"unable to configure the Docker daemon with file {path}: json: cannot unmarshal "
                              f"{_json_type(data[key])} into Go struct field Config.{key} of type "
                              f"{_GO_TYPES[want]}")
    unknown = sorted(k for k in data if k not in KNOWN_KEYS and k not in IGNORED_KEYS)
    if unknown:
        log.warning("%s: ignoring unknown configuration keys: %s", path, ", ".join(unknown))
    return data


def _parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``, which pflag applies to ``--tls=false`` / ``--tlsverify=false``."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise argparse.ArgumentTypeError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def build_parser() -> argparse.ArgumentParser:
    """The ``dockwright`` argument parser: ``serve`` with dockerd's flags, ``fsck``."""
    p = argparse.ArgumentParser(prog="dockwright", description="The image service of the Docker Engine.")
    p.add_argument("--version", action="version", version=f"dockwright {__version__}")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="run the daemon (Docker Engine API)")
    s.add_argument("-H", "--host", action="append", default=None, help="unix://PATH or tcp://HOST:PORT (repeatable)")
    s.add_argument("-G", "--group", default=None,
                   help=f"group for the unix socket (default {DEFAULT_SOCKET_GROUP!r}, when that group exists)")
    s.add_argument("--tls", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="use TLS; implied by --tlsverify")
    s.add_argument("--tlsverify", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="use TLS and verify the remote (client certificates signed by --tlscacert)")
    s.add_argument("--tlscacert", default=None, help="trust certs signed only by this CA (default ~/.docker/ca.pem)")
    s.add_argument("--tlscert", default=None, help="path to TLS certificate file (default ~/.docker/cert.pem)")
    s.add_argument("--tlskey", default=None, help="path to TLS key file (default ~/.docker/key.pem)")
    s.add_argument("--data-root", default=None)
    s.add_argument("--exec-root", default=None)
    s.add_argument("--config-file", default=None)
    s.add_argument("--registry-mirror", action="append", default=None)
    s.add_argument("--insecure-registry", action="append", default=None)
    s.add_argument("--max-concurrent-downloads", type=int, default=None)
    s.add_argument("--max-concurrent-uploads", type=int, default=None)
    s.add_argument("--log-level", default=None, choices=["debug", "info", "warn", "error", "fatal"])
    s.add_argument("-D", "--debug", action="store_true", default=None)
    s.add_argument("--pidfile", default=None)
    s.add_argument("--experimental", action="store_true", default=None)
    s.add_argument("--no-fsync", action="store_true", help="do not fsync blobs (tests, tmpfs)")
    s.add_argument("--runtime", default=None, help="OCI runtime binary for containers (default: runc)")
    n = s.add_argument_group("networking (the default bridge network, as dockerd's flags)")
    n.add_argument("-b", "--bridge", default=None,
                   help="attach containers to this existing bridge; 'none' disables the bridge network "
                        "(default: dockwright0, created by the daemon)")
    n.add_argument("--bip", default=None, help="the bridge's address and subnet, e.g. 172.17.0.1/16")
    n.add_argument("--fixed-cidr", default=None, help="allocate container addresses from this range")
    n.add_argument("--mtu", type=int, default=None, help="MTU of the bridge and the containers' interfaces")
    n.add_argument("--default-address-pool", action="append", default=None, metavar="base=CIDR,size=N",
                   help="pools the bridge's subnet is chosen from (repeatable)")
    n.add_argument("--iptables", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="install packet-filter rules: NAT, forwarding, published ports (default true)")
    n.add_argument("--ip-masq", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="masquerade the bridge's traffic to other networks (default true)")
    n.add_argument("--ip-forward", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="enable net.ipv4.ip_forward (default true)")
    n.add_argument("--icc", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="allow traffic between containers (default true)")
    n.add_argument("--userland-proxy", nargs="?", const=True, default=None, type=_parse_bool, metavar="BOOL",
                   help="proxy published ports for loopback clients (default true)")
    n.add_argument("--ip", default=None, help="default host address of published ports (default 0.0.0.0)")
    n.add_argument("--dns", action="append", default=None, help="DNS server for containers (repeatable)")
    n.add_argument("--dns-search", action="append", default=None, help="DNS search domain (repeatable)")
    n.add_argument("--dns-opt", action="append", default=None, help="DNS option (repeatable)")
    n.add_argument("--host-gateway-ip", default=None,
                   help="the address 'host-gateway' stands for in --add-host (default: the bridge's gateway)")
    f = sub.add_parser("fsck", help="check a data root (daemon stopped) and remove what a crash left behind")
    f.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    f.add_argument("--dry-run", action="store_true", help="report only")
    return p


def _gofmt(v: Any) -> str:
    """A value as Go's ``%v`` prints it (dockerd's flag/file conflict message)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + " ".join(_gofmt(x) for x in v) + "]"
    return str(v)


# ---- TLS (dockerd's cmd/dockerd options.go setDefaultOptions, daemon.go loadDaemonCliConfig) ------------------

@dataclass(frozen=True)
class TLSSettings:
    """The API's TLS as dockerd resolves it. ``tls`` and ``verify`` stay None when neither a flag nor daemon.json
    mentions them, which is what decides the louder insecure-TCP warnings."""

    tls: bool | None = None
    verify: bool | None = None
    cacert: str = ""
    cert: str = ""
    key: str = ""

    @property
    def client_auth(self) -> bool:
        """TLS that requires and verifies a client certificate (dockerd's RequireAndVerifyClientCert)."""
        return bool(self.tls) and self.verify is not False

    def auth_ok(self) -> bool:
        """dockerd's checkTLSAuthOK: TCP without client auth was explicitly asked for (``--tls=false``,
        ``--tlsverify=false``), rather than left to the default."""
        if self.tls is None:
            return False  # dockerd's DefaultTLSValue
        return (not self.tls) or self.verify is not None


def default_cert_dir() -> str:
    """dockerd's default directory for ca.pem, cert.pem and key.pem: $DOCKER_CERT_PATH, else $DOCKER_CONFIG, else
    ~/.docker."""
    return (os.environ.get("DOCKER_CERT_PATH") or os.environ.get("DOCKER_CONFIG")
            or os.path.join(os.path.expanduser("~"), ".docker"))


def resolve_tls(tls: bool | None, tlsverify: bool | None, tlscacert: str | None, tlscert: str | None,
                tlskey: str | None, conf: dict[str, Any]) -> tuple[TLSSettings, bool | None]:
    """Flags (None when not given) and daemon.json → (the settings, the ``tls`` value dockerd's default ``-H``
    looks at, which is taken before a daemon.json ``tlsverify`` turns TLS on).

    As dockerd: ``--tlsverify`` (any value) implies ``--tls``; ``--tls`` alone verifies clients unless
    ``--tlsverify=false``; the default files under :func:`default_cert_dir` apply only when a TLS flag is given
    (the certificate and key only when they exist); daemon.json values win over those defaults (a key given both
    as a flag and in the file was refused before); ``tlsverify`` in daemon.json, true or false, turns TLS on.
    """
    cacert = cert = key = ""
    if tlsverify is not None or tls:
        d = default_cert_dir()
        cacert = tlscacert if tlscacert is not None else os.path.join(d, "ca.pem")
        cert = tlscert if tlscert is not None else _existing(os.path.join(d, "cert.pem"))
        key = tlskey if tlskey is not None else _existing(os.path.join(d, "key.pem"))
    use_tls, verify = tls, None
    if tlsverify is not None:
        use_tls, verify = True, tlsverify
    if "tls" in conf:
        use_tls = conf["tls"]
    if "tlsverify" in conf:
        verify = conf["tlsverify"]
    cacert = conf.get("tlscacert") or cacert
    cert = conf.get("tlscert") or cert
    key = conf.get("tlskey") or key
    hosts_tls = use_tls
    if tlsverify is not None or "tlsverify" in conf:
        use_tls = True
    if verify is None and use_tls is not None:
        verify = use_tls
    return TLSSettings(use_tls, verify, cacert, cert, key), hosts_tls


def _existing(path: str) -> str:
    return path if os.path.exists(path) else ""


class DaemonOptions(TypedDict):
    """What ``serve`` runs with (:func:`merge_options`). Values taken from daemon.json as they are (``Any``) are
    checked or converted where they are used, as dockerd does."""

    hosts: list[Any]
    group: Any
    tls: TLSSettings
    data_root: Any
    exec_root: Any
    mirrors: Any
    insecure: Any
    downloads: Any
    uploads: Any
    log_level: Any
    pidfile: Any
    debug: bool
    experimental: bool
    labels: Any
    mirrors_by_host: Any
    certs_d: str
    runtime: Any
    network: NetworkConfig



def merge_options(args: argparse.Namespace) -> DaemonOptions:
    """The ``serve`` flags merged with daemon.json as dockerd does: a key given both ways is a ConfigError, a flag
    wins over the default, the file over the default."""
    cfg_path = args.config_file or DEFAULT_CONFIG_FILE
    conf = load_daemon_json(cfg_path, explicit=args.config_file is not None)
    both = []
    for flag, key in (("host", "hosts"), ("data_root", "data-root"), ("exec_root", "exec-root"),
                      ("registry_mirror", "registry-mirrors"), ("insecure_registry", "insecure-registries"),
                      ("max_concurrent_downloads", "max-concurrent-downloads"),
                      ("max_concurrent_uploads", "max-concurrent-uploads"), ("log_level", "log-level"),
                      ("pidfile", "pidfile"), ("group", "group"), ("tls", "tls"), ("tlsverify", "tlsverify"),
                      ("tlscacert", "tlscacert"), ("tlscert", "tlscert"), ("tlskey", "tlskey"),
                      *((flag, key) for key, (flag, _) in NETWORK_KEYS.items())):
        if getattr(args, flag) is not None and key in conf:
            both.append(f"{key}: (from flag: {_gofmt(getattr(args, flag))}, from file: {_gofmt(conf[key])})")
    if both:
        raise ConfigError("the following directives are specified both as a flag and in the configuration "
                          "file: " + ", ".join(both))

    def pick(flag: str, key: str, default: Any) -> Any:
        v = getattr(args, flag)
        if v is not None:
            return v
        return conf.get(key, default)

    tls, hosts_tls = resolve_tls(args.tls, args.tlsverify, args.tlscacert, args.tlscert, args.tlskey, conf)
    hosts = [h for h in pick("host", "hosts", []) if str(h).strip()]
    return {
        "hosts": hosts or [DEFAULT_TLS_HOST if hosts_tls else DEFAULT_SOCKET],
        "group": pick("group", "group", DEFAULT_SOCKET_GROUP),
        "tls": tls,
        "data_root": pick("data_root", "data-root", DEFAULT_DATA_ROOT),
        "exec_root": pick("exec_root", "exec-root", DEFAULT_EXEC_ROOT),
        "mirrors": pick("registry_mirror", "registry-mirrors", []),
        "insecure": pick("insecure_registry", "insecure-registries", []),
        "downloads": pick("max_concurrent_downloads", "max-concurrent-downloads", 3),
        "uploads": pick("max_concurrent_uploads", "max-concurrent-uploads", 5),
        "log_level": pick("log_level", "log-level", "debug" if (args.debug or conf.get("debug")) else "info"),
        "pidfile": pick("pidfile", "pidfile", None),
        "debug": bool(args.debug or conf.get("debug")),
        "experimental": bool(args.experimental or conf.get("experimental")),
        "labels": conf.get("labels", []),
        "mirrors_by_host": conf.get("registry-mirrors-by-host", {}),
        "certs_d": str(Path(cfg_path).parent / "certs.d"),
        "runtime": args.runtime or conf.get("default-runtime") or "runc",
        "network": network_config(args, conf),
    }


def network_config(args: argparse.Namespace, conf: dict[str, Any]) -> NetworkConfig:
    """The default bridge's settings from the flags and daemon.json (the same names as dockerd's)."""
    values: dict[str, Any] = {}
    for key, (flag, _) in NETWORK_KEYS.items():
        v = getattr(args, flag)
        if v is None:
            v = conf.get(key)
        if v is not None:
            values[key] = v
    pools = values.get("default-address-pools", [])  # the flag's base=CIDR,size=N or daemon.json's objects
    try:
        parse_address_pools(pools)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"invalid default-address-pools: {exc}") from exc
    mtu = int(values.get("mtu") or 1500)
    if not 68 <= mtu <= 65535:
        raise ConfigError(f"invalid MTU {mtu}: it must be between 68 and 65535")
    return NetworkConfig(
        bridge=str(values.get("bridge") or "dockwright0"), bip=str(values.get("bip") or ""),
        fixed_cidr=str(values.get("fixed-cidr") or ""), mtu=mtu, default_address_pools=list(pools),
        iptables=bool(values.get("iptables", True)), ip_masq=bool(values.get("ip-masq", True)),
        ip_forward=bool(values.get("ip-forward", True)), icc=bool(values.get("icc", True)),
        userland_proxy=bool(values.get("userland-proxy", True)), ip=str(values.get("ip") or ""),
        dns=[str(x) for x in values.get("dns", [])], dns_search=[str(x) for x in values.get("dns-search", [])],
        dns_opts=[str(x) for x in values.get("dns-opts", [])],
        host_gateway_ip=str(values.get("host-gateway-ip") or ""))


