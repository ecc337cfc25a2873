"""docs/library.md's examples, run in order as one session (top-level await) against a local registry holding
``busybox:latest``: the library's documentation cannot rot."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from conftest import busybox_path, make_rootfs_tar
from registry import Registry, push_image, registry, tar_of  # noqa: F401

DOC = Path(__file__).resolve().parents[3] / "docs" / "library.md"
DOC_REGISTRY = '"127.0.0.1:5000"'


def examples() -> list[str]:
    """The ```python blocks of docs/library.md, in order."""
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M)


def test_the_examples_cover_every_operation() -> None:
    text = "\n".join(examples())
    for call in ("Engine.open(", "images.pull(", "progress=", "images.get(", "images.list(", "images.tag(",
                 "images.history(", "images.save(", "images.load(", "images.import_image(", "images.remove(",
                 "images.prune(", "images.push(", "system.info(", "system.df(", "images.pull_stream(",
                 "containers.run(", "containers.create_container(", "containers.start(", "containers.list(",
                 "containers.inspect(", "containers.stop(", "containers.wait_exit(", "containers.read_logs(",
                 "containers.remove(", "engine.build("):
        assert call in text, call
    assert text.count(DOC_REGISTRY) == 1


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runc") is None or busybox_path() is None,
                    reason="the container and build examples need root, runc and busybox-static")
def test_the_examples_run(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a runnable busybox (the host's static one): the container and build examples run it
    push_image(registry, "busybox", "latest", [make_rootfs_tar({"etc/motd": b"hello\n"}),
                                               tar_of({"bin/tool": b"x" * 3000})])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the examples' temporary data root

    async def run() -> None:
        namespace: dict[str, Any] = {"__name__": "library_md"}
        try:
            for i, source in enumerate(examples()):
                source = source.replace(DOC_REGISTRY, f'"{registry.host}"')
                code = compile(source, f"docs/library.md example {i + 1}", "exec",
                               flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                result = eval(code, namespace)  # noqa: S307 - our own documentation
                if asyncio.iscoroutine(result):
                    await result
        except BaseException:
            if "engine" in namespace:  # the last example closes it; a failure before leaves it to us
                await namespace["engine"].aclose()
            raise

    asyncio.run(run())
