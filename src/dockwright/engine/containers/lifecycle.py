"""A container's runs (:class:`ContainerLifecycle`): start (mounts, volumes, network, runtime), the exit and its
publication, recovery after a daemon restart, wait, kill, stop, pause, unpause and restart."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal as _signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ...errors import Conflict, ContainerNotFound, InvalidArgument, SystemError_
from ...network.endpoint import Attachment
from ...oci.gojson import rfc3339_nano
from ...runtime import ContainerSpec, build_bundle
from .create import ContainerCreation
from .record import Container

__all__ = ["ContainerLifecycle", "SIGNALS", "parse_signal", "REMOVED_MEMORY"]

log = logging.getLogger("dockwright.containers")

SIGNALS = {name[3:]: int(getattr(_signal, name)) for name in dir(_signal)
           if name.startswith("SIG") and not name.startswith("SIG_") and isinstance(getattr(_signal, name), int)}


def parse_signal(s: str | int | None, default: int = 15) -> int:
    """A signal number from a name (``KILL``, ``SIGKILL``) or number; ``default`` when none is given."""
    if s is None or s == "":
        return default
    if isinstance(s, int):
        return s
    t = str(s).upper().removeprefix("SIG")
    if t.isdigit():
        return int(t)
    if t in SIGNALS:
        return SIGNALS[t]
    raise InvalidArgument(f"Invalid signal: {s}")


REMOVED_MEMORY = 30.0  # seconds a removed container's exit code is still told to `wait --condition removed`


class ContainerLifecycle(ContainerCreation):
    """The run stage of the containers service."""

    # ---- start / exit -----------------------------------------------------------------------------------------
    def _spec(self, c: Container, rootfs: Path,
              binds: list[tuple[str | Path, str, bool, str]] | None = None) -> ContainerSpec:
        """The runtime's view of a run; ``binds`` are the container's mounts with each volume's host path."""
        cfg, hc = c.config, c.host_config
        args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        if not args:
            raise InvalidArgument("no command specified")
        mode = hc.get("NetworkMode") or "default"
        return ContainerSpec(
            id=c.id, rootfs=rootfs, args=args, env=list(cfg.get("Env") or []), cwd=cfg.get("WorkingDir") or "/",
            user=cfg.get("User") or "", hostname=cfg.get("Hostname") or c.id[:12],
            domainname=cfg.get("Domainname") or "", tty=bool(cfg.get("Tty")), open_stdin=bool(cfg.get("OpenStdin")),
            network_mode=mode, binds=list(binds or []), readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
            cgroupns=str(hc.get("CgroupnsMode") or ""),
            tmpfs=[(str(m.get("Destination")), str(m.get("TmpfsData") or "")) for m in c.mounts
                   if m.get("Type") == "tmpfs"] + [(str(k), str(v or "")) for k, v in (hc.get("Tmpfs") or {}).items()],
            memory=int(hc.get("Memory") or 0), memory_swap=int(hc.get("MemorySwap") or 0),
            cpu_shares=int(hc.get("CpuShares") or 0), shm_size=int(hc.get("ShmSize") or 0),
            labels=dict(cfg.get("Labels") or {}), extra_hosts=list(hc.get("ExtraHosts") or []),
            # the container's own DNS settings, else the daemon's (--dns, --dns-search, --dns-opt)
            dns=list(hc.get("Dns") or self.network.config.dns),
            dns_search=list(hc.get("DnsSearch") or self.network.config.dns_search),
            dns_options=list(hc.get("DnsOptions") or self.network.config.dns_opts))

    async def start(self, ref: str) -> bool:
        """Start; False when it was already running (HTTP 304). A removal waits for a start in progress (as
        dockerd's container lock); a failed start of an AutoRemove container removes it."""
        c = self.get(ref)
        failed: Exception | None = None
        async with self._lock:
            if c.running:
                return False
            if c.id in self._removing or c.id not in self._cache:
                raise Conflict("container is marked for removal and cannot be started")
            starting = self._starting[c.id] = asyncio.Event()
            try:
                await self._start_locked(c)
            except Exception as exc:
                failed = exc
            finally:
                del self._starting[c.id]
                starting.set()
        if failed is not None:
            if c.host_config.get("AutoRemove") and c.id in self._cache and c.id not in self._removing:
                try:
                    await self.remove(c.id, force=True, volumes=True)
                except (ContainerNotFound, Conflict):
                    pass
                except Exception as e:  # noqa: BLE001
                    log.warning("auto-remove of %s failed: %s", c.id, e)
            raise failed
        self._event(c, "start")
        return True

    async def _start_locked(self, c: Container) -> None:
        rootfs = await self._mount(c)
        bundle = self._bundle(c)
        if bundle.exists():  # a restart: clear what the last run left
            if c.id not in self._runtime_gone and await self.runc.state(c.id):
                await self.runc.delete(c.id, force=True)
            shutil.rmtree(bundle, ignore_errors=True)
        self._runtime_gone.discard(c.id)
        att: Attachment | None = None
        mounted: list[str] = []
        if (c.host_config.get("NetworkMode") or "default") in ("default", "bridge") \
                and self.network.config.bridge == "none":
            c.config["NetworkDisabled"] = True  # dockerd's connectToNetwork with the bridge disabled (-b none)
        try:
            binds = self._mount_volumes(c, mounted)
            spec = self._spec(c, rootfs, binds)
            hc = c.host_config
            att = await self.network.connect(c.id, c.name, spec.network_mode, exposed=c.config.get("ExposedPorts"),
                                             port_bindings=hc.get("PortBindings"),
                                             publish_all=bool(hc.get("PublishAllPorts")))
            if att is not None and att.network == "bridge":
                spec.netns_path, spec.ip_address = att.sandbox_key, att.ip_address
            spec.host_gateway_ip = self.network.host_gateway_ip
            await asyncio.to_thread(build_bundle, spec, bundle)
            await self.runc.create(c.id, bundle, log_path=self._log_path(c), stdin=spec.open_stdin)
        except Exception as exc:
            await self._disconnect(c, att)
            self._unmount_volumes(c, mounted, events=False)
            await self._unmount(c)
            self._start_failed(c, exc)
            raise
        created = self._created.setdefault(c.id, asyncio.Event())
        created.set()
        pending = self._pending_attach.get(c.id)
        if pending:  # let `docker run`'s attach connect before the process runs
            try:
                await asyncio.wait_for(asyncio.gather(*[p.wait() for p in pending]), 5)
            except TimeoutError:
                pass
        try:
            await self.runc.start(c.id)
        except Exception as exc:
            try:
                await self.runc.delete(c.id, force=True)
            except Exception:  # noqa: BLE001
                pass
            self._runtime_gone.add(c.id)
            await self._disconnect(c, att)
            self._unmount_volumes(c, mounted)
            await self._unmount(c)
            self._start_failed(c, exc)
            raise
        c.network = att if att is not None else self.network.detached(c.host_config.get("NetworkMode") or "default")
        st = await self.runc.state(c.id)
        c.state.update({"Status": "running", "Running": True, "Paused": False, "Pid": int((st or {}).get("pid", 0)),
                        "ExitCode": 0, "Error": "", "StartedAt": rfc3339_nano(),
                        "FinishedAt": "0001-01-01T00:00:00Z"})
        self._save(c)
        ev = self._exit_events.get(c.id)
        if ev is None or ev.is_set():  # keep the event a wait(next-exit) sent before start waits on
            self._exit_events[c.id] = asyncio.Event()
        self._watchers[c.id] = asyncio.ensure_future(self._watch(c))

    def _mount_volumes(self, c: Container, mounted: list[str]) -> list[tuple[str | Path, str, bool, str]]:
        """The bind mounts of a run: each volume mounted (``mount`` event), its name added to ``mounted``."""
        binds: list[tuple[str | Path, str, bool, str]] = []
        for mp in c.mounts:
            dest, ro = str(mp.get("Destination") or ""), not mp.get("RW", True)
            if mp.get("Type") == "volume":
                path = self.volumes.mount(str(mp.get("Name")), c.id)
                mounted.append(str(mp.get("Name")))
                self.volumes.mounted(str(mp.get("Name")), c.id, dest, not ro, str(mp.get("Propagation") or ""))
                binds.append((path, dest, ro, "rprivate"))
            elif mp.get("Type") == "bind":
                binds.append((str(mp.get("Source") or ""), dest, ro, str(mp.get("Propagation") or "rprivate")))
        return binds

    def _unmount_volumes(self, c: Container, names: list[str] | None = None, *, events: bool = True) -> None:
        """A run is over: its volumes are released (``unmount`` events, as dockerd's after ``die``)."""
        if names is None:
            names = [str(m.get("Name")) for m in c.mounts if m.get("Type") == "volume"]
        for name in names:
            try:
                self.volumes.unmount(name, c.id)
            except Exception as exc:  # noqa: BLE001
                log.warning("releasing volume %s of %s: %s", name, c.id, exc)
            if events:
                self.volumes.unmounted(name, c.id)

    def _start_failed(self, c: Container, exc: Exception) -> None:
        """As dockerd: the error is recorded, exit code 127 for a command not found (126 otherwise), waiters and
        attaches released (start() then removes an AutoRemove container)."""
        msg = str(exc)
        code = 127 if ("not found" in msg or "no such file" in msg.lower()) else 126
        c.state.update({"Running": False, "ExitCode": code, "Error": msg})  # Status stays created (or exited)
        self._finished[c.id] = (time.time(), code)
        self._save(c)
        ev = self._exit_events.get(c.id)
        if ev is not None:
            ev.set()
        created = self._created.pop(c.id, None)
        if created is not None:
            created.set()  # pending attaches wake up and fail to connect: their streams end

    async def _watch(self, c: Container) -> None:
        try:
            status = await self.runc.wait_exit(c.id, bundle=self._bundle(c))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a lost shim: the container is gone
            log.warning("waiting for container %s failed: %s", c.id, exc)
            status = None
        await self._exited(c, status)

    async def _exited(self, c: Container, status: Any) -> None:
        """The container's init has exited (its output is all in the log). As dockerd's handleContainerExit:
        clean up first (runc's state, the rootfs mount), then publish the exit — state, exit event, ``die`` — in
        one step with no await in between, so that whoever sees the container stopped (``wait``, ``logs``,
        ``ps``, ``rm``) also finds its exit event set. The publication also happens when this task is cancelled
        during the clean-up; then an AutoRemove container is removed."""
        try:
            try:
                await self.runc.delete(c.id, force=True)
                self._runtime_gone.add(c.id)
            except ContainerNotFound:
                self._runtime_gone.add(c.id)
            except Exception as exc:  # noqa: BLE001
                log.warning("deleting container %s from the runtime: %s", c.id, exc)
            await self._disconnect(c, c.network)
            try:
                await self._unmount(c)
            except Exception as exc:  # noqa: BLE001
                log.warning("unmounting the rootfs of %s: %s", c.id, exc)
        finally:
            self._publish_exit(c, status)
            self._unmount_volumes(c)
        if c.host_config.get("AutoRemove") and c.id in self._cache and c.id not in self._removing:
            try:
                await self.remove(c.id, force=True, volumes=True)
            except (ContainerNotFound, Conflict):
                pass  # removed meanwhile, or being removed by a request
            except Exception as exc:  # noqa: BLE001
                log.warning("auto-remove of %s failed: %s", c.id, exc)

    def _publish_exit(self, c: Container, status: Any) -> None:
        """Record a container's exit and wake everyone waiting for it. Synchronous on purpose: nothing can run
        between the state change and the exit event."""
        code = int(status.exit_code) if status is not None else 255
        c.state.update({"Status": "exited", "Running": False, "Paused": False, "Pid": 0, "ExitCode": code,
                        "OOMKilled": bool(getattr(status, "oom_killed", False)),
                        "FinishedAt": rfc3339_nano()})
        self._finished[c.id] = (time.time(), code)
        if c.network is not None:
            c.network = self.network.detached(c.host_config.get("NetworkMode") or "default", c.network)
        if self._watchers.get(c.id) is asyncio.current_task():
            del self._watchers[c.id]
        self._created.pop(c.id, None)
        ev = self._exit_events.get(c.id)
        if ev is not None:
            ev.set()
        try:
            self._save(c)
        except Exception as exc:  # noqa: BLE001 - the exit is known in memory; the next one saves it
            log.warning("saving the state of %s: %s", c.id, exc)
        self._event(c, "die", {"exitCode": str(code)})
        for hook in list(self.exit_hooks):
            try:
                hook(c)
            except Exception as exc:  # noqa: BLE001
                log.warning("exit hook for %s: %s", c.id, exc)

    async def recover(self) -> None:
        """After a daemon restart: find running containers again, or record how they ended; then the network
        service publishes the survivors' ports again and releases everything else."""
        alive: dict[str, tuple[str, Attachment]] = {}
        for c in list(self._cache.values()):
            if not c.running:
                continue
            st = await self.runc.state(c.id)
            if st and st.get("status") in ("running", "paused", "created"):
                c.state["Paused"] = st.get("status") == "paused"
                self._exit_events[c.id] = asyncio.Event()
                self._watchers[c.id] = asyncio.ensure_future(self._watch(c))
                for mp in c.mounts:
                    if mp.get("Type") == "volume":
                        self.volumes.running(str(mp.get("Name")), c.id)
                if c.network is not None:
                    alive[c.id] = (c.name, c.network)
                continue
            status = self.runc.exit_status(self._bundle(c))
            await self._exited(c, status)
        await self.network.recover({cid: v for cid, v in alive.items() if self._cache.get(cid) is not None
                                    and self._cache[cid].running})

    # ---- wait / stop / kill / pause ---------------------------------------------------------------------------
    def wait(self, ref: str, condition: str = "not-running") -> Coroutine[Any, Any, dict[str, Any]]:
        """``{"StatusCode": …, "Error": …}`` once ``condition`` holds. The waiter is registered by this call,
        before the returned awaitable runs (as dockerd registers it before answering the request's headers), so
        an exit that follows the call is never missed. Errors (no such container, bad condition) raise here."""
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise InvalidArgument(f"invalid condition: {condition!r}")
        try:
            c = self.get(ref)
        except ContainerNotFound:
            gone = self._removed.get(ref)
            if condition == "removed" and gone and time.time() - gone[0] < REMOVED_MEMORY:
                return _value({"StatusCode": gone[1], "Error": None})
            raise
        recent = self._finished.get(c.id)
        if condition in ("", "not-running") and not c.running:
            return _value({"StatusCode": c.state.get("ExitCode", 0), "Error": None})
        if condition == "next-exit" and not c.running and recent and time.time() - recent[0] < 2:
            return _value({"StatusCode": recent[1], "Error": None})  # exited just before this request arrived
        if condition == "removed":
            return self._wait_removed(c, self._removed_events.setdefault(c.id, asyncio.Event()))
        ev = self._exit_events.setdefault(c.id, asyncio.Event())
        if ev.is_set() and condition == "next-exit":
            ev = self._exit_events[c.id] = asyncio.Event()
        return self._wait_exit(c, ev)

    @staticmethod
    async def _wait_exit(c: Container, ev: asyncio.Event) -> dict[str, Any]:
        await ev.wait()  # set by the exit, or by the removal (as dockerd's waiters end when a container goes)
        return {"StatusCode": c.state.get("ExitCode", 0), "Error": None}

    async def _wait_removed(self, c: Container, ev: asyncio.Event) -> dict[str, Any]:
        await ev.wait()
        code = int(c.state.get("ExitCode", 0))
        if c.id in self._cache:  # the removal failed (dockerd's SetRemovalError)
            return {"StatusCode": code, "Error": {"Message": str(c.state.get("Error") or "removal failed")}}
        return {"StatusCode": code, "Error": None}

    async def kill(self, ref: str, signal: str | int | None = None) -> None:
        """Send a signal. SIGKILL (the default) answers once the exit is recorded, as dockerd's ``Kill`` (wait
        for not-running, 10 s; then SIGKILL again and 2 s more); any other signal answers at once, the
        container may go on running. A container that is not running is a conflict; one that is exiting
        already (the runtime no longer has a process to signal) is not an error, as dockerd."""
        c = self.get(ref)
        sig = parse_signal(signal, _signal.SIGKILL)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if sig != _signal.SIGKILL:
            try:
                await self.runc.kill(c.id, sig)
            except (Conflict, ContainerNotFound):
                log.debug("kill %s with signal %d: it is exiting already", c.id, sig)
            self._event(c, "kill", {"signal": str(sig)})
            return
        ev = self._exit_events.setdefault(c.id, asyncio.Event())  # this run's: set when its exit is recorded
        paused = bool(c.state.get("Paused"))
        try:
            await self.runc.kill(c.id, sig, all=True)
        except (Conflict, ContainerNotFound):
            paused = False  # exiting already: its watcher records the exit
        if paused:  # the signal is delivered once the processes thaw (dockerd unpauses after the kill)
            try:
                await self.runc.resume(c.id)
            except Exception as exc:  # noqa: BLE001
                log.debug("resuming %s after SIGKILL: %s", c.id, exc)
        self._event(c, "kill", {"signal": str(sig)})
        await self._wait_recorded_exit(c, ev)

    async def _wait_recorded_exit(self, c: Container, ev: asyncio.Event) -> None:
        """After SIGKILL: until the exit is recorded (dockerd: 10 s, then SIGKILL again and 2 s more)."""
        try:
            await asyncio.wait_for(ev.wait(), 10)
            return
        except TimeoutError:
            log.error("container %s failed to exit within 10 seconds of kill - trying SIGKILL again", c.id)
        try:
            await self.runc.kill(c.id, _signal.SIGKILL, all=True)
        except (Conflict, ContainerNotFound):
            pass
        try:
            await asyncio.wait_for(ev.wait(), 2)
        except TimeoutError:
            raise SystemError_("tried to kill container, but did not receive an exit event") from None

    async def _thaw_and_signal(self, c: Container, sig: int, *, all: bool) -> asyncio.Event:
        """Thaw ``c`` if it is paused and send it ``sig`` (every process with ``all``); a container exiting
        already is no error. Returns the event its recorded exit sets."""
        ev = self._exit_events.setdefault(c.id, asyncio.Event())
        if c.state.get("Paused"):
            try:
                await self.runc.resume(c.id)
            except (Conflict, ContainerNotFound):
                pass
        try:
            await self.runc.kill(c.id, sig, all=all)
        except (Conflict, ContainerNotFound):
            pass  # exiting already: its exit event comes
        return ev

    async def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> bool:
        """Stop; False when it was not running (HTTP 304)."""
        c = self.get(ref)
        if not c.running:
            return False
        sig = parse_signal(signal or c.config.get("StopSignal"), _signal.SIGTERM)
        t = 10 if timeout is None else timeout
        ev = await self._thaw_and_signal(c, sig, all=False)
        self._event(c, "kill", {"signal": str(sig)})  # as dockerd's stop: the stop signal, then SIGKILL if need be
        try:
            if t >= 0:
                await asyncio.wait_for(ev.wait(), t)
            else:
                await ev.wait()
        except TimeoutError:
            try:
                await self.runc.kill(c.id, _signal.SIGKILL, all=True)
            except (Conflict, ContainerNotFound):
                pass
            self._event(c, "kill", {"signal": str(int(_signal.SIGKILL))})
            await self._wait_recorded_exit(c, ev)
        self._event(c, "stop")
        return True

    async def pause(self, ref: str) -> None:
        """Freeze a running container (``pause`` event); a conflict when it is not running or paused."""
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state.get("Paused"):
            raise Conflict(f"Container {c.id} is already paused")
        try:
            await self.runc.pause(c.id)
        except ContainerNotFound:
            raise Conflict(f"Container {c.id} is not running") from None
        except SystemError_:
            if not c.running or (await self.runc.state(c.id) or {}).get("status") != "running":
                raise Conflict(f"Container {c.id} is not running") from None  # it exited meanwhile
            raise
        c.state.update({"Paused": True, "Status": "paused"})
        self._save(c)
        self._event(c, "pause")

    async def unpause(self, ref: str) -> None:
        """Thaw a paused container (``unpause`` event)."""
        c = self.get(ref)
        if not c.state.get("Paused"):
            raise Conflict(f"Container {c.id} is not paused")
        try:
            await self.runc.resume(c.id)
        except ContainerNotFound:
            raise Conflict(f"Container {c.id} is not running") from None
        c.state.update({"Paused": False, "Status": "running"})
        self._save(c)
        self._event(c, "unpause")


    async def restart(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        """dockerd's ContainerRestart: stop a running container (as ``stop``), start it, ``restart`` event. Any
        failure after the lookup is dockerd's 500 ``Cannot restart container <ref>: …``."""
        c = self.get(ref)
        try:
            if c.running:
                auto = c.host_config.get("AutoRemove")
                c.host_config["AutoRemove"] = False  # as dockerd: not removed by the exit of its restart
                try:
                    await self.stop(c.id, timeout, signal)
                finally:
                    c.host_config["AutoRemove"] = auto
            await self.start(c.id)
        except Exception as exc:
            raise SystemError_(f"Cannot restart container {ref}: {exc}") from exc
        self._event(c, "restart")



async def _value(value: dict[str, Any]) -> dict[str, Any]:
    return value
