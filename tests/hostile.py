"""What the hostile-input tests watch while a case runs, and the hostile archives they feed.

* :class:`Watch` pings ``/_ping`` every 100 ms on its own connection and samples the daemon's RSS while a case
  runs: the daemon must keep answering within a second, and its memory must stay flat.
* :class:`StoreState` is what a failed case must leave as it was: the image list, the committed blobs, the
  containers and their directories.
* :class:`Canary` is a directory outside the data root that an escaping archive aims at: nothing may appear in
  it, and its file must keep its bytes.
* :func:`tar_of_entries`, :func:`cve_2025_4517_entries` build the archives (in memory, small).
"""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import Daemon


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _ping_once(sock_path: Path, timeout: float) -> float:
    """Seconds one ``GET /_ping`` took on a fresh connection (raises on a timeout or a bad answer)."""
    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"OK"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise OSError(f"/_ping answered {data[:60]!r}")
    return time.monotonic() - t0


@dataclass
class Watch:
    """Pings and RSS samples taken while the ``with`` body runs."""

    daemon: Daemon
    interval: float = 0.1
    ping_timeout: float = 5.0
    pings: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rss_start: int = 0
    rss_peak: int = 0

    def __enter__(self) -> Watch:
        assert self.daemon.proc is not None
        self._pid = self.daemon.proc.pid
        self.rss_start = self.rss_peak = rss_bytes(self._pid)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ping_loop, daemon=True),
                         threading.Thread(target=self._rss_loop, daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.ping_timeout + 1)

    def _ping_loop(self) -> None:
        while True:  # one ping at least, however short the case
            try:
                self.pings.append(_ping_once(self.daemon.sock, self.ping_timeout))
            except OSError as exc:
                self.failures.append(repr(exc))
            if self._stop.wait(self.interval):
                return

    def _rss_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.rss_peak = max(self.rss_peak, rss_bytes(self._pid))
            except OSError:
                return
            self._stop.wait(0.02)

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_start

    def assert_healthy(self, *, max_ping: float = 1.0, max_growth: int = 200 << 20) -> None:
        """The daemon answered every ping within ``max_ping`` seconds and grew by less than ``max_growth``."""
        assert not self.failures, f"/_ping failed during the case: {self.failures[:3]}"
        assert self.pings, "no /_ping was answered during the case"
        worst = max(self.pings)
        assert worst < max_ping, f"/_ping took {worst:.2f} s during the case (limit {max_ping} s)"
        assert self.rss_growth < max_growth, f"daemon RSS grew by {self.rss_growth >> 20} MiB"
        print(f"RSS {self.rss_start >> 20} MiB, peak +{self.rss_growth >> 20} MiB; {len(self.pings)} pings, "
              f"slowest {worst * 1000:.0f} ms")


@dataclass(frozen=True)
class StoreState:
    """The parts of a store that a refused request must leave unchanged."""

    images: tuple[str, ...]
    blobs: tuple[str, ...]
    containers: tuple[str, ...]
    container_dirs: tuple[str, ...]

    @classmethod
    def of(cls, daemon: Daemon) -> StoreState:
        status, images = daemon.api_json("GET", "/images/json?all=1")
        assert status == 200, images
        status, containers = daemon.api_json("GET", "/containers/json?all=1")
        assert status == 200, containers
        root = daemon.data_root
        blobs_dir = root / "content" / "blobs" / "sha256"
        cdir = root / "containers"
        return cls(
            images=tuple(sorted(i["Id"] for i in images)),  # type: ignore[union-attr]
            blobs=tuple(sorted(os.listdir(blobs_dir))) if blobs_dir.is_dir() else (),
            containers=tuple(sorted(c["Id"] for c in containers)),  # type: ignore[union-attr]
            container_dirs=tuple(sorted(os.listdir(cdir))) if cdir.is_dir() else ())


