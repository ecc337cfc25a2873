"""A RUN step's process, as BuildKit's runc executor runs it: ``runc run`` in the foreground on a mounted rootfs,
with the step's mounts (binds, tmpfs), its network (the default bridge, none or host), ``buildkitsandbox`` as
host name, its output streamed to the step's vertex, and killed with the build when the build is cancelled.
Build processes have a runc state directory of their own, cleared at start-up (a crash leaves none running)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import DockwrightError, Unavailable
from ..runtime.bundle import ContainerSpec, build_bundle
from ..runtime.runc import Runc

__all__ = ["ExecNetwork", "ExecRequest", "ExecRunner", "HOSTNAME"]

log = logging.getLogger("dockwright.buildkit")

#: The host name of a BuildKit step's sandbox.
HOSTNAME = "buildkitsandbox"


class ExecAttachment(Protocol):
    """What the network service returns for a connected sandbox."""

    @property
    def sandbox_key(self) -> str:
        """The network namespace's path."""

    @property
    def ip_address(self) -> str:
        """The sandbox's address."""

    @property
    def network(self) -> str:
        """The network's name."""


class ExecNetwork(Protocol):
    """The engine's network service as a RUN step uses it."""

    async def connect(self, cid: str, name: str, mode: str) -> ExecAttachment | None:
        """Connect a sandbox; None when the mode has no endpoint of its own."""

    async def disconnect(self, cid: str, att: Any) -> None:
        """Release what ``connect`` made."""

    @property
    def host_gateway_ip(self) -> str:
        """What ``host-gateway`` stands for in ``--add-host``."""

    @property
    def enabled(self) -> bool:
        """Whether the default bridge exists (``--bridge=none``: steps get no network)."""


@dataclass
class ExecRequest:
    """One process: ``args`` in ``rootfs`` with ``env``, ``cwd``, ``user``; ``binds`` are ``(host path,
    destination, read-only)``; ``tmpfs`` ``(destination, options)``; ``network`` ``default``/``none``/``host``."""

    rootfs: Path
    args: list[str]
    env: list[str]
    cwd: str = "/"
    user: str = ""
    network: str = "default"
    binds: list[tuple[str | Path, str, bool]] = field(default_factory=list)
    tmpfs: list[tuple[str, str]] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)


class ExecRunner:
    """Runs build processes with ``runc`` (state under ``state_dir``, bundles under ``bundles``)."""

    def __init__(self, runc: str, state_dir: Path, bundles: Path, network: ExecNetwork | None,
                 dns: tuple[list[str], list[str], list[str]] = ([], [], [])) -> None:
        self.runc = runc
        self.state_dir = Path(state_dir)
        self.bundles = Path(bundles)
        self.ctl = Runc(runc, root=self.state_dir)  # kill and delete (the steps themselves: ``runc run`` below)
        self.network = network
        self.dns = dns

    async def recover(self) -> None:
        """Kill and delete what a crashed daemon left running (start-up)."""
        if not self.state_dir.is_dir():
            return
        for entry in os.listdir(self.state_dir):
            await self._remove(entry, kill=True)
        shutil.rmtree(self.bundles, ignore_errors=True)

    async def _remove(self, cid: str, *, kill: bool) -> None:
        """Kill (with ``kill``) every process of ``cid`` and delete it, whatever state it is in (best effort)."""
        if kill:
            with contextlib.suppress(DockwrightError):
                await self.ctl.kill(cid, "KILL", all=True)
        with contextlib.suppress(DockwrightError):
            await self.ctl.delete(cid, force=True)

    async def run(self, req: ExecRequest, output: Callable[[int, bytes], None]) -> int:
        """Run the process; its stdout (1) and stderr (2) go to ``output`` as they come. Returns the exit
        code. Cancelling kills it (and everything in its sandbox) before returning."""
        cid = "bk-" + os.urandom(12).hex()
        bundle = self.bundles / cid
        att: ExecAttachment | None = None
        mode = req.network if req.network in ("none", "host") else "default"
        try:
            if mode == "default" and self.network is not None and self.network.enabled:
                att = await self.network.connect(cid, cid, "bridge")
            dns, search, opts = self.dns
            spec = ContainerSpec(id=cid, rootfs=req.rootfs, args=list(req.args), env=list(req.env),
                                 cwd=req.cwd or "/", user=req.user, hostname=HOSTNAME,
                                 network_mode=mode if mode != "default" or att is not None else "none",
                                 binds=list(req.binds), tmpfs=list(req.tmpfs), extra_hosts=list(req.extra_hosts),
                                 dns=list(dns), dns_search=list(search), dns_options=list(opts))
            if att is not None and att.network == "bridge":
                spec.netns_path, spec.ip_address = att.sandbox_key, att.ip_address
            if self.network is not None:
                spec.host_gateway_ip = self.network.host_gateway_ip
            bundle.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(build_bundle, spec, bundle)
            return await self._run_bundle(cid, bundle, output)
        finally:
            if att is not None and self.network is not None:
                with contextlib.suppress(Exception):
                    await self.network.disconnect(cid, att)
            shutil.rmtree(bundle, ignore_errors=True)

    async def _run_bundle(self, cid: str, bundle: Path, output: Callable[[int, bytes], None]) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            proc = await asyncio.create_subprocess_exec(
                self.runc, "--root", str(self.state_dir), "run", "--bundle", str(bundle), cid,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True)
        except OSError as exc:
            raise Unavailable(f"cannot run {self.runc}: {exc}") from exc
        assert proc.stdout is not None and proc.stderr is not None

        async def pump(stream: asyncio.StreamReader, fd: int) -> None:
            while chunk := await stream.read(32768):
                output(fd, chunk)

        pumps = asyncio.gather(pump(proc.stdout, 1), pump(proc.stderr, 2))
        try:
            await pumps
            return await proc.wait()
        except BaseException:
            pumps.cancel()
            await self._kill(cid, proc)
            raise
        finally:
            await self._remove(cid, kill=False)

    async def _kill(self, cid: str, proc: asyncio.subprocess.Process) -> None:
        """Kill the sandbox's processes and wait for runc (shielded: this runs while being cancelled)."""
        async def kill() -> None:
            with contextlib.suppress(DockwrightError):
                await self.ctl.kill(cid, "KILL", all=True)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()

        await asyncio.shield(_finish(kill()))


async def _finish(aw: Awaitable[None]) -> None:
    try:
        await aw
    except Exception:  # noqa: BLE001 - best effort while a build is torn down
        log.warning("killing a build step failed", exc_info=True)
