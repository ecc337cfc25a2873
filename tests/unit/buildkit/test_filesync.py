"""fsutil's DiffCopy: the receiver and the sender against each other over real gRPC (grpclib on the two ends of a
socketpair, as FileSync.DiffCopy and FileSend.DiffCopy run on a session), incremental syncs, and senders that lie."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import StreamStreamMethod
from grpclib.const import Cardinality, Handler
from grpclib.server import Stream

from dockwright.buildkit import filesync
from dockwright.buildkit.filesync import (
    MODE_DIR,
    MODE_SOCKET,
    MODE_SYMLINK,
    ClientPackets,
    ServerPackets,
    SyncError,
    SyncStats,
    go_mode,
    receive,
    send,
    unix_mode,
)
from dockwright.buildkit.h2c import ClientChannel, TakenConnection, serve
from dockwright.buildkit.pb import filesync_grpc
from dockwright.buildkit.pb.stat_pb2 import Stat
from dockwright.buildkit.pb.wire_pb2 import Packet

ROOT = os.geteuid() == 0
STAT, REQ, DATA, FIN, ERR = (Packet.PACKET_STAT, Packet.PACKET_REQ, Packet.PACKET_DATA, Packet.PACKET_FIN,
                             Packet.PACKET_ERR)
SYNC = "/moby.filesync.v1.FileSync/DiffCopy"


class Sender:
    """A servicer of FileSync.DiffCopy: the client's side of a context sync (the docker CLI's)."""

    def __init__(self, src: Path) -> None:
        self.src = src

    def __mapping__(self) -> dict[str, Handler]:
        return {SYNC: Handler(self.diffcopy, Cardinality.STREAM_STREAM, Packet, Packet)}

    async def diffcopy(self, stream: Stream[Packet, Packet]) -> None:
        await send(ServerPackets(stream), self.src)


class Scripted:
    """A sender that says what it is told: ``packets`` first, then DATA ``contents`` for each REQ, FIN for FIN."""

    def __init__(self, packets: list[Packet], contents: dict[int, bytes] | None = None, *, hang_up: bool = False
                 ) -> None:
        self.packets = packets
        self.contents = contents or {}
        self.hang_up = hang_up
        self.got: list[Packet] = []

    def __mapping__(self) -> dict[str, Handler]:
        return {SYNC: Handler(self.diffcopy, Cardinality.STREAM_STREAM, Packet, Packet)}

    async def diffcopy(self, stream: Stream[Packet, Packet]) -> None:
        for p in self.packets:
            await stream.send_message(p)
        if self.hang_up:
            return
        async for p in stream:
            self.got.append(p)
            if p.type == REQ:
                await stream.send_message(Packet(type=DATA, ID=p.ID, data=self.contents.get(p.ID, b"x")))
                await stream.send_message(Packet(type=DATA, ID=p.ID))
            elif p.type == FIN:
                await stream.send_message(Packet(type=FIN))
                return
            elif p.type == ERR:
                return


class Receiver:
    """A servicer of FileSend.DiffCopy receiving into ``dest``: the client's side of ``--output type=local``."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.stats: SyncStats | None = None

    def __mapping__(self) -> dict[str, Handler]:
        return {"/moby.filesync.v1.FileSend/DiffCopy": Handler(self.diffcopy, Cardinality.STREAM_STREAM, Packet,
                                                               Packet)}

    async def diffcopy(self, stream: Stream[Packet, Packet]) -> None:
        self.stats = await receive(ServerPackets(stream), self.dest)


async def connected(servicer: Any) -> tuple[ClientChannel, asyncio.Task[None]]:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    ta, _ = await loop.create_unix_connection(asyncio.Protocol, sock=a)
    tb, _ = await loop.create_unix_connection(asyncio.Protocol, sock=b)
    serving = asyncio.create_task(serve(TakenConnection(tb), [servicer]))
    return ClientChannel(TakenConnection(ta)), serving


