"""A build's progress on the wire: :class:`~.progress.StatusBatch` as BuildKit's ``StatusResponse`` protobuf
(what ``POST /build?version=2`` sends base64-encoded in ``moby.buildkit.trace`` messages and ``Control.Status``
streams)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from .pb import control_pb2
from .progress import StatusBatch

__all__ = ["status_response", "encode_batch"]


def _ts(ns: int) -> Timestamp:
    t = Timestamp()
    t.seconds, t.nanos = divmod(ns, 1_000_000_000)
    return t


def status_response(batch: StatusBatch) -> control_pb2.StatusResponse:
    """The batch as a ``StatusResponse`` message."""
    r = control_pb2.StatusResponse()
    for v in batch.vertexes:
        pv = r.vertexes.add()
        pv.digest = v.digest
        pv.inputs.extend(v.inputs)
        pv.name = v.name
        pv.cached = v.cached
        if v.started is not None:
            pv.started.CopyFrom(_ts(v.started))
        if v.completed is not None:
            pv.completed.CopyFrom(_ts(v.completed))
        if v.error:
            pv.error = v.error
    for s in batch.statuses:
        ps = r.statuses.add()
        ps.ID = s.id
        ps.vertex = s.vertex
        ps.name = s.name
        ps.current = s.current
        ps.total = s.total
        ps.timestamp.CopyFrom(_ts(s.timestamp))
        if s.started is not None:
            ps.started.CopyFrom(_ts(s.started))
        if s.completed is not None:
            ps.completed.CopyFrom(_ts(s.completed))
    for lg in batch.logs:
        pl = r.logs.add()
        pl.vertex = lg.vertex
        pl.timestamp.CopyFrom(_ts(lg.timestamp))
        pl.stream = lg.stream
        pl.msg = lg.data
    return r


def encode_batch(batch: StatusBatch) -> bytes:
    """The batch's ``StatusResponse``, serialized."""
    return status_response(batch).SerializeToString()
