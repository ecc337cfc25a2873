"""The source checksums dockerd's classic builder records for COPY and ADD (``COPY file:<hex> in /dest``).

moby ``builder/dockerfile/copy.go`` names what a COPY/ADD copies by a checksum that goes into the step's
history (and so into its cache key):

* one file: ``file:`` + the entry's hash; a directory: ``dir:`` + sha256 of the sorted hashes of every entry
  below it (the directory itself included, symlinks followed inside the source) joined with ``,``;
* several sources (or a wildcard matching several entries): ``multi:`` + sha256 of their IDs joined with ``,``;
* an ADD of a URL: the downloaded file's entry hash, without a prefix.

An entry's hash is tarsum v1 (``pkg/tarsum``): sha256 over the tar header fields ``name mode uid gid size
typeflag linkname uname gname devmajor devminor`` (each written as name + value, no mtime) plus the sorted
xattrs, then the file's bytes. Where the header comes from depends on the source, as in dockerd:

* the build context (``remotecontext.FromArchive``): the header the client wrote into the context tar — the
  permission bits as the mode, no user or group names (tarsum blanks them);
* a ``lazySource`` (an image's root filesystem for ``COPY --from``, a downloaded URL, a heredoc): the header
  ``archive.FileInfoHeader`` makes from ``lstat`` — the mode with Go's file-type bits, user and group names
  looked up on the daemon's host, ``security.capability`` as an xattr.

This module knows files and hashes only; which flavour applies is the caller's choice.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
from collections.abc import Mapping
from pathlib import Path

from .paths import follow_in_scope

__all__ = ["entry_hash", "source_hash", "combine", "follow_in_scope", "lazy_file_hasher", "context_entry_header"]

_CHUNK = 1 << 20
# Go's archive/tar c_IS* bits, which moby's FileInfoHeader puts back into the mode
_TYPE_BITS = ((stat.S_ISREG, 0o100000), (stat.S_ISDIR, 0o40000), (stat.S_ISLNK, 0o120000),
              (stat.S_ISFIFO, 0o10000), (stat.S_ISSOCK, 0o140000), (stat.S_ISBLK, 0o60000),
              (stat.S_ISCHR, 0o20000))
_NAMES: dict[tuple[str, int], str] = {}
_LINKS: dict[str, dict[tuple[int, int], str]] = {}


def _name_of(kind: str, ident: int) -> str:
    key = (kind, ident)
    if key not in _NAMES:
        try:
            _NAMES[key] = pwd.getpwuid(ident).pw_name if kind == "u" else grp.getgrgid(ident).gr_name
        except (KeyError, OverflowError):
            _NAMES[key] = ""
    return _NAMES[key]


def _header(path: str, name: str, st: os.stat_result, lazy: bool) -> bytes:
    mode = stat.S_IMODE(st.st_mode)
    typeflag, size, link = "0", 0, ""
    if stat.S_ISREG(st.st_mode):
        size = st.st_size
    elif stat.S_ISDIR(st.st_mode):
        typeflag = "5"
        name += "/"
    elif stat.S_ISLNK(st.st_mode):
        typeflag, link = "2", os.readlink(path)
    elif stat.S_ISCHR(st.st_mode):
        typeflag = "3"
    elif stat.S_ISBLK(st.st_mode):
        typeflag = "4"
    elif stat.S_ISFIFO(st.st_mode):
        typeflag = "6"
    major = minor = 0
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    uname = gname = ""
    xattrs: list[tuple[str, bytes]] = []
    if lazy:
        for test, bits in _TYPE_BITS:
            if test(st.st_mode):
                mode |= bits
                break
        uname, gname = _name_of("u", st.st_uid), _name_of("g", st.st_gid)
        try:
            xattrs.append(("security.capability", os.getxattr(path, "security.capability", follow_symlinks=False)))
        except OSError:
            pass
    out = (f"name{name}mode{mode}uid{st.st_uid}gid{st.st_gid}size{size}typeflag{typeflag}linkname{link}"
           f"uname{uname}gname{gname}devmajor{major}devminor{minor}").encode("utf-8", "surrogateescape")
    return out + b"".join(k.encode() + v for k, v in sorted(xattrs)) if xattrs else out


def lazy_file_hasher(path: Path | str, name: str, size: int) -> hashlib._Hash:
    """A sha256 primed with the lazy-source header of the regular file at ``path`` as it will be once it holds
    ``size`` bytes, so that its bytes can be hashed while they are written (an ADD of a URL)."""
    st = os.lstat(path)
    fake = os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, size,
                           st.st_atime, st.st_mtime, st.st_ctime))
    return hashlib.sha256(_header(str(path), name, fake, True))


def _first_links(root: str) -> dict[tuple[int, int], str]:
    """For the context at ``root``: each multiply-linked file's first path in the order the docker CLI walks the
    context (``filepath.Walk``), which it sends as a file; it sends the other paths as hard links to it."""
    cached = _LINKS.get(root)
    if cached is not None:
        return cached
    first: dict[tuple[int, int], str] = {}

    def walk(dirpath: str, prefix: str) -> None:
        with os.scandir(dirpath) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            st = e.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                first.setdefault((st.st_dev, st.st_ino), prefix + e.name)
            elif stat.S_ISDIR(st.st_mode):
                walk(e.path, prefix + e.name + "/")

    walk(root, "")
    if len(_LINKS) >= 8:
        _LINKS.pop(next(iter(_LINKS)))
    _LINKS[root] = first
    return first


def _hash_stat(full: str, name: str, st: os.stat_result, lazy: bool, root: str | None = None) -> str:
    if not lazy and root is not None and stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        target = _first_links(root).get((st.st_dev, st.st_ino))
        if target is not None and target != name:  # a hard link in the client's tar: a header, no bytes
            return hashlib.sha256(context_entry_header(name, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, 0, "1",
                                                       target)).hexdigest()
    h = hashlib.sha256(_header(full, name, st, lazy))
    if stat.S_ISREG(st.st_mode) and st.st_size > 0:
        fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if st.st_size <= _CHUNK:
                h.update(os.read(fd, st.st_size))
            else:
                with os.fdopen(fd, "rb", closefd=False) as f:
                    while buf := f.read(_CHUNK):
                        h.update(buf)
        finally:
            os.close(fd)
    return h.hexdigest()


def entry_hash(root: Path | str, rel: str, *, lazy: bool = False, known: Mapping[str, str] | None = None) -> str:
    """The hash dockerd's source ``Hash(rel)`` gives: the entry ``rel`` names once symlinks are followed inside
    ``root`` (a missing target gives the path itself, as dockerd's "backwards compatibility" case). ``known``
    maps full paths to hashes already computed (the context's entries, hashed as the context streamed in; ""
    for one to hash from its file); with it, a path that is no entry of the context's tar (a directory only
    implied by its entries' names) is hashed as ``rel`` itself, as dockerd's tarsum context does."""
    try:
        real = follow_in_scope(root, rel)
    except OSError:
        return rel
    full = os.path.join(str(root), real) if real != "." else str(root)
    if known:
        h = known.get(full)
        if h:
            return h
        if h is None and not lazy:
            return rel  # no entry of the client's tar (a directory its names only implied): dockerd's Hash
    try:
        st = os.lstat(full)
    except OSError:
        return real if lazy else rel
    if real == "." and not lazy:
        return rel  # the context's root has no entry of its own in the client's tar
    return _hash_stat(full, real, st, lazy, os.path.normpath(str(root)))


def source_hash(root: Path | str, path: Path | str, *, lazy: bool = False,
                known: Mapping[str, str] | None = None) -> str:
    """``file:<hash>`` or ``dir:<hash>`` for one resolved source ``path`` (absolute, under ``root``, or
    relative to it), as ``calcCopyInfo`` computes it."""
    root_s = os.path.normpath(str(root))
    p = str(path)
    rel = os.path.relpath(p, root_s) if os.path.isabs(p) else p
    rel = "." if rel in ("", ".") else rel
    real = follow_in_scope(root_s, rel)
    full = os.path.join(root_s, real) if real != "." else root_s
    if not os.path.isdir(full):
        return "file:" + entry_hash(root_s, rel, lazy=lazy, known=known)
    subs: list[str] = []

    def walk(dirpath: str, prefix: str) -> None:
        with os.scandir(dirpath) as it:
            entries = list(it)
        for e in entries:
            sub = prefix + e.name
            st = e.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                subs.append(entry_hash(root_s, sub, lazy=lazy, known=known))  # hashed as what it points to
                continue
            h = known.get(e.path) if known else None
            if h:
                subs.append(h)
            elif known and h is None and not lazy:
                subs.append(sub)  # a directory the client's tar only implied: dockerd's Hash gives its path
            else:
                subs.append(_hash_stat(e.path, sub, st, lazy, root_s))
            if stat.S_ISDIR(st.st_mode):
                walk(e.path, sub + "/")

    walk(full, "" if real == "." else real + "/")
    if real != ".":
        subs.append(entry_hash(root_s, real, lazy=lazy, known=known))
    return "dir:" + hashlib.sha256(",".join(sorted(subs)).encode()).hexdigest()


def context_entry_header(name: str, mode: int, uid: int, gid: int, size: int, typeflag: str, linkname: str = "",
                         devmajor: int = 0, devminor: int = 0, xattrs: Mapping[str, bytes] | None = None) -> bytes:
    """The bytes a context entry's hash starts with, from the fields of its header in the client's tar (tarsum
    v1 as ``remotecontext.FromArchive`` computes it: no mtime, user and group names blanked); the entry's hash
    is sha256 of these followed by the file's bytes. For an extractor that hashes the context as it streams."""
    out = (f"name{name}mode{mode}uid{uid}gid{gid}size{size}typeflag{typeflag}linkname{linkname}unamegname"
           f"devmajor{devmajor}devminor{devminor}").encode("utf-8", "surrogateescape")  # one call per context entry
    return out + b"".join(k.encode() + v for k, v in sorted(xattrs.items())) if xattrs else out


def combine(ids: list[str]) -> str:
    """``getSourceHashFromInfos``: one ID as it is, several as ``multi:<sha256 of them joined by ,>``."""
    if len(ids) == 1:
        return ids[0]
    return "multi:" + hashlib.sha256(",".join(ids).encode()).hexdigest()
