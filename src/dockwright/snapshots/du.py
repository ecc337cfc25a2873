"""Walking a directory tree for the space it uses (a snapshot's usage, a volume's size, a build cache directory's):
depth first, without following symlinks, entries that vanish meanwhile skipped."""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["walk_tree", "dir_size"]


def walk_tree(root: str, visit: Callable[[os.DirEntry[str], os.stat_result], bool],
              unreadable: tuple[type[OSError], ...] = (FileNotFoundError, NotADirectoryError)) -> None:
    """Call ``visit(entry, lstat)`` for every entry below ``root``; a directory for which it answers True is walked
    too. A directory that cannot be listed with one of ``unreadable`` is passed over."""
    stack = [root]
    while stack:
        path = stack.pop()
        try:
            it = os.scandir(path)
        except unreadable:
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if visit(entry, st) and entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)


def dir_size(path: str | os.PathLike[str]) -> int:
    """The apparent size of the files under ``path``, each inode once (dockerd's ``directory.Size``)."""
    seen: set[tuple[int, int]] = set()
    total = 0

    def visit(entry: os.DirEntry[str], st: os.stat_result) -> bool:
        nonlocal total
        if entry.is_dir(follow_symlinks=False):
            return True
        ident = (st.st_dev, st.st_ino)
        if ident not in seen:
            seen.add(ident)
            total += st.st_size
        return False

    walk_tree(os.fspath(path), visit, (FileNotFoundError, NotADirectoryError, PermissionError))
    return total
