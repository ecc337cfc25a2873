"""fsutil's DiffCopy, both ends (tonistiigi/fsutil ``receive.go``/``diskwriter.go`` and ``send.go``): :func:`receive`
syncs a directory a client sends (BuildKit's FileSync: the build context, the Dockerfile) into ``dest``,
incrementally, and :func:`send` sends a directory tree to a client that receives it (FileSend: ``--output
type=local``).

The wire: the sender lists every entry in ``filepath.WalkDir`` order as STAT packets (``Stat.mode`` is a Go
``os.FileMode``: permission bits, then type and setuid/setgid/sticky bits of its own), an empty STAT ends the list;
the receiver asks for the contents of the regular files it lacks with REQ (the file's index in the list), the
sender answers with DATA chunks and an empty DATA; the receiver ends with FIN, the sender answers FIN; ERR carries
either side's error. The receiver here trusts nothing the sender says: paths are checked as fsutil's Validator
does (clean, relative, in order, every parent a directory listed before), nothing is created through a symlink,
and every file's contents go to a temporary file renamed into place when complete. Files are streamed, never held
in memory.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import posixpath
import secrets
import shutil
import stat as st_
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from grpclib.client import Stream as ClientStream
from grpclib.server import Stream as ServerStream

from ..errors import InvalidArgument
from ..timestamps import go_quote
from .pb.stat_pb2 import Stat
from .pb.wire_pb2 import Packet

__all__ = [
    "PacketStream", "ClientPackets", "ServerPackets", "Listing", "SyncStats", "SyncError", "receive", "send",
    "walk", "stat_of", "go_mode", "unix_mode", "can_request_data", "Progress",
    "MODE_DIR", "MODE_SYMLINK", "MODE_DEVICE", "MODE_NAMED_PIPE", "MODE_SOCKET", "MODE_SETUID", "MODE_SETGID",
    "MODE_CHAR_DEVICE", "MODE_STICKY", "MODE_IRREGULAR", "MODE_TYPE", "CHUNK", "WINDOW",
]

# Go's os.FileMode bits (io/fs)
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_IRREGULAR = 1 << 19
MODE_TYPE = MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE | MODE_IRREGULAR

CHUNK = 32 << 10  # fsutil's send buffer: the size of a DATA packet
WINDOW = 64  # files whose contents the receiver asks for at once (each one has a temporary file open)

STAT, REQ, DATA, FIN, ERR = (Packet.PACKET_STAT, Packet.PACKET_REQ, Packet.PACKET_DATA, Packet.PACKET_FIN,
                             Packet.PACKET_ERR)

Progress = Callable[[int, bool], None]


def go_mode(st_mode: int) -> int:
    """The Go ``os.FileMode`` of an ``lstat``'s ``st_mode`` (Go's ``fillFileStatFromSys``)."""
    mode = st_mode & 0o777
    kind = st_.S_IFMT(st_mode)
    mode |= {st_.S_IFBLK: MODE_DEVICE, st_.S_IFCHR: MODE_DEVICE | MODE_CHAR_DEVICE, st_.S_IFDIR: MODE_DIR,
             st_.S_IFIFO: MODE_NAMED_PIPE, st_.S_IFLNK: MODE_SYMLINK, st_.S_IFSOCK: MODE_SOCKET}.get(kind, 0)
    if st_mode & st_.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & st_.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & st_.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def unix_mode(mode: int) -> int:
    """The ``chmod`` bits of a Go ``os.FileMode`` (Go's ``syscallMode``): permissions, setuid, setgid, sticky."""
    out = mode & 0o777
    if mode & MODE_SETUID:
        out |= st_.S_ISUID
    if mode & MODE_SETGID:
        out |= st_.S_ISGID
    if mode & MODE_STICKY:
        out |= st_.S_ISVTX
    return out


def can_request_data(mode: int) -> bool:
    """fsutil's ``fileCanRequestData``: only a regular file has contents to ask for (sender and receiver agree)."""
    return mode & MODE_TYPE == 0


@dataclass(frozen=True)
class Listing:
    """A sync's STAT packets as they came: their gRPC messages' bytes end to end (the empty STAT that ends the list
    last), and where each message ends."""

    raw: bytes
    ends: array[int]


class Coalescing(Protocol):
    """A connection's reads, which may wait a moment after a short read to take more at once
    (:class:`.h2c.DirectData`)."""

    coalesce: bool


class PacketStream(Protocol):
    """One DiffCopy call's packets, whichever side of the gRPC call this end is."""

    async def send(self, packet: Packet, *, last: bool = False) -> None:
        """Send ``packet``; ``last`` ends this side of the call when it can (a gRPC client's)."""

    async def recv(self) -> Packet | None:
        """The next packet, or None when the peer ended its side."""

    async def send_all(self, packets: list[Packet]) -> None:
        """Send ``packets`` (in one write where this stream can)."""

    def ready(self) -> bool:
        """Whether a packet has come that :meth:`recv` returns without waiting."""

    async def skip_listed(self, previous: Listing) -> int:
        """Take the packets at the start of the stream that repeat ``previous``'s first packets byte for byte,
        without decoding them; how many (0 if this stream cannot tell)."""

    @property
    def listing(self) -> Listing | None:
        """This stream's STAT packets as they came, once the empty STAT that ends them did (None if this stream
        does not keep them)."""


class ClientPackets:
    """The packets of a DiffCopy this end called (grpclib client stream): ``last`` ends the request stream.

    A context lists one STAT packet per entry (tens of thousands): receiving them one grpclib ``recv_message`` at a
    time (two awaits, a task wrapper and a dispatch each) was most of a cached rebuild's time. So the response's
    bytes are taken from the HTTP/2 stream's buffer as they come (acknowledged as grpclib would) and every
    complete gRPC message in them is decoded at once; grpclib's wrapper still guards the wait (a connection that
    ends wakes it with an error). This reads grpclib's ``Stream``/``Buffer`` internals (pinned in pyproject).

    The STAT packets' bytes are kept as they come (:attr:`listing`): a rebuild's context lists the same entries
    with the same metadata, so the next sync compares its bytes with them (:meth:`skip_listed`) and decodes only
    from the first packet that differs."""

    def __init__(self, stream: ClientStream[Packet, Packet], *, reads: Coalescing | None = None) -> None:
        self.stream = stream
        self.reads = reads  # the connection's reads, coalesced while a repeated listing streams in
        self._buf = bytearray()
        self._ready: deque[Packet] = deque()
        self._ended = False
        self._listed = bytearray()
        self._ends: array[int] = array("Q")
        self._listing_done = False

    @property
    def listing(self) -> Listing | None:
        """The STAT packets' bytes, once the empty STAT that ends them came."""
        return Listing(bytes(self._listed), self._ends) if self._listing_done else None

    async def send(self, packet: Packet, *, last: bool = False) -> None:
        """Send ``packet``, ending the request stream with it when ``last``."""
        await self.stream.send_message(packet, end=last)

    async def send_all(self, packets: list[Packet]) -> None:
        """Send ``packets`` as one DATA write (gRPC messages may share a frame): a receiver asks for many files at
        once, and grpclib's send of each message on its own (a dispatch, h2's frame, a write) was most of what
        asking cost."""
        s: Any = self.stream
        if not s._send_request_done:  # noqa: SLF001
            await s.send_request()
        raws = [p.SerializeToString() for p in packets]
        data = b"".join(b"\0" + len(raw).to_bytes(4, "big") + raw for raw in raws)
        with s._wrapper:  # noqa: SLF001
            await s._stream.send_data(data, end_stream=False)  # noqa: SLF001 - grpclib.protocol.Stream

    def ready(self) -> bool:
        """Whether a decoded packet is waiting."""
        return bool(self._ready)

    def _parse(self) -> None:
        buf, off, n = self._buf, 0, len(self._buf)
        while n - off >= 5:
            if buf[off]:
                raise SyncError("compressed gRPC messages are not supported")
            size = int.from_bytes(buf[off + 1:off + 5], "big")
            end = off + 5 + size
            if end > n:
                break
            packet = Packet.FromString(bytes(buf[off + 5:end]))
            self._ready.append(packet)
            if packet.type == STAT and not self._listing_done:
                self._listed += buf[off:end]
                self._ends.append(len(self._listed))
                self._listing_done = not packet.HasField("stat")
            off = end
        if off:
            del buf[:off]

    async def _fill(self) -> bool:
        """Add what came of the response stream to the buffer, waiting for something if nothing did; False at the
        stream's end."""
        if self._ended:
            return False
        s: Any = self.stream
        if not s._recv_initial_metadata_done:  # noqa: SLF001
            await s.recv_initial_metadata()
        buffer: Any = s._stream.buffer  # noqa: SLF001 - grpclib.protocol.Buffer
        queue = buffer._unacked  # noqa: SLF001
        with s._wrapper:  # noqa: SLF001
            data, size, ack = await queue.get()
            acked = 0
            try:
                while True:
                    if not ack and not data:  # the end of the response stream
                        self._ended = True
                        return False
                    self._buf += data
                    acked += ack
                    if queue.empty():
                        return True
                    data, size, ack = queue.get_nowait()
            finally:
                if acked:
                    buffer._ack_callback(acked)  # flow control, once for the batch: the window opens again

    async def recv(self) -> Packet | None:
        """The next packet of the response stream, or None at its end."""
        if not self._ready:
            self._parse()  # bytes :meth:`skip_listed` gave back
        while not self._ready:
            more = await self._fill()
            self._parse()
            if not more:
                if self._buf:
                    raise SyncError("the sender's stream ended inside a message")
                break
        return self._ready.popleft() if self._ready else None

    async def skip_listed(self, previous: Listing) -> int:
        """Take the packets at the start of the response that repeat ``previous``'s first STAT packets byte for
        byte (compared as they come, never decoded); how many. The first that differs, and what follows, are
        decoded by :meth:`recv` as usual."""
        if self._ready or self._listed:
            return 0
        expected = memoryview(previous.raw)
        pos, total = 0, len(expected)
        if self.reads is not None:
            self.reads.coalesce = True  # the sender lists without waiting for this end
        try:
            while pos < total:
                if not self._buf and not await self._fill():
                    break
                buf = self._buf
                m = min(len(buf), total - pos)
                if buf[:m] == expected[pos:pos + m]:
                    del buf[:m]
                    pos += m
                    continue
                same = _common_prefix(buf, expected[pos:pos + m])
                del buf[:same]
                pos += same
                break
        finally:
            if self.reads is not None:
                self.reads.coalesce = False
        k = bisect.bisect_right(previous.ends, pos)
        start = previous.ends[k - 1] if k else 0
        self._buf[:0] = expected[start:pos]  # the part of a message that matched goes back: it is decoded with it
        self._listed += expected[:start]
        self._ends.extend(previous.ends[:k])
        self._listing_done = k == len(previous.ends)
        return k


class ServerPackets:
    """The packets of a DiffCopy this end answers (grpclib server stream): it ends when the handler returns."""

    def __init__(self, stream: ServerStream[Packet, Packet]) -> None:
        self.stream = stream

    async def send(self, packet: Packet, *, last: bool = False) -> None:
        """Send ``packet`` (the response stream ends when the handler returns, whatever ``last`` says)."""
        await self.stream.send_message(packet)

    async def recv(self) -> Packet | None:
        """The next packet of the request stream, or None at its end."""
        return await self.stream.recv_message()

    async def send_all(self, packets: list[Packet]) -> None:
        """Send ``packets``, one message each."""
        for p in packets:
            await self.stream.send_message(p)

    def ready(self) -> bool:
        """False: grpclib decodes as :meth:`recv` asks."""
        return False

    async def skip_listed(self, previous: Listing) -> int:
        """0: this stream decodes every packet."""
        return 0

    @property
    def listing(self) -> Listing | None:
        """None: this stream keeps no packet bytes."""
        return None


def _common_prefix(a: bytes | bytearray | memoryview, b: bytes | bytearray | memoryview) -> int:
    """How many bytes ``a`` and ``b`` have in common at their start."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass
class SyncStats:
    """What one :func:`receive` did."""

    entries: int = 0  # entries the sender listed
    requested: int = 0  # files whose contents were asked for (new or changed)
    bytes: int = 0  # bytes of file contents received
    received: int = 0  # bytes of every packet received (their protobuf size): what fsutil reports as progress
    deleted: int = 0  # entries of ``dest`` the sender no longer has, removed (a directory counts once)
    changed: set[str] = field(default_factory=set)  # paths made, changed (contents or metadata) or removed


class SyncError(InvalidArgument):
    """The peer broke the DiffCopy protocol, sent a path that cannot be received, or reported an error."""


# ----------------------------------------------------------------------------------------------------------------
# the walk both ends share


def walk(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """``(relative path, full path, lstat)`` of every entry under ``root`` (not ``root``) in ``filepath.WalkDir``'s
    order: each directory's names sorted bytewise, a directory's entries right after it; symlinks not followed."""

    def names(d: str) -> list[str]:
        return sorted(os.listdir(d), key=os.fsencode, reverse=True)

    stack: list[tuple[str, str, list[str]]] = [(root, "", names(root))]
    while stack:
        full_dir, rel_dir, pending = stack[-1]
        if not pending:
            stack.pop()
            continue
        name = pending.pop()
        full = os.path.join(full_dir, name)
        rel = f"{rel_dir}/{name}" if rel_dir else name
        try:
            info = os.lstat(full)
        except FileNotFoundError:
            continue
        yield rel, full, info
        if st_.S_ISDIR(info.st_mode):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                stack.append((full, rel, names(full)))


def _xattrs(full: str) -> dict[str, bytes]:
    try:
        keys = os.listxattr(full, follow_symlinks=False)
    except OSError:
        return {}
    out: dict[str, bytes] = {}
    for key in keys:
        if key.startswith("com.apple."):
            continue
        with contextlib.suppress(OSError):
            out[key] = os.getxattr(full, key, follow_symlinks=False)
    return out


def stat_of(rel: str, full: str, info: os.stat_result, inodes: dict[tuple[int, int], str] | None,
            *, xattrs: bool = True) -> Stat:
    """fsutil's ``mkstat``: the :class:`Stat` of an entry; a regular file whose inode ``inodes`` has seen (under
    another path) is a hard link to that path, with size 0. The socket bit is cleared, as fsutil does."""
    mode = go_mode(info.st_mode) & ~MODE_SOCKET
    out = Stat(path=rel, mode=mode, uid=info.st_uid, gid=info.st_gid, modTime=info.st_mtime_ns)
    if not st_.S_ISDIR(info.st_mode):
        out.size = info.st_size
        if st_.S_ISLNK(info.st_mode):
            out.linkname = os.readlink(full)
        elif inodes is not None:
            key = (info.st_dev, info.st_ino)
            first = inodes.get(key) if info.st_nlink > 1 else None
            if first is not None:
                out.linkname, out.size = first, 0
            else:
                inodes[key] = rel
        if st_.S_ISCHR(info.st_mode) or st_.S_ISBLK(info.st_mode):
            out.devmajor, out.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
    if xattrs:
        out.xattrs.update(_xattrs(full))
    return out


# ----------------------------------------------------------------------------------------------------------------
# the receiver


def _check_path(p: str) -> None:
    """fsutil's Validator on one path: clean, relative, not escaping (plus: not empty, ``.``, or with a NUL)."""
    if not p or p == "." or "\x00" in p:
        raise SyncError(f"invalid path {go_quote(p)}")
    if p.startswith("/"):
        raise SyncError(f"absolute path {p}: invalid argument")
    if posixpath.normpath(p) != p:
        raise SyncError(f"unclean path {p}: invalid argument")
    if p == ".." or p.startswith("../"):
        raise SyncError(f"escape check {p}: invalid argument")


