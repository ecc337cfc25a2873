"""OCI descriptors, with their JSON names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .platform import Platform

__all__ = ["Descriptor"]


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor: media type, digest and size of a blob, with optional annotations, platform, URLs
    and artifact type, which equality ignores."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = field(default=None, compare=False)
    platform: Platform | None = field(default=None, compare=False)
    urls: list[str] | None = field(default=None, compare=False)
    artifact_type: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The descriptor's JSON object (``mediaType``, ``digest``, ``size``; the optional fields only when set)."""
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            d["urls"] = list(self.urls)
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform is not None:
            d["platform"] = self.platform.to_json()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Descriptor:
        """A descriptor from its JSON object; ``digest`` is required, empty optional fields become None."""
        plat = d.get("platform")
        return cls(
            media_type=d.get("mediaType", ""),
            digest=d["digest"],
            size=int(d.get("size", 0)),
            annotations=d.get("annotations") or None,
            platform=Platform.from_json(plat) if isinstance(plat, dict) else None,
            urls=d.get("urls") or None,
            artifact_type=d.get("artifactType") or None,
        )
