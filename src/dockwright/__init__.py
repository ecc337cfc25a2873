"""dockwright: the image service of the Docker Engine, as a daemon and as a library."""

from __future__ import annotations

from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all

__version__ = "0.1.0"

from .engine import Engine, EngineConfig  # noqa: E402

__all__ = [*_errors_all, "Engine", "EngineConfig", "__version__"]