def _same(local: Stat, incoming: Stat) -> bool:
    """fsutil's ``sameFile`` with ``DiffMetadata``: size and mtime (not for a directory), mode, owner, device
    numbers and link name."""
    if not local.mode & MODE_DIR and (local.size != incoming.size or local.modTime != incoming.modTime):
        return False
    return (local.mode == incoming.mode and local.uid == incoming.uid and local.gid == incoming.gid
            and local.devmajor == incoming.devmajor and local.devminor == incoming.devminor
            and local.linkname == incoming.linkname)


def _set_metadata(target: str | int, stat: Stat, *, times: bool) -> None:
    """fsutil's ``rewriteMetadata`` on a path (never followed) or an open file: owner, mode (not a symlink's),
    xattrs (their errors ignored, as fsutil's), the modification time (when ``times``; atime too, as fsutil).
    Unlike fsutil, the owner comes first: a ``chown`` drops setuid bits and ``security.capability``."""
    follow = isinstance(target, int)  # an fd is the file itself (os refuses follow_symlinks=False with one)
    try:
        os.chown(target, stat.uid, stat.gid, follow_symlinks=follow)
    except PermissionError:
        if os.geteuid() == 0:
            raise
    if not stat.mode & MODE_SYMLINK:
        os.chmod(target, unix_mode(stat.mode))  # a path here is a directory or file of ours, not a symlink
    for key, value in stat.xattrs.items():
        with contextlib.suppress(OSError):
            os.setxattr(target, key, value, follow_symlinks=follow)
    if times:
        os.utime(target, ns=(stat.modTime, stat.modTime), follow_symlinks=follow)


