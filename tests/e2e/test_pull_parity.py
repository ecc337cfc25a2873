"""docker pull as dockerd 20.10 answers it: the CLI's lines, the repo digests kept across platforms, the events.

What dockerd does (and these tests hold dockwright to, through the docker CLI):

* an image whose configuration is already here is not pulled again: no layer line at all, just ``Digest:`` and
  ``Status: Image is up to date`` (or ``Downloaded newer image`` when the tag moved to it);
* a pull by digest announces the whole reference: ``<host>/<repo>@sha256:…: Pulling from <repo>``;
* ``pull -a`` pulls the tags in the order the registry lists them;
* a pull by tag never takes a repo digest from another image: after ``pull --platform linux/arm64 X:1`` then
  ``pull X:1`` (the same index), the arm64 image keeps ``X@<index digest>`` and the host's image gets none;
* the pull event's ID is the reference pulled and its ``name`` the repository, so ``--filter image=<repo>``
  returns that repository's pulls only.

The side-by-side test runs the same pulls on a real dockerd 20.10 against the same registry (the 20.10 CLI where it
is installed) and compares the lines, layer by layer; ``Verifying Checksum`` is left out of that comparison because
dockerd's progress broadcaster keeps only the latest update of a layer and drops it at random (a watcher that
catches up after ``Download complete`` never prints it).
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
import requests

from conftest import DOCKER, Daemon
from dockerd import Dockerd, dockerd_unavailable
from registry import Registry, push_image, push_multiplatform, registry, tar_of  # noqa: F401

CLI20 = "/usr/bin/docker"
CLI = CLI20 if os.access(CLI20, os.X_OK) else DOCKER


def _run(engine: Daemon | Dockerd, *args: str) -> str:
    """The CLI's stdout for a command against an engine (the 20.10 CLI where installed)."""
    assert CLI is not None
    env = {**os.environ, "DOCKER_HOST": engine.host, "DOCKER_CONFIG": str(engine.docker_config),
           "DOCKER_CLI_HINTS": "false"}
    env.pop("DOCKER_CONTEXT", None)
    p = subprocess.run([CLI, *args], capture_output=True, env=env, timeout=120)
    assert p.returncode == 0, f"docker {' '.join(args)}: {p.stderr.decode(errors='replace')}"
    return p.stdout.decode()


_LAYER = re.compile(r"^([0-9a-f]{12}): (.*)$")


_STABLE = ("Pulling fs layer", "Already exists", "Pull complete")


def _shape(out: str, *, stable_only: bool = False) -> tuple[list[str], dict[str, list[str]]]:
    """The lines that are not a layer's (in order), and each layer's statuses (in order): layers progress
    concurrently, so the interleaving of their lines is not part of the answer."""
    lines: list[str] = []
    layers: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = _LAYER.match(line)
        if m:
            statuses = layers.setdefault(m.group(1), [])
            # dockerd's progress relay passes on only the latest update of a layer when the client is slower, so
            # its intermediate statuses (Verifying Checksum, Download complete, …) come and go from run to run: a
            # comparison with dockerd (stable_only) takes the first and the last; our own output keeps them all
            if m.group(2) in _STABLE if stable_only else m.group(2) != "Verifying Checksum":
                statuses.append(m.group(2))
            continue
        lines.append(line)
    return lines, layers


def _registry_tags(reg: Registry, repo: str) -> list[str]:
    return requests.get(f"{reg.url}/v2/{repo}/tags/list", timeout=30).json()["tags"]


def _pull_events(engine: Daemon | Dockerd, since: int, *filters: str) -> list[tuple[str, str, str]]:
    args = ["events", "--since", str(since), "--until", str(int(time.time()) + 1), "--filter", "type=image",
            "--filter", "event=pull", "--format", "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}"]
    for f in filters:
        args += ["--filter", f]
    return [tuple(line.split(" ")) for line in _run(engine, *args).splitlines()]  # type: ignore[misc]


def _scenario(engine: Daemon | Dockerd, reg: Registry, app: dict, multi: dict) -> dict[str, object]:
    """Every pull the item is about, on one engine; what the CLI and the engine answered."""
    host = reg.host
    name = f"{host}/team/app:1"
    byd = f"{host}/team/app@{app['manifest_digest']}"
    since = int(time.time()) - 1
    out: dict[str, object] = {}
    out["first"] = _run(engine, "pull", name)
    out["up_to_date"] = _run(engine, "pull", name)
    out["by_digest_present"] = _run(engine, "pull", byd)
    _run(engine, "rmi", name)  # its digest reference goes with its last tag
    out["by_digest"] = _run(engine, "pull", byd)
    out["all"] = _run(engine, "pull", "-a", f"{host}/team/app")
    out["all_again"] = _run(engine, "pull", "-a", f"{host}/team/app")
    out["events"] = _pull_events(engine, since)
    out["events_app"] = _pull_events(engine, since, f"image={host}/team/app")
    mp = f"{host}/multi/p:1"
    out["arm64"] = _run(engine, "pull", "--platform", "linux/arm64", mp)
    out["host_platform"] = _run(engine, "pull", mp)
    arm = multi["images"]["linux/arm64"]["config_digest"]
    amd = multi["images"]["linux/amd64"]["config_digest"]
    out["inspect"] = _run(engine, "image", "inspect", "--format",
                          "{{.Id}} {{.Architecture}} {{json .RepoTags}} {{json .RepoDigests}}", arm, amd)
    out["digests"] = sorted(_run(engine, "images", "--digests", "--format",
                                 "{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}", f"{host}/multi/p").splitlines())
    return out


