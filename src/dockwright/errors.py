"""The one exception hierarchy of dockwright. It knows nothing of HTTP.

    DockwrightError
    ├── InvalidArgument          bad parameter, bad reference, bad input data       (HTTP 400)
    │   └── InvalidReference     a name that is not a valid docker reference
    ├── NotFound                 something named does not exist                      (HTTP 404)
    │   ├── ImageNotFound        "No such image: …"
    │   └── ContainerNotFound    "No such container: …"
    ├── Conflict                 the operation conflicts with the current state      (HTTP 409)
    ├── AlreadyExists            the object is there already                         (HTTP 409)
    ├── Unauthorized             credentials missing or refused                      (HTTP 401)
    ├── Forbidden                permission denied                                   (HTTP 403)
    ├── Unavailable              a dependency (registry, runtime) is not reachable   (HTTP 503)
    ├── NotSupported             not implemented                                     (HTTP 501)
    ├── DataCorrupted            digest/size mismatch, truncated or invalid archives (HTTP 400)
    └── SystemError_             anything else that went wrong inside              (HTTP 500)

Messages use dockerd's words so that clients which match on them (docker-py's ``ImageNotFound``) keep working.
Exceptions from other libraries are translated where they happen, with ``raise … from exc``.
"""

from __future__ import annotations

__all__ = [
    "DockwrightError",
    "InvalidArgument",
    "InvalidReference",
    "NotFound",
    "ImageNotFound",
    "ContainerNotFound",
    "Conflict",
    "AlreadyExists",
    "Unauthorized",
    "Forbidden",
    "Unavailable",
    "NotSupported",
    "DataCorrupted",
    "SystemError_",
]


class DockwrightError(Exception):
    """Base of every error dockwright raises on purpose."""

    @property
    def message(self) -> str:
        """The error's text, ``str(self)``: what dockerd puts in ``{"message"}``."""
        return str(self)


class InvalidArgument(DockwrightError):
    """A parameter or input that can never be valid."""


class InvalidReference(InvalidArgument):
    """A string that does not parse as a docker image reference."""


class NotFound(DockwrightError):
    """The named object does not exist."""


class ImageNotFound(NotFound):
    """No image by that name, ID or digest."""

    def __init__(self, ref: str, message: str | None = None) -> None:
        self.ref = ref
        super().__init__(message or f"No such image: {ref}")


class ContainerNotFound(NotFound):
    """No container by that name or ID."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"No such container: {ref}")


class Conflict(DockwrightError):
    """The operation conflicts with the state of the store."""


class AlreadyExists(DockwrightError):
    """The object exists already."""


class Unauthorized(DockwrightError):
    """Authentication is required or was refused."""


class Forbidden(DockwrightError):
    """Permission denied."""


class Unavailable(DockwrightError):
    """A dependency is not reachable now."""


class NotSupported(DockwrightError):
    """Not implemented by this engine."""


class DataCorrupted(InvalidArgument):
    """Bytes that do not match their digest or size, or an archive that is truncated or malformed."""


class SystemError_(DockwrightError):  # noqa: N801 - avoid shadowing the builtin
    """An unexpected internal failure."""
