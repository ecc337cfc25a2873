"""COPY and ADD in a BuildKit stage (:class:`CopyStep`): context files, another stage's or image's files
(``--from``), heredocs and (ADD) URLs checked against ``--checksum``, copied with ``--chown``/``--chmod`` into a
snapshot of the stage (``--link``: into an empty one, so the layer and its cache key do not depend on what is
below), keyed by the digests of what is copied."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path

from ..builder.addcopy import resolve_chown, write_heredoc
from ..builder.copy import copy_sources
from ..builder.remote_add import download, is_url
from ..builder.sources import resolve_sources_named
from ..builder.srchash import combine, source_hash
from ..dockerfile import Env, Node, parse_heredoc
from ..errors import InvalidArgument
from ..metadata.db import LayerRecord
from .frontend import StagePlan, step_flags, vertex_text
from .progress import VertexHandle
from .stage import StageBase
from .state import (
    Ref,
    SolveError,
    State,
    history_entry,
    not_found,
    step_key,
)

__all__ = ["CopyStep"]


class CopyStep(StageBase):
    """COPY/ADD steps."""

    # ---- COPY / ADD -----------------------------------------------------------------------------------------------
    async def _copy(self, sp: StagePlan, state: State, n: Node, v: VertexHandle) -> None:
        kind = n.value.lower()
        flags = {k: vals[-1] for k, vals in step_flags(n).items() if k != "exclude"}
        env = Env(self._env(state))
        raw = [a.value for a in n.args]
        is_doc = [bool(n.heredocs) and parse_heredoc(r) is not None for r in raw]
        words = [r if doc else self.lex.process_word(r, env) for r, doc in zip(raw, is_doc, strict=True)]
        if is_doc[-1]:
            raise InvalidArgument(f"{kind.upper()} cannot accept a heredoc as a destination")
        srcs, dest_word = words[:-1], words[-1]
        chown = self.lex.process_word(flags["chown"], env) if flags.get("chown") else ""
        chmod = self.lex.process_word(flags["chmod"], env) if flags.get("chmod") else ""
        if chmod:
            try:
                int(chmod, 8)
            except ValueError:
                raise InvalidArgument(f"invalid chmod parameter: {chmod}") from None
        link = flags.get("link", "false").lower() in ("true", "1", "")
        checksum = flags.get("checksum", "")
        workdir = state.config.get("WorkingDir") or "/"
        dest = dest_word
        if not dest.startswith("/"):
            dest = os.path.join(workdir, dest) + ("/" if dest.endswith("/") or dest == "." else "")
        from_name = flags.get("from", "")
        extra = self.s.root / "tmp" / f"bk-src-{os.urandom(8).hex()}"
        view: tuple[str, Path] | None = None
        try:
            if from_name:
                src_state = await self._from_state(sp, self.lex.process_word(from_name, env))
                view = await self.s.view(src_state.ref)
                src_root = view[1]
                src_tag = "from:" + src_state.key
            else:
                src_root = None
                src_tag = "context"
            files: list[Path] = []
            names: list[str] = []
            ids: list[str] = []
            docs = iter(n.heredocs)
            for s, doc in zip(srcs, is_doc, strict=False):
                if doc:
                    path = await asyncio.to_thread(write_heredoc, extra / str(len(files)), next(docs), env)
                    files.append(path)
                    names.append(path.name)
                    ids.append(await asyncio.to_thread(source_hash, path.parent, path.name))
                elif kind == "add" and is_url(s):
                    got = await download(s, extra / str(len(files)), lambda cur, tot: None)
                    if checksum and got.hash.rpartition(":")[2] != checksum.rpartition(":")[2] \
                            and not await asyncio.to_thread(_sha256_matches, got.path, checksum):
                        raise SolveError(f"digest mismatch for {s}: {checksum}")
                    files.append(got.path)
                    names.append(got.path.name)
                    ids.append(got.hash)
                else:
                    if src_root is None:
                        src_root = await self.sources.context()
                    try:
                        named = await asyncio.to_thread(resolve_sources_named, src_root, s, _NoIgnore())
                    except InvalidArgument:
                        raise not_found(s) from None
                    if not named:
                        raise not_found(s)
                    root = src_root
                    files.extend(p for p, _ in named)
                    names.extend(nm for _, nm in named)
                    ids.extend(await asyncio.to_thread(_hashes, root, [p for p, _ in named]))
            src_hash = combine(ids) if ids else ""
            parent_key = "" if link else state.key
            key = step_key("copy", parent_key, kind, src_tag, src_hash, dest, chown, chmod, link, srcs)
            decompress = kind == "add"

            async def make() -> LayerRecord | None:
                async def cp(rootfs: Path) -> None:
                    def work() -> None:
                        uid, gid = resolve_chown(chown, rootfs) if chown else (0, 0)
                        copy_sources(files, rootfs, dest, srcs, uid, gid, chmod, decompress, names)
                    await asyncio.to_thread(work)
                base = Ref() if link else state.ref
                layer = await self.s.change(base, cp, clamp=self._clamp())
                if layer is None and link:
                    return None
                return layer

            layer = await self._cached_or(v, key, make, vertex_text(n, self.lex, env), parent_key,
                                          Ref() if link else state.ref)
            shown = " ".join(raw[:-1] if not any(is_doc[:-1]) else words[:-1])
            state.history.append(history_entry(f"{kind.upper()} {shown} {dest_word} # buildkit", empty=layer is None,
                                          at=self.made_at))
            self._advance(state, key, layer, state_key=step_key("link", state.key, key) if link else "")
        finally:
            if view is not None:
                await self.s.drop_view(*view)
            await asyncio.to_thread(shutil.rmtree, extra, True)




class _NoIgnore:
    """The context as synced already has ``.dockerignore`` applied."""

    def matches(self, path: str) -> bool:
        return False


def _hashes(root: Path, paths: list[Path]) -> list[str]:
    return [source_hash(root, p) for p in paths]


def _sha256_matches(path: Path, checksum: str) -> bool:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return checksum.rpartition(":")[2] == h.hexdigest()


