"""Paths the way Go and moby handle them, for the builder: ``path.Clean`` and ``FollowSymlinkInScope``.

This module owns resolving a path inside a directory tree (a build context, an image's root filesystem) with
that tree as ``/``: symlinks, absolute ones included, never lead out of it.  It knows nothing else of builds.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path

__all__ = ["go_clean", "within", "scoped_resolve", "follow_in_scope"]


def go_clean(p: str) -> str:
    """Go's ``path.Clean`` (``filepath.Clean`` on Unix)."""
    if p == "":
        return "."
    r = posixpath.normpath(p)
    if r.startswith("//"):
        r = "/" + r.lstrip("/")
    return r


def within(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both absolute, slash-separated)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def scoped_resolve(root: Path, rel: str) -> Path:
    """moby's ``FollowSymlinkInScope(filepath.Join(root, rel), root)``: symlinks are resolved with the
    root as ``/``.  Raises :class:`ValueError` if ``rel`` leaves the root lexically."""
    root_s = go_clean(str(root))
    full = go_clean(root_s + "/" + rel)
    if full == root_s:
        return Path(root_s)
    if not within(full, root_s):
        raise ValueError(f"{full} is not in {root_s}")
    path = go_clean(full[len(root_s) :] if root_s != "/" else full)
    b = ""
    n = 0
    while path:
        n += 1
        if n > 255:
            raise ValueError(f"too many links in {full}")
        i = path.find("/")
        if i == -1:
            p, path = path, ""
        else:
            p, path = path[:i], path[i + 1 :]
        if p == "":
            continue
        clean_p = go_clean("/" + b + p)
        if clean_p == "/":
            b = ""
            continue
        full_p = go_clean(root_s + clean_p)
        try:
            st = os.lstat(full_p)
        except FileNotFoundError:
            b += p + "/"
            continue
        except NotADirectoryError:
            b += p + "/"
            continue
        if not stat.S_ISLNK(st.st_mode):
            b += p + "/"
            continue
        dest = os.readlink(full_p)
        if dest.startswith("/"):
            b = ""
        path = dest + "/" + path
    return Path(go_clean(root_s + go_clean("/" + b)))


def follow_in_scope(root: Path | str, rel: str) -> str:
    """:func:`scoped_resolve` as a path relative to ``root`` (``"."`` for the root itself), with ``..`` in
    ``rel`` stopping at the root instead of being refused.  Too many links raise :class:`OSError`."""
    root_s = go_clean(str(root))
    try:
        full = str(scoped_resolve(Path(root_s), go_clean("/" + rel).lstrip("/")))
    except ValueError as exc:
        raise OSError(str(exc)) from None
    return os.path.relpath(full, root_s)
