"""COPY and ADD into a mounted rootfs, with the classic builder's semantics.

This module owns :func:`copy_sources`: the file-system half of a COPY/ADD step (the cache key and the
layer are the builder's).  It follows dockerd 20.10's ``performCopyForInfo``:

* a directory source copies its *contents* into the destination (created 0755 if missing); a file
  source goes to ``dest`` itself, or into it when ``dest`` ends in ``/`` or is an existing directory;
  several sources need a directory destination;
* modes and mtimes of files, directories and symlinks are kept; everything copied (and a destination
  directory that did not exist) is owned by the ``--chown`` user, root otherwise (``fixPermissions``) — that
  chown drops a regular file's set-user-ID bit (and set-group-ID with group execute), as in dockerd;
  missing parent directories are made 0755;
* ``--chmod`` sets the mode of what is copied (BuildKit's flag, accepted by this builder);
* ADD of a local tar archive (any compression the layer code reads: :func:`is_archive`) unpacks it into
  the destination as dockerd's ``chrootarchive.Untar`` does: through the one hardened extractor,
  :func:`~dockwright.layers.apply.extract_archive`, with the destination directory as the root of the
  extraction (the archive's symlinks resolve inside it, ``..`` names are refused, nothing is written
  outside it), owners, modes and extended attributes taken from the archive (``--chown`` does not apply),
  ``.wh.*`` entries unpacked as ordinary files.

Paths in the rootfs are resolved with the rootfs as ``/`` (``FollowSymlinkInScope``: an absolute or
climbing symlink in the image never points at the host; a destination under a dangling symlink is made
where the symlink points, inside the rootfs, as dockerd's ``MkdirAll`` on the resolved path does) and an
existing symlink at the destination itself is replaced, never written through.  It works on plain ``os``
calls and ``sendfile`` copies: a context of tens of thousands of files costs little more than the kernel's
copying.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import DataCorrupted
from ..layers.apply import extract_archive, is_tar_archive
from .context import remove_existing as _clear
from .paths import go_clean as _go_clean
from .paths import scoped_resolve as _scoped_resolve

__all__ = ["copy_sources", "is_archive"]


def _copy_file(src: str, dst: str, st: os.stat_result, mode: int, uid: int, gid: int) -> None:
    """A new regular file ``dst`` with the contents (in-kernel ``sendfile``), ``mode``, owner and mtime."""
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            off, size = 0, st.st_size
            while off < size:
                n = os.sendfile(fout, fin, off, size - off)
                if n == 0:
                    break
                off += n
            if uid or gid:
                os.fchown(fout, uid, gid)  # before the mode: chown clears set-id bits
            os.fchmod(fout, mode)
            os.utime(fout, ns=(st.st_mtime_ns, st.st_mtime_ns))
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _chowned_mode(mode: int) -> int:
    """The mode of a regular file after dockerd's ``fixPermissions`` chowned it: the kernel drops set-user-ID,
    and set-group-ID when the group may execute (also for root)."""
    mode &= ~stat.S_ISUID
    if mode & stat.S_IXGRP:
        mode &= ~stat.S_ISGID
    return mode


class _Copier:
    def __init__(self, root: Path, uid: int, gid: int, mode: int | None, keep_mode: bool = False) -> None:
        self.root = root
        self.uid, self.gid, self.mode = uid, gid, mode
        self.keep_mode = keep_mode
        self._links: dict[tuple[int, int], str] = {}  # multiply-linked source inodes → their first copy

    def _finish(self, path: str, st: os.stat_result) -> None:
        """Owner, mode and mtime of a copied directory, symlink or special file."""
        os.lchown(path, self.uid, self.gid)
        if stat.S_ISLNK(st.st_mode):
            try:
                os.utime(path, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
            except OSError:
                pass
            return
        os.chmod(path, self.mode if self.mode is not None else stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_mtime_ns, st.st_mtime_ns))

    def entry(self, src: str, dst: str, st: os.stat_result, fresh: bool = False) -> None:
        """Copy one non-directory (``fresh``: nothing can be at ``dst`` yet)."""
        m = st.st_mode
        if not fresh:
            _clear(dst, keep_dir=False)
        if stat.S_ISREG(m) and st.st_nlink > 1:
            first = self._links.get((st.st_dev, st.st_ino))
            if first is not None and first != dst:
                try:  # hard links among what is copied stay hard links, as with dockerd's tar copy
                    os.link(first, dst, follow_symlinks=False)
                    return
                except FileNotFoundError:
                    pass  # the first copy was replaced since
            self._links[(st.st_dev, st.st_ino)] = dst
        if stat.S_ISREG(m):
            _copy_file(src, dst, st, self.mode if self.mode is not None else (
                stat.S_IMODE(m) if self.keep_mode else _chowned_mode(stat.S_IMODE(m))), self.uid, self.gid)
            return
        if stat.S_ISLNK(m):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m) or stat.S_ISFIFO(m):
            os.mknod(dst, m, st.st_rdev)
        else:
            return  # sockets: not copied, as tar does not
        self._finish(dst, st)

    def tree(self, src: str, dst: str, fresh: bool = False) -> None:
        """Copy the contents of directory ``src`` into the existing directory ``dst`` (``fresh``: just
        made, empty)."""
        with os.scandir(src) as it:
            entries = list(it)
        for e in entries:
            s = e.path
            d = dst + "/" + e.name
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if fresh:
                    os.mkdir(d, 0o755)
                    made = True
                else:
                    d, made = self._dir(d)
                self.tree(s, d, made)
                self._finish(d, st)
            else:
                self.entry(s, d, st, fresh)

    def _dir(self, d: str) -> tuple[str, bool]:
        """Make sure ``d`` is a directory (an existing one is kept, through a symlink to a directory
        resolved inside the rootfs); its path and whether it was made now."""
        try:
            st = os.lstat(d)
        except FileNotFoundError:
            os.mkdir(d, 0o755)
            return d, True
        if stat.S_ISDIR(st.st_mode):
            return d, False
        if stat.S_ISLNK(st.st_mode):
            real = str(_scoped_resolve(self.root, os.path.relpath(d, self.root)))
            if os.path.isdir(real) and not os.path.islink(real):
                return real, False
        os.unlink(d)
        os.mkdir(d, 0o755)
        return d, True

    def makedirs(self, rel: str, own: bool) -> tuple[str, bool]:
        """The directory ``rel`` of the rootfs, made (0755, owned by the copy's user if ``own``, root
        otherwise) with its missing parents; its path and whether it existed.  Symlinks on the way are
        resolved inside the rootfs, a dangling one included: what is made is where it points."""
        full = str(_scoped_resolve(self.root, rel))
        if os.path.isdir(full):
            return full, True
        real = os.path.relpath(full, self.root)  # rel with every symlink resolved: no symlink left in it
        parent = os.path.dirname(real)
        base = self.makedirs(parent, own)[0] if parent else str(self.root)
        full = base + "/" + os.path.basename(real)
        _clear(full, keep_dir=False)
        os.mkdir(full, 0o755)
        if own:
            os.lchown(full, self.uid, self.gid)
        return full, False


def is_archive(p: Path) -> bool:
    """Whether ADD unpacks ``p``: a tar archive, plain or compressed with gzip, bzip2, xz or zstd (moby's
    ``IsArchivePath``).  Only the start of the file is read."""
    return is_tar_archive(p)


def _untar(src: Path, root: Path, dest_dir: str, shown: str) -> None:
    """ADD's unpacking of the local archive ``src`` into ``dest_dir`` (a directory of the rootfs at
    ``root``, as a path there), confined to that directory."""
    try:
        with open(src, "rb") as f:
            extract_archive(iter(lambda: f.read(1 << 20), b""), root, os.path.relpath(dest_dir, root))
    except DataCorrupted as exc:
        raise DataCorrupted(f"ADD failed: cannot unpack {shown}: {exc}") from exc


def copy_sources(files: list[Path], target: Path, dest: str, srcs: list[str], uid: int, gid: int,
                 chmod: str, decompress: bool, names: list[str] | None = None, *, keep_mode: bool = False) -> None:
    """Copy the resolved sources ``files`` to ``dest`` (absolute in the rootfs mounted at ``target``).

    ``srcs`` are the sources as written (several need a directory destination); ``decompress`` is ADD's
    unpacking of local archives; ``names`` the name each file gets in a directory destination (default:
    its own; a symlink source's own name, see :func:`~dockwright.builder.sources.resolve_sources_named`).
    ``keep_mode`` (BuildKit's COPY) keeps regular files' set-id bits: BuildKit does not chown what it copies as
    dockerd's classic ``fixPermissions`` does. Blocking: call it from a worker thread.
    """
    cp = _Copier(target, uid, gid, int(chmod, 8) if chmod else None, keep_mode)
    dest_is_dir = dest.endswith("/") or len(files) > 1 or len(srcs) > 1
    rel_dest = _go_clean("/" + dest).lstrip("/")  # "/../x" is "/x", as dockerd's filepath.Join makes it
    for i, src in enumerate(files):
        name = names[i] if names is not None else src.name
        st = os.lstat(src)
        if stat.S_ISDIR(st.st_mode):
            d, existed = cp.makedirs(rel_dest, own=False)
            cp.tree(str(src), d, fresh=not existed)
            if not existed:
                os.lchown(d, uid, gid)
            continue
        if decompress and stat.S_ISREG(st.st_mode) and is_archive(src):
            d, _ = cp.makedirs(rel_dest, own=False)
            _untar(src, target, d, name)
            continue
        full = str(_scoped_resolve(target, rel_dest)) if rel_dest else str(target)
        if dest_is_dir or os.path.isdir(full):
            d, _ = cp.makedirs(rel_dest, own=True)
            cp.entry(str(src), d + "/" + name, st)
        else:
            parent = os.path.dirname(rel_dest)
            d, _ = cp.makedirs(parent, own=True) if parent else (str(target), True)
            cp.entry(str(src), d + "/" + os.path.basename(rel_dest), st)
