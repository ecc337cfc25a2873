"""The overlayfs snapshotter: snapshots as directories under ``<data-root>/snapshots``.

Layout (containerd's, with the metadata in SQLite beside it)::

    snapshots/
        metadata.db      key or name → id, parent, kind, created, updated
        <id>/fs          the snapshot's own files: a layer (committed) or an upperdir (active)
        <id>/work        overlay's workdir, for an active snapshot with a parent

Ids are small integers, which keeps overlay's ``lowerdir=`` short (the kernel takes one page of options);
:func:`~dockwright.snapshots.mount.mount_all` falls back to relative paths for very long chains.

Mounts: an active snapshot with parents is an overlay (``lowerdir`` = the parents' ``fs``, top first,
``upperdir`` = its own ``fs``); without a parent it is a read-write bind mount of its ``fs``.  A view with
one parent is a read-only bind mount of that parent (overlay needs two lower directories to go without an
upper), with more parents an overlay of lower directories only, and without a parent an empty read-only
directory.  The root of an upper directory takes the owner and mode of its parent layer's root, since
overlayfs shows the upper root's.

Crash safety: a snapshot's directory is made before its row is committed and removed after its row is
deleted; directories without a row are removed when the snapshotter is opened.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import Conflict, InvalidArgument, NotFound
from ..metadata.snapshots import SnapshotRow, SnapshotsDB
from .du import walk_tree
from .mount import Mount
from .snapshotter import Info, Kind, Usage

__all__ = ["OverlaySnapshotter"]

_PARAMS = Path("/sys/module/overlay/parameters")


def _param(name: str) -> str | None:
    try:
        return (_PARAMS / name).read_text().strip()
    except OSError:
        return None


class _Row:
    __slots__ = ("id", "key", "parent", "kind", "created", "updated")

    def __init__(self, row: SnapshotRow) -> None:
        self.id, self.key, self.parent, self.created, self.updated = row.id, row.key, row.parent, row.created, \
            row.updated
        self.kind = Kind(row.kind)


class OverlaySnapshotter:
    """Snapshots on overlayfs under ``root``.  Thread-safe; blocking (call from worker threads)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        if any(c in str(self.root) for c in ",:\\\n"):
            raise InvalidArgument(f"snapshot root {str(self.root)!r} cannot be used in overlay mount options")
        # dockerd's overlay2 directory: 0710 (each snapshot's own directory is 0700), fixed on open
        self.root.mkdir(mode=0o710, parents=True, exist_ok=True)
        if os.stat(self.root).st_mode & 0o7777 != 0o710:
            os.chmod(self.root, 0o710)
        self._lock = threading.RLock()
        self._db = SnapshotsDB(self.root / "metadata.db")
        self._overlay_options: tuple[str, ...] | None = None
        self._remove_orphans()

    def close(self) -> None:
        """Close the metadata database."""
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ internals

    def _dir(self, sid: int) -> Path:
        return self.root / str(sid)

    def _get(self, key: str) -> _Row | None:
        row = self._db.get(key)
        return _Row(row) if row else None

    def _must(self, key: str) -> _Row:
        row = self._get(key)
        if row is None:
            raise NotFound(f"snapshot {key}: not found")
        return row

    def _key_of(self, sid: int | None) -> str | None:
        if sid is None:
            return None
        return self._db.key_of(sid)

    def _parents(self, row: _Row) -> list[int]:
        """Ids of the parents of ``row``, nearest first."""
        if row.parent is None:
            return []
        return self._db.chain(row.parent)

    def _options(self) -> tuple[str, ...]:
        """Overlay options dockerd and containerd add when the kernel supports them."""
        if self._overlay_options is None:
            opts: list[str] = []
            if _param("index") is not None:
                opts.append("index=off")
            if _param("redirect_dir") in ("Y", "on", "follow"):
                opts.append("redirect_dir=off")  # a renamed lower directory must be copied up, not redirected
            if _param("metacopy") == "Y":
                opts.append("metacopy=off")  # an upper file must hold its data
            if not _PARAMS.is_dir():
                return tuple(opts)  # module not loaded yet: look again next time
            self._overlay_options = tuple(opts)
        return self._overlay_options

    def _info(self, row: _Row) -> Info:
        return Info(name=row.key, kind=row.kind, parent=self._key_of(row.parent), created=row.created,
                    updated=row.updated)

    def _mounts(self, row: _Row) -> list[Mount]:
        parents = self._parents(row)
        own = self._dir(row.id)
        if row.kind is Kind.COMMITTED:
            raise InvalidArgument(f"snapshot {row.key} is committed: it has no mounts")
        if row.kind is Kind.VIEW:
            if not parents:
                return [Mount("bind", str(own / "fs"), ("ro", "rbind"))]
            if len(parents) == 1:
                return [Mount("bind", str(self._dir(parents[0]) / "fs"), ("ro", "rbind"))]
            lower = ":".join(str(self._dir(p) / "fs") for p in parents)
            return [Mount("overlay", "overlay", (*self._options(), f"lowerdir={lower}"))]
        if not parents:
            return [Mount("bind", str(own / "fs"), ("rw", "rbind"))]
        lower = ":".join(str(self._dir(p) / "fs") for p in parents)
        return [Mount("overlay", "overlay", (
            *self._options(), f"workdir={own / 'work'}", f"upperdir={own / 'fs'}", f"lowerdir={lower}",
        ))]

    def _create(self, key: str, parent: str | None, kind: Kind) -> list[Mount]:
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        with self._lock:
            parent_row = None
            if parent is not None:
                parent_row = self._get(parent)
                if parent_row is None:
                    raise NotFound(f"parent snapshot {parent} does not exist: not found")
                if parent_row.kind is not Kind.COMMITTED:
                    raise InvalidArgument(f"parent snapshot {parent} is not committed")
            now = time.time()
            made: Path | None = None
            try:
                with self._db.tx():
                    sid = self._db.insert(key, parent_row.id if parent_row else None, kind.value, now)
                    made = self._dir(sid)
                    if made.exists():  # left by a crash before a commit that was rolled back
                        shutil.rmtree(made)
                    made.mkdir(mode=0o700)
                    fs = made / "fs"
                    fs.mkdir()
                    if parent_row is not None:
                        st = (self._dir(parent_row.id) / "fs").stat()
                        os.chown(fs, st.st_uid, st.st_gid)
                        os.chmod(fs, st.st_mode & 0o7777)
                        if kind is Kind.ACTIVE:
                            (made / "work").mkdir(mode=0o700)
                    else:
                        os.chmod(fs, 0o755)
                    row = _Row(SnapshotRow(sid, key, parent_row.id if parent_row else None, kind.value, now, now))
                    mounts = self._mounts(row)
            except BaseException:
                if made is not None:
                    shutil.rmtree(made, ignore_errors=True)
                raise
            return mounts

    def _remove_orphans(self) -> None:
        with self._lock:
            ids = self._db.ids()
        for entry in os.scandir(self.root):
            if entry.name.startswith("rm-") or (entry.name.isdigit() and int(entry.name) not in ids):
                shutil.rmtree(entry.path, ignore_errors=True)

    # ------------------------------------------------------------------ the verbs

    def prepare(self, key: str, parent: str | None = None) -> list[Mount]:
        """A new active (writable) snapshot ``key`` on top of the committed ``parent``; its mounts."""
        return self._create(key, parent, Kind.ACTIVE)

    def view(self, key: str, parent: str | None = None) -> list[Mount]:
        """A new read-only snapshot ``key`` showing the committed ``parent``; its mounts."""
        return self._create(key, parent, Kind.VIEW)

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active snapshot or a view."""
        with self._lock:
            return self._mounts(self._must(key))

    def commit(self, name: str, key: str) -> None:
        """Turn the active snapshot ``key`` into the committed snapshot ``name`` (it keeps its files)."""
        if not name:
            raise InvalidArgument("snapshot name must not be empty")
        with self._lock:
            row = self._must(key)
            if row.kind is not Kind.ACTIVE:
                raise InvalidArgument(f"snapshot {key} is not active: cannot commit it")
            self._db.commit(row.id, name, time.time())
            shutil.rmtree(self._dir(row.id) / "work", ignore_errors=True)

    def remove(self, key: str) -> None:
        """Remove a snapshot and its files.  Refused while other snapshots have it as their parent."""
        with self._lock:
            row = self._must(key)
            if self._db.has_children(row.id):
                raise Conflict(f"cannot remove snapshot {key}: it has children")
            d = self._dir(row.id)
            gone = self.root / f"rm-{row.id}"
            self._db.delete(row.id)
            try:
                os.rename(d, gone)
            except FileNotFoundError:
                return
        shutil.rmtree(gone, ignore_errors=True)

    def stat(self, key: str) -> Info:
        """The snapshot's :class:`Info` (``NotFound`` when there is none)."""
        with self._lock:
            return self._info(self._must(key))

    def exists(self, key: str) -> bool:
        """Whether a snapshot ``key`` exists."""
        with self._lock:
            return self._get(key) is not None

    def walk(self) -> Iterator[Info]:
        """Every snapshot, parents before children."""
        with self._lock:
            rows = [_Row(r) for r in self._db.all()]
            keys = {r.id: r.key for r in rows}
        for r in rows:
            yield Info(name=r.key, kind=r.kind, parent=keys.get(r.parent) if r.parent is not None else None,
                       created=r.created, updated=r.updated)

    def upper_dir(self, key: str) -> Path:
        """The snapshot's own directory: the upperdir of an active snapshot, the files of a committed one."""
        with self._lock:
            return self._dir(self._must(key).id) / "fs"

    def lower_dirs(self, key: str) -> list[Path]:
        """The directories of the snapshot's parents, nearest first (overlay's ``lowerdir`` order)."""
        with self._lock:
            return [self._dir(p) / "fs" for p in self._parents(self._must(key))]

    def usage(self, key: str) -> Usage:
        """Space used by the snapshot's own files."""
        fs = self.upper_dir(key)
        seen: set[tuple[int, int]] = set()
        size = apparent = 0
        try:
            st = os.lstat(fs)
        except FileNotFoundError as exc:
            raise NotFound(f"snapshot {key}: not found") from exc
        seen.add((st.st_dev, st.st_ino))
        size += st.st_blocks * 512

        def visit(entry: os.DirEntry[str], st: os.stat_result) -> bool:
            nonlocal size, apparent
            ident = (st.st_dev, st.st_ino)
            if ident in seen:
                return False
            seen.add(ident)
            size += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                return True
            apparent += st.st_size
            return False

        walk_tree(os.fspath(fs), visit)
        return Usage(size=size, inodes=len(seen), apparent_size=apparent)
