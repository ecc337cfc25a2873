"""dockwright: the image service of the Docker Engine, as a daemon and as a library.

The library: ``Engine.open(data_root)`` and its services (``engine.images``, ``engine.containers``,
``engine.build``…), which return the typed results exported here. docs/library.md documents every name of
``__all__``."""

from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all

__version__ = "0.1.0"

from .builder.options import BuildError  # noqa: E402
from .engine import Engine, EngineConfig  # noqa: E402
from .engine.config import NetworkConfig  # noqa: E402
from .engine.types import (  # noqa: E402
                           Container,
                           ContainerDiskUsage,
                           ContainerState,
                           ContainerSummary,
                           DeleteItem,
                           Descriptor,
                           DiskUsage,
                           DistributionInspect,
                           HistoryItem,
                           Image,
                           ImageSummary,
                           IndexInfo,
                           Platform,
                           PruneReport,
                           PullResult,
                           PushResult,
                           RunResult,
                           SearchResult,
                           SystemInfo,
                           VersionInfo,
                           VolumeDiskUsage,
)
from .progress import Aux, Progress, ProgressCallback, ProgressEvent, Status, StreamText  # noqa: E402

__all__ = [
    "__version__",
    "Engine", "EngineConfig", "NetworkConfig",
    "Image", "ImageSummary", "HistoryItem", "DeleteItem", "PruneReport", "PullResult", "PushResult", "SearchResult",
    "DistributionInspect", "Descriptor", "Platform",
    "VersionInfo", "SystemInfo", "IndexInfo", "DiskUsage", "ContainerDiskUsage", "VolumeDiskUsage",
    "Container", "ContainerState", "ContainerSummary", "RunResult", "BuildError",
    "ProgressEvent", "ProgressCallback", "Status", "Progress", "StreamText", "Aux",
    *_errors_all,
]
