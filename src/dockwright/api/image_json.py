"""The JSON of the image endpoints per API version: the typed results of the images service (``Image``,
``ImageSummary``, ``HistoryItem``, ``DeleteItem``, ``PruneReport``) rendered as dockerd's responses."""

from __future__ import annotations

from typing import Any

from ..engine.types import DeleteItem, HistoryItem, Image, ImageSummary, PruneReport, SearchResult
from ..oci.config import container_config
from .versions import Version

__all__ = ["summary_json", "inspect_json", "history_json", "delete_json", "prune_json", "search_json"]

# Config keys that only containers have, dropped from inspect from 1.50 (added back as empty before that)
_LEGACY_CONFIG_KEYS = ("Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
                       "OpenStdin", "StdinOnce", "Image")
_ALWAYS_CONFIG_KEYS = {"User": "", "Env": None, "Cmd": None, "Volumes": None, "WorkingDir": "",
                       "Entrypoint": None, "OnBuild": None, "Labels": None}


def summary_json(s: ImageSummary, v: Version) -> dict[str, Any]:
    """An entry of ``GET /images/json``."""
    tags, digests = s.repo_tags, s.repo_digests
    if v < (1, 43):
        if not tags and not digests:
            tags, digests = ["<none>:<none>"], ["<none>@<none>"]
    d: dict[str, Any] = {
        "Containers": s.containers if v >= (1, 51) else -1,
        "Created": s.created,
        "Id": s.id,
        "Labels": s.labels,
        "ParentId": s.parent_id,
        "RepoDigests": digests,
        "RepoTags": tags,
        "SharedSize": s.shared_size if v >= (1, 42) else -1,
        "Size": s.size,
    }
    if v < (1, 44):
        d["VirtualSize"] = s.size
    return d


def _config_json(cfg: dict[str, Any] | None, v: Version) -> dict[str, Any]:
    cfg = dict(cfg or {})
    if v < (1, 50):
        return container_config(cfg)
    out: dict[str, Any] = {}
    for key, value in container_config(cfg).items():
        if key in _LEGACY_CONFIG_KEYS or key in ("NetworkDisabled", "MacAddress", "StopTimeout"):
            continue
        out[key] = value
    for key, default in _ALWAYS_CONFIG_KEYS.items():
        out.setdefault(key, default)
    return out


def inspect_json(img: Image, v: Version) -> dict[str, Any]:
    """``GET /images/{name}/json``."""
    out: dict[str, Any] = {
        "Id": img.id,
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Parent": img.parent,
        "Comment": img.comment,
    }
    if img.created:
        out["Created"] = img.created
    elif v < (1, 44):
        out["Created"] = "0001-01-01T00:00:00Z"
    if v < (1, 45):
        out["Container"] = img.container
        out["ContainerConfig"] = container_config(img.container_config or {})
    out["DockerVersion"] = img.docker_version
    out["Author"] = img.author
    out["Config"] = _config_json(img.config, v)
    out["Architecture"] = img.architecture
    if img.variant:
        out["Variant"] = img.variant
    out["Os"] = img.os
    if img.os_version:
        out["OsVersion"] = img.os_version
    out["Size"] = img.size
    if v < (1, 44):
        out["VirtualSize"] = img.size
    out["GraphDriver"] = {"Data": img.graph_driver, "Name": "overlay2"}
    out["RootFS"] = {"Type": "layers", "Layers": img.layers}
    out["Metadata"] = {"LastTagTime": img.last_tag_time or "0001-01-01T00:00:00Z"}
    if v >= (1, 48):
        d = img.descriptor
        out["Descriptor"] = {"mediaType": d.media_type, "digest": d.digest, "size": d.size}
    return out


def history_json(items: list[HistoryItem]) -> list[dict[str, Any]]:
    """``GET /images/{name}/history``."""
    return [{"Comment": h.comment, "Created": h.created, "CreatedBy": h.created_by, "Id": h.id, "Size": h.size,
             "Tags": h.tags} for h in items]


def delete_json(item: DeleteItem) -> dict[str, str]:
    """An entry of ``DELETE /images/{name}`` (and of a prune's ``ImagesDeleted``)."""
    return {"Untagged": item.untagged} if item.untagged is not None else {"Deleted": item.deleted or ""}


def prune_json(rep: PruneReport) -> dict[str, Any]:
    """``POST /images/prune``."""
    return {"ImagesDeleted": [delete_json(i) for i in rep.deleted] or None, "SpaceReclaimed": rep.space_reclaimed}


def search_json(r: SearchResult) -> dict[str, Any]:
    """An entry of ``GET /images/search``."""
    return {"star_count": r.star_count, "is_official": r.is_official, "name": r.name, "is_automated": r.is_automated,
            "description": r.description}
