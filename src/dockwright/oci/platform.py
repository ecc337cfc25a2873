"""OCI platforms: parsing both syntaxes docker uses, normalisation and matching."""

from __future__ import annotations

import platform as _pyplatform
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument
from .jsonobject import json_object

__all__ = ["Platform", "host_platform", "normalize_arch"]

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""), "x86-64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""), "arm64": ("arm64", ""),
    "armhf": ("arm", "v7"), "armel": ("arm", "v6"), "arm": ("arm", ""),
    "i386": ("386", ""), "i686": ("386", ""), "386": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
}


def normalize_arch(arch: str, variant: str = "") -> tuple[str, str]:
    """containerd's platforms.Normalize for the architecture and variant."""
    a = arch.lower()
    base, default_variant = _ARCH_ALIASES.get(a, (a, ""))
    v = variant.lower() if variant else default_variant
    if base == "arm64" and v in ("v8", "8"):
        v = ""
    if base == "arm" and v in ("7", "v7") and not variant:
        v = "v7"
    if base == "arm" and v and not v.startswith("v"):
        v = "v" + v
    return base, v


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform (os, architecture, variant, OS version and features), as in index entries and image configs."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The OCI JSON object: ``architecture`` and ``os``, the other fields only when set."""
        d: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        if self.variant:
            d["variant"] = self.variant
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Platform:
        """A platform from its OCI JSON object, as it is (not normalised); missing fields are empty."""
        return cls(
            os=str(d.get("os", "")),
            architecture=str(d.get("architecture", "")),
            variant=str(d.get("variant", "") or ""),
            os_version=str(d.get("os.version", "") or ""),
            os_features=tuple(d.get("os.features") or ()),
        )

    @classmethod
    def parse_json_param(cls, raw: str) -> Platform:
        """The JSON platform query parameter (inspect, history, get, load, push, delete): os and architecture
        required."""
        d = json_object(raw, InvalidArgument, "failed to parse platform")
        if not d.get("os"):
            raise InvalidArgument("failed to parse platform: missing os field")
        if not d.get("architecture"):
            raise InvalidArgument("failed to parse platform: missing architecture field")
        return cls.from_json(d).normalized()

    @classmethod
    def parse_specifier(cls, spec: str) -> Platform:
        """``os[/arch[/variant]]`` (create, build), as containerd's platforms.Parse."""
        parts = spec.strip().split("/")
        if not spec or any(p == "" for p in parts) or len(parts) > 3:
            raise InvalidArgument(f'"{spec}": unknown operating system or architecture: invalid argument')
        host = host_platform()
        os_ = parts[0].lower()
        if len(parts) == 1:
            if os_ in _ARCH_ALIASES:  # an architecture alone
                a, v = normalize_arch(os_)
                return cls("linux", a, v)
            return cls(os_, host.architecture, host.variant)
        a, v = normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
        return cls(os_, a, v)

    def normalized(self) -> Platform:
        """The same platform with the os lower-cased and the architecture and variant normalised (``x86_64`` →
        ``amd64``, ``aarch64`` → ``arm64``, ``armhf`` → ``arm/v7``)."""
        a, v = normalize_arch(self.architecture, self.variant)
        return Platform(self.os.lower(), a, v, self.os_version, self.os_features)

    def matches(self, other: Platform) -> bool:
        """Whether an image of platform ``other`` satisfies a request for ``self``."""
        s, o = self.normalized(), other.normalized()
        if s.os != o.os or s.architecture != o.architecture:
            return False
        return not s.variant or not o.variant or s.variant == o.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    """The daemon host's platform: ``linux`` and the machine's architecture, normalised."""
    a, v = normalize_arch(_pyplatform.machine())
    return Platform("linux", a, v)
