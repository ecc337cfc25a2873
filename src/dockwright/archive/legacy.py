"""``docker load``'s reader of pre-1.10 archives: ``repositories`` and ``<id>/json`` + ``<id>/layer.tar``.

This module owns :class:`LegacyImages`: every top-level directory an image chained by ``parent``, its config made
from the v1 JSON as moby's ``MakeConfigFromV1Config`` does, tags from ``repositories``; see
:mod:`dockwright.archive.load` for the rules.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .. import reference as refs
from ..errors import InvalidReference
from ..oci.digest import sha256_digest
from ..oci.gojson import go_dumps
from .paths import parse_object
from .results import ArchiveError, LoadedImage
from .spool import ArchiveSpool

__all__ = ["LegacyImages"]

class LegacyImages(ArchiveSpool):
    """The pre-1.10 reader over a spooled archive."""

    # ---- 3. pre-1.10
    def images_from_v1_layout(self) -> list[LoadedImage]:
        """The images of a pre-1.10 archive (format 3)."""
        repositories = self.read_json("repositories")
        if not isinstance(repositories, dict) or not all(isinstance(v, dict) for v in repositories.values()):
            raise ArchiveError("invalid archive: repositories is not a map of repositories to tags")
        tops: set[str] = set()
        for p in [*self.files, *self.links, *self.dirs]:
            if "/" in p or p in self.dirs:
                tops.add(p.split("/", 1)[0])
        loaded: dict[str, tuple[LoadedImage, list[str], list[dict[str, Any]]]] = {}
        order: list[LoadedImage] = []

        def load(old_id: str) -> tuple[LoadedImage, list[str], list[dict[str, Any]]]:
            chain: list[str] = []
            cur = old_id
            while cur not in loaded:
                if cur in chain:
                    raise ArchiveError(f"invalid archive: the parent chain of {old_id} loops")
                chain.append(cur)
                v1 = parse_object(self.read_small(f"{cur}/json", f"legacy image {cur}"), f"{cur}/json")
                parent = v1.get("parent") or ""
                if not isinstance(parent, str):
                    raise ArchiveError(f"invalid archive: {cur}/json: invalid parent")
                if not parent:
                    break
                cur = parent
            for oid in reversed(chain):
                if oid in loaded:
                    continue
                raw = self.read_small(f"{oid}/json", f"legacy image {oid}")
                v1 = parse_object(raw, f"{oid}/json")
                os_ = v1.get("os") or "linux"
                if os_ != "linux":
                    raise ArchiveError(f"cannot load {os_} image on linux")
                parent = v1.get("parent") or ""
                if parent:
                    pimg, pdiff, phist = loaded[parent]
                    layers = list(pimg.layers)
                    diff_ids = list(pdiff)
                    history = list(phist)
                else:
                    pimg = None
                    layers, diff_ids, history = [], [], []
                layer = self.layer(f"{oid}/layer.tar", f"layer of legacy image {oid}")
                layers.append(layer)
                diff_ids.append(layer.diff_id)
                history.append(_v1_history(v1, oid))
                config_raw = _v1_config(raw, diff_ids, history, oid)
                img = LoadedImage(config_raw, sha256_digest(config_raw), layers, [], None, None,
                                  parent=pimg.config_digest if pimg is not None else "")
                loaded[oid] = (img, diff_ids, history)
                order.append(img)
            return loaded[old_id]

        for top in sorted(tops):
            load(top)
        for name, tags in repositories.items():
            for tag, old_id in tags.items():
                if not isinstance(old_id, str) or old_id not in loaded:
                    raise ArchiveError(f"invalid target ID: {old_id}")
                try:
                    ref = refs.parse_normalized_named(name).with_tag(tag)
                except InvalidReference as exc:
                    raise ArchiveError(f"invalid archive: repositories: {name}:{tag}: {exc}") from exc
                img = loaded[old_id][0]
                full = str(refs.Reference(ref.domain, ref.path, ref.tag))
                if full not in img.repo_tags:
                    img.repo_tags.append(full)
        return order


_TIME_RE = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")


def _go_time(value: Any, what: str) -> str:
    """A JSON time re-marshalled as Go does (RFC 3339 with nanoseconds, zeros trimmed, 'Z' for UTC)."""
    m = _TIME_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise ArchiveError(f"invalid archive: {what}: invalid time {value!r}")
    frac = (m.group(2) or "")[:10].rstrip("0")
    if frac == ".":
        frac = ""
    tz = m.group(3)
    if tz in ("+00:00", "-00:00"):
        tz = "Z"
    return m.group(1) + frac + tz


def _v1_history(v1: dict[str, Any], old_id: str) -> dict[str, Any]:
    what = f"{old_id}/json"
    h: dict[str, Any] = {}
    created = v1.get("created")
    if created is not None:
        h["created"] = _go_time(created, what)
    cc = v1.get("container_config") or {}
    cmd = cc.get("Cmd") if isinstance(cc, dict) else None
    if isinstance(cmd, str):
        cmd = [cmd]
    if cmd is not None and not (isinstance(cmd, list) and all(isinstance(c, str) for c in cmd)):
        raise ArchiveError(f"invalid archive: {what}: invalid container_config.Cmd")
    for key, value in (("author", v1.get("author")), ("created_by", " ".join(cmd or [])),
                       ("comment", v1.get("comment"))):
        if value is not None and not isinstance(value, str):
            raise ArchiveError(f"invalid archive: {what}: invalid {key}")
        if value:
            h[key] = value
    return h


def _raw_members(raw: bytes, what: str) -> dict[str, str]:
    """The members of a JSON object as (decoded key → raw value text)."""
    text = raw.decode("utf-8", "surrogateescape")
    dec = json.JSONDecoder()
    ws = " \t\n\r"
    i = 0
    n = len(text)

    def skip(j: int) -> int:
        while j < n and text[j] in ws:
            j += 1
        return j

    try:
        i = skip(i)
        if i >= n or text[i] != "{":
            raise ValueError("not a JSON object")
        i = skip(i + 1)
        out: dict[str, str] = {}
        if i < n and text[i] == "}":
            return out
        while True:
            key, i = dec.raw_decode(text, i)
            if not isinstance(key, str):
                raise ValueError("object key is not a string")
            i = skip(i)
            if i >= n or text[i] != ":":
                raise ValueError("expected ':'")
            i = skip(i + 1)
            _, end = dec.raw_decode(text, i)
            out[key] = text[i:end]
            i = skip(end)
            if i < n and text[i] == ",":
                i = skip(i + 1)
                continue
            if i < n and text[i] == "}":
                break
            raise ValueError("expected ',' or '}'")
        if skip(i + 1) != n:
            raise ValueError("trailing data")
        return out
    except ValueError as exc:
        raise ArchiveError(f"invalid archive: {what}: {exc}") from exc


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_compact(value: str) -> str:
    """encoding/json's compact with HTML escaping, as json.Marshal applies it to a RawMessage."""
    out: list[str] = []
    in_str = False
    esc = False
    for ch in value:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            elif ch in _GO_ESCAPES:
                out.append(_GO_ESCAPES[ch])
                continue
            out.append(ch)
        elif ch in " \t\n\r":
            continue
        else:
            if ch == '"':
                in_str = True
            out.append(ch)
    return "".join(out)


def _v1_config(raw: bytes, diff_ids: list[str], history: list[dict[str, Any]], old_id: str) -> bytes:
    members = _raw_members(raw, f"{old_id}/json")
    for key in ("id", "parent", "Size", "parent_id", "layer_id", "throwaway"):
        members.pop(key, None)
    members["rootfs"] = go_dumps({"type": "layers", "diff_ids": diff_ids}).decode()
    members["history"] = go_dumps(history).decode()
    parts = [go_dumps(k).decode() + ":" + _go_compact(v) for k, v in sorted(members.items())]
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogateescape")


