"""Crash safety: kill -9 in the middle of a large import leaves no half image; restart reports and cleans."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from conftest import Daemon, small_tar


def test_kill9_during_import(daemon: Daemon) -> None:
    daemon.docker("import", "-", "keep/me:1", input=small_tar({"keep": b"k"}))
    s, before = daemon.api_json("GET", "/images/json?all=1")
    # start a big import and stream slowly so the daemon is mid-ingest when killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(daemon.sock))
    sock.sendall(b"POST /v1.51/images/create?fromSrc=-&repo=half/image&tag=1 HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n")
    import io
    import tarfile
    hdr = io.BytesIO()
    ti = tarfile.TarInfo("big.bin")
    ti.size = 64 << 20
    hdr.write(ti.tobuf(format=tarfile.PAX_FORMAT))
    payload = hdr.getvalue() + os.urandom(4 << 20)
    for _ in range(3):
        sock.sendall(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        payload = os.urandom(4 << 20)
    time.sleep(0.5)
    ingest = daemon.data_root / "content" / "ingest"
    assert any(ingest.iterdir()), "the import should be in flight"
    daemon.kill9()
    sock.close()
    daemon.start()
    s, after = daemon.api_json("GET", "/images/json?all=1")
    assert [i["Id"] for i in after] == [i["Id"] for i in before]
    assert "unfinished ingest" in daemon.log()
    assert not any(ingest.iterdir())
    # fsck on the stopped store finds nothing more
    daemon.stop()
    p = subprocess.run([sys.executable, "-m", "dockwright.cli.main", "fsck", "--data-root", str(daemon.data_root)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert b"orphan blobs removed: 0" in p.stdout and b"missing blobs: 0" in p.stdout
    daemon.start()
    assert daemon.out("images", "--format", "{{.Repository}}:{{.Tag}}") == "keep/me:1"
