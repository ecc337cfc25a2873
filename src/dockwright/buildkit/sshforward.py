"""``RUN --mount=type=ssh``: a unix socket that forwards to the client's SSH agent (BuildKit's
``sshforward.MountSSHSocket``). The socket lives in a directory of its own (0711), owned and moded as the mount
asks; every connection a step makes to it becomes one ``SSH.ForwardAgent`` stream to the client (metadata
``buildkit.ssh.id``: which of the client's agents), bytes relayed both ways in chunks of 32 KiB until either side
ends. The agent's keys never reach the daemon's disk: only the bytes of the agent protocol pass through."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from .pb.ssh_pb2 import BytesMessage

__all__ = ["AgentStream", "OpenAgent", "AgentSocket", "SSH_ID_KEY", "CHUNK"]

log = logging.getLogger("dockwright.buildkit.ssh")

SSH_ID_KEY = "buildkit.ssh.id"  # the ForwardAgent call's metadata naming the client's agent
CHUNK = 32 << 10
_SUN_PATH_MAX = 107  # a unix socket's path, in bytes


class AgentStream(Protocol):
    """One ``SSH.ForwardAgent`` call (a grpclib client stream)."""

    async def send_request(self) -> None:
        """Start the call."""

    async def send_message(self, message: BytesMessage) -> None:
        """Send bytes to the agent."""

    async def recv_message(self) -> BytesMessage | None:
        """Bytes from the agent; None once it ended its side."""

    async def end(self) -> None:
        """End this side (the step closed its end of the socket)."""


OpenAgent = Callable[[], AbstractAsyncContextManager[AgentStream]]


class AgentSocket:
    """The socket of one ssh mount: :meth:`start` it (under ``base``, or the temporary directory when a socket's
    path there would be too long), bind-mount :attr:`path`, :meth:`close` it after the step."""

    def __init__(self, open_agent: OpenAgent, *, uid: int = 0, gid: int = 0, mode: int = 0o600) -> None:
        self.open_agent = open_agent
        self.uid, self.gid, self.mode = uid, gid, mode
        self.dir: Path | None = None
        self.path: Path | None = None
        self._server: asyncio.AbstractServer | None = None
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self, base: Path) -> Path:
        """Listen; returns the socket's path."""
        if len(os.fsencode(base)) + 40 > _SUN_PATH_MAX:
            base = Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=".buildkit-ssh-sock", dir=base))
        os.chmod(self.dir, 0o711)
        self.path = self.dir / "ssh_auth_sock"
        self._server = await asyncio.start_unix_server(self._accept, str(self.path))
        os.chown(self.path, self.uid, self.gid)
        os.chmod(self.path, self.mode & 0o777)
        return self.path

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._relay(reader, writer))
        self._relays.add(task)
        task.add_done_callback(self._relays.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with self.open_agent() as stream:
                await stream.send_request()

                async def up() -> None:  # the step's requests to the agent
                    while chunk := await reader.read(CHUNK):
                        await stream.send_message(BytesMessage(data=chunk))
                    await stream.end()

                async def down() -> None:  # the agent's answers to the step
                    while (msg := await stream.recv_message()) is not None:
                        writer.write(msg.data)
                        await writer.drain()
                    if writer.can_write_eof():
                        writer.write_eof()

                await asyncio.gather(up(), down())
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("ssh agent connection ended: %s", exc)
        except Exception as exc:  # noqa: BLE001 - one connection's failure (the client's agent refused): the step sees EOF
            log.info("ssh agent forwarding failed: %s", exc)
        finally:
            writer.close()

    async def close(self) -> None:
        """Stop listening, end the connections, remove the socket's directory."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._relays):
            task.cancel()
        if self._relays:
            await asyncio.gather(*self._relays, return_exceptions=True)
        if self.dir is not None:
            await asyncio.to_thread(shutil.rmtree, self.dir, True)
            self.dir = None
