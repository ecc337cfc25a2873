"""A container's configuration at create: dockerd's merge of the request over the image config, the HostConfig
defaults it fills in, its name rules, and the config merge of a commit."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ...runtime.bundle import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS

__all__ = ["merge_config", "host_config_defaults", "merge_missing", "create_body", "NAME_RE", "ADJECTIVES",
           "SURNAMES"]

ADJECTIVES = ["admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant", "happy", "jolly", "keen",
        "loving", "modest", "nifty", "optimistic", "quirky", "relaxed", "serene", "tender", "upbeat", "vibrant"]
SURNAMES = ["albattani", "babbage", "curie", "darwin", "euler", "fermi", "galileo", "hopper", "turing", "lovelace",
          "noether", "pascal", "ritchie", "shannon", "tesla", "wozniak", "yalow", "zhukovsky", "kepler", "mendel"]
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def merge_config(image_cfg: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
    """dockerd's container config from the create request over the image config (daemon.merge)."""
    out = dict(req)
    img = image_cfg or {}
    if not out.get("User"):
        out["User"] = img.get("User", "")
    if not out.get("ExposedPorts") and img.get("ExposedPorts"):
        out["ExposedPorts"] = img.get("ExposedPorts")
    env = list(img.get("Env") or [])
    keys = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for e in out.get("Env") or []:
        k = e.split("=", 1)[0]
        if k in keys:
            env[keys[k]] = e
        else:
            keys[k] = len(env)
            env.append(e)
    out["Env"] = env
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = img.get("Cmd")
        out["Entrypoint"] = img.get("Entrypoint")
    if not out.get("WorkingDir"):
        out["WorkingDir"] = img.get("WorkingDir", "")
    labels = dict(img.get("Labels") or {})
    labels.update(out.get("Labels") or {})
    out["Labels"] = labels
    if not out.get("Volumes") and img.get("Volumes"):
        out["Volumes"] = img.get("Volumes")
    for key in ("StopSignal", "Healthcheck"):  # not OnBuild nor Shell: dockerd's container has neither
        if not out.get(key) and img.get(key):
            out[key] = img.get(key)
    return out


def _cgroups_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def host_config_defaults(hc: dict[str, Any]) -> dict[str, Any]:
    """What dockerd fills in a container's HostConfig at create (adaptContainerSettings and the daemon's
    defaults), on the values the request did not set: ``ShmSize`` 64 MiB, ``IpcMode`` private, ``CgroupnsMode``
    (private on cgroup v2, host on v1), ``Runtime`` runc, ``LogConfig`` json-file, ``OomKillDisable`` false,
    ``ConsoleSize`` [0, 0] and, unless privileged, the default masked and read-only paths; a ``MemorySwappiness``
    of -1 and a ``PidsLimit`` of 0 or less (unlimited) are null."""
    if not hc.get("ShmSize"):
        hc["ShmSize"] = 67108864
    if not hc.get("IpcMode"):
        hc["IpcMode"] = "private"
    if not hc.get("CgroupnsMode"):
        hc["CgroupnsMode"] = "private" if _cgroups_v2() else "host"
    if not hc.get("Runtime"):
        hc["Runtime"] = "runc"
    lc = dict(hc.get("LogConfig") or {})
    if not lc.get("Type"):
        lc["Type"] = "json-file"
    if lc.get("Config") is None:
        lc["Config"] = {}
    hc["LogConfig"] = lc
    if hc.get("OomKillDisable") is None:
        hc["OomKillDisable"] = False
    if not hc.get("ConsoleSize"):
        hc["ConsoleSize"] = [0, 0]
    if not hc.get("Privileged"):
        if hc.get("MaskedPaths") is None:
            hc["MaskedPaths"] = list(DEFAULT_MASKED_PATHS)
        if hc.get("ReadonlyPaths") is None:
            hc["ReadonlyPaths"] = list(DEFAULT_READONLY_PATHS)
    if not hc.get("NetworkMode"):
        hc["NetworkMode"] = "default"
    if hc.get("MemorySwappiness") == -1:  # the CLI's "unset"
        hc["MemorySwappiness"] = None
    if isinstance(hc.get("PidsLimit"), int) and hc["PidsLimit"] <= 0:  # unlimited
        hc["PidsLimit"] = None
    return hc



def merge_missing(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """daemon/commit.go merge: fields unset in the commit config come from the container's config."""
    out = dict(new)
    for k in ("User", "Cmd", "Entrypoint", "WorkingDir", "Env", "ExposedPorts", "Volumes", "Labels", "OnBuild",
              "StopSignal", "Healthcheck", "Shell"):
        if not out.get(k) and old.get(k):
            out[k] = old[k]
    return out


def create_body(image: str, cmd: str | Sequence[str] | None = None, *,
                env: Mapping[str, str] | Sequence[str] | None = None, workdir: str | None = None,
                user: str | None = None, entrypoint: str | Sequence[str] | None = None,
                labels: Mapping[str, str] | None = None,
                hostname: str | None = None, tty: bool = False, network_mode: str = "default",
                binds: Sequence[str] | None = None, auto_remove: bool = False,
                privileged: bool = False) -> dict[str, Any]:
    """The create body (dockerd's ``Config`` with its ``HostConfig``) of the library's typed create: a string
    command or entrypoint is split as a shell would (as docker-py), ``env`` is a mapping or ``KEY=value``
    strings, ``binds`` are ``-v``'s ``src:dst[:opts]``; what is None is left to the image."""
    body: dict[str, Any] = {"Image": image}
    if cmd is not None:
        body["Cmd"] = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if entrypoint is not None:
        body["Entrypoint"] = shlex.split(entrypoint) if isinstance(entrypoint, str) else list(entrypoint)
    if env is not None:
        body["Env"] = [f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping) else list(env)
    if workdir is not None:
        body["WorkingDir"] = workdir
    if user is not None:
        body["User"] = user
    if labels is not None:
        body["Labels"] = dict(labels)
    if hostname is not None:
        body["Hostname"] = hostname
    if tty:
        body["Tty"] = True
    host: dict[str, Any] = {"NetworkMode": network_mode}
    if binds:
        host["Binds"] = list(binds)
    if auto_remove:
        host["AutoRemove"] = True
    if privileged:
        host["Privileged"] = True
    body["HostConfig"] = host
    return body
