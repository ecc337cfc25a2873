"""The system service: version, info and disk usage — facts about the engine and the host."""

from __future__ import annotations

import os
import platform
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..oci.gojson import rfc3339_nano

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["SystemService"]


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _os_release() -> tuple[str, str]:
    name, version = "Linux", ""
    try:
        with open("/etc/os-release") as f:
            kv = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        name = kv.get("PRETTY_NAME", name).strip('"')
        version = kv.get("VERSION_ID", "").strip('"')
    except OSError:
        pass
    return name, version


class SystemService:
    def __init__(self, engine: "Engine") -> None:
        self._engine = engine
        self.started = time.time()
        id_file = engine.root / "engine-id"
        if not id_file.exists():
            id_file.write_text(str(uuid.uuid4()))
        self.id = id_file.read_text().strip()

    def version(self) -> dict[str, Any]:
        from .engine import API_VERSION, ENGINE_VERSION, MIN_API_VERSION
        uname = platform.uname()
        arch = self._arch()
        details = {
            "ApiVersion": API_VERSION,
            "Arch": arch,
            "BuildTime": "2026-11-01T00:00:00.000000000+00:00",
            "Experimental": "true" if self._engine.config.experimental else "false",
            "GitCommit": "dockwright",
            "GoVersion": f"python{platform.python_version()}",
            "KernelVersion": uname.release,
            "MinAPIVersion": MIN_API_VERSION,
            "Os": "linux",
        }
        return {
            "Platform": {"Name": f"dockwright {self._engine.version} (Docker Engine API {API_VERSION})"},
            "Components": [
                {"Name": "Engine", "Version": ENGINE_VERSION, "Details": details},
                {"Name": "dockwright", "Version": self._engine.version,
                 "Details": {"Python": platform.python_version()}},
            ],
            "Version": ENGINE_VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "dockwright",
            "GoVersion": f"python{platform.python_version()}",
            "Os": "linux",
            "Arch": arch,
            "KernelVersion": uname.release,
            "BuildTime": details["BuildTime"],
            **({"Experimental": True} if self._engine.config.experimental else {}),
        }

    @staticmethod
    def _arch() -> str:
        from ..oci.platform import host_platform
        return host_platform().architecture

    def info(self) -> dict[str, Any]:
        from .engine import ENGINE_VERSION
        eng = self._engine
        cfg = eng.config
        os_name, os_version = _os_release()
        uname = platform.uname()
        mirrors = [m if m.endswith("/") else m + "/" for m in cfg.registry_mirrors]
        insecure_cidrs = ["127.0.0.0/8", "::1/128"]
        index_configs: dict[str, Any] = {
            "docker.io": {"Name": "docker.io", "Mirrors": mirrors, "Secure": True, "Official": True},
        }
        for reg in cfg.insecure_registries:
            if "/" in reg:
                insecure_cidrs.append(reg)
            else:
                index_configs[reg] = {"Name": reg, "Mirrors": [], "Secure": False, "Official": False}
        return {
            "ID": self.id,
            "Containers": eng.containers.counts()[0],
            "ContainersRunning": eng.containers.counts()[1],
            "ContainersPaused": eng.containers.counts()[2],
            "ContainersStopped": eng.containers.counts()[3],
            "Images": eng.db.counts(),
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                             ["Using metacopy", "false"], ["Native Overlay Diff", "true"],
                             ["userxattr", "false"]],
            "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": None,
                        "Log": ["json-file"]},
            "MemoryLimit": True,
            "SwapLimit": True,
            "KernelMemoryTCP": False,
            "CpuCfsPeriod": True,
            "CpuCfsQuota": True,
            "CPUShares": True,
            "CPUSet": True,
            "PidsLimit": True,
            "OomKillDisable": False,
            "IPv4Forwarding": True,
            "Debug": cfg.debug,
            "NFd": len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0,
            "NGoroutines": 0,
            "SystemTime": rfc3339_nano(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1",
            "NEventsListener": eng.events.listeners,
            "KernelVersion": uname.release,
            "OperatingSystem": os_name,
            "OSVersion": os_version,
            "OSType": "linux",
            "Architecture": uname.machine,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "AllowNondistributableArtifactsCIDRs": None,
                "AllowNondistributableArtifactsHostnames": None,
                "InsecureRegistryCIDRs": insecure_cidrs,
                "IndexConfigs": index_configs,
                "Mirrors": mirrors,
            },
            "NCPU": os.cpu_count() or 1,
            "MemTotal": _mem_total(),
            "GenericResources": None,
            "DockerRootDir": str(eng.root),
            "HttpProxy": os.environ.get("HTTP_PROXY", os.environ.get("http_proxy", "")),
            "HttpsProxy": os.environ.get("HTTPS_PROXY", os.environ.get("https_proxy", "")),
            "NoProxy": os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")),
            "Name": socket.gethostname(),
            "Labels": list(cfg.labels),
            "ExperimentalBuild": cfg.experimental,
            "ServerVersion": ENGINE_VERSION,
            "Runtimes": {"runc": {"path": cfg.runtime}},
            "DefaultRuntime": "runc",
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "LiveRestoreEnabled": False,
            "Isolation": "",
            "InitBinary": "docker-init",
            "ContainerdCommit": {"ID": ""},
            "RuncCommit": {"ID": ""},
            "InitCommit": {"ID": ""},
            "SecurityOptions": ["name=seccomp,profile=builtin", "name=cgroupns"],
            "ProductLicense": "",
            "DefaultAddressPools": None,
            "FirewallBackend": None,
            "DiscoveredDevices": None,
            "Warnings": None,
            "CDISpecDirs": [],
            "Containerd": None,
        }

    def container_size(self, container_id: str, image_id: str) -> tuple[int, int]:
        """dockerd's GetContainerLayerSize: ``SizeRw`` is the apparent size of the files in the container's own
        layer (pkg/directory.Size: non-directories, each inode once, so an unstarted container's is 0) and
        ``SizeRootFs`` that plus the size of the image's layers. (0, 0) when the container has no layer (any
        more)."""
        sn = self._engine.snapshotter
        try:
            size_rw = sn.usage(container_id).apparent_size
            parent = sn.stat(container_id).parent
        except Exception:  # noqa: BLE001 - removed meanwhile: dockerd logs and reports nothing
            return 0, 0
        if parent is None:
            return size_rw, 0
        rec = self._engine.db.get_image(image_id)
        if rec is not None:
            return size_rw, rec.size + size_rw
        below = 0  # the image is gone (removed with -f): its layers are still the container's
        try:
            while parent is not None:
                below += sn.usage(parent).apparent_size
                parent = sn.stat(parent).parent
        except Exception:  # noqa: BLE001
            return size_rw, -1
        return size_rw, below + size_rw

    def df(self, types: list[str] | None = None) -> dict[str, Any]:
        want = set(types or ["container", "image", "volume", "build-cache"])
        images = self._engine.images
        out: dict[str, Any] = {"LayersSize": 0, "Images": None, "Containers": None, "Volumes": None,
                               "BuildCache": None}
        if "image" in want:
            out["LayersSize"] = images.layers_size()
            out["Images"] = images.list(all=False, shared_size=True, container_count=True)
        if "container" in want:  # (container, SizeRw, SizeRootFs): the API renders each as its list entry
            out["Containers"] = [(c, *self.container_size(c.id, c.image_id))
                                 for c in self._engine.containers.all()]
        if "volume" in want:  # (volume, RefCount, Size); as dockerd: not those with mount options
            vols = self._engine.containers.volumes
            out["Volumes"] = [(v, len(v.users), vols.size(v.name)) for v in vols.all() if not v.options]
        if "build-cache" in want:
            out["BuildCache"] = [{k: v for k, v in r.items() if not k.startswith("_")}
                                 for r in self._engine.build.cache_records()]
        return out
