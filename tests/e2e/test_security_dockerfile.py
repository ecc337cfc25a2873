"""Hostile Dockerfiles and build options against a real daemon (issue 10, items 3 and 6).

A Dockerfile is parsed and expanded off the event loop, in linear time, and bounded: the file at 16 MiB
(BuildKit's limit and words), an expanded word at 1 MiB, a stage's environment at 4 MiB, a step's image config at
16 MiB. While each hostile build runs, a thread pings ``/_ping`` every 100 ms on fresh connections: every answer
must come within a second. The resource options of ``POST /build`` are checked as dockerd checks them: the query's
(``securityopt``, ``isolation``, ``shmsize``, the JSON ones) before the context is read, with an HTTP status; the
RUN container's (``memory``, ``memswap``, CPU period and quota, cpusets, shm size) when a RUN step creates its
container, as an ``errorDetail`` after that step's line — where dockerd's ``ContainerCreate`` refuses them.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import Daemon, busybox_path, make_rootfs_tar
from hostile import Watch, built_id, stream_messages

RUNS = shutil.which("runc") is not None and busybox_path() is not None
needs_run = pytest.mark.skipif(not RUNS, reason="RUN steps need runc and busybox-static")
BASE = "sec/base:1"


@pytest.fixture(scope="module")
def sd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("secdf")).start()
    d.docker("import", "-c", "ENV PATH=/bin", "-", BASE, input=make_rootfs_tar())
    try:
        yield d
    finally:
        d.stop()


# -- helpers -------------------------------------------------------------------------------------------------
def _context(dockerfile: bytes | str) -> bytes:
    data = dockerfile.encode() if isinstance(dockerfile, str) else dockerfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _build(d: Daemon, dockerfile: bytes | str, query: str = "") -> tuple[int, bytes]:
    status, _, data = d.api("POST", f"/build?rm=1&forcerm=1{query}", _context(dockerfile),
                            {"Content-Type": "application/x-tar"})
    return status, data


def _stream_error(status: int, body: bytes) -> str:
    """The ``errorDetail`` message a 200 build stream ends with."""
    assert status == 200, body[-500:]
    errors = [m for m in stream_messages(body) if "errorDetail" in m]
    assert errors, body[-2000:]
    assert errors[-1]["error"] == errors[-1]["errorDetail"]["message"]
    return str(errors[-1]["errorDetail"]["message"])


def _stream_text(body: bytes) -> str:
    return "".join(str(m.get("stream", "")) for m in stream_messages(body))


def _doubling(lines: int, seed: str = "abcdefgh") -> str:
    return f"FROM {BASE}\nARG X={seed}\n" + "ARG X=${X}${X}\n" * lines


# -- hostile Dockerfiles -----------------------------------------------------------------------------------------
def test_sixteen_doubling_args_build_quickly_and_the_daemon_keeps_answering(sd: Daemon) -> None:
    """The issue's 330-byte file: 16 ``ARG X=${X}${X}`` lines (the value ends at 512 KiB) used to leave
    ``/_ping`` unanswered for 18–36 s; it is a legal Dockerfile, and builds."""
    with Watch(sd) as p:
        t0 = time.monotonic()
        status, body = _build(sd, _doubling(16), "&t=sec/doubling:16")
        took = time.monotonic() - t0
    p.assert_healthy()
    assert built_id(body) is not None, body[-2000:]
    assert took < 30, took
    sd.docker("rmi", "sec/doubling:16")


def test_forty_doubling_args_stop_at_the_expansion_limit(sd: Daemon) -> None:
    with Watch(sd) as p:
        t0 = time.monotonic()
        status, body = _build(sd, _doubling(40), "&t=sec/doubling:40")
        took = time.monotonic() - t0
    p.assert_healthy()
    msg = _stream_error(status, body)
    assert msg == ('failed to process "${X}${X}": the expansion exceeds the maximum allowed size of 1048576 '
                   'characters'), msg
    # 17 doublings make 1 MiB (steps 3-19); the 18th (step 20) is the one refused
    text = _stream_text(body)
    assert "Step 20/42 : ARG X=${X}${X}" in text and "Step 21/42" not in text, text[-500:]
    assert took < 30, took
    assert sd.docker("image", "inspect", "sec/doubling:40", check=False).returncode != 0


def test_docker_cli_shows_the_expansion_limit(sd: Daemon, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(_doubling(40))
    p = sd.docker("build", "-t", "sec/cli:1", str(tmp_path), check=False)
    assert p.returncode != 0
    assert b"the expansion exceeds the maximum allowed size of 1048576 characters" in p.stderr + p.stdout


def test_two_megabytes_of_continuation_lines_parse_quickly(sd: Daemon) -> None:
    """200,000 continuation lines (2.4 MB) used to freeze the daemon for 96 s."""
    df = f"FROM {BASE}\nLABEL a=b \\\n" + "  a=b \\\n" * 200_000 + "  c=d\n"
    with Watch(sd) as p:
        t0 = time.monotonic()
        status, body = _build(sd, df, "&t=sec/cont:1")
        took = time.monotonic() - t0
    p.assert_healthy()
    assert built_id(body) is not None, body[-2000:]
    assert took < 30, took
    labels = json.loads(sd.out("image", "inspect", "-f", "{{json .Config.Labels}}", "sec/cont:1"))
    assert labels == {"a": "b", "c": "d"}
    sd.docker("rmi", "sec/cont:1")


def test_shell_patterns_that_would_backtrack_are_linear(sd: Daemon) -> None:
    """``${X#*a*a*…*b}`` on 512 KiB of ``a``: Python's backtracking ``re`` would take O(n^k); Go's takes O(n),
    and so does the builder now (same results)."""
    df = _doubling(16, "aaaaaaaa") + "ARG Y=${X#*a*a*a*a*a*a*a*b}\nARG Z=${X//a*a*a*a*b/c}\nARG W=${X%%a*a*a*a*b}\n" \
        "ARG V=${X##a*a}\nENV LEN=${V:-empty}\n"
    with Watch(sd) as p:
        t0 = time.monotonic()
        status, body = _build(sd, df, "&t=sec/redos:1")
        took = time.monotonic() - t0
    p.assert_healthy()
    assert built_id(body) is not None, body[-2000:]
    assert took < 30, took
    env = json.loads(sd.out("image", "inspect", "-f", "{{json .Config.Env}}", "sec/redos:1"))
    assert "LEN=empty" in env  # ${X##a*a}: the greedy star takes all of X
    sd.docker("rmi", "sec/redos:1")


def test_a_stage_environment_past_its_limit_is_refused(sd: Daemon) -> None:
    df = _doubling(16) + "ARG A1=${X}${X}\n" + "".join(f"ARG A{i}=${{A1}}\n" for i in range(2, 7))
    with Watch(sd) as p:
        status, body = _build(sd, df, "&t=sec/env:1")
    p.assert_healthy()
    msg = _stream_error(status, body)
    assert msg == ("ARG: the environment and build arguments of the stage exceed the maximum allowed size of "
                   "4194304 characters"), msg


def test_an_image_config_past_its_limit_is_refused(sd: Daemon) -> None:
    """A 1 MiB value re-declared step after step: each step's history holds it once more."""
    df = _doubling(17) + "ARG X=${X}\n" * 20
    with Watch(sd) as p:
        status, body = _build(sd, df, "&t=sec/config:1")
    p.assert_healthy()
    msg = _stream_error(status, body)
    assert "exceeds the maximum allowed size of 16777216 bytes" in msg and "image config" in msg, msg


def test_a_dockerfile_past_sixteen_mib_is_a_400_before_any_step(sd: Daemon) -> None:
    df = f"FROM {BASE}\n" + "LABEL a=b\n" * ((16 << 20) // 10 + 1)
    with Watch(sd) as p:
        status, body = _build(sd, df, "&t=sec/huge:1")
    p.assert_healthy()
    assert status == 400, body[:300]
    assert json.loads(body) == {"message": "Dockerfile exceeds maximum allowed size of 16777216 bytes"}


def test_huge_dockerfile_and_dockerignore_are_not_read_whole(sd: Daemon) -> None:
    """A 200 MiB Dockerfile (sparse in the context: zeros compress to nothing) or .dockerignore is refused with
    BuildKit's words after reading 16 MiB of it, and the daemon's memory stays flat."""
    import gzip
    for name in ("Dockerfile", ".dockerignore"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            if name != "Dockerfile":
                df = f"FROM {BASE}\n".encode()
                ti = tarfile.TarInfo("Dockerfile")
                ti.size = len(df)
                tf.addfile(ti, io.BytesIO(df))
            ti = tarfile.TarInfo(name)
            ti.size = 200 << 20
            tf.addfile(ti, io.BytesIO(b"#" * (200 << 20)))
        body = gzip.compress(buf.getvalue(), 1)
        with Watch(sd) as p:
            status, _, data = sd.api("POST", "/build?rm=1", body, {"Content-Type": "application/x-tar"})
        p.assert_healthy(max_growth=120 << 20)
        assert status == 400, data[:300]
        assert json.loads(data) == {"message": f"{name} exceeds maximum allowed size of 16777216 bytes"}


def test_sigterm_during_a_long_parse_stops_the_daemon_promptly(tmp_path: Path) -> None:
    """A Dockerfile of 1.6 million instructions (just under 16 MiB) takes seconds to parse: the daemon keeps
    answering meanwhile, and SIGTERM stops the parse and the daemon at once."""
    d = Daemon(tmp_path / "d").start()
    try:
        df = f"FROM {BASE}\n" + "LABEL a=b\n" * ((16 << 20) // 10 - 2)
        result: dict[str, object] = {}

        def post() -> None:
            try:
                result["answer"] = _build(d, df)
            except OSError as exc:
                result["answer"] = exc

        with Watch(d) as p:
            t = threading.Thread(target=post, daemon=True)
            t.start()
            time.sleep(2.5)  # the context is in, the parse under way
            assert "answer" not in result, result
        # 1.6 million parsed instructions take ~240 MiB (the parse's result, bounded by the 16 MiB file limit)
        p.assert_healthy(max_growth=400 << 20)
        assert d.proc is not None
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(30)
        took = time.monotonic() - t0
        assert rc == 0, d.log()[-2000:]
        assert took < 5, f"the daemon took {took:.1f} s to stop"
        t.join(10)
        answer = result.get("answer")
        if isinstance(answer, tuple):  # the build was refused, not left hanging
            assert answer[0] == 503, answer
            assert "shutting down" in json.loads(answer[1])["message"]
    finally:
        d.stop()


# -- resource options of POST /build ------------------------------------------------------------------------------
@pytest.mark.parametrize("query,message", [
    ("memory=-1", "Minimum memory limit allowed is 6MB"),
    ("memory=1", "Minimum memory limit allowed is 6MB"),
    ("memory=8388608&memswap=4194304", "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ("memswap=8388608", "You should always set the Memory limit when using Memoryswap limit, see usage"),
    ("cpuperiod=10", "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
    ("cpuquota=10", "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    ("cpusetcpus=0-x", "Invalid value 0-x for cpuset cpus: invalid format: 0-x"),
    ("cpusetcpus=4096", "Requested CPUs are not available - requested 4096, available: "),
    ("cpusetmems=99999", "Invalid value 99999 for cpuset mems: value of out range, maximum is 8192"),
    ("shmsize=-5", "SHM size can not be less than 0"),
    ("extrahosts=nohost", 'bad format for add-host: "nohost"'),
    ("extrahosts=h:999.1.1.1", 'invalid IP address in add-host: "999.1.1.1"'),
])
def test_run_container_resources_are_refused_at_the_run_step(sd: Daemon, query: str, message: str) -> None:
    """dockerd refuses them when the RUN step creates its container: after the step's line, in the stream."""
    images = sd.out("images", "-aq")
    status, body = _build(sd, f"FROM {BASE}\nRUN true\n", f"&t=sec/res:1&{query}")
    msg = _stream_error(status, body)
    assert msg.startswith(message), msg
    text = _stream_text(body)
    assert "Step 2/2 : RUN true" in text and "Running in" not in text, text
    assert sd.out("images", "-aq") == images
    assert sd.docker("image", "inspect", "sec/res:1", check=False).returncode != 0


def test_resources_are_not_checked_without_a_run_step(sd: Daemon) -> None:
    """As dockerd: only a RUN step's container is checked."""
    status, body = _build(sd, f"FROM {BASE}\nLABEL a=b\n", "&t=sec/res:2&memory=-1&shmsize=-5")
    assert built_id(body) is not None, body[-1000:]
    sd.docker("rmi", "sec/res:2")


@needs_run
def test_valid_resources_run(sd: Daemon) -> None:
    status, body = _build(sd, f"FROM {BASE}\nRUN echo ran\n",
                          f"&t=sec/res:3&memory={64 << 20}&memswap=-1&shmsize={8 << 20}&cpuperiod=100000"
                          "&cpuquota=50000&cpusetcpus=0&extrahosts=db:10.0.0.5")
    assert built_id(body) is not None, body[-2000:]
    assert "ran" in _stream_text(body)
    sd.docker("rmi", "sec/res:3")


@pytest.mark.parametrize("query,status,message", [
    ("securityopt=seccomp%3Dunconfined", 400,
     "The daemon on this platform does not support setting security options on build"),
    ("isolation=hyperv", 400, 'Unsupported isolation: "hyperv"'),
    ("shmsize=x", 400, 'strconv.ParseInt: parsing "x": invalid syntax'),
    ("ulimits=" + quote("[{"), 400, "error reading ulimit settings: "),
    ("ulimits=" + quote('[{"Name":"nofile","Hard":"x"}]'), 400,
     "error reading ulimit settings: json: cannot unmarshal string into Go struct field Ulimit.Hard of type int64"),
    ("buildargs=" + quote("[1]"), 400,
     "error reading build args: json: cannot unmarshal array into Go value of type map[string]*string"),
    ("labels=" + quote('{"a":1}'), 400,
     "error reading labels: json: cannot unmarshal number into Go value of type string"),
    ("cachefrom=" + quote('{"a":1}'), 400, "json: cannot unmarshal object into Go value of type []string"),
    ("memory=lots", 400, "invalid value for memory: lots"),
    ("platform=a/b/c/d", 400, '"a/b/c/d": '),
])
def test_query_options_are_refused_before_the_build(sd: Daemon, query: str, status: int, message: str) -> None:
    images = sd.out("images", "-aq")
    got, body = _build(sd, f"FROM {BASE}\nRUN true\n", f"&t=sec/q:1&{query}")
    assert got == status, body[:500]
    msg = json.loads(body)["message"]
    assert msg.startswith(message), msg
    assert sd.out("images", "-aq") == images
