"""Snapshots: key, name and parent snapshots on overlayfs.  It knows no tar, digests or images.

``snapshotter`` holds the vocabulary (:class:`Kind`, :class:`Info`, :class:`Usage`) and the interfaces
callers take; ``overlay`` the overlayfs implementation (:class:`OverlaySnapshotter`); ``mount`` the
:class:`Mount` value and :func:`mount_all` / :func:`unmount`.
"""

from .mount import PAGE_SIZE, Mount, is_mountpoint, mount_all, mounts_under, unmount
from .overlay import OverlaySnapshotter
from .snapshotter import (
    Info,
    Kind,
    LayerSnapshotter,
    SnapshotDirs,
    Snapshotter,
    SnapshotWalker,
    Usage,
)

__all__ = [
    "Kind",
    "Info",
    "Usage",
    "Snapshotter",
    "SnapshotDirs",
    "SnapshotWalker",
    "LayerSnapshotter",
    "OverlaySnapshotter",
    "Mount",
    "mount_all",
    "unmount",
    "is_mountpoint",
    "mounts_under",
    "PAGE_SIZE",
]
