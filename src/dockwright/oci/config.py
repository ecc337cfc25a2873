"""Image configs: the Docker/OCI config JSON, the container-config section in Go's field order, and builders."""

from __future__ import annotations

from typing import Any

from ..errors import DataCorrupted
from .gojson import go_dumps, parse_rfc3339
from .jsonobject import json_object

__all__ = ["CONTAINER_CONFIG_FIELDS", "container_config", "ImageConfig", "import_config_bytes"]

# (name, default, omitempty) in Go's container.Config order
CONTAINER_CONFIG_FIELDS: list[tuple[str, Any, bool]] = [
    ("Hostname", "", False), ("Domainname", "", False), ("User", "", False),
    ("AttachStdin", False, False), ("AttachStdout", False, False), ("AttachStderr", False, False),
    ("ExposedPorts", None, True), ("Tty", False, False), ("OpenStdin", False, False), ("StdinOnce", False, False),
    ("Env", None, False), ("Cmd", None, False), ("Healthcheck", None, True), ("ArgsEscaped", False, True),
    ("Image", "", False), ("Volumes", None, False), ("WorkingDir", "", False), ("Entrypoint", None, False),
    ("NetworkDisabled", False, True), ("MacAddress", "", True), ("OnBuild", None, False), ("Labels", None, False),
    ("StopSignal", "", True), ("StopTimeout", None, True), ("Shell", None, True),
]


# the container.Config fields that are Go maps (Labels map[string]string, nat.PortSet, map[string]struct{})
_MAP_FIELDS = frozenset({"Labels", "ExposedPorts", "Volumes"})


def container_config(values: dict[str, Any] | None) -> dict[str, Any]:
    """A container.Config as Go serialises it: every field in order, omitempty ones only when set."""
    values = values or {}
    out: dict[str, Any] = {}
    for name, default, omitempty in CONTAINER_CONFIG_FIELDS:
        v = values.get(name, default)
        if omitempty and (v is None or v == "" or v is False or v == [] or v == {}):
            continue
        if name in _MAP_FIELDS and isinstance(v, dict):
            v = dict(sorted(v.items()))  # Go marshals a map with its keys sorted
        out[name] = v
    for k, v in values.items():  # keep unknown keys a config may carry
        if k not in out and not any(k == f[0] for f in CONTAINER_CONFIG_FIELDS):
            out[k] = v
    return out


class ImageConfig:
    """A parsed image config with its raw bytes (the image ID is the digest of the raw bytes)."""

    __slots__ = ("raw", "data")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.data: dict[str, Any] = json_object(raw, DataCorrupted, "invalid image config")

    @property
    def diff_ids(self) -> list[str]:
        """``rootfs.diff_ids``: the uncompressed layers' digests, bottom first (a new list; [] when absent)."""
        return list((self.data.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def history(self) -> list[dict[str, Any]]:
        """The ``history`` entries, oldest first (a new list; [] when absent)."""
        return list(self.data.get("history") or [])

    @property
    def config(self) -> dict[str, Any]:
        """A shallow copy of the container ``config`` (Env, Cmd, Entrypoint, Labels…); {} when absent."""
        return dict(self.data.get("config") or {})

    @property
    def labels(self) -> dict[str, str] | None:
        """``config.Labels``; None when absent or empty."""
        return (self.data.get("config") or {}).get("Labels") or None

    @property
    def created_raw(self) -> str | None:
        """The ``created`` string as written; None when absent, empty or not a string."""
        c = self.data.get("created")
        return c if isinstance(c, str) and c else None

    @property
    def created(self) -> float | None:
        """``created`` as Unix seconds; None when absent, unparseable or Go's zero time."""
        c = self.created_raw
        return parse_rfc3339(c) if c else None

    @property
    def os(self) -> str:
        """The ``os`` field (``linux``); "" when absent."""
        return str(self.data.get("os") or "")

    @property
    def architecture(self) -> str:
        """The ``architecture`` field (``amd64``, ``arm64``…); "" when absent."""
        return str(self.data.get("architecture") or "")

    @property
    def variant(self) -> str:
        """The ``variant`` field (``v7`` for arm); "" when absent."""
        return str(self.data.get("variant") or "")

    @property
    def parent(self) -> str:
        """The legacy ``parent`` image ID of a config that carries one; "" when absent."""
        return str(self.data.get("parent") or "")


def import_config_bytes(*, diff_ids: list[str], os: str, architecture: str, variant: str, comment: str,
                        created: str, docker_version: str, config: dict[str, Any]) -> bytes:
    """The config dockerd writes for ``docker import`` (top-level keys sorted, as Go marshals the map)."""
    cc = container_config(config)
    empty = container_config({})
    top: dict[str, Any] = {
        "architecture": architecture,
        "comment": comment,
        "config": cc,
        "container_config": empty,
        "created": created,
        "docker_version": docker_version,
        "history": [{"created": created, "comment": comment}],
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if not comment:
        del top["comment"]
        top["history"] = [{"created": created}]
    if variant:
        top["variant"] = variant
    return go_dumps(dict(sorted(top.items())))
