"""BuildKit's client sessions (moby/buildkit ``session/manager.go``): :class:`SessionManager` keeps the sessions
clients open (``POST /session``) by their ID and hands them to builds that name them; :class:`Session` calls the
services the client serves on its connection: FileSync (the build context and Dockerfile, into a directory,
incrementally), Secrets, Auth (registry credentials) and FileSend (build outputs: a tar stream, or a directory)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from urllib.parse import quote_plus

from grpclib.client import StreamStreamMethod
from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest

from ..errors import (
    DockwrightError,
    Forbidden,
    InvalidArgument,
    NotFound,
    NotSupported,
    SystemError_,
    Unauthorized,
    Unavailable,
)
from ..timestamps import go_quote
from .filesync import ClientPackets, Progress, SyncStats, receive, send
from .h2c import ClientChannel, TakenConnection
from .pb.auth_grpc import AuthStub
from .pb.auth_pb2 import CredentialsRequest
from .pb.filesync_grpc import FileSendStub
from .pb.filesync_pb2 import BytesMessage
from .pb.secrets_grpc import SecretsStub
from .pb.secrets_pb2 import GetSecretRequest
from .pb.ssh_grpc import SSHStub
from .pb.ssh_pb2 import CheckAgentRequest
from .pb.wire_pb2 import Packet
from .sshforward import SSH_ID_KEY, AgentStream

__all__ = ["SessionManager", "Session", "NoActiveSession", "SecretNotFound", "rpc_error",
           "FILESYNC_DIFFCOPY", "FILESEND_DIFFCOPY", "AUTH_CREDENTIALS", "SECRETS_GET", "HEALTH_CHECK", "MAX_MESSAGE"]

log = logging.getLogger("dockwright.buildkit.session")

FILESYNC_DIFFCOPY = "/moby.filesync.v1.FileSync/DiffCopy"
FILESEND_DIFFCOPY = "/moby.filesync.v1.FileSend/DiffCopy"
AUTH_CREDENTIALS = "/moby.filesync.v1.Auth/Credentials"
SECRETS_GET = "/moby.buildkit.secrets.v1.Secrets/GetSecret"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SSH_CHECK = "/moby.sshforward.v1.SSH/CheckAgent"
SSH_FORWARD = "/moby.sshforward.v1.SSH/ForwardAgent"

MAX_MESSAGE = 3 << 20  # BuildKit splits what it sends at 3 MiB: grpc-go refuses messages over 4 MiB by default
EXPORTER_ID = "buildkit-attachable-exporter-id"  # which of the client's outputs a FileSend call is for
AUTH_TIMEOUT = 60.0  # BuildKit's sessionAuthTimeout


class NoActiveSession(NotFound):
    """No session of that ID is open (BuildKit's ``Manager.Get`` gave up waiting)."""


class SecretNotFound(NotFound):
    """The client has no secret of that ID (or serves no secrets)."""

    def __init__(self, secret_id: str) -> None:
        self.secret_id = secret_id
        super().__init__(f"secret {secret_id} not found: not found")  # dockerd 20.10's BuildKit, word for word


_STATUS_ERRORS: dict[Status, type[DockwrightError]] = {
    Status.NOT_FOUND: NotFound, Status.INVALID_ARGUMENT: InvalidArgument, Status.UNIMPLEMENTED: NotSupported,
    Status.PERMISSION_DENIED: Forbidden, Status.UNAUTHENTICATED: Unauthorized, Status.UNAVAILABLE: Unavailable,
}


def rpc_error(exc: GRPCError) -> DockwrightError:
    """The error of a failed call as grpc-go words it (``rpc error: code = NotFound desc = …``), of the kind its
    status says."""
    code = "Canceled" if exc.status is Status.CANCELLED else exc.status.name.title().replace("_", "")
    return _STATUS_ERRORS.get(exc.status, SystemError_)(f"rpc error: code = {code} desc = {exc.message or ''}")


def _metadata(opts: Iterable[tuple[str, list[str] | None]]) -> list[tuple[str, str]]:
    """BuildKit's ``encodeOpts``: one entry per value; values that HTTP/2 metadata cannot carry as they are (not
    printable ASCII) are all URL-escaped, and ``<key>-encoded: 1`` says so. Empty values cannot be sent."""
    out: list[tuple[str, str]] = []
    for key, values in opts:
        if values is None:
            continue
        values = [v for v in values if v]
        if any(not v.isascii() or not v.isprintable() for v in values):
            out += [(key, quote_plus(v, safe="-_.~")) for v in values]
            out.append((key + "-encoded", "1"))
        else:
            out += [(key, v) for v in values]
    return out


class Session:
    """One client's session: who it is, what it serves, and typed calls of its services over its connection."""

    def __init__(self, session_id: str, name: str, shared_key: str, methods: Iterable[str],
                 channel: ClientChannel) -> None:
        self.id = session_id
        self.name = name  # the client's name for it (the docker CLI 20.10 sends its context argument's base name)
        self.shared_key = shared_key  # stable for a client and context directory: what to sync incrementally against
        self.methods = tuple(methods)
        self._supported = {m.lower() for m in self.methods}
        self.channel = channel
        self.closed = asyncio.Event()  # set when the connection has ended

    def __repr__(self) -> str:
        return f"Session({self.id!r}, name={self.name!r})"

    def supports(self, method: str) -> bool:
        """Whether the client serves ``method`` (``/package.Service/Method``, compared without case as BuildKit)."""
        return method.lower() in self._supported

    async def wait_closed(self) -> None:
        """Return when the session's connection has ended."""
        await self.closed.wait()

    def close(self) -> None:
        """Close the session's connection."""
        self.channel.close()

    def _gone(self, exc: BaseException) -> Unavailable:
        return Unavailable(f"session {self.id}: the connection to the client is gone: {exc or type(exc).__name__}")

    async def sync_dir(self, name: str, dest: Path, *, include: list[str] | None = None,
                       exclude: list[str] | None = None, follow_paths: list[str] | None = None,
                       progress: Progress | None = None) -> SyncStats:
        """Sync the client's directory ``name`` (the docker CLI's are ``context`` and ``dockerfile``) into
        ``dest`` with FileSync.DiffCopy (BuildKit's ``FSSync``): the client filters it with the include and exclude
        patterns and the paths to follow (symlinks resolved); ``dest`` may hold the previous sync of the same
        directory (same :attr:`shared_key`), then only what changed is sent."""
        if not self.supports(FILESYNC_DIFFCOPY):
            raise NotSupported("no local sources enabled")
        metadata = _metadata([("include-patterns", include), ("exclude-patterns", exclude),
                              ("followpaths", follow_paths), ("dir-name", [name])])
        method = StreamStreamMethod(self.channel, FILESYNC_DIFFCOPY, Packet, Packet)
        try:
            async with method.open(metadata=metadata) as stream:
                await stream.send_request()
                return await receive(ClientPackets(stream, reads=self.channel.reads), dest, progress=progress)
        except GRPCError as exc:
            raise rpc_error(exc) from None
        except (StreamTerminatedError, ConnectionError) as exc:
            raise self._gone(exc) from None

    async def get_secret(self, secret_id: str) -> bytes:
        """The secret ``secret_id`` from the client (Secrets.GetSecret); :class:`SecretNotFound` when it has none
        of that ID or serves no secrets."""
        try:
            reply = await SecretsStub(self.channel).GetSecret(GetSecretRequest(ID=secret_id))
        except GRPCError as exc:
            if exc.status in (Status.NOT_FOUND, Status.UNIMPLEMENTED):
                raise SecretNotFound(secret_id) from None
            raise rpc_error(exc) from None
        except (StreamTerminatedError, ConnectionError) as exc:
            raise self._gone(exc) from None
        return reply.data

    async def check_agent(self, agent_id: str) -> None:
        """That the client forwards an SSH agent ``agent_id`` (SSH.CheckAgent, ``docker build --ssh``; ``""``: the
        client's ``default``):
        :class:`NotFound` with BuildKit's words when it serves none, the client's error when it has no such ID."""
        missing = NotFound(f"no SSH key {go_quote(agent_id)} forwarded from the client")
        if not self.supports(SSH_CHECK) or not self.supports(SSH_FORWARD):
            raise missing
        try:
            await SSHStub(self.channel).CheckAgent(CheckAgentRequest(ID=agent_id))
        except GRPCError as exc:
            if exc.status is Status.UNIMPLEMENTED:
                raise missing from None
            raise rpc_error(exc) from None
        except (StreamTerminatedError, ConnectionError) as exc:
            raise self._gone(exc) from None

    def agent(self, agent_id: str) -> AbstractAsyncContextManager[AgentStream]:
        """A connection to the client's SSH agent ``agent_id`` (``""``: ``default``): an ``SSH.ForwardAgent``
        stream."""
        return SSHStub(self.channel).ForwardAgent.open(metadata=[(SSH_ID_KEY, agent_id or "default")])

    async def credentials(self, host: str) -> tuple[str, str]:
        """``(username, secret)`` the client has for registry ``host`` (Auth.Credentials), ``("", "")`` when it has
        none or serves no credentials."""
        if not self.supports(AUTH_CREDENTIALS):
            return "", ""
        try:
            reply = await AuthStub(self.channel).Credentials(CredentialsRequest(Host=host), timeout=AUTH_TIMEOUT)
        except GRPCError as exc:
            if exc.status is Status.UNIMPLEMENTED:
                return "", ""
            raise rpc_error(exc) from None
        except (StreamTerminatedError, ConnectionError) as exc:
            raise self._gone(exc) from None
        return reply.Username, reply.Secret

    def _require_filesend(self) -> None:
        if not self.supports(FILESEND_DIFFCOPY):
            # BuildKit's words, with its lower-case method name
            raise NotSupported("method /moby.filesync.v1.FileSend/diffcopy not supported by the client")

    async def send_tar(self, chunks: AsyncIterator[bytes]) -> None:
        """Send a tar stream to the client (``--output type=tar``, ``-o -``) with FileSend.DiffCopy as BuildKit's
        ``CopyFileWriter``: BytesMessages of at most 3 MiB, then the end of the stream; returns once the client
        has written it all."""
        self._require_filesend()
        try:
            async with FileSendStub(self.channel).DiffCopy.open(metadata=[(EXPORTER_ID, "0")]) as stream:
                await stream.send_request()
                async for chunk in chunks:
                    for off in range(0, len(chunk), MAX_MESSAGE):
                        await stream.send_message(BytesMessage(data=chunk[off:off + MAX_MESSAGE]))
                await stream.end()
                while await stream.recv_message() is not None:  # the client is done when it ends its side
                    pass
        except GRPCError as exc:
            raise rpc_error(exc) from None
        except (StreamTerminatedError, ConnectionError) as exc:
            raise self._gone(exc) from None

    async def send_dir(self, src: Path, *, progress: Progress | None = None) -> None:
        """Send the tree under ``src`` to the client (``--output type=local``) with FileSend.DiffCopy, this end
        being fsutil's sender (BuildKit's ``CopyToCaller``: the stream carries fsutil Packets, not the
        BytesMessages the service declares)."""
        self._require_filesend()
        method = StreamStreamMethod(self.channel, FILESEND_DIFFCOPY, Packet, Packet)
        try:
            async with method.open(metadata=[(EXPORTER_ID, "0")]) as stream:
                await stream.send_request()
                await send(ClientPackets(stream), src, progress=progress)
        except GRPCError as exc:
            raise rpc_error(exc) from None
        except (StreamTerminatedError, ConnectionError) as exc:
            raise self._gone(exc) from None


class SessionManager:
    """The open sessions by ID (BuildKit's ``session.Manager``). Made without an event loop; used on one.

    As BuildKit's ``monitorHealth``, a session whose client serves the gRPC health service is checked every
    ``health_interval`` seconds, and closed after ``health_failures`` checks in a row failed or took longer than
    ``health_timeout`` (the docker CLI 20.10 waits for its session's connection to end when a build fails before
    the session was up, so a daemon that never closes it hangs the CLI)."""

    def __init__(self, *, health_interval: float = 5.0, health_timeout: float = 15.0,
                 health_failures: int = 2) -> None:
        self._sessions: dict[str, Session] = {}
        self._waiters: dict[str, set[asyncio.Future[Session]]] = {}
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.health_failures = health_failures

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[Session]:
        """The sessions open now."""
        return list(self._sessions.values())

    async def attach(self, conn: TakenConnection, *, session_id: str, name: str = "", shared_key: str = "",
                     methods: Iterable[str] = ()) -> None:
        """Run the session a client opened on ``conn`` (its ``101`` sent): this end becomes the HTTP/2 client, the
        session is found by ``session_id`` until the connection ends, then this returns. A session of that ID
        open already is an error (BuildKit's ``session X already exists``) and ``conn`` is closed."""
        if session_id in self._sessions:
            conn.close()
            raise InvalidArgument(f"session {session_id} already exists")
        channel = ClientChannel(conn)
        session = Session(session_id, name, shared_key, methods, channel)
        self._sessions[session_id] = session
        for waiter in self._waiters.pop(session_id, set()):
            if not waiter.done():
                waiter.set_result(session)
        monitor = asyncio.ensure_future(self._monitor(session)) if session.supports(HEALTH_CHECK) else None
        try:
            await conn.wait_closed()
        finally:
            if monitor is not None:
                monitor.cancel()
            if self._sessions.get(session_id) is session:
                del self._sessions[session_id]
            session.closed.set()
            channel.close()

    async def _monitor(self, session: Session) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.health_interval)
            try:
                await HealthStub(session.channel).Check(HealthCheckRequest(), timeout=self.health_timeout)
                failures = 0
            except (GRPCError, StreamTerminatedError, ConnectionError, TimeoutError) as exc:
                failures += 1
                if failures >= self.health_failures:
                    log.info("session %s: health check failed %d times (%s): closing it", session.id, failures,
                             exc or type(exc).__name__)
                    session.close()
                    return

    async def get(self, session_id: str, timeout: float = 5.0) -> Session:
        """The open session ``session_id`` (a ``prefix:`` before the ID is ignored, as BuildKit), waiting up to
        ``timeout`` seconds for it to be opened (a client opens it while it sends the build request)."""
        _, sep, tail = session_id.partition(":")
        if sep and tail:
            session_id = tail
        session = self._sessions.get(session_id)
        if session is not None and not session.closed.is_set():
            return session
        waiter: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(session_id, set()).add(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise NoActiveSession(f"no active session for {session_id}: context deadline exceeded") from None
        finally:
            waiters = self._waiters.get(session_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[session_id]

    def close_all(self) -> None:
        """Close every session's connection (the daemon is stopping)."""
        for session in list(self._sessions.values()):
            session.close()
