"""gRPC over a connection that is already open (BuildKit's ``/session`` and ``/grpc`` after their ``101``), with
grpclib: :class:`TakenConnection` owns the transport taken from the HTTP server, :class:`ClientChannel` is a
grpclib channel whose one connection it is (the daemon calls the client's services), :func:`serve` answers the
client's calls on it (the daemon is the gRPC server) until the connection ends.

Taking a connection over (the HTTP side does this, ``dockwright.api.session``): the HTTP server's protocol hands
over the bytes it already holds beyond the request (``buffered``) and its ``connection_lost`` (``on_lost``);
:class:`TakenConnection` then installs itself as the transport's protocol *before* the ``101`` is written, so that
the first HTTP/2 bytes the peer sends right after the ``101`` (a server's SETTINGS) are kept until an HTTP/2
protocol is attached, not parsed as HTTP/1. When the connection ends, the HTTP/2 protocol hears it first, then
``on_lost`` (so the HTTP server forgets the connection and its handler), then :meth:`TakenConnection.wait_closed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol, cast

from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Handler
from grpclib.protocol import H2Protocol
from grpclib.server import Handler as ServerHandler
from grpclib.server import Server
from h2.stream import StreamState

__all__ = ["TakenConnection", "DirectData", "ClientChannel", "Servable", "serve", "ConnectionClosed"]

log = logging.getLogger("dockwright.buildkit.h2c")

LostCallback = Callable[[Exception | None], object]

CALLS_GRACE = 10.0  # seconds :func:`serve` waits for cancelled calls to finish once its connection is gone


class ConnectionClosed(ConnectionError):
    """A call on a :class:`ClientChannel` whose connection has ended (it never dials another one)."""


class Servable(Protocol):
    """What grpclib serves: a generated ``*Base`` service implementation (its ``__mapping__`` of method paths)."""

    def __mapping__(self) -> dict[str, Handler]:
        """The ``/package.Service/Method`` paths this object answers, with their grpclib handlers."""
        ...


class TakenConnection(asyncio.Protocol):
    """The protocol of a transport taken from its first owner: bytes wait here until :meth:`attach` gives an
    HTTP/2 protocol, then go straight to it; the connection's end goes to that protocol, then to ``on_lost``, then
    to :meth:`wait_closed`. Created on the event loop's thread, while the transport is open or closing."""

    def __init__(self, transport: asyncio.Transport, *, buffered: bytes = b"",
                 on_lost: LostCallback | None = None) -> None:
        self.transport = transport
        self._pending = bytearray(buffered)
        self._eof = False
        self._inner: asyncio.Protocol | None = None
        self._on_lost = on_lost
        self._lost = False
        self._lost_exc: Exception | None = None
        self._closed = asyncio.Event()
        self._callbacks: list[LostCallback] = []
        # the first owner may have paused writing (a full buffer): the transport says resume to us from now on
        _, high = transport.get_write_buffer_limits()
        self._write_paused = transport.get_write_buffer_size() > high
        transport.set_protocol(self)
        if transport.is_closing():
            # its connection_lost may have gone to the first owner already: this connection is over either way
            self.connection_lost(ConnectionResetError("the connection closed before it was taken over"))
        elif not transport.is_reading():  # the first owner paused reading (its own buffer was full)
            transport.resume_reading()

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Return when the connection has ended (the attached protocol and ``on_lost`` have been told)."""
        await self._closed.wait()

    def close(self) -> None:
        """Close the connection (its end then comes through ``connection_lost`` as usual)."""
        self.transport.close()

    def add_lost_callback(self, callback: LostCallback) -> None:
        """Call ``callback(exc)`` when the connection ends (at once if it has)."""
        if self._lost:
            callback(self._lost_exc)
        else:
            self._callbacks.append(callback)

    def attach(self, protocol: asyncio.Protocol) -> None:
        """Make ``protocol`` the connection's protocol: ``connection_made``, then the bytes kept so far, then the
        peer's EOF or the connection's end if they came already."""
        if self._inner is not None:
            raise RuntimeError("a protocol is attached to this connection already")
        self._inner = protocol
        protocol.connection_made(self.transport)
        if self._write_paused:
            protocol.pause_writing()
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            protocol.data_received(data)
        if self._eof and not self._lost and not protocol.eof_received():
            self.transport.close()
        if self._lost:
            protocol.connection_lost(self._lost_exc)

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        """The peer's bytes: to the attached protocol, or kept until one is attached."""
        if self._inner is not None:
            self._inner.data_received(data)
        else:
            self._pending += data

    def eof_received(self) -> bool | None:
        """The peer's EOF: the attached protocol decides (HTTP/2's closes); kept until one is attached."""
        if self._inner is not None:
            return self._inner.eof_received()
        self._eof = True
        return True  # keep the transport open until the HTTP/2 protocol is there to decide

    def pause_writing(self) -> None:
        """The transport's buffer is full: the attached protocol waits before writing more."""
        self._write_paused = True
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        """The transport's buffer drained."""
        self._write_paused = False
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended: the attached protocol, ``on_lost`` (the first owner cleans up), the callbacks."""
        if self._lost:
            return
        self._lost, self._lost_exc = True, exc
        callbacks: list[LostCallback] = []
        if self._inner is not None:
            callbacks.append(self._inner.connection_lost)
        if self._on_lost is not None:
            callbacks.append(self._on_lost)
        callbacks += self._callbacks
        self._callbacks.clear()
        try:
            for callback in callbacks:
                try:
                    callback(exc)
                except Exception:  # noqa: BLE001 - one owner's failure must not keep the others from cleaning up
                    log.exception("connection_lost callback failed")
        finally:
            self._closed.set()


_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # what an HTTP/2 client sends before its first frame
_HEADER = struct.Struct(">IBI")  # an HTTP/2 frame header: length (24 bits) and type, flags, stream id
_DATA, _END_STREAM, _PADDED = 0x0, 0x1, 0x8
_RECEIVING = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)
SMALL_READ = 16 << 10  # a read this short pauses reading for COALESCE seconds: the next one gets more at once
COALESCE = 0.001


class DirectData(asyncio.Protocol):
    """grpclib's HTTP/2 protocol with the DATA frames of its open streams taken past h2: their payloads go straight
    to the grpclib stream's buffer, which acknowledges them (flow control) as it would.

    A build context's listing is one small gRPC message per entry, each in a DATA frame of its own (20k+ for a
    large context); h2 makes a frame object, an event and a log record for each, which was half of a cached
    rebuild's time. Here a DATA frame without END_STREAM or padding, on a stream grpclib knows and h2 holds open,
    within both flow-control windows, is counted against h2's windows (so that its acknowledgements reopen them)
    and added to the stream's buffer, consecutive frames of a stream as one chunk; every other frame (and a DATA
    frame that breaks a rule: h2 answers it with the error it owes) goes to h2 in its order, always whole. This
    reads h2's and grpclib's internals (versions pinned in pyproject).

    A peer that writes each small message on its own (grpc-go does) to a reader that keeps up makes one read, one
    pass here and one wake-up of the reading task per message; while :attr:`coalesce` is set, after a short read,
    reading pauses for a millisecond, so that the next read takes what came meanwhile at once. The reader sets it
    while the peer streams without waiting for an answer (a context's listing compared with the last one): when
    the peer waits for this end (a file asked for), a pause would only add to each round trip."""

    def __init__(self, inner: H2Protocol, *, server: bool) -> None:
        self.inner = inner
        self._preface = len(_PREFACE) if server else 0  # a server's first bytes are the client's preface
        self.coalesce = False
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._resuming: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The HTTP/2 protocol starts (it writes its preface and settings)."""
        self._transport = cast(asyncio.Transport, transport)
        self.inner.connection_made(transport)

    def _resume(self) -> None:
        self._resuming = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        """The peer's bytes: whole frames, in order, to h2 or (DATA) straight to their stream's buffer."""
        if self._preface:
            head, data = data[:self._preface], data[self._preface:]
            self._preface -= len(head)
            self.inner.data_received(head)
            if not data:
                return
        buf = self._buf
        buf += data
        conn = self.inner.connection
        h2: Any = conn._connection  # noqa: SLF001 - h2.connection.H2Connection
        streams = self.inner.processor.streams
        n, off, start = len(buf), 0, 0
        run: list[bytes] = []
        run_id, run_size = 0, 0  # consecutive direct frames of one stream, not yet in its buffer

        def flush_run() -> None:
            nonlocal run_size
            if run_size:
                stream = streams[run_id]
                stream.buffer.add(b"".join(run), run_size)
                stream.data_received += run_size
                conn.data_received += run_size
                run.clear()
                run_size = 0

        while n - off >= 9:
            word, flags, sid = _HEADER.unpack_from(buf, off)
            length, kind = word >> 8, word & 0xFF
            if length > h2.max_inbound_frame_size:  # h2 refuses it: everything from here goes to h2
                off = n
                break
            end = off + 9 + length
            if end > n:
                break
            if kind == _DATA and length and not flags & (_END_STREAM | _PADDED):
                sid &= 0x7FFFFFFF
                if start < off:  # the frames before this one first, in order (they may end or reset its stream)
                    flush_run()
                    self.inner.data_received(bytes(buf[start:off]))
                    start = off
                h2s = h2.streams.get(sid)
                if (sid in streams and h2s is not None and h2s.state_machine.state in _RECEIVING
                        and length <= h2._inbound_flow_control_window_manager.current_window_size  # noqa: SLF001
                        and length <= h2s._inbound_window_manager.current_window_size):  # noqa: SLF001
                    if run_size and run_id != sid:
                        flush_run()
                    h2._inbound_flow_control_window_manager.window_consumed(length)  # noqa: SLF001
                    h2s._inbound_window_manager.window_consumed(length)  # noqa: SLF001
                    run_id = sid
                    run.append(bytes(buf[off + 9:end]))
                    run_size += length
                    start = end
            off = end
        flush_run()
        if start < off:
            self.inner.data_received(bytes(buf[start:off]))
        del buf[:off]
        conn.last_data_received = time.monotonic()
        transport = self._transport
        if (self.coalesce and len(data) < SMALL_READ and self._resuming is None and transport is not None
                and not transport.is_closing()):
            transport.pause_reading()
            self._resuming = asyncio.get_running_loop().call_later(COALESCE, self._resume)

    def eof_received(self) -> bool | None:
        """The peer's EOF: the HTTP/2 protocol decides."""
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        """The transport's buffer is full."""
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        """The transport's buffer drained."""
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection ended."""
        if self._resuming is not None:
            self._resuming.cancel()
            self._resuming = None
        self.inner.connection_lost(exc)


class ClientChannel(Channel):
    """A grpclib :class:`~grpclib.client.Channel` on a :class:`TakenConnection`: the HTTP/2 client speaks first
    (its preface) as soon as it is made; it never dials, so once the connection ends every call fails with
    :class:`ConnectionClosed` (BuildKit's session allows one connection too)."""

    def __init__(self, conn: TakenConnection, *, config: Configuration | None = None) -> None:
        super().__init__("localhost", 0, config=config)
        self._authority = "localhost"  # what grpc-go's client sends on a session
        self.connection = conn
        protocol = self._protocol_factory()
        self._protocol = protocol
        conn.add_lost_callback(self._forget)
        self.reads = DirectData(protocol, server=False)  # the connection's reads (coalesced on demand)
        conn.attach(self.reads)

    def _forget(self, exc: Exception | None) -> None:
        self._protocol = None  # grpclib warns about a channel still holding a protocol when it is collected

    async def _create_connection(self) -> H2Protocol:
        raise ConnectionClosed("the connection of this gRPC channel is closed")

    def close(self) -> None:
        """Close the connection (grpclib's ``close`` closes its transport)."""
        super().close()
        self.connection.close()


async def serve(conn: TakenConnection, handlers: Collection[Servable], *,
                config: Configuration | None = None) -> None:
    """Answer the peer's gRPC calls on ``conn`` with grpclib ``handlers`` (generated ``*Base`` implementations)
    until the connection ends; cancelled, it closes the connection and cancels the calls in progress."""
    server = Server(list(handlers), config=config)
    # grpclib's Server makes one protocol per accepted socket with this factory; this connection is accepted already
    protocol = server._protocol_factory()  # noqa: SLF001
    conn.attach(DirectData(protocol, server=True))
    handler = cast(ServerHandler, protocol.handler)
    try:
        await conn.wait_closed()
    finally:
        if not conn.closed:
            conn.close()
        handler.close()  # cancels the calls in progress (grpclib does this too when the connection is lost)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(handler.wait_closed()), CALLS_GRACE)
