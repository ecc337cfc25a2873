""":func:`resolve_sources`: one COPY/ADD source of a build context resolved the way dockerd's
``copier.calcCopyInfo`` does (wildcards, symlinks kept in the context, ``.dockerignore``'d files invisible)."""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidArgument
from .dockerignore import IgnoreRules
from .gomatch import contains_wildcards, go_path_match
from .paths import go_clean as _go_clean
from .paths import scoped_resolve as _scoped_resolve

__all__ = ["resolve_sources", "resolve_sources_named"]

# ==================================================================================================
# COPY sources


def _not_found(rel: str) -> InvalidArgument:
    return InvalidArgument(
        f"COPY failed: file not found in build context or excluded by .dockerignore: stat {rel}: file does not exist"
    )


def _walk_rel(root: Path) -> Iterator[tuple[str, bool]]:
    """``filepath.WalkDir`` order (lexical, depth first, symlinks not followed): (rel, is_dir)."""

    def walk(dirpath: str, rel: str) -> Iterator[tuple[str, bool]]:
        try:
            with os.scandir(dirpath) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            r = f"{rel}/{e.name}" if rel else e.name
            is_dir = e.is_dir(follow_symlinks=False)
            yield r, is_dir
            if is_dir:
                yield from walk(e.path, r)

    yield from walk(str(root), "")


def _copy_info(root: Path, rel: str, ignore: IgnoreRules) -> Path:
    try:
        full = _scoped_resolve(root, rel)
    except ValueError:
        raise InvalidArgument(f"COPY failed: forbidden path outside the build context: {rel} ()") from None
    try:
        st = os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        raise _not_found(rel) from None
    clean = _go_clean(rel)
    if clean != "." and not stat.S_ISDIR(st.st_mode) and ignore.matches(clean):
        raise _not_found(rel)
    return full


def resolve_sources(root: Path, pattern: str, ignore: IgnoreRules) -> list[Path]:
    """The paths a COPY/ADD source ``pattern`` names in the context at ``root`` (dockerd's
    ``calcCopyInfo``): symlinks are resolved inside the context, so the paths returned are the real
    entries (files or directories) under ``root``.  :func:`resolve_sources_named` also gives the names.

    Wildcards (``*``, ``?``, ``[…]``, Go's ``filepath.Match``) are matched against every entry of the
    context; a pattern that matches nothing gives ``[]`` (the caller reports dockerd's
    "COPY failed: no source files were specified" when all sources are empty).  Files excluded by
    ``ignore`` are invisible.
    """
    return [p for p, _ in resolve_sources_named(root, pattern, ignore)]


def resolve_sources_named(root: Path, pattern: str, ignore: IgnoreRules) -> list[tuple[Path, str]]:
    """:func:`resolve_sources` with each entry's name as the source names it — a symlink's own name, which
    dockerd gives the copy of what the symlink points to."""
    root = Path(root)
    orig = pattern
    if orig.startswith("/"):
        orig = orig[1:]
    if orig.startswith("./"):
        orig = orig[2:]
    if contains_wildcards(orig):
        out: list[tuple[Path, str]] = []
        for rel, is_dir in _walk_rel(root):
            if not go_path_match(orig, rel):
                continue
            if not is_dir and ignore.matches(rel):
                continue
            out.append((_copy_info(root, rel, ignore), posixpath.basename(rel)))
        return out
    rel = orig if orig else "."
    full = _copy_info(root, rel, ignore)
    name = posixpath.basename(_go_clean(rel))
    return [(full, name if name not in (".", "", "..") else full.name)]