@dataclass
class _File:
    """A regular file whose contents were asked for: written to ``tmp``, renamed to ``path`` when complete."""

    path: str
    stat: Stat
    local: Stat | None
    tmp: str = ""
    fd: int | None = None


@dataclass
class _Receiver:
    dest: str
    stream: PacketStream
    progress: Progress | None
    stats: SyncStats = field(default_factory=SyncStats)
    local: dict[str, Stat] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)  # local directories removed: what was under them is gone
    parents: list[list[str]] = field(default_factory=lambda: [["", ""]])  # Validator: open dirs, last name
    replaced: set[str] = field(default_factory=set)  # files given a new inode: their old hard links are stale
    links: list[tuple[Stat, Stat | None]] = field(default_factory=list)
    files: dict[int, _File] = field(default_factory=dict)  # asked for or to ask for, by index
    waiting: deque[int] = field(default_factory=deque)
    asked: set[int] = field(default_factory=set)
    temps: set[str] = field(default_factory=set)
    index: dict[str, Stat] = field(default_factory=dict)  # every entry as the sender listed it

    def full(self, p: str) -> str:
        return f"{self.dest}/{p}"

    def scan(self) -> None:
        inodes: dict[tuple[int, int], str] = {}
        for rel, full, info in walk(self.dest):
            self.local[rel] = stat_of(rel, full, info, inodes, xattrs=False)

    def take_local(self, p: str) -> Stat | None:
        local = self.local.pop(p, None)
        if local is None:
            return None
        parent = p
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in self.removed:
                return None
        return local

    def temp_name(self, p: str) -> str:
        parent = posixpath.dirname(p)
        name = f".tmp.{secrets.token_hex(6)}"
        tmp = self.full(f"{parent}/{name}" if parent else name)
        self.temps.add(tmp)
        return tmp

    def remove(self, p: str, local: Stat) -> None:
        full = self.full(p)
        if local.mode & MODE_DIR:
            shutil.rmtree(full)
            self.removed.add(p)
        else:
            os.unlink(full)

    def put(self, tmp: str, p: str, local: Stat | None) -> None:
        """Rename ``tmp`` to ``p``, a directory that was there removed first."""
        if local is not None and local.mode & MODE_DIR:
            self.remove(p, local)
        os.replace(tmp, self.full(p))
        self.temps.discard(tmp)

    def validate(self, stat: Stat) -> None:
        p = stat.path
        _check_path(p)
        mode = stat.mode
        if mode & (MODE_SOCKET | MODE_IRREGULAR):
            raise SyncError(f"unsupported file type of {p}: mode {mode:#o}")
        d, _, base = p.rpartition("/")
        while self.parents and self.parents[-1][0] != d:
            self.parents.pop()
        if not self.parents or self.parents[-1][1] >= base:
            last = self.parents[-1] if self.parents else ["", ""]
            prev = posixpath.join(last[0], last[1])
            raise SyncError(f"changes out of order: {go_quote(p)} {go_quote(prev)}")
        self.parents[-1][1] = base
        if mode & MODE_DIR:
            self.parents.append([p, ""])
        elif not mode & MODE_SYMLINK and stat.linkname:
            _check_path(stat.linkname)
            target = self.index.get(stat.linkname)  # a file listed before, not a link itself
            if target is None or target.mode & (MODE_DIR | MODE_SYMLINK) or target.linkname:
                raise SyncError(f"invalid link {p} to unknown path: {go_quote(stat.linkname)}")

    def resume(self, known: dict[str, Stat], count: int) -> None:
        """The first ``count`` entries of ``known`` (the previous sync's index) were listed again as they were:
        they are in place; the validator goes on from the last of them."""
        self.index = dict(islice(known.items(), count))
        self.local = dict(islice(known.items(), count, None))
        self.stats.entries = count
        if count:
            last = next(reversed(self.index.values()))
            parts = last.path.split("/")
            self.parents = [["/".join(parts[:i]), part] for i, part in enumerate(parts)]
            if last.mode & MODE_DIR:
                self.parents.append([last.path, ""])

    def on_stat(self, stat: Stat, index: int) -> None:
        self.validate(stat)
        self.stats.entries += 1
        self.index[stat.path] = stat
        p, mode = stat.path, stat.mode
        local = self.take_local(p)
        same = local is not None and _same(local, stat) and stat.linkname not in self.replaced
        if not same:
            self.stats.changed.add(p)
        if mode & MODE_DIR:
            if same:
                return
            full = self.full(p)
            if local is None or not local.mode & MODE_DIR:
                if local is not None:
                    self.remove(p, local)
                os.mkdir(full, 0o700)
            _set_metadata(full, stat, times=False)  # a directory's time is set once its entries are in
            return
        if same:
            return
        if mode & (MODE_DEVICE | MODE_NAMED_PIPE | MODE_SYMLINK):
            tmp = self.temp_name(p)
            if mode & MODE_SYMLINK:
                os.symlink(stat.linkname, tmp)
            else:
                kind = st_.S_IFIFO if mode & MODE_NAMED_PIPE else (
                    st_.S_IFCHR if mode & MODE_CHAR_DEVICE else st_.S_IFBLK)
                os.mknod(tmp, unix_mode(mode) | kind, os.makedev(stat.devmajor, stat.devminor))
            _set_metadata(tmp, stat, times=True)
            self.put(tmp, p, local)
        elif stat.linkname:
            self.links.append((stat, local))  # once every file's contents are in place
        else:
            self.stats.requested += 1
            self.files[index] = _File(p, stat, local)
            self.waiting.append(index)

    async def ask(self) -> None:
        """Ask for the files waiting, as many as the window allows, at once."""
        batch: list[Packet] = []
        while self.waiting and len(self.asked) < WINDOW:
            index = self.waiting.popleft()
            self.asked.add(index)
            batch.append(Packet(type=REQ, ID=index))
        if batch:
            await self.stream.send_all(batch)

    def on_data(self, index: int, data: bytes) -> None:
        if index not in self.asked:
            raise SyncError(f"invalid file request {index}")
        f = self.files[index]
        if f.fd is None:
            f.tmp = self.temp_name(f.path)
            f.fd = os.open(f.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        if data:
            view = memoryview(data)
            while view:
                view = view[os.write(f.fd, view):]
            self.stats.bytes += len(data)
            if self.progress is not None:
                self.progress(self.stats.bytes, False)
            return
        try:
            _set_metadata(f.fd, f.stat, times=True)
        finally:
            os.close(f.fd)
            f.fd = None
        self.put(f.tmp, f.path, f.local)
        self.replaced.add(f.path)
        self.asked.discard(index)
        del self.files[index]

    def finish(self) -> None:
        for stat, local in self.links:
            tmp = self.temp_name(stat.path)
            os.link(self.full(stat.linkname), tmp, follow_symlinks=False)
            _set_metadata(tmp, stat, times=True)
            self.put(tmp, stat.path, local)
        for p in sorted(self.local, key=os.fsencode):
            local = self.take_local(p)
            if local is not None:
                self.remove(p, local)
                self.stats.deleted += 1
                self.stats.changed.add(p)
        if self.stats.changed:  # entries were made or removed: their directories get the sender's times back
            for p, stat in reversed(self.index.items()):
                if stat.mode & MODE_DIR:
                    os.utime(self.full(p), ns=(stat.modTime, stat.modTime), follow_symlinks=False)

    def cleanup(self) -> None:
        for f in self.files.values():
            if f.fd is not None:
                os.close(f.fd)
                f.fd = None
        for tmp in self.temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.temps.clear()

    async def run(self, known: dict[str, Stat] | None, listing: Listing | None) -> SyncStats:
        """The sync; ``known`` is what the last sync into this directory listed (and left there), ``listing`` its
        packets' bytes."""
        listed = False
        index = 0
        if known is None:
            self.scan()
        elif listing is None or len(listing.ends) != len(known) + 1:
            self.local = dict(known)
        else:  # the packets the sender repeats are known already: the listing goes on from the first that differs
            repeated = await self.stream.skip_listed(listing)
            listed = repeated == len(listing.ends)  # the empty STAT at its end as well
            index = repeated - listed
            self.resume(known, index)
            self.stats.received = (listing.ends[repeated - 1] if repeated else 0) - 5 * repeated  # gRPC's prefixes
        while not listed or self.files:
            p = await self.stream.recv()
            if p is None:
                raise SyncError("the sender ended the stream before the sync was complete")
            self.stats.received += p.ByteSize()
            if p.type == STAT:
                if listed:
                    raise SyncError("the sender listed entries after its last one")
                if p.HasField("stat"):
                    self.on_stat(p.stat, index)
                    index += 1
                else:
                    listed = True
            elif p.type == DATA:
                self.on_data(p.ID, p.data)
            elif p.type == ERR:
                raise SyncError(f"error from sender: {p.data.decode('utf-8', 'replace')}")
            else:
                raise SyncError(f"unexpected packet from the sender: type {p.type}")
            if not self.stream.ready():  # about to wait: ask for what the packets so far freed, all at once
                await self.ask()
        self.finish()
        if self.progress is not None:
            self.progress(self.stats.bytes, True)
        await self.stream.send(Packet(type=FIN), last=True)
        while (p := await self.stream.recv()) is not None:  # the sender's FIN, then the end of its stream
            self.stats.received += p.ByteSize()
            if p.type == ERR:
                raise SyncError(f"error from sender: {p.data.decode('utf-8', 'replace')}")
        return self.stats


#: what the last sync into a directory left there, by entry (the incoming stats), and its STAT packets' bytes if the
#: stream kept them: the next sync of the same directory compares with it instead of walking and stating the whole
#: tree again, and takes the packets it repeats without decoding them. Only syncs write these directories.
_INDEX: OrderedDict[tuple[str, int, int], tuple[dict[str, Stat], Listing | None]] = OrderedDict()
_INDEX_LIMIT = 16


async def receive(stream: PacketStream, dest: Path, *, progress: Progress | None = None) -> SyncStats:
    """Receive the sender's tree into ``dest`` (created if missing) as fsutil's ``Receive``: what ``dest`` holds
    already (the previous sync of the same directory) is compared with each entry's metadata and kept when it is
    the same, only new and changed files are asked for, and what the sender no longer has is removed.
    ``progress(bytes, done)`` hears of the contents received. Errors go to the sender as ERR, then raise."""
    dest.mkdir(parents=True, exist_ok=True)
    real = os.path.realpath(dest)
    top = os.stat(real)
    ident = (real, top.st_dev, top.st_ino)  # a directory removed and made again is another one
    r = _Receiver(real, stream, progress)
    known, listing = _INDEX.pop(ident, (None, None))  # taken: a sync that fails leaves none behind
    try:
        stats = await r.run(known, listing)
        _INDEX[ident] = (r.index, stream.listing)
        while len(_INDEX) > _INDEX_LIMIT:
            _INDEX.popitem(last=False)
        return stats
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stream.send(Packet(type=ERR, data=str(exc).encode())), 5)
        raise
    finally:
        r.cleanup()