class Canary:
    """A directory outside the data root: an escaping archive aims its writes here."""

    CONTENT = b"canary: must never change\n"

    def __init__(self, base: Path) -> None:
        self.dir = base / "canary"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.victim = self.dir / "victim"
        self.victim.write_bytes(self.CONTENT)

    def climb(self, n: int = 17) -> str:
        """A relative path that climbs ``n`` levels and then goes down to this directory: from any directory less
        than ``n`` deep it reaches the canary (what an attacker writes who does not know where the destination
        is). 17 is what the CVE-2025-4517 archive wants for ``escape``: its 17 ``..`` undo the 17 components of
        the link path in ``realpath``'s lexical view (so the check sees it inside) while the kernel climbs from
        the destination to ``/``."""
        return "../" * n + str(self.dir).lstrip("/")

    def assert_untouched(self) -> None:
        assert sorted(os.listdir(self.dir)) == ["victim"], f"written outside the store: {os.listdir(self.dir)}"
        assert self.victim.read_bytes() == self.CONTENT, "the canary file was overwritten"
        assert os.stat(self.victim).st_nlink == 1, "a hard link to the canary file was made"


# -- build and pull streams ----------------------------------------------------------------------------------
def stream_messages(body: bytes) -> list[dict[str, Any]]:
    """The JSON messages of a streamed answer (build, pull, load), lines that are not JSON skipped."""
    out = []
    for line in body.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def built_id(body: bytes) -> str | None:
    """The image ID a build stream announces (``{"aux": {"ID": …}}``), None if it built nothing."""
    for m in stream_messages(body):
        if isinstance(m.get("aux"), dict) and "ID" in m["aux"]:
            return str(m["aux"]["ID"])
    return None


# -- archives ---------------------------------------------------------------------------------------------
Entry = tuple[str, str, Any]  # (name, kind, payload): "file" bytes, "dir" mode, "symlink"/"hardlink" target


def tar_of_entries(entries: Iterable[Entry], *, fmt: int = tarfile.PAX_FORMAT,
                   pax_global: dict[str, str] | None = None) -> bytes:
    """A tar of ``entries`` in order (names taken as they are: no cleaning, duplicates kept), with
    ``pax_global`` as a PAX global header first."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=pax_global) as tf:
        for name, kind, payload in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if kind == "file":
                ti.size = len(payload)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(payload))
                continue
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, payload or 0o755
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, payload
            else:
                raise ValueError(kind)
            tf.addfile(ti)
    return buf.getvalue()


def cve_2025_4517_entries(dest_len: int, escape_to: str = "..", victim: str = "flag",
                          path_max: int = 4096) -> list[Entry]:
    """CPython's gh-135034 regression archive (``test_realpath_limit_attack``) for a destination path of
    ``dest_len`` characters: one-letter symlinks to long directories make a path whose expansion passes
    PATH_MAX, so that ``os.path.realpath`` stops resolving it; ``escape`` then points at ``escape_to``
    (relative to the destination: ``..`` in CPython's test, as many ``..`` as reach ``/`` and then a host
    directory in an attack), ``flaglink`` is a hard link to ``escape/<victim>`` that is then overwritten, and
    ``escape/newfile`` is created."""
    steps = "abcdefghijklmnop"
    component = "d" * ((path_max - (dest_len + 1)) // (len(steps) + 1))
    entries: list[Entry] = []
    path = ""
    for step in steps:
        entries.append((os.path.join(path, component), "dir", 0o777))
        entries.append((os.path.join(path, step), "symlink", component))
        path = os.path.join(path, component)
    linkpath = os.path.join(*steps, "l" * 254)
    entries.append((linkpath, "symlink", os.path.join(*[".."] * len(steps))))
    entries.append(("escape", "symlink", os.path.join(linkpath, escape_to)))
    entries.append(("flaglink", "hardlink", os.path.join("escape", victim)))
    entries.append(("flaglink", "file", b"overwrite"))
    entries.append(("escape/newfile", "file", b"new"))
    return entries

