"""Content checksums of COPY sources and bind mounts (BuildKit's ``contenthash``): a file's digest covers its name
relative to the source, type, mode, owner, size, link target and bytes; a directory's, its entries' digests. File
digests are kept by the file's identity and metadata (device, inode, size, mtime, ctime), and, for a kept context
whose syncs report their changes (:meth:`ContentHasher.track`), directories' digests too (a Merkle tree): a rebuild
after a one-file edit rehashes that file and the directories above it."""

from __future__ import annotations

import hashlib
import os
import stat
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ContentHasher"]

_CHUNK = 1 << 20


class ContentHasher:
    """Digests of files and trees, the file contents' digests cached (at most ``limit`` files)."""

    def __init__(self, limit: int = 500_000) -> None:
        self.limit = limit
        self._files: OrderedDict[str, tuple[tuple[int, ...], str]] = OrderedDict()
        self._dirs: dict[str, str] = {}  # directory → digest, under tracked roots only
        self._tracked: set[str] = set()

    def _content(self, full: str, st: os.stat_result) -> str:
        # a tracked context's files are never changed in place (a sync renames a new file over one, and nothing
        # else writes there): identity, size and mtime say enough
        ident = ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if self._cacheable(os.path.dirname(full))
                 else (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        hit = self._files.get(full)
        if hit is not None and hit[0] == ident:
            return hit[1]
        h = hashlib.sha256()
        with open(full, "rb") as f:
            while buf := f.read(_CHUNK):
                h.update(buf)
        digest = h.hexdigest()
        self._files[full] = (ident, digest)
        if len(self._files) > self.limit:
            self._files.popitem(last=False)
        return digest

    def _entry(self, full: str, name: str, st: os.stat_result) -> str:
        mode = st.st_mode
        head = f"{name}\0{stat.S_IFMT(mode):o}\0{stat.S_IMODE(mode):o}\0{st.st_uid}\0{st.st_gid}\0"
        if stat.S_ISREG(mode):
            return hashlib.sha256((head + f"{st.st_size}\0{self._content(full, st)}").encode(
                "utf-8", "surrogateescape")).hexdigest()
        if stat.S_ISLNK(mode):
            head += os.readlink(full)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            head += f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
        return hashlib.sha256(head.encode("utf-8", "surrogateescape")).hexdigest()

    def track(self, root: Path | str, changed: Iterable[str] | None) -> None:
        """``root`` (a kept context) changes only through syncs, which report what they ``changed`` (paths relative
        to it; None: unknown, forget everything under it): its directories' digests are kept between builds and
        only those on the way to a change are computed again."""
        top = os.path.realpath(root)
        if changed is None:
            for d in [d for d in self._dirs if d == top or d.startswith(top + "/")]:
                del self._dirs[d]
        else:
            for rel in changed:
                p = os.path.normpath(os.path.join(top, rel))
                while p == top or p.startswith(top + "/"):
                    self._dirs.pop(p, None)
                    if p == top:
                        break
                    p = os.path.dirname(p)
        self._tracked.add(top)

    def _cacheable(self, d: str) -> bool:
        return any(d == t or d.startswith(t + "/") for t in self._tracked)

    def _tree(self, d: str) -> str:
        """A directory's digest from its entries' (directories recursively), kept for tracked roots."""
        hit = self._dirs.get(d)
        if hit is not None:
            return hit
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        lines: list[str] = []
        for e in entries:
            est = e.stat(follow_symlinks=False)
            lines.append(self._entry(e.path, e.name, est))
            if stat.S_ISDIR(est.st_mode):
                lines.append(self._tree(e.path))
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        if self._cacheable(d):
            self._dirs[d] = digest
            if len(self._dirs) > self.limit:
                self._dirs.pop(next(iter(self._dirs)))
        return digest

    def digest(self, path: Path | str) -> str:
        """The digest of the file or tree at ``path`` (symlinks not followed), names relative to it. Blocking."""
        full = os.path.normpath(str(path))
        st = os.lstat(full)
        if not stat.S_ISDIR(st.st_mode):
            return "sha256:" + self._entry(full, os.path.basename(full), st)
        root = self._entry(full, ".", st)
        return "sha256:" + hashlib.sha256(f"{root}\n{self._tree(full)}".encode()).hexdigest()
