"""The library's typed build (``engine.build(context, …) → Image``): a directory, a tar path or a binary file as
the context, its output to ``progress``, a failed build as an exception; and the context tar it streams."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path

import pytest

from dockwright import (
    DockwrightError,
    Engine,
    EngineConfig,
    InvalidArgument,
    InvalidReference,
    ProgressEvent,
    StreamText,
)
from dockwright.engine.build import file_chunks, tar_directory


def test_tar_directory(tmp_path: Path) -> None:
    src = tmp_path / "ctx"
    (src / "sub").mkdir(parents=True)
    (src / "Dockerfile").write_text("FROM scratch\n")
    (src / "sub" / "f").write_bytes(b"data")
    os.symlink("f", src / "sub" / "link")
    out = tmp_path / "ctx.tar"
    tar_directory(src, out)
    with tarfile.open(out) as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert sorted(members) == ["Dockerfile", "sub", "sub/f", "sub/link"]
        assert all(m.uid == 0 and m.gid == 0 and m.uname == "" for m in members.values())
        assert members["sub/link"].issym() and members["sub/link"].linkname == "f"
        f = tf.extractfile("sub/f")
        assert f is not None and f.read() == b"data"


def test_file_chunks() -> None:
    async def main() -> list[bytes]:
        return [c async for c in file_chunks(io.BytesIO(b"x" * 100_000))]
    chunks = asyncio.run(main())
    assert b"".join(chunks) == b"x" * 100_000 and len(chunks) == 2


def _context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def test_build_from_a_directory_a_tar_and_a_file(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM scratch\nLABEL a=b\n")
    tar = tmp_path / "ctx.tar"
    tar_directory(ctx, tar)

    async def main() -> None:
        with Engine(EngineConfig(data_root=tmp_path / "data", fsync=False)) as eng:
            seen: list[ProgressEvent] = []
            image = await eng.build(ctx, tag=["lib/built:1", "lib/built:2"], progress=seen.append)
            assert image.labels == {"a": "b"} and image.repo_tags == ["lib/built:1", "lib/built:2"]
            text = "".join(e.text for e in seen if isinstance(e, StreamText))
            assert text.startswith("Step 1/2 : FROM scratch\n") and f"Successfully built {image.short_id}" in text
            from_tar = await eng.build.build(str(tar), labels={"c": "d"})
            assert from_tar.labels == {"a": "b", "c": "d"} and from_tar.repo_tags == []
            with open(tar, "rb") as f:
                assert (await eng.build(f, nocache=True)).labels == {"a": "b"}
            assert not list((tmp_path / "data" / "tmp").iterdir())  # the contexts are gone
    asyncio.run(main())


def test_build_errors(tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM scratch\nNOPE x\n")

    async def main() -> None:
        with Engine(EngineConfig(data_root=tmp_path / "data", fsync=False)) as eng:
            with pytest.raises(InvalidReference):
                await eng.build(ctx, tag="Bad:Name")
            with pytest.raises(DockwrightError, match="unknown instruction: (?i:nope)"):
                await eng.build(ctx)
            (ctx / "Dockerfile").write_text("FROM scratch\nFROM scratch AS a\nLABEL x=y\n")
            with pytest.raises(InvalidArgument, match="failed to reach build target b in Dockerfile"):
                await eng.build(ctx, target="b")
            (ctx / "Dockerfile").write_text("FROM scratch\nCOPY nosuch /\n")
            with pytest.raises(InvalidArgument, match="^COPY failed: file not found in build context"):
                await eng.build(ctx)  # a failed RUN is a BuildError with its exit code: docs/library.md runs one
    asyncio.run(main())