async def pull(servicer: Any, dest: Path) -> SyncStats:
    channel, serving = await connected(servicer)
    try:
        async with filesync_grpc.FileSyncStub(channel).DiffCopy.open() as stream:
            await stream.send_request()
            return await receive(ClientPackets(stream), dest)
    finally:
        channel.close()
        await asyncio.wait_for(serving, 5)


def sync(src: Path, dest: Path) -> SyncStats:
    return asyncio.run(asyncio.wait_for(pull(Sender(src), dest), 60))


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry's metadata and contents (a hard link group by its first path)."""
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, str] = {}
    for rel, full, info in filesync.walk(str(root)):
        mode = info.st_mode
        what: Any = None
        if stat.S_ISREG(mode):
            what = hashlib.sha256(Path(full).read_bytes()).hexdigest()
            if info.st_nlink > 1:
                what = (what, inodes.setdefault(info.st_ino, rel))
        elif stat.S_ISLNK(mode):
            what = os.readlink(full)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            what = (os.major(info.st_rdev), os.minor(info.st_rdev))
        xattrs = {} if stat.S_ISLNK(mode) else {k: os.getxattr(full, k) for k in os.listxattr(full)}
        out[rel] = (stat.filemode(mode), info.st_uid, info.st_gid, info.st_mtime_ns, what, xattrs)
    return out


def build_source(src: Path) -> None:
    (src / "dir" / "deep" / "er").mkdir(parents=True)
    (src / "dir" / "deep" / "er" / "f.txt").write_text("deep")
    (src / "a.txt").write_text("hello")
    (src / "empty").write_bytes(b"")
    (src / "big.bin").write_bytes(os.urandom(3 * (1 << 20) + 12345))  # many DATA chunks
    (src / "setuid").write_text("#!/bin/sh\n")
    os.chmod(src / "setuid", 0o4755)
    (src / "private").write_text("p")
    os.chmod(src / "private", 0o600)
    (src / "sticky").mkdir(mode=0o1777)
    os.chmod(src / "sticky", 0o1777)
    (src / "rel-link").symlink_to("a.txt")
    (src / "dir" / "abs-link").symlink_to("/etc/passwd")
    (src / "dir" / "dangling").symlink_to("../nowhere")
    os.link(src / "a.txt", src / "dir" / "hard")
    os.mkfifo(src / "fifo", 0o640)
    try:
        os.setxattr(src / "a.txt", "user.dockwright", b"value")
    except OSError:
        pass  # no user xattrs on this filesystem
    if ROOT:
        os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chown(src / "private", 1234, 5678)
        os.chown(src / "dir" / "abs-link", 42, 43, follow_symlinks=False)
    for i, (_rel, full, _) in enumerate(sorted(filesync.walk(str(src)), key=lambda e: -len(e[0]))):
        os.utime(full, ns=(1_600_000_000_123_456_789 + i, 1_600_000_000_123_456_789 + i), follow_symlinks=False)


def test_go_file_modes() -> None:
    assert go_mode(stat.S_IFDIR | 0o755) == MODE_DIR | 0o755
    assert go_mode(stat.S_IFLNK | 0o777) == MODE_SYMLINK | 0o777 == 0o1000000777  # as the docker CLI sends it
    assert go_mode(stat.S_IFREG | 0o4755) == (1 << 23) | 0o755
    assert go_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666
    assert go_mode(stat.S_IFBLK | 0o660) == (1 << 26) | 0o660
    assert go_mode(stat.S_IFIFO | 0o600) == (1 << 25) | 0o600
    assert go_mode(stat.S_IFSOCK | 0o755) == MODE_SOCKET | 0o755
    assert go_mode(stat.S_IFDIR | 0o3777) == MODE_DIR | (1 << 22) | (1 << 20) | 0o777
    assert unix_mode(MODE_DIR | (1 << 22) | (1 << 20) | 0o755) == 0o3755
    assert unix_mode((1 << 23) | 0o755) == 0o4755


