"""User lookup as dockerd does it: runc's ``libcontainer/user.GetExecUser`` against the rootfs' files.

A user spec is ``""``, ``"name"``, ``"uid"``, ``"name:group"``, ``"uid:gid"``, ``"name:gid"`` or
``"uid:group"``. Names are looked up in ``<rootfs>/etc/passwd`` and ``<rootfs>/etc/group`` (symlinks in the
rootfs are followed inside it). A numeric id need not have an entry; a name must, or the error is
``unable to find user xyz: no matching entries in passwd file``. When the user was matched in passwd and no
group was given, the groups that list the user become supplementary groups.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidArgument

__all__ = ["ExecUser", "resolve_user", "get_exec_user", "resolve_in_root"]

_MIN_ID = 0
_MAX_ID = (1 << 31) - 1
_ERR_RANGE = f"uids and gids must be in range {_MIN_ID}-{_MAX_ID}"
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")


@dataclass(frozen=True, slots=True)
class ExecUser:
    """A resolved user: ``uid``, primary ``gid``, supplementary ``sgids`` and ``home`` (runc's ``user.ExecUser``)."""

    uid: int = 0
    gid: int = 0
    sgids: tuple[int, ...] = field(default_factory=tuple)
    home: str = ""


def _atoi(s: str) -> int | None:
    """Go's ``strconv.Atoi``: None where Go returns an error."""
    if not _INT_RE.match(s):
        return None
    n = int(s)
    if n < -(1 << 63) or n >= (1 << 63):
        return None
    return n


def _lenient_int(s: str) -> int:
    """How ``parseLine`` reads a numeric field: conversion errors give 0."""
    n = _atoi(s)
    return 0 if n is None else n


def _passwd_entries(data: str) -> list[tuple[str, int, int, str]]:
    out = []
    for raw in data.splitlines():
        line = raw.strip()
        if not line:
            continue
        parts = line.split(":")
        name = parts[0]
        uid = _lenient_int(parts[2]) if len(parts) > 2 else 0
        gid = _lenient_int(parts[3]) if len(parts) > 3 else 0
        home = parts[5] if len(parts) > 5 else ""
        out.append((name, uid, gid, home))
    return out


def _group_entries(data: str) -> list[tuple[str, int, list[str]]]:
    out = []
    for line in data.splitlines():
        if not line:
            continue
        parts = line.split(":")
        name = parts[0]
        gid = _lenient_int(parts[2]) if len(parts) > 2 else 0
        members = parts[3].split(",") if len(parts) > 3 and parts[3] else []
        out.append((name, gid, members))
    return out


def get_exec_user(spec: str, passwd: str | None, group: str | None) -> ExecUser:
    """``GetExecUser(spec, nil, passwd, group)``; ``None`` stands for a file that could not be opened."""
    parts = spec.split(":")
    user_arg = parts[0]
    group_arg = parts[1] if len(parts) > 1 else ""
    uid_arg = _atoi(user_arg)
    gid_arg = _atoi(group_arg)

    uid, gid, home = 0, 0, ""
    sgids: tuple[int, ...] = ()
    matched = ""
    users = []
    if passwd is not None:
        for name, u, g, h in _passwd_entries(passwd):
            if user_arg == "":
                ok = u == 0
            elif uid_arg is not None:
                ok = u == uid_arg
            else:
                ok = name == user_arg
            if ok:
                users.append((name, u, g, h))
    if users:
        matched, uid, gid, home = users[0]
    elif user_arg != "":
        if uid_arg is None:
            raise InvalidArgument(f"unable to find user {user_arg}: no matching entries in passwd file")
        uid = uid_arg
        if not _MIN_ID <= uid <= _MAX_ID:
            raise InvalidArgument(_ERR_RANGE)

    if group_arg != "" or matched != "":
        groups = []
        if group is not None:
            for name, g, members in _group_entries(group):
                if group_arg == "":
                    ok = matched in members
                elif gid_arg is not None:
                    ok = g == gid_arg
                else:
                    ok = name == group_arg
                if ok:
                    groups.append(g)
        if group_arg != "":
            if groups:
                gid = groups[0]
            else:
                if gid_arg is None:
                    raise InvalidArgument(f"unable to find group {group_arg}: no matching entries in group file")
                gid = gid_arg
                if not _MIN_ID <= gid <= _MAX_ID:
                    raise InvalidArgument(_ERR_RANGE)
        elif groups:
            sgids = tuple(groups)
    return ExecUser(uid=uid, gid=gid, sgids=sgids, home=home)


def resolve_in_root(root: Path, path: str) -> Path:
    """``path`` inside ``root`` with every symlink resolved as if ``root`` were ``/`` (moby's
    ``FollowSymlinkInScope``): the result never leaves ``root``."""
    root = Path(os.path.abspath(root))
    todo = [p for p in path.split("/") if p]
    todo.reverse()
    resolved: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        if candidate.is_symlink():
            links += 1
            if links > 255:
                raise InvalidArgument(f"too many symlinks in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            todo.extend(reversed([p for p in target.split("/") if p]))
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


def resolve_user(rootfs: Path, spec: str) -> ExecUser:
    """Resolve ``spec`` against ``rootfs``'s ``/etc/passwd`` and ``/etc/group`` as dockerd does.

    Raises :class:`InvalidArgument` with runc's words when a name has no entry or an id is out of range.
    """
    passwd = _read(resolve_in_root(rootfs, "/etc/passwd"))
    group = _read(resolve_in_root(rootfs, "/etc/group"))
    return get_exec_user(spec, passwd, group)
