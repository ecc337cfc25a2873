"""What a build is asked for (:class:`BuildOptions`, the ``POST /build`` parameters), how a step fails
(:class:`BuildError`), and the classic builder's constants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import DockwrightError

__all__ = ["BuildError", "BuildOptions", "BUILD_LABEL", "DEFAULT_PATH", "PROXY_ARGS", "QUIET_BUFFER",
           "MAX_IMAGE_CONFIG_SIZE"]

#: the attribute of the LABEL steps the ``labels`` option adds (their key and value are not expanded)
BUILD_LABEL = "build-label"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY",
              "no_proxy", "ALL_PROXY", "all_proxy")

#: What a quiet build keeps of its output for the case it fails (dockerd keeps it all): past it, the oldest goes.
QUIET_BUFFER = 16 << 20

#: The largest image config a build step may commit (history, environment, labels…; real ones are kilobytes):
#: past it, every later step would write (and hash) a config as large again, and a build of a few hundred lines
#: could fill the disk with copies of one value.
MAX_IMAGE_CONFIG_SIZE = 16 << 20


class BuildError(DockwrightError):
    """A failed step; ``code`` is the RUN exit code for errorDetail.code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    """The options of one build, as ``POST /build`` gives them."""

    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    quiet: bool = False
    nocache: bool = False
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    cachefrom: list[str] = field(default_factory=list)
    buildargs: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    platform: str = ""
    networkmode: str = ""
    extrahosts: list[str] = field(default_factory=list)
    remote: str = ""
    memory: int = 0
    memswap: int = 0
    cpushares: int = 0
    cpuperiod: int = 0
    cpuquota: int = 0
    cpusetcpus: str = ""
    cpusetmems: str = ""
    cgroupparent: str = ""
    shmsize: int = 0
    ulimits: list[dict[str, Any]] = field(default_factory=list)
    #: ``aux`` messages (each stage's image ID) in the stream: API 1.30 and later
    aux: bool = True
    #: full path → the entry's tarsum (``srchash.context_entry_header`` + bytes) hashed as the context streamed
    #: in: COPY's checksums then read no file again
    context_tarsums: dict[str, str] = field(default_factory=dict)
