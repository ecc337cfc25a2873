"""COPY of context directories written straight into the step's snapshot, without the overlay mount: the context's
files are hard-linked into the snapshot's upper directory (a context sync never changes a file in place: it
renames a new one over it), directories made there as overlay would make them. Only when nothing in the image
below stands in the way: a destination path through a symlink, a file where a directory goes or the other way
round (which would need whiteouts), an owner other than root, a device — then :func:`direct_copy` answers False
before writing anything, and the step copies through the mounted overlay instead. Same result either way: what is
copied is owned by root and keeps its mode and mtime (BuildKit's COPY without ``--chown``/``--chmod``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

from ..builder.paths import go_clean

__all__ = ["direct_copy"]

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _kind(path: str) -> int | None:
    try:
        return stat.S_IFMT(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return None


#: one source directory's entries to make: (its path relative to the destination, [(name, lstat)]), in order
_Dir = tuple[str, list[tuple[str, os.stat_result]]]


def _plan(view: str, sources: list[Path], dest_parts: list[str]) -> list[tuple[str, list[_Dir]]] | None:
    """What to make, per source: (the source, its directories parents first, each with its entries); None when the
    fast way cannot be taken."""
    cur = view
    gone = False
    for part in dest_parts:  # the destination: real directories, or nothing yet
        cur = f"{cur}/{part}"
        kind = None if gone else _kind(cur)
        if kind is None:
            gone = True
        elif kind != stat.S_IFDIR:
            return None
    base = "/".join(dest_parts)
    out: list[tuple[str, list[_Dir]]] = []
    for source in sources:
        src = os.fspath(source)
        st = os.lstat(src)
        if not stat.S_ISDIR(st.st_mode):
            return None
        src_dev = st.st_dev
        dirs: list[_Dir] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            with os.scandir(f"{src}/{rel}" if rel else src) as it:
                entries = sorted(it, key=lambda e: e.name)
            made: list[tuple[str, os.stat_result]] = []
            subdirs: list[str] = []
            for e in entries:
                est = e.stat(follow_symlinks=False)
                if est.st_uid or est.st_gid or est.st_dev != src_dev:
                    return None
                sub = f"{rel}/{e.name}" if rel else e.name
                below = None if gone else _kind(f"{view}/{base}/{sub}" if base else f"{view}/{sub}")
                mode = est.st_mode
                if stat.S_ISDIR(mode):
                    if below not in (None, stat.S_IFDIR):
                        return None
                    subdirs.append(sub)
                elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                    if below == stat.S_IFDIR:
                        return None
                else:
                    return None
                made.append((e.name, est))
            dirs.append((rel, made))
            stack.extend(reversed(subdirs))
        out.append((src, dirs))
    return out


def _link(name: str, src_fd: int, dst_fd: int) -> None:
    try:
        os.link(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    except FileExistsError:
        os.unlink(name, dir_fd=dst_fd)
        os.link(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)


def direct_copy(upper: Path, view: Path, sources: list[Path], dest: str) -> bool:
    """Copy the contents of the directories ``sources`` into ``dest`` (absolute in the image) by writing into the
    snapshot's ``upper`` directory, ``view`` being the image below mounted read-only; False (nothing written)
    when it cannot be done this way. Blocking."""
    parts = [p for p in go_clean("/" + dest).split("/") if p]
    plan = _plan(os.fspath(view), sources, parts)
    if plan is None:
        return False
    if os.lstat(upper).st_dev != os.lstat(sources[0]).st_dev:
        return False  # hard links need one file system
    target = os.fspath(upper)
    below = os.fspath(view)
    for part in parts:  # the destination's directories: as overlay's copy-up makes them, or new (0755, root)
        target, below = f"{target}/{part}", f"{below}/{part}"
        if not os.path.lexists(target):
            os.mkdir(target, 0o755)
            st = os.lstat(below) if os.path.lexists(below) else None
            if st is not None:
                os.chmod(target, stat.S_IMODE(st.st_mode))
                os.lchown(target, st.st_uid, st.st_gid)
    made: list[tuple[str, os.stat_result]] = []  # directories: their metadata once their entries are in
    for src, dirs in plan:
        for rel, entries in dirs:
            src_fd = os.open(f"{src}/{rel}" if rel else src, _O_DIR)
            try:
                dst_fd = os.open(f"{target}/{rel}" if rel else target, _O_DIR)
                try:
                    for name, st in entries:
                        mode = st.st_mode
                        if stat.S_ISDIR(mode):
                            try:
                                os.mkdir(name, 0o755, dir_fd=dst_fd)
                            except FileExistsError:
                                pass
                            made.append((f"{target}/{rel}/{name}" if rel else f"{target}/{name}", st))
                        elif stat.S_ISLNK(mode):
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(name, dir_fd=dst_fd)
                            os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
                            os.utime(name, ns=(st.st_mtime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)
                        else:
                            try:
                                _link(name, src_fd, dst_fd)
                            except OSError:
                                shutil.copy2(f"{src}/{rel}/{name}" if rel else f"{src}/{name}",
                                             f"{target}/{rel}/{name}" if rel else f"{target}/{name}",
                                             follow_symlinks=False)
                finally:
                    os.close(dst_fd)
            finally:
                os.close(src_fd)
    for d, st in reversed(made):  # a directory's metadata once its entries are in (they change its mtime)
        os.lchown(d, 0, 0)
        os.chmod(d, stat.S_IMODE(st.st_mode))
        os.utime(d, ns=(st.st_mtime_ns, st.st_mtime_ns))
    return True