def _push_fixtures(reg: Registry) -> tuple[dict, dict]:
    app = push_image(reg, "team/app", "1", [tar_of({"a.txt": b"a" * 300_000}), tar_of({"b.txt": b"b" * 40})])
    app["tag_digests"] = {"1": app["manifest_digest"]}
    for t in ("2", "10", "b", "a"):
        app["tag_digests"][t] = push_image(reg, "team/app", t, [tar_of({f"{t}.txt": t.encode() * 1000})])[
            "manifest_digest"]
    push_image(reg, "other/app", "1", [tar_of({"o": b"o"})])
    multi = push_multiplatform(reg, "multi/p", "1")
    return app, multi


def test_pull_lines_digests_and_events(daemon: Daemon, registry: Registry) -> None:
    app, multi = _push_fixtures(registry)
    host = registry.host
    name = f"{host}/team/app:1"
    byd = f"{host}/team/app@{app['manifest_digest']}"
    daemon.docker("pull", f"{host}/other/app:1")  # another repository's pull: not in the filtered events
    got = _scenario(daemon, registry, app, multi)
    shorts = [d[7:19] for d in app["layer_digests"]]
    lines, layers = _shape(got["first"])  # type: ignore[arg-type]
    assert lines == ["1: Pulling from team/app", f"Digest: {app['manifest_digest']}",
                     f"Status: Downloaded newer image for {name}", name]
    assert layers == {s: ["Pulling fs layer", "Download complete", "Pull complete"] for s in shorts}
    assert got["up_to_date"] == (f"1: Pulling from team/app\nDigest: {app['manifest_digest']}\n"
                                 f"Status: Image is up to date for {name}\n{name}\n")
    assert got["by_digest_present"] == (f"{byd}: Pulling from team/app\nDigest: {app['manifest_digest']}\n"
                                        f"Status: Image is up to date for {byd}\n{byd}\n")
    lines, layers = _shape(got["by_digest"])  # type: ignore[arg-type]
    assert lines == [f"{byd}: Pulling from team/app", f"Digest: {app['manifest_digest']}",
                     f"Status: Downloaded newer image for {byd}", byd]
    assert layers == {s: ["Pulling fs layer", "Download complete", "Pull complete"] for s in shorts}
    order = _registry_tags(registry, "team/app")
    repo = f"{host}/team/app"
    heads = [line.split(": ")[0] for line in got["all"].splitlines() if line.endswith(": Pulling from team/app")]
    assert heads == order
    assert got["all_again"] == "".join(f"{t}: Pulling from team/app\nDigest: {app['tag_digests'][t]}\n"
                                       for t in order) + f"Status: Image is up to date for {repo}\n{repo}\n"
    expected = [("pull", name, repo), ("pull", name, repo), ("pull", byd, repo), ("pull", byd, repo),
                ("pull", repo, repo), ("pull", repo, repo)]
    assert [e for e in got["events"] if e[2] == repo] == expected  # type: ignore[union-attr]
    assert got["events_app"] == expected
    # the arm64 image keeps the index's digest; the host's image gets the tag and no digest
    arm = multi["images"]["linux/arm64"]["config_digest"]
    amd = multi["images"]["linux/amd64"]["config_digest"]
    mp = f"{host}/multi/p"
    assert got["inspect"] == (f'{arm} arm64 [] ["{mp}@{multi["index_digest"]}"]\n'
                              f'{amd} amd64 ["{mp}:1"] []\n')
    assert got["digests"] == sorted([f"{mp} <none> {multi['index_digest']} {arm[7:19]}",
                                     f"{mp} 1 <none> {amd[7:19]}"])


@pytest.mark.skipif(dockerd_unavailable() is not None, reason=str(dockerd_unavailable()))
def test_pull_side_by_side_with_dockerd(daemon: Daemon, registry: Registry) -> None:
    app, multi = _push_fixtures(registry)
    real = Dockerd(daemon.docker_config)
    why = real.start()
    if why is not None:
        pytest.skip(f"dockerd did not start here: {why}")
    try:
        theirs = _scenario(real, registry, app, multi)
    finally:
        real.stop()
    ours = _scenario(daemon, registry, app, multi)
    for key, value in theirs.items():
        if isinstance(value, str) and key not in ("inspect",):
            assert _shape(ours[key], stable_only=True) == _shape(value, stable_only=True), key  # type: ignore[arg-type]
        else:
            assert ours[key] == value, key
