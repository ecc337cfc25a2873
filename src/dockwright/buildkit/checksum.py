"""Content checksums of COPY sources and bind mounts (BuildKit's ``contenthash``): a file's digest covers its name
relative to the source, type, mode, owner, size, link target and bytes; a directory's, its entries' digests. File
digests are kept by the file's identity and metadata (device, inode, size, mtime, mode, owner), so a rebuild
reads again only the files the last context sync changed."""

from __future__ import annotations

import hashlib
import os
import stat
from collections import OrderedDict
from pathlib import Path

__all__ = ["ContentHasher"]

_CHUNK = 1 << 20


class ContentHasher:
    """Digests of files and trees, the file contents' digests cached (at most ``limit`` files)."""

    def __init__(self, limit: int = 500_000) -> None:
        self.limit = limit
        self._files: OrderedDict[str, tuple[tuple[int, ...], str]] = OrderedDict()

    def _content(self, full: str, st: os.stat_result) -> str:
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
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

    def digest(self, path: Path | str) -> str:
        """The digest of the file or tree at ``path`` (symlinks not followed), names relative to it. Blocking."""
        full = str(path)
        st = os.lstat(full)
        if not stat.S_ISDIR(st.st_mode):
            return "sha256:" + self._entry(full, os.path.basename(full), st)
        parts: list[str] = []

        def walk(d: str, prefix: str) -> None:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
            for e in entries:
                est = e.stat(follow_symlinks=False)
                name = prefix + e.name
                parts.append(self._entry(e.path, name, est))
                if stat.S_ISDIR(est.st_mode):
                    walk(e.path, name + "/")

        walk(full, "")
        parts.append(self._entry(full, ".", st))
        return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()
