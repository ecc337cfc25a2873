"""Landlock confinement: a thread (and the processes it starts) restricted to writing below one directory, as the
build context's GNU tar runs (:func:`spawn_confined`); :func:`landlock_abi` says what the kernel offers."""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import threading
from typing import Any

__all__ = ["landlock_abi", "restrict_writes_to", "spawn_confined"]

_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
# LANDLOCK_ACCESS_FS_*: everything that creates, writes, removes or links; reading stays allowed everywhere
_LL_WRITE = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) \
    | (1 << 12)
_LL_REFER, _LL_TRUNCATE = 1 << 13, 1 << 14


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


@functools.cache
def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when it has none (or it is disabled)."""
    try:
        v = _libc().syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                            ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(int(v), 0)


def restrict_writes_to(dest: str, abi: int) -> None:
    """Confine the calling thread (and what it starts) to writing below ``dest``.  Irreversible."""
    libc = _libc()

    def check(rc: int, what: str) -> int:
        if rc < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")
        return rc

    handled = _LL_WRITE | (_LL_REFER if abi >= 2 else 0) | (_LL_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(handled)
    check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    ruleset = check(libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                                 ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        dfd = os.open(dest, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            rule = _PathBeneathAttr(handled, dfd)
            check(libc.syscall(_SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_LANDLOCK_RULE_PATH_BENEATH),
                               ctypes.byref(rule), ctypes.c_uint32(0)), "landlock_add_rule")
        finally:
            os.close(dfd)
        check(libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)),
              "landlock_restrict_self")
    finally:
        os.close(ruleset)


def spawn_confined(argv: list[str], dest: str, **kw: Any) -> subprocess.Popen[bytes]:
    """``Popen(argv)`` from a thread of its own that Landlock first confines to writing below ``dest``; the
    child inherits the confinement.  The thread ends with the call (a confinement cannot be lifted)."""
    out: dict[str, Any] = {}
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)  # opened here: the confined thread may not

    def run() -> None:
        try:
            restrict_writes_to(dest, landlock_abi())
            kwargs: dict[str, Any] = {k: null if v == subprocess.DEVNULL else v for k, v in kw.items()}
            out["proc"] = subprocess.Popen(argv, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out["exc"] = exc

    try:
        t = threading.Thread(target=run, name="confined-spawn")
        t.start()
        t.join()
    finally:
        os.close(null)
    if "exc" in out:
        raise out["exc"]
    proc: subprocess.Popen[bytes] = out["proc"]
    return proc