def test_a_tree_with_every_kind_of_entry_arrives_as_it_is(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    build_source(src)
    stats = sync(src, dest)
    assert tree(dest) == tree(src)
    assert os.stat(dest / "a.txt").st_ino == os.stat(dest / "dir" / "hard").st_ino
    files = [e for e in tree(src).values() if e[0].startswith("-")]
    assert stats.requested == len(files) - 1  # every regular file but the hard link's second name
    assert stats.bytes == sum(os.path.getsize(f) for f in [*src.rglob("*")] if f.is_file() and not f.is_symlink()
                              ) - len("hello")
    assert stats.entries == len(tree(src)) and stats.deleted == 0
    assert list(dest.glob("**/.tmp.*")) == []


def test_the_second_sync_asks_only_for_what_changed(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    build_source(src)
    sync(src, dest)
    again = sync(src, dest)
    assert (again.requested, again.bytes, again.deleted) == (0, 0, 0)
    assert tree(dest) == tree(src)

    (src / "dir" / "deep" / "er" / "f.txt").write_text("deeper")  # new contents, size and time
    one = sync(src, dest)
    assert (one.requested, one.bytes) == (1, len("deeper"))
    assert tree(dest) == tree(src)

    os.utime(src / "private", ns=(5, 5))  # same size, another time: asked for again
    assert sync(src, dest).requested == 1

    os.unlink(src / "big.bin")
    (src / "dir" / "deep" / "er" / "f.txt").unlink()
    os.rmdir(src / "dir" / "deep" / "er")
    gone = sync(src, dest)
    assert gone.requested == 0 and gone.deleted == 2  # big.bin, and dir/deep/er with what it held
    assert not (dest / "big.bin").exists() and not (dest / "dir" / "deep" / "er").exists()
    assert tree(dest) == tree(src)

    # kinds change: a file becomes a directory, a directory a file, a symlink a file, a file a symlink
    (src / "empty").unlink()
    (src / "empty").mkdir()
    (src / "empty" / "inside").write_text("now a dir")
    os.rmdir(src / "sticky")
    (src / "sticky").write_text("now a file")
    (src / "rel-link").unlink()
    (src / "rel-link").write_text("was a link")
    (src / "private").unlink()
    (src / "private").symlink_to("/somewhere/else")
    sync(src, dest)
    assert tree(dest) == tree(src)


def test_the_receiver_never_follows_a_symlink_it_finds_in_dest(tmp_path: Path) -> None:
    src, dest, outside = tmp_path / "src", tmp_path / "dest", tmp_path / "outside"
    for d in (src, dest, outside):
        d.mkdir()
    (src / "a").mkdir()
    (src / "a" / "x").write_text("mine")
    (src / "b").write_text("file")
    (dest / "a").symlink_to(outside)  # left by a previous sync: now the sender says "a" is a directory
    (dest / "b").symlink_to(outside / "b-target")
    sync(src, dest)
    assert list(outside.iterdir()) == []
    assert (dest / "a").is_dir() and not (dest / "a").is_symlink()
    assert tree(dest) == tree(src)


def test_many_small_files_more_than_the_request_window(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    for i in range(filesync.WINDOW * 3 + 7):
        (src / f"f{i:04d}").write_text(str(i) * (i % 50))
    stats = sync(src, dest)
    assert stats.requested == filesync.WINDOW * 3 + 7
    assert tree(dest) == tree(src)


def test_send_dir_to_a_receiving_client(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    build_source(src)
    (dest / "kept").mkdir(parents=True)  # the receiver here is not merging: what src lacks goes

    async def main() -> SyncStats | None:
        receiver = Receiver(dest)
        channel, serving = await connected(receiver)
        try:
            method = StreamStreamMethod(channel, "/moby.filesync.v1.FileSend/DiffCopy", Packet, Packet)
            async with method.open() as stream:
                await stream.send_request()
                await send(ClientPackets(stream), src)
            return receiver.stats
        finally:
            channel.close()
            await asyncio.wait_for(serving, 5)

    stats = asyncio.run(asyncio.wait_for(main(), 60))
    assert stats is not None and stats.deleted == 1
    assert tree(dest) == tree(src)


def stat_packet(path: str, mode: int = 0o644, **kw: Any) -> Packet:
    return Packet(type=STAT, stat=Stat(path=path, mode=mode, **kw))


END = Packet(type=STAT)
DIR = MODE_DIR | 0o755

HOSTILE = [
    ("parent", [stat_packet("../evil"), END], "escape check ../evil"),
    ("absolute", [stat_packet("/tmp/evil"), END], "absolute path /tmp/evil"),
    ("unclean", [stat_packet("a/../../evil"), END], "unclean path a/../../evil"),
    ("dot", [stat_packet("."), END], 'invalid path "."'),
    ("empty", [stat_packet(""), END], 'invalid path ""'),
    ("no parent", [stat_packet("a/b"), END], 'changes out of order: "a/b"'),
    ("through a symlink", [stat_packet("a", MODE_SYMLINK | 0o777, linkname="OUTSIDE"), stat_packet("a/x"), END],
     'changes out of order: "a/x"'),
    ("twice", [stat_packet("a"), stat_packet("a"), END], 'changes out of order: "a" "a"'),
    ("unsorted", [stat_packet("b"), stat_packet("a"), END], 'changes out of order: "a" "b"'),
    ("hard link out", [stat_packet("a"), stat_packet("h", linkname="../../etc/passwd"), END],
     "escape check ../../etc/passwd"),
    ("hard link unknown", [stat_packet("h", linkname="nope"), END], 'invalid link h to unknown path: "nope"'),
    ("data unasked", [stat_packet("a"), Packet(type=DATA, ID=5, data=b"x"), END], "invalid file request 5"),
    ("socket", [stat_packet("s", MODE_SOCKET | 0o755), END], "unsupported file type of s"),
    ("sender error", [stat_packet("a"), Packet(type=ERR, data=b"boom")], "error from sender: boom"),
    ("early fin", [Packet(type=FIN)], "unexpected packet from the sender"),
    ("stat after the end", [stat_packet("a"), END, stat_packet("b")], "listed entries after its last one"),
]


@pytest.mark.parametrize("name,packets,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_lying_sender_is_refused_and_nothing_is_written_outside(tmp_path: Path, name: str, packets: list[Packet],
                                                                   message: str) -> None:
    dest, outside = tmp_path / "work" / "dest", tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "work").mkdir()
    for p in packets:
        if p.stat.linkname == "OUTSIDE":
            p.stat.linkname = str(outside)
    sender = Scripted(packets)
    with pytest.raises(SyncError) as err:
        asyncio.run(asyncio.wait_for(pull(sender, dest), 30))
    assert message in str(err.value)
    assert list(outside.iterdir()) == [] and sorted(os.listdir(tmp_path / "work")) == ["dest"]
    assert list(Path(tmp_path / "work").glob("**/.tmp.*")) == []
    if name not in ("sender error", "early fin"):
        assert any(p.type == ERR and message.split()[0].encode() in p.data for p in sender.got), sender.got


def test_a_sender_hanging_up_midway_fails_the_sync(tmp_path: Path) -> None:
    sender = Scripted([stat_packet("a")], hang_up=True)
    with pytest.raises(SyncError, match="ended the stream"):
        asyncio.run(asyncio.wait_for(pull(sender, tmp_path / "dest"), 30))


def test_scripted_sender_contents_land_with_their_metadata(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    packets = [stat_packet("d", DIR, modTime=7_000_000_001), stat_packet("d/f", 0o640, size=3, modTime=9_000_000_123),
               stat_packet("d/l", MODE_SYMLINK | 0o777, linkname="f", size=1, modTime=8), END]
    stats = asyncio.run(asyncio.wait_for(pull(Scripted(packets, {1: b"abc"}), dest), 30))
    assert (stats.entries, stats.requested, stats.bytes) == (3, 1, 3)
    assert (dest / "d" / "f").read_bytes() == b"abc"
    info = os.stat(dest / "d" / "f")
    assert stat.S_IMODE(info.st_mode) == 0o640 and info.st_mtime_ns == 9_000_000_123
    assert os.stat(dest / "d").st_mtime_ns == 7_000_000_001
    assert os.lstat(dest / "d" / "l").st_mtime_ns == 8 and os.readlink(dest / "d" / "l") == "f"


class CountingPackets(ClientPackets):
    """ClientPackets that counts the packets it decodes (the ones a repeated listing's bytes did not stand for)."""

    decoded = 0

    def _parse(self) -> None:
        before = len(self._ready)
        super()._parse()
        CountingPackets.decoded += len(self._ready) - before


async def pull_counting(servicer: Any, dest: Path) -> tuple[SyncStats, int]:
    channel, serving = await connected(servicer)
    CountingPackets.decoded = 0
    try:
        async with filesync_grpc.FileSyncStub(channel).DiffCopy.open() as stream:
            await stream.send_request()
            stats = await receive(CountingPackets(stream, reads=channel.reads), dest)
            assert not channel.reads.coalesce  # reads wait a moment only while a repeated listing streams in
            return stats, CountingPackets.decoded
    finally:
        channel.close()
        await asyncio.wait_for(serving, 5)


def test_a_listing_the_sender_repeats_is_taken_without_decoding_it(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    build_source(src)
    first, decoded = asyncio.run(pull_counting(Sender(src), dest))
    assert decoded > first.entries
    again, decoded = asyncio.run(pull_counting(Sender(src), dest))
    assert (again.entries, again.requested, again.changed) == (first.entries, 0, set())
    assert decoded == 1  # the sender's FIN: every STAT was the last sync's, byte for byte
    assert tree(dest) == tree(src)

    # an entry in the middle changes: what precedes it is taken as it was, it and what follows are decoded (the
    # hard link dir/hard to a.txt, listed before the change, is checked against what was taken)
    (src / "dir" / "deep" / "er" / "f.txt").write_text("deeper")
    listed_after = [rel for rel, _, _ in filesync.walk(str(src))]
    after = len(listed_after) - listed_after.index("dir/deep/er/f.txt")
    one, decoded = asyncio.run(pull_counting(Sender(src), dest))
    assert (one.entries, one.requested, one.bytes) == (first.entries, 1, len("deeper"))
    assert decoded == after + 1 + 2 + 1  # those entries, the END, the file's two DATA, the FIN
    assert tree(dest) == tree(src)
    assert asyncio.run(pull_counting(Sender(src), dest))[1] == 1

    os.rmdir(src / "sticky")  # gone at the end of the listing: what was listed before it is the same
    gone, _ = asyncio.run(pull_counting(Sender(src), dest))
    assert gone.deleted == 1 and not (dest / "sticky").exists()
    assert tree(dest) == tree(src)


def test_after_a_repeated_start_the_rest_is_still_checked(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    honest = [stat_packet("a", DIR), stat_packet("a/f", size=1), stat_packet("b", size=1), END]
    asyncio.run(asyncio.wait_for(pull(Scripted(honest, {1: b"f", 2: b"b"}), dest), 30))
    # the first two packets again, then an entry out of order, then a hard link to a directory taken unread
    for tail, message in (([stat_packet("a/e"), END], 'changes out of order: "a/e" "a/f"'),
                          ([stat_packet("h", linkname="a"), END], 'invalid link h to unknown path: "a"')):
        sender = Scripted(honest[:2] + tail)
        with pytest.raises(SyncError) as err:
            asyncio.run(asyncio.wait_for(pull(sender, dest), 30))
        assert message in str(err.value)
        assert any(p.type == ERR for p in sender.got)
    # a failed sync leaves no index behind: the next one compares with what is on disk and is right
    stats = asyncio.run(asyncio.wait_for(pull(Scripted(honest[:2] + [END], {1: b"f"}), dest), 30))
    assert stats.deleted == 1 and sorted(os.listdir(dest)) == ["a"] and (dest / "a" / "f").read_bytes() == b"f"