# ----------------------------------------------------------------------------------------------------------------
# the sender


async def send(stream: PacketStream, src: Path, *, progress: Progress | None = None) -> None:
    """Send the tree under ``src`` as fsutil's ``Send``: every entry's STAT (sockets left out), then the contents of
    each file the receiver asks for, until its FIN, answered with FIN (the end of this side's stream). A file that
    cannot be opened is sent empty, as fsutil does. ``progress(bytes, done)`` hears of the contents sent."""
    root = os.path.realpath(src)
    files: dict[int, str] = {}
    lock = asyncio.Lock()
    queue: asyncio.Queue[int] = asyncio.Queue()
    sent = 0

    async def out(packet: Packet, *, last: bool = False) -> None:
        async with lock:  # one message at a time: a message's HTTP/2 frames must not interleave with another's
            await stream.send(packet, last=last)

    async def list_entries() -> None:
        inodes: dict[tuple[int, int], str] = {}
        index = 0
        for rel, full, info in walk(root):
            if st_.S_ISSOCK(info.st_mode):
                continue
            stat = stat_of(rel, full, info, inodes)
            if can_request_data(stat.mode):
                files[index] = full
            index += 1
            await out(Packet(type=STAT, stat=stat))
        await out(Packet(type=STAT))

    async def send_files() -> None:
        nonlocal sent
        while True:
            index = await queue.get()
            try:
                fd: int | None = os.open(files.pop(index), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                fd = None
            try:
                while fd is not None and (chunk := os.read(fd, CHUNK)):
                    await out(Packet(type=DATA, ID=index, data=chunk))
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, False)
            finally:
                if fd is not None:
                    os.close(fd)
            await out(Packet(type=DATA, ID=index))

    async def answer() -> None:
        asked: set[int] = set()
        while True:
            p = await stream.recv()
            if p is None:
                raise SyncError("the receiver ended the stream before the sync was complete")
            if p.type == ERR:
                raise SyncError(f"error from receiver: {p.data.decode('utf-8', 'replace')}")
            if p.type == REQ:
                if p.ID not in files or p.ID in asked:
                    raise SyncError(f"invalid file id {p.ID}")
                asked.add(p.ID)
                queue.put_nowait(p.ID)
            elif p.type == FIN:
                return

    tasks = [asyncio.ensure_future(list_entries()), asyncio.ensure_future(send_files())]
    answering = asyncio.ensure_future(answer())
    try:
        while not answering.done():
            done, _ = await asyncio.wait([answering, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = None if t is answering or t.cancelled() else t.exception()
                if exc is not None:
                    raise exc
            tasks = [t for t in tasks if not t.done()]
        answering.result()
        await out(Packet(type=FIN), last=True)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(out(Packet(type=ERR, data=str(exc).encode())), 5)
        raise
    finally:
        for t in [answering, *tasks]:
            t.cancel()
        await asyncio.gather(answering, *tasks, return_exceptions=True)
        if progress is not None:
            progress(sent, True)
