"""``moby.buildkit.v1.Control`` over ``POST /grpc`` (what buildx's docker driver speaks): ``Solve`` with the
``dockerfile.v0`` frontend and its attributes, ``Status`` (the progress of a solve by its ref), ``DiskUsage``,
``Prune``, ``ListWorkers`` and ``Info``; a raw LLB definition or another frontend is ``Unimplemented``, named."""

from __future__ import annotations

import os
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.server import Stream

from ..buildkit.export import Output
from ..buildkit.pb import control_grpc, control_pb2, ops_pb2, worker_pb2
from ..buildkit.progress import Recorder
from ..buildkit.state import SolveOptions
from ..buildkit.trace import status_response
from ..engine.engine import Engine
from ..errors import DockwrightError, NotSupported
from ..filters import Filters
from ..oci.platform import host_platform

__all__ = ["ControlService", "BUILDKIT_VERSION"]

#: what ``Info`` and ``ListWorkers`` report
BUILDKIT_VERSION = ("github.com/moby/buildkit", "v0.8.3-dockwright", "", "1.x")


class ControlService(control_grpc.ControlBase):
    """The Control API on the engine's BuildKit service; ``sessions`` is the session manager of ``/session``."""

    def __init__(self, engine: Engine, sessions: Any) -> None:
        self.engine = engine
        self.sessions = sessions
        self.recorders: dict[str, Recorder] = {}

    def _recorder(self, ref: str) -> Recorder:
        rec = self.recorders.get(ref)
        if rec is None:
            rec = self.recorders[ref] = Recorder()
        return rec

    # ---- Solve ----------------------------------------------------------------------------------------------------
    async def Solve(self, stream: Stream[control_pb2.SolveRequest, control_pb2.SolveResponse]) -> None:  # noqa: N802
        """Run a ``dockerfile.v0`` solve through the request's session and export its result."""
        req = await stream.recv_message()
        assert req is not None
        raw_llb = len(getattr(req.Definition, "def")) > 0  # "def" is a Python keyword
        if raw_llb or (req.Frontend and req.Frontend not in ("dockerfile.v0", "gateway.v0")):
            what = "a raw LLB definition" if raw_llb else f"the frontend {req.Frontend}"
            raise GRPCError(Status.UNIMPLEMENTED, f"this engine solves only with its built-in dockerfile.v0 "
                                                  f"frontend, not {what}")
        if req.Frontend == "gateway.v0" and not req.FrontendAttrs.get("source", "").startswith("docker/dockerfile"):
            raise GRPCError(Status.UNIMPLEMENTED, "frontend images other than docker/dockerfile are not supported")
        attrs = dict(req.FrontendAttrs)
        opts = SolveOptions(
            dockerfile_name=attrs.get("filename", "Dockerfile"), target=attrs.get("target", ""),
            buildargs={k[len("build-arg:"):]: v for k, v in attrs.items() if k.startswith("build-arg:")},
            labels={k[len("label:"):]: v for k, v in attrs.items() if k.startswith("label:")},
            nocache="no-cache" in attrs, pull=attrs.get("image-resolve-mode") == "pull",
            network=attrs.get("force-network-mode", "default") or "default",
            extra_hosts=[h.replace("=", ":", 1) for h in attrs.get("add-hosts", "").split(",") if h],
            platform=attrs.get("platform", ""),
            cache_from=[i.Attrs["ref"] for i in req.Cache.Imports if i.Type == "registry" and i.Attrs.get("ref")])
        exporters = [(e.Type, dict(e.Attrs)) for e in req.Exporters]
        if not exporters and req.ExporterDeprecated:
            exporters = [(req.ExporterDeprecated, dict(req.ExporterAttrsDeprecated))]
        kind, eattrs = exporters[0] if exporters else ("", {})
        try:
            output = Output.of(kind, eattrs)
        except NotSupported as exc:
            raise GRPCError(Status.UNIMPLEMENTED, str(exc)) from exc
        except DockwrightError as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from exc
        rec = self._recorder(req.Ref)
        try:
            session = await self.sessions.get(req.Session, timeout=10)
            res = await self.engine.buildkit.build_with_session(session, opts, rec, output=output)
        except DockwrightError as exc:
            raise GRPCError(Status.UNKNOWN, str(exc)) from exc
        finally:
            rec.close()
        out = control_pb2.SolveResponse()
        out.ExporterResponse.update(res.exporter)
        await stream.send_message(out)

    async def Status(self, stream: Stream[control_pb2.StatusRequest, control_pb2.StatusResponse]) -> None:  # noqa: N802
        """The progress of the solve ``Ref`` (waiting for it to start) until it ends."""
        req = await stream.recv_message()
        assert req is not None
        rec = self._recorder(req.Ref)
        try:
            while True:
                batch = await rec.queue.get()
                if batch is None:
                    return
                await stream.send_message(status_response(batch))
        finally:
            self.recorders.pop(req.Ref, None)

    async def Session(self, stream: Stream[control_pb2.BytesMessage, control_pb2.BytesMessage]) -> None:  # noqa: N802
        """Sessions come through ``POST /session`` here."""
        raise GRPCError(Status.UNIMPLEMENTED, "sessions are opened with POST /session on this engine")

    # ---- the cache ------------------------------------------------------------------------------------------------
    async def DiskUsage(self, stream: Stream[control_pb2.DiskUsageRequest,  # noqa: N802
                                             control_pb2.DiskUsageResponse]) -> None:
        """The build cache's records."""
        await stream.recv_message()
        out = control_pb2.DiskUsageResponse()
        for r in self.engine.buildkit.disk_usage():
            out.record.append(_usage(r))
        await stream.send_message(out)

    async def Prune(self, stream: Stream[control_pb2.PruneRequest, control_pb2.UsageRecord]) -> None:  # noqa: N802
        """Prune the build cache, answering with each record removed."""
        req = await stream.recv_message()
        assert req is not None
        before = {r["ID"]: r for r in self.engine.buildkit.disk_usage()}
        flt = Filters()
        for f in req.filter:
            k, _, v = f.partition("==") if "==" in f else f.partition("=")
            flt.add(k.strip(), v.strip())
        try:
            ids, _ = await self.engine.buildkit.prune(all=req.all, filters=flt if req.filter else None,
                                                      keep=req.reservedSpace, max_used=req.maxUsedSpace,
                                                      min_free=req.minFreeSpace)
        except DockwrightError as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, str(exc)) from exc
        for i in ids:
            if i in before:
                await stream.send_message(_usage(before[i]))

    # ---- about ----------------------------------------------------------------------------------------------------
    async def ListWorkers(self, stream: Stream[control_pb2.ListWorkersRequest,  # noqa: N802
                                               control_pb2.ListWorkersResponse]) -> None:
        """The one worker: runc on overlayfs, the host's platform."""
        await stream.recv_message()
        plat = host_platform()
        w = worker_pb2.WorkerRecord(ID="dockwright", Labels={
            "org.mobyproject.buildkit.worker.executor": "runc",
            "org.mobyproject.buildkit.worker.snapshotter": "overlayfs",
            "org.mobyproject.buildkit.worker.hostname": os.uname().nodename,
            "org.mobyproject.buildkit.worker.moby.host-gateway-ip": ""})
        w.platforms.append(ops_pb2.Platform(Architecture=plat.architecture, OS=plat.os, Variant=plat.variant or ""))
        w.BuildkitVersion.CopyFrom(_version())
        out = control_pb2.ListWorkersResponse()
        out.record.append(w)
        await stream.send_message(out)

    async def Info(self, stream: Stream[control_pb2.InfoRequest, control_pb2.InfoResponse]) -> None:  # noqa: N802
        """BuildKit's version as this engine reports it."""
        await stream.recv_message()
        out = control_pb2.InfoResponse()
        out.buildkitVersion.CopyFrom(_version())
        await stream.send_message(out)

    async def ListenBuildHistory(self, stream: Stream[control_pb2.BuildHistoryRequest,  # noqa: N802
                                                      control_pb2.BuildHistoryEvent]) -> None:
        """No build history is kept: the stream ends at once."""
        await stream.recv_message()

    async def UpdateBuildHistory(self, stream: Stream[control_pb2.UpdateBuildHistoryRequest,  # noqa: N802
                                                      control_pb2.UpdateBuildHistoryResponse]) -> None:
        """No build history is kept."""
        await stream.recv_message()
        await stream.send_message(control_pb2.UpdateBuildHistoryResponse())


def _version() -> worker_pb2.BuildkitVersion:
    package, version, revision, dockerfile = BUILDKIT_VERSION
    return worker_pb2.BuildkitVersion(package=package, version=version, revision=revision,
                                      dockerfileVersion=dockerfile)


def _usage(r: dict[str, Any]) -> control_pb2.UsageRecord:
    u = control_pb2.UsageRecord(ID=r["ID"], InUse=bool(r["InUse"]), Size=int(r["Size"]),
                                Description=r["Description"], RecordType=r["Type"], Shared=bool(r["Shared"]),
                                UsageCount=int(r["UsageCount"]))
    parents = [p for p in (r.get("Parents") or []) if p]
    u.Parents.extend(parents)
    if parents:
        u.Parent = parents[0]
    for field, key in (("CreatedAt", "_created"),):
        t = Timestamp()
        t.FromNanoseconds(int(float(r[key]) * 1e9))
        getattr(u, field).CopyFrom(t)
    return u
