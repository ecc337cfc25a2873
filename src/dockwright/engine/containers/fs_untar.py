"""A tar extracted into a container (``PUT /containers/{id}/archive``), as dockerd's ``chrootarchive.UntarWithRoot``.

This module owns :func:`extract_sync`: ``archive.Unpack``'s checks and words (entries leaving the destination,
``noOverwriteDirNonDir``, ``copyUIDGID``, read-only rootfs and volumes), then the entries written by the project's
hardened extractor (:class:`~dockwright.layers.extract.TarExtractor`) rooted at the container's root or at the bind
holding the destination.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable

from ...errors import DockwrightError, NotFound, SystemError_
from ...layers.compression import DecompressedReader
from ...layers.extract import ARCHIVE_RULES, ExtractRules, TarExtractor
from ...runtime.users import get_exec_user
from ...tar.members import MEMBER_ERRORS, open_members
from ...timestamps import go_quote
from .fs_view import ContainerView, NotADirectory, clean_path, container_abs_path, path_comps, show_comps
from .service import Container

__all__ = ["extract_sync"]

_EXIT = "Error processing tar file(exit status 1): "


# --------------------------------------------------------------------------------------------------
# extraction (PUT)


def _within(comps: list[bytes], base: list[bytes]) -> bool:
    return comps[: len(base)] == base


def _join(base: list[bytes], name: bytes) -> list[bytes]:
    """``filepath.Join(base, name)`` in components (``..`` stops at the root)."""
    return path_comps(clean_path(b"/" + b"/".join(base) + b"/" + name))


# a hard link whose mode and times are left as the file's (see _CopyExtractor.entry)
_LINKS_UNCHANGED = ExtractRules(link_modes=False)


class _CopyExtractor(TarExtractor):
    """dockerd's ``archive.Unpack`` into ``dest`` (container path components) with the confined extractor:
    its checks and words first, then the entry renamed into the extractor's root (``fs_dest`` there)."""

    def __init__(self, root_fd: int, dest: list[bytes], fs_dest: list[bytes], *, no_overwrite: bool,
                 owner: tuple[int, int] | None) -> None:
        super().__init__(root_fd, ARCHIVE_RULES)
        self.dest = dest
        self.fs_dest = fs_dest
        self.no_overwrite = no_overwrite
        self.owner = owner
        self.dest_shown = show_comps(dest)

    def _fs_name(self, comps: list[bytes]) -> str:
        return os.fsdecode(b"/".join(self.fs_dest + comps[len(self.dest) :]))

    def entry(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = clean_path(os.fsencode(member.name))
        full = _join(self.dest, name)
        if not _within(full, self.dest):  # ("/" takes everything: "../x" is "/x" there, as for dockerd)
            raise _Refused(f"{go_quote(os.fsdecode(name))} is outside of {go_quote(self.dest_shown)}")
        path_shown = show_comps(full)
        if member.issym():
            target = _join(full[:-1], os.fsencode(member.linkname))
            if not _within(target, self.dest):
                raise _Refused(f"invalid symlink {go_quote(path_shown)} -> {go_quote(member.linkname)}")
        elif member.islnk():
            target = _join(self.dest, os.fsencode(member.linkname))
            if not _within(target, self.dest) or target == self.dest:
                raise _Refused(f"invalid hardlink {go_quote(show_comps(target))} -> {go_quote(member.linkname)}")
            # moby's handleLChmod and the Chtimes after it look at the link's target by its name as written, from
            # the chroot's working directory (the container's root), not from the destination: the header's mode
            # and times are applied only when that names an existing non-symlink
            self.rules = ARCHIVE_RULES if self._plain_at_root(os.fsencode(member.linkname)) else _LINKS_UNCHANGED
            member.linkname = self._fs_name(target)
        fs_name = self._fs_name(full)
        fs_comps = path_comps(os.fsencode(fs_name))
        if fs_comps and (self.no_overwrite or name == b"."):
            parent = self.walker.resolve(fs_comps[:-1], go_quote(path_shown))
            old = self._lstat(parent, fs_comps[-1])
            if old is not None:
                is_dir = stat.S_ISDIR(old.st_mode)
                if self.no_overwrite and is_dir and not member.isdir():
                    raise _Refused(f"cannot overwrite directory {go_quote(path_shown)} with non-directory "
                                   f"{go_quote(self.dest_shown)}")
                if self.no_overwrite and not is_dir and member.isdir():
                    raise _Refused(f"cannot overwrite non-directory {go_quote(path_shown)} with directory "
                                   f"{go_quote(self.dest_shown)}")
                if is_dir and name == b".":
                    return  # the destination itself: left as it is
        if self.owner is not None:
            member.uid, member.gid = self.owner
        member.name = fs_name
        try:
            super().entry(tf, member)
        finally:
            self.rules = ARCHIVE_RULES

    def _plain_at_root(self, name: bytes) -> bool:
        """Whether ``name``, taken from the extraction's root, is there and not a symlink (``os.Lstat``)."""
        comps = path_comps(clean_path(b"/" + name))
        if not comps:
            return True
        try:
            parent = self.links.resolve(comps[:-1], "")
            st = self._lstat(parent, comps[-1])
        except (OSError, DockwrightError):
            return False
        return st is not None and not stat.S_ISLNK(st.st_mode)


class _Refused(Exception):
    """One of ``archive.Unpack``'s own errors (its words)."""


def _tar_error(exc: BaseException) -> str:
    """Go's ``archive/tar`` words for what :mod:`tarfile` says."""
    text = str(exc)
    if isinstance(exc, EOFError) or any(w in text for w in ("unexpected end", "truncated", "EOF")):
        return "unexpected EOF"
    if any(w in text for w in ("bad checksum", "invalid header", "invalid")):
        return "archive/tar: invalid tar header"
    return text


def _unpack(ext: _CopyExtractor, body: DecompressedReader) -> None:
    try:
        tf = open_members(body, bufsize=64 * 1024, go_globals=True)
        if tf is None:
            return  # no entry at all: nothing to do, as for Go's reader
        data_end = 0  # where the last body ends
        while True:
            try:
                member = tf.next()
            except tarfile.ReadError as exc:
                if str(exc) == "unexpected end of data" and tf.fileobj.pos >= data_end:  # type: ignore[attr-defined]
                    break  # the stream ends in the padding of the last body: the end, for Go's reader
                raise
            if member is None:
                break
            tf.members.clear()  # type: ignore[attr-defined]  # stream mode would keep every header
            data_end = member.offset_data + (member.size if member.isreg() else 0)
            ext.entry(tf, member)
        # tarfile takes a header cut short by the end of the stream for the end of the archive; Go does not
        if 0 < tf.fileobj.pos - tf.offset < tarfile.BLOCKSIZE:  # type: ignore[attr-defined]
            raise EOFError("unexpected EOF")
        ext.finish_dirs()
        body.drain()
    except _Refused as exc:
        raise SystemError_(_EXIT + str(exc)) from None
    except DockwrightError as exc:
        text = str(exc)
        raise SystemError_(_EXIT + ("unexpected EOF" if text.startswith("unexpected EOF") else text)) from exc
    except MEMBER_ERRORS as exc:
        raise SystemError_(_EXIT + _tar_error(exc)) from exc
    except OSError as exc:  # Go's words for an errno are in lower case
        text = exc.strerror[:1].lower() + exc.strerror[1:] if exc.strerror else str(exc)
        raise SystemError_(_EXIT + text) from exc


def extract_sync(view: ContainerView, c: Container, ref: str, path: str, body: Iterable[bytes], *,
                  no_overwrite: bool, copy_uid_gid: bool, read_only_rootfs: bool) -> None:
    """Extract the tar ``body`` into the directory ``path`` of the container seen by ``view`` (dockerd's errors);
    blocking."""
    abs_path = container_abs_path(path)
    try:
        res = view.resolve(abs_path)  # the last element followed too: a symlink to a directory will do
    except NotADirectory as exc:
        raise SystemError_(str(exc)) from None
    try:
        if res.kind == "missing":
            raise NotFound(f"Could not find the file {path} in container {ref}")
        if res.kind != "dir":
            raise SystemError_("extraction point is not a directory")
        # the mount holding the destination (the deepest mount point above it)
        holder: tuple[bytes, ...] | None = None
        for key in view.mounts:
            if _within(res.comps, list(key)) and (holder is None or len(key) > len(holder)):
                holder = key
        volume = view.mounts[holder] if holder is not None else None
        if volume is not None and volume.volume and volume.read_only:
            raise SystemError_("mounted volume is marked read-only")
        if (volume is None or not volume.volume) and read_only_rootfs:
            raise SystemError_("container rootfs is marked read-only")
        owner = None
        user = str(c.config.get("User") or "")
        if copy_uid_gid and user:
            eu = get_exec_user(user, view.read_small(b"/etc/passwd"), view.read_small(b"/etc/group"))
            owner = (eu.uid, eu.gid)
        if volume is not None:  # written into the bind's source, the bind's root as the extraction's root
            fs_dest = res.comps[len(holder or ()) :]
            root_fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=volume.fd)
        else:
            root_fd, fs_dest = os.dup(view.root_fd), list(res.comps)
        try:
            ext = _CopyExtractor(root_fd, list(res.comps), list(fs_dest), no_overwrite=no_overwrite, owner=owner)
        finally:
            os.close(root_fd)
        try:
            _unpack(ext, DecompressedReader(body))
        finally:
            ext.close()
    finally:
        res.close()
