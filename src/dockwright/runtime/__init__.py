"""The container runtime: a :class:`ContainerSpec` and a mounted rootfs become an OCI bundle, run by runc.

``bundle`` writes ``config.json`` with dockerd's defaults, ``users`` resolves a user spec against the
rootfs, ``runc`` drives the lifecycle (create, start, state, kill, pause, resume, delete, wait, attach, exec),
``shim`` is the per-container process that owns stdio, the json-file log and the exit status, ``exec`` the helper
of a process started in a running container (both share ``relay``), and ``logs`` reads the json-file log back
and frames multiplexed streams. It knows no images, layers or HTTP.
"""

from __future__ import annotations

from .bundle import ContainerSpec, build_bundle, build_config, default_capabilities, merge_env
from .logs import LogEntry, format_timestamp_fixed, frame, parse_log_time, read_json_log
from .runc import Attachment, ExitStatus, Runc
from .shim import STDERR, STDIN, STDOUT
from .users import ExecUser, resolve_user

__all__ = [
    "ContainerSpec", "build_bundle", "build_config", "default_capabilities", "merge_env",  # bundle
    "ExecUser", "resolve_user",  # users
    "Runc", "ExitStatus", "Attachment",  # runc
    "LogEntry", "read_json_log", "frame", "parse_log_time", "format_timestamp_fixed",  # logs
    "STDIN", "STDOUT", "STDERR",  # shim
]
