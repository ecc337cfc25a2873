"""A container's mount points from its ``HostConfig.Binds``, ``HostConfig.Mounts`` and image volumes: moby's
``volume/mounts`` linux parser, with dockerd's checks and messages."""

from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidArgument, SystemError_

__all__ = ["parse_bind", "parse_mount", "image_volume", "tmpfs_data", "bind_daemon_root", "valid_mount_mode",
           "DEFAULT_PROPAGATION"]

_RW_MODES = ("rw", "ro")
_LABEL_MODES = ("z", "Z")
_PROPAGATION_MODES = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_COPY_MODES = ("nocopy",)
_CONSISTENCY_MODES = ("consistent", "cached", "delegated")
DEFAULT_PROPAGATION = "rprivate"


def valid_mount_mode(mode: str) -> bool:
    """``linuxValidMountMode``: comma-separated words, at most one of each kind."""
    if mode == "":
        return True
    counts = [0, 0, 0, 0, 0]
    for word in mode.split(","):
        for i, kind in enumerate((_RW_MODES, _LABEL_MODES, _PROPAGATION_MODES, _COPY_MODES, _CONSISTENCY_MODES)):
            if word in kind:
                counts[i] += 1
                break
        else:
            return False
    return all(n <= 1 for n in counts)


def _clean(p: str) -> str:
    """Go's ``path.Clean``."""
    out = os.path.normpath(p) if p else "."
    return "/" + out.lstrip("/") if out.startswith("//") else out


def _mount_config_error(typ: str, why: str) -> str:
    return f'invalid mount config for type "{typ}": {why}'


def _validate_mount(typ: str, source: str, target: str, *, read_only: bool, bind_options: dict[str, Any] | None,
                    volume_options: dict[str, Any] | None, source_must_exist: bool) -> str | None:
    """``validateMountConfigImpl``: why the mount is invalid, or None."""
    if not target:
        return _mount_config_error(typ, "field Target must not be empty")
    if _clean(target) == "/":
        return _mount_config_error(typ, "invalid specification: destination can't be '/'")
    if not target.startswith("/"):
        return _mount_config_error(typ, f"invalid mount path: '{target}' mount path must be absolute")
    if typ == "bind":
        if not source:
            return _mount_config_error(typ, "field Source must not be empty")
        prop = (bind_options or {}).get("Propagation") or ""
        if prop and prop not in _PROPAGATION_MODES:
            return _mount_config_error(typ, f"invalid propagation mode: {prop}")
        if volume_options is not None:
            return _mount_config_error(typ, "field VolumeOptions must not be specified")
        if not source.startswith("/"):
            return _mount_config_error(typ, f"invalid mount path: '{source}' mount path must be absolute")
        if source_must_exist and not os.path.exists(source):
            return _mount_config_error(typ, f"bind source path does not exist: {source}")
        return None
    if typ == "volume":
        if bind_options is not None:
            return _mount_config_error(typ, "field BindOptions must not be specified")
        if not source and read_only:
            return _mount_config_error(typ, "must not set ReadOnly mode when using anonymous volumes")
        return None
    if typ == "tmpfs":
        if bind_options is not None:
            return _mount_config_error(typ, "field BindOptions must not be specified")
        if source:
            return _mount_config_error(typ, "field Source must not be specified")
        return None
    return _mount_config_error(typ, "mount type unknown")


def _mount_point(typ: str, source: str, target: str, *, read_only: bool, propagation: str, nocopy: bool,
                 driver: str = "", labels: dict[str, str] | None = None,
                 driver_opts: dict[str, str] | None = None) -> dict[str, Any]:
    """A container's mount point as it is stored with the container (``MountPoint``: the keys dockerd shows, plus
    ``CopyData``, ``Anonymous`` and what a volume is created with)."""
    mp: dict[str, Any] = {"Type": typ, "Name": "", "Source": "", "Destination": _clean(target),
                          "Driver": "", "Mode": "", "RW": not read_only, "Propagation": ""}
    if typ == "bind":
        mp["Source"] = _clean(source)
        mp["Propagation"] = propagation or DEFAULT_PROPAGATION
        mp["PropagationSet"] = bool(propagation)
    elif typ == "tmpfs":
        pass
    else:
        mp.update({"Name": source, "Driver": driver, "CopyData": not nocopy, "Anonymous": not source,
                   "VolumeLabels": labels or None, "DriverOpts": driver_opts or None})
    return mp


