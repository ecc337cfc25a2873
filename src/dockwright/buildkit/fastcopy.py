"""COPY of context directories written straight into the step's snapshot, without the overlay mount: the context's
files are hard-linked into the snapshot's upper directory (a context sync never changes a file in place: it
renames a new one over it), directories made there as overlay would make them. Only when nothing in the image
below stands in the way: a destination path through a symlink, a file where a directory goes or the other way
round (which would need whiteouts), an owner other than root, a device — then :func:`direct_copy` answers False
before writing anything, and the step copies through the mounted overlay instead. Same result either way: what is
copied is owned by root and keeps its mode and mtime (BuildKit's COPY without ``--chown``/``--chmod``)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from ..builder.paths import go_clean

__all__ = ["direct_copy"]


def _kind(path: Path) -> int | None:
    try:
        return stat.S_IFMT(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _plan(view: Path, sources: list[Path], dest_parts: list[str]) -> list[tuple[Path, str]] | None:
    """What to make, (source, path under the destination), parents before children; None when the fast way
    cannot be taken."""
    cur = view
    gone = False
    for part in dest_parts:  # the destination: real directories, or nothing yet
        cur = cur / part
        kind = None if gone else _kind(cur)
        if kind is None:
            gone = True
        elif kind != stat.S_IFDIR:
            return None
    base = "/".join(dest_parts)
    out: list[tuple[Path, str]] = []
    for src in sources:
        st = os.lstat(src)
        if not stat.S_ISDIR(st.st_mode):
            return None
        src_dev = st.st_dev
        stack = [(src, "")]
        while stack:
            d, rel = stack.pop()
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
            for e in entries:
                est = e.stat(follow_symlinks=False)
                if (est.st_uid, est.st_gid) != (0, 0) or est.st_dev != src_dev:
                    return None
                sub = f"{rel}/{e.name}" if rel else e.name
                target = f"{base}/{sub}" if base else sub
                below = None if gone else _kind(view / target)
                mode = est.st_mode
                if stat.S_ISDIR(mode):
                    if below not in (None, stat.S_IFDIR):
                        return None
                    out.append((Path(e.path), sub))
                    stack.append((Path(e.path), sub))
                elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                    if below == stat.S_IFDIR:
                        return None
                    out.append((Path(e.path), sub))
                else:
                    return None
    return out


def direct_copy(upper: Path, view: Path, sources: list[Path], dest: str) -> bool:
    """Copy the contents of the directories ``sources`` into ``dest`` (absolute in the image) by writing into the
    snapshot's ``upper`` directory, ``view`` being the image below mounted read-only; False (nothing written)
    when it cannot be done this way. Blocking."""
    parts = [p for p in go_clean("/" + dest).split("/") if p]
    plan = _plan(view, sources, parts)
    if plan is None:
        return False
    if os.lstat(upper).st_dev != os.lstat(sources[0]).st_dev:
        return False  # hard links need one file system
    target = upper
    below = view
    for part in parts:  # the destination's directories: as overlay's copy-up makes them, or new (0755, root)
        target, below = target / part, below / part
        if not os.path.lexists(target):
            os.mkdir(target, 0o755)
            st = os.lstat(below) if os.path.lexists(below) else None
            if st is not None:
                os.chmod(target, stat.S_IMODE(st.st_mode))
                os.lchown(target, st.st_uid, st.st_gid)
    dirs: list[tuple[Path, os.stat_result]] = []
    for src, rel in plan:
        st = os.lstat(src)
        dst = target / rel
        if stat.S_ISDIR(st.st_mode):
            if not os.path.lexists(dst):
                os.mkdir(dst, 0o755)
            dirs.append((dst, st))
        elif stat.S_ISLNK(st.st_mode):
            if os.path.lexists(dst):
                os.unlink(dst)
            os.symlink(os.readlink(src), dst)
            os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
        else:
            if os.path.lexists(dst):
                os.unlink(dst)
            try:
                os.link(src, dst, follow_symlinks=False)
            except OSError:
                shutil.copy2(src, dst, follow_symlinks=False)
    for d, st in reversed(dirs):  # a directory's metadata once its entries are in (they change its mtime)
        os.lchown(d, 0, 0)
        os.chmod(d, stat.S_IMODE(st.st_mode))
        os.utime(d, ns=(st.st_mtime_ns, st.st_mtime_ns))
    return True
