"""``dockwright`` command line: ``serve`` with dockerd's flags and daemon.json keys, ``fsck`` for a stopped store."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from .. import __version__

__all__ = ["main", "parse_host", "load_daemon_json"]

log = logging.getLogger("dockwright")

DEFAULT_SOCKET = "unix:///run/dockwright.sock"
DEFAULT_DATA_ROOT = "/var/lib/dockwright"
DEFAULT_EXEC_ROOT = "/run/dockwright"
DEFAULT_CONFIG_FILE = "/etc/dockwright/daemon.json"

# daemon.json keys dockwright uses (dockerd's names)
KNOWN_KEYS = {"hosts", "data-root", "exec-root", "registry-mirrors", "insecure-registries",
              "max-concurrent-downloads", "max-concurrent-uploads", "log-level", "pidfile", "debug",
              "experimental", "labels", "registry-mirrors-by-host"}
# dockerd keys accepted without effect (no warning: they describe things dockwright does not have)
IGNORED_KEYS = {"storage-driver", "storage-opts", "iptables", "ip6tables", "bridge", "bip", "log-driver",
                "log-opts", "live-restore", "features", "builder", "default-runtime", "runtimes", "dns",
                "dns-opts", "dns-search", "mtu", "userland-proxy", "group", "tls", "tlsverify", "tlscacert",
                "tlscert", "tlskey", "containerd", "default-address-pools", "cgroup-parent", "exec-opts",
                "default-ulimits", "ipv6", "fixed-cidr", "fixed-cidr-v6", "seccomp-profile", "selinux-enabled",
                "userns-remap", "max-download-attempts", "shutdown-timeout", "debug-key"}


class ConfigError(Exception):
    pass


def parse_host(h: str) -> tuple[str, Any]:
    """``unix://PATH`` → ("unix", path); ``tcp://HOST:PORT`` → ("tcp", (host, port))."""
    if h.startswith("unix://"):
        path = h[len("unix://"):] or "/run/dockwright.sock"
        return "unix", path
    if h.startswith("tcp://") or h.startswith("http://"):
        rest = h.split("://", 1)[1].rstrip("/")
        host, _, port = rest.rpartition(":")
        if not host:
            host, port = rest, "2375"
        if not port.isdigit():
            raise ConfigError(f"invalid bind address format: {h}")
        return "tcp", (host.strip("[]") or "0.0.0.0", int(port))
    if h.startswith("/"):
        return "unix", h
    raise ConfigError(f"invalid bind address format: {h} (use unix://PATH or tcp://HOST:PORT)")


def load_daemon_json(path: str, explicit: bool) -> dict[str, Any]:
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
    unknown = sorted(k for k in data if k not in KNOWN_KEYS and k not in IGNORED_KEYS)
    if unknown:
        log.warning("%s: ignoring unknown configuration keys: %s", path, ", ".join(unknown))
    return data


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockwright", description="The image service of the Docker Engine.")
    p.add_argument("--version", action="version", version=f"dockwright {__version__}")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="run the daemon (Docker Engine API)")
    s.add_argument("-H", "--host", action="append", default=None, help="unix://PATH or tcp://HOST:PORT (repeatable)")
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
    f = sub.add_parser("fsck", help="check a data root (daemon stopped) and remove what a crash left behind")
    f.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    f.add_argument("--dry-run", action="store_true", help="report only")
    return p


def _setup_logging(level: str) -> None:
    lv = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
          "fatal": logging.CRITICAL}.get(level, logging.INFO)
    logging.basicConfig(level=lv, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr,
                        force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING if lv > logging.DEBUG else logging.DEBUG)


def _merge(args: argparse.Namespace) -> dict[str, Any]:
    cfg_path = args.config_file or DEFAULT_CONFIG_FILE
    conf = load_daemon_json(cfg_path, explicit=args.config_file is not None)
    both = []
    for flag, key in (("host", "hosts"), ("data_root", "data-root"), ("exec_root", "exec-root"),
                      ("registry_mirror", "registry-mirrors"), ("insecure_registry", "insecure-registries"),
                      ("max_concurrent_downloads", "max-concurrent-downloads"),
                      ("max_concurrent_uploads", "max-concurrent-uploads"), ("log_level", "log-level"),
                      ("pidfile", "pidfile")):
        if getattr(args, flag) is not None and key in conf:
            both.append(f"{key}: (from flag: {getattr(args, flag)}, from file: {conf[key]})")
    if both:
        raise ConfigError("the following directives are specified both as a flag and in the configuration "
                          "file: " + ", ".join(both))

    def pick(flag: str, key: str, default: Any) -> Any:
        v = getattr(args, flag)
        if v is not None:
            return v
        return conf.get(key, default)

    return {
        "hosts": pick("host", "hosts", [DEFAULT_SOCKET]),
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
    }