def parse_bind(raw: str, volume_driver: str = "") -> dict[str, Any]:
    """A ``HostConfig.Binds`` entry (``parseMountRaw``): ``dest``, ``source:dest`` or ``source:dest:mode``; a
    source that is an absolute path is a bind, anything else a volume name. Errors are dockerd's (500s: plain
    errors in dockerd's create)."""
    arr = raw.split(":", 3)
    if arr[0] == "":
        raise SystemError_(f"invalid volume specification: '{raw}'")
    mode = ""
    if len(arr) == 1:
        source, target = "", arr[0]
    elif len(arr) == 2:
        if valid_mount_mode(arr[1]):
            raise SystemError_(f"invalid volume specification: '{raw}'")
        source, target = arr
    elif len(arr) == 3:
        source, target, mode = arr
    else:
        raise SystemError_(f"invalid volume specification: '{raw}'")
    if not valid_mount_mode(mode):
        raise SystemError_(f"invalid mode: {mode}")
    typ = "bind" if source.startswith("/") else "volume"
    words = mode.split(",") if mode else []
    read_only = "ro" in words
    nocopy = "nocopy" in words
    volume_options = {"NoCopy": nocopy} if (nocopy or (volume_driver and typ == "volume")) else None
    propagation = next((w for w in words if w in _PROPAGATION_MODES), "")
    bind_options = {"Propagation": propagation} if propagation else None
    why = _validate_mount(typ, source, target, read_only=read_only, bind_options=bind_options,
                          volume_options=volume_options, source_must_exist=False)
    if why is not None:
        raise SystemError_(f"invalid volume specification: '{raw}': {why}")
    mp = _mount_point(typ, source, target, read_only=read_only, propagation=propagation, nocopy=nocopy,
                      driver=volume_driver if typ == "volume" else "")
    mp["Mode"] = mode if (mode or typ == "bind") else "z"
    return mp


def parse_mount(m: dict[str, Any]) -> dict[str, Any]:
    """A ``HostConfig.Mounts`` entry (``ParseMountSpec``): ``bind`` (its source must exist) or ``volume`` (no
    source: anonymous); errors are 400s as dockerd's."""
    typ = str(m.get("Type") or "")
    source = str(m.get("Source") or "")
    target = str(m.get("Target") or "")
    bind_options = m.get("BindOptions")
    volume_options = m.get("VolumeOptions")
    why = _validate_mount(typ, source, target, read_only=bool(m.get("ReadOnly")), bind_options=bind_options,
                          volume_options=volume_options, source_must_exist=True)
    if why is not None:
        raise InvalidArgument(why)
    if typ == "tmpfs":
        mp = _mount_point(typ, "", target, read_only=bool(m.get("ReadOnly")), propagation="", nocopy=False)
        mp["TmpfsData"] = tmpfs_data(m.get("TmpfsOptions") or {}, bool(m.get("ReadOnly")))
        return mp
    vo = volume_options or {}
    dc = vo.get("DriverConfig") or {}
    mp = _mount_point(typ, source, target, read_only=bool(m.get("ReadOnly")),
                      propagation=str((bind_options or {}).get("Propagation") or ""), nocopy=bool(vo.get("NoCopy")),
                      driver=str(dc.get("Name") or ""), labels=vo.get("Labels") or None,
                      driver_opts=dc.get("Options") or None)
    mp["Mode"] = "z" if typ == "volume" else ""
    return mp


def bind_daemon_root(mp: dict[str, Any], root: str) -> None:
    """dockerd's validateBindDaemonRoot: a bind whose source holds the daemon's root (or lies in it) is ``rslave``
    unless it asks for ``rslave`` or ``rshared`` itself; another propagation is refused."""
    if mp.get("Type") != "bind":
        return
    source = str(mp.get("Source") or "")
    if not (source.startswith(root) or root.startswith(source)):
        return
    if not mp.get("PropagationSet"):
        mp["Propagation"] = "rslave"
        return
    if mp.get("Propagation") not in ("rslave", "rshared"):
        raise InvalidArgument(f'invalid mount config: must use either propagation mode "rslave" or "rshared" when '
                              f'mount source is within the daemon root, daemon root: "{root}", bind mount source: '
                              f'"{source}", propagation: "{mp.get("Propagation")}"')


def tmpfs_data(opts: dict[str, Any], read_only: bool) -> str:
    """``ConvertTmpfsOptions``: a tmpfs mount's size (with the largest suffix that divides it), mode and ro."""
    words = []
    size = int(opts.get("SizeBytes") or 0)
    if size:
        for suffix, div in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % div == 0:
                words.append(f"size={size // div}{suffix}")
                break
        else:
            words.append(f"size={size}")
    if opts.get("Mode"):
        words.append(f"mode={int(opts['Mode']) & 0o7777:o}")
    if read_only:
        words.append("ro")
    return ",".join(words)


def image_volume(destination: str) -> dict[str, Any]:
    """The anonymous volume of a path in the image's (or the request's) ``Volumes``."""
    mp = _mount_point("volume", "", destination, read_only=False, propagation="", nocopy=False)
    mp["Mode"] = ""
    return mp
