"""The snapshotter vocabulary: kinds, infos, usage and the interfaces callers take.

Words are containerd's: an *active* snapshot is made by ``prepare(key, parent)`` and is writable; a *view*
is a read-only one made by ``view(key, parent)``; ``commit(name, key)`` turns an active snapshot into a
*committed* one that can be a parent.  Layer snapshots are committed under their ChainID.  ``prepare`` and
``view`` return the mounts that would show the snapshot; they never mount.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .mount import Mount

__all__ = ["Kind", "Info", "Usage", "Snapshotter", "SnapshotDirs", "LayerSnapshotter", "SnapshotWalker"]


class Kind(enum.Enum):
    """What a snapshot is."""

    COMMITTED = "committed"
    ACTIVE = "active"
    VIEW = "view"


@dataclass(frozen=True, slots=True)
class Info:
    """A snapshot: its key (or name, once committed), kind, parent name and times (Unix seconds)."""

    name: str
    kind: Kind
    parent: str | None
    created: float
    updated: float


@dataclass(frozen=True, slots=True)
class Usage:
    """Space used by one snapshot's own directory (its parents not included).

    ``size``: bytes allocated (``du``, containerd's ``Usage.Size``); ``inodes``: distinct inodes;
    ``apparent_size``: the sum of the apparent sizes of the non-directories, each inode once, which is
    what dockerd reports for a layer or a container's ``SizeRw``.
    """

    size: int
    inodes: int
    apparent_size: int


class Snapshotter(Protocol):
    """containerd's snapshot verbs."""

    def stat(self, key: str) -> Info:
        """The snapshot's :class:`Info`."""

    def prepare(self, key: str, parent: str | None = None) -> list[Mount]:
        """A new active snapshot on ``parent``; its mounts."""

    def view(self, key: str, parent: str | None = None) -> list[Mount]:
        """A new read-only snapshot of ``parent``; its mounts."""

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active snapshot or a view."""

    def commit(self, name: str, key: str) -> None:
        """Turn the active snapshot ``key`` into the committed snapshot ``name``."""

    def remove(self, key: str) -> None:
        """Remove a snapshot that has no children."""


class SnapshotDirs(Protocol):
    """Direct access to a snapshot's directories, for unpacking a layer into it or making a layer from it."""

    def exists(self, key: str) -> bool:
        """Whether snapshot ``key`` exists."""

    def upper_dir(self, key: str) -> Path:
        """The snapshot's own directory."""

    def lower_dirs(self, key: str) -> list[Path]:
        """Its parents' directories, nearest first."""


class LayerSnapshotter(Snapshotter, SnapshotDirs, Protocol):
    """What unpacking layers needs: the verbs and the directories."""


class SnapshotWalker(Protocol):
    """Listing and accounting, for garbage collection and ``system df``."""

    def walk(self) -> Iterator[Info]:
        """Every snapshot, parents before children."""

    def usage(self, key: str) -> Usage:
        """Space used by the snapshot's own files."""