def _socket_in_use(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


async def _serve(opts: dict[str, Any], fsync: bool) -> int:
    from aiohttp import web

    from ..api.app import make_app
    from ..engine.config import EngineConfig
    from ..engine.engine import Engine
    from ..errors import Unavailable

    hosts = [parse_host(h) for h in opts["hosts"]]
    for h in opts["insecure"]:
        if not isinstance(h, str):
            raise ConfigError(f"invalid insecure registry: {h!r}")
    config = EngineConfig(
        data_root=Path(opts["data_root"]), exec_root=Path(opts["exec_root"]),
        registry_mirrors=list(opts["mirrors"]), insecure_registries=list(opts["insecure"]),
        max_concurrent_downloads=int(opts["downloads"]), max_concurrent_uploads=int(opts["uploads"]),
        labels=list(opts["labels"]), debug=opts["debug"], experimental=opts["experimental"], fsync=fsync,
        registry_mirrors_by_host={str(k): list(v) for k, v in dict(opts["mirrors_by_host"]).items()},
        certs_dirs=[Path(opts["certs_d"]), Path("/etc/docker/certs.d"), Path("/etc/dockwright/certs.d")],
        runtime=str(opts["runtime"]))
    try:
        engine = Engine(config)
    except Unavailable as exc:
        print(f"dockwright: {exc}", file=sys.stderr)
        return 1
    Path(opts["exec_root"]).mkdir(parents=True, exist_ok=True)
    await engine.start()
    pidfile = opts["pidfile"]
    app = make_app(engine)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10.0, access_log=None)
    await runner.setup()
    sockets: list[str] = []
    try:
        for kind, where in hosts:
            if kind == "unix":
                if os.path.exists(where):
                    if _socket_in_use(where):
                        raise ConfigError(f"{where}: address already in use by another daemon")
                    os.unlink(where)
                Path(where).parent.mkdir(parents=True, exist_ok=True)
                site: web.BaseSite = web.UnixSite(runner, where)
                await site.start()
                os.chmod(where, 0o660)
                sockets.append(where)
                print(f"dockwright {__version__}: API listening on unix://{where}", file=sys.stderr)
                print(f"  export DOCKER_HOST=unix://{where}", file=sys.stderr)
            else:
                host, port = where
                site = web.TCPSite(runner, host, port)
                await site.start()
                print(f"dockwright {__version__}: API listening on tcp://{host}:{port} (no TLS)", file=sys.stderr)
                print(f"  export DOCKER_HOST=tcp://{host}:{port}", file=sys.stderr)
    except (OSError, ConfigError) as exc:
        print(f"dockwright: failed to listen: {exc}", file=sys.stderr)
        await runner.cleanup()
        engine.close()
        return 1
    if pidfile:
        Path(pidfile).parent.mkdir(parents=True, exist_ok=True)
        Path(pidfile).write_text(str(os.getpid()))
    print(f"dockwright: data root {config.data_root}; ready", file=sys.stderr)
    sys.stderr.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await runner.shutdown()
    await runner.cleanup()
    await engine.aclose()
    for path in sockets:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    if pidfile:
        try:
            os.unlink(pidfile)
        except FileNotFoundError:
            pass
    return 0


def _fsck(args: argparse.Namespace) -> int:
    from ..engine.config import EngineConfig
    from ..engine.engine import Engine
    from ..errors import Unavailable

    try:
        engine = Engine.__new__(Engine)
        Engine.__init__(engine, EngineConfig(data_root=Path(args.data_root)))
    except Unavailable as exc:
        print(f"dockwright fsck: {exc}", file=sys.stderr)
        return 1
    rep = engine.startup_report
    print(f"orphan blobs removed: {len(rep['orphan_blobs'])}")
    print(f"unfinished ingests removed: {len(rep['ingests'])}")
    print(f"missing blobs: {len(rep['missing_blobs'])}")
    for d in rep["missing_blobs"]:
        print(f"  missing {d}")
    engine.close()
    return 1 if rep["missing_blobs"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "fsck":
        _setup_logging("info")
        return _fsck(args)
    try:
        _setup_logging("info")
        opts = _merge(args)
        _setup_logging(opts["log_level"])
        return asyncio.run(_serve(opts, fsync=not args.no_fsync))
    except ConfigError as exc:
        print(f"dockwright: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
