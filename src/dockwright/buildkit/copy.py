"""COPY and ADD in a BuildKit stage (:class:`CopyStep`): context files, another stage's or image's files
(``--from``), heredocs and (ADD) URLs checked against ``--checksum``, copied with ``--chown``/``--chmod`` into a
snapshot of the stage (``--link``: into an empty one, so the layer and its cache key do not depend on what is
below), keyed by the digests of what is copied."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
from pathlib import Path

from ..builder.addcopy import NoIgnore, resolve_chown, write_heredoc
from ..builder.copy import copy_sources
from ..builder.dockerignore import DockerIgnore
from ..builder.remote_add import download, is_url
from ..builder.sources import resolve_sources_named
from ..builder.srchash import combine
from ..dockerfile import Env, Node, parse_heredoc
from ..errors import InvalidArgument
from ..metadata.db import LayerRecord
from .checksum import ContentHasher
from .fastcopy import direct_copy
from .frontend import StagePlan, step_flags, vertex_text
from .git import fetch_git, is_git_url, parse_git_url, resolve_commit
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
        all_flags = step_flags(n)
        flags = {k: vals[-1] for k, vals in all_flags.items() if k != "exclude"}
        env = Env(self._env(state))
        excludes = [self.lex.process_word(x, env) for x in all_flags.get("exclude", [])]
        parents = flags.get("parents", "false").lower() in ("true", "1", "")
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
                src_tag = "from"  # keyed by the content selected, not the stage: the same files are a hit
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
                    ids.append(await asyncio.to_thread(self.s.hasher.digest, path))
                elif kind == "add" and is_git_url(s):
                    src = parse_git_url(s)
                    commit = await resolve_commit(src)
                    tree = await fetch_git(src, commit, extra / f"git-{len(files)}",
                                           keep_git_dir=flags.get("keep-git-dir", "false").lower() in ("true", "1"))
                    files.append(tree)
                    names.append(tree.name)
                    ids.append(f"git:{src.remote}@{commit}:{src.subdir}")
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
                        named = await asyncio.to_thread(resolve_sources_named, src_root, s, NoIgnore())
                    except InvalidArgument:
                        raise not_found(s) from None
                    if not named:
                        raise not_found(s)
                    root = src_root
                    if excludes or parents:  # the sources as they are to be copied, in a directory of their own
                        root = extra / f"staged-{len(files)}"
                        named = await asyncio.to_thread(stage_sources, src_root, named, root, excludes, parents)
                    files.extend(p for p, _ in named)
                    names.extend(nm for _, nm in named)
                    ids.extend(await asyncio.to_thread(_hashes, self.s.hasher, [p for p, _ in named]))
            src_hash = combine(ids) if ids else ""
            parent_key = "" if link else state.key
            key = step_key("copy", parent_key, kind, src_tag, src_hash, dest, chown, chmod, link, srcs, excludes,
                           parents)
            if parents and not dest.endswith("/"):
                dest += "/"
            decompress = kind == "add"

            async def make() -> LayerRecord | None:
                async def cp(rootfs: Path) -> None:
                    def work() -> None:
                        uid, gid = resolve_chown(chown, rootfs) if chown else (0, 0)
                        copy_sources(files, rootfs, dest, srcs, uid, gid, chmod, decompress, names, keep_mode=True)
                    await asyncio.to_thread(work)
                base = Ref() if link else state.ref
                direct = None
                if (not chown and not chmod and not decompress and src_root is not None and not from_name
                        and files and all(f.is_dir() and not f.is_symlink() for f in files)):
                    def direct(upper: Path, below: Path) -> bool:  # the context's directories, hard-linked
                        return direct_copy(upper, below, files, dest)
                layer = await self.s.change(base, cp, clamp=self._clamp(), direct=direct)
                if layer is None and link:
                    return None
                return layer

            layer = await self._cached_or(v, key, make, vertex_text(n, self.lex, env), parent_key,
                                          Ref() if link else state.ref)
            shown = " ".join(raw[:-1] if not any(is_doc[:-1]) else words[:-1])
            state.history.append(history_entry(f"{kind.upper()} {shown} {dest_word} # buildkit",
                                               empty=layer is None, at=self.made_at))
            self._advance(state, key, layer, state_key=step_key("link", state.key, key) if link else "")
        finally:
            if view is not None:
                await self.s.drop_view(*view)
            await asyncio.to_thread(shutil.rmtree, extra, True)


def stage_sources(src_root: Path, named: list[tuple[Path, str]], stage: Path, excludes: list[str],
                  parents: bool) -> list[tuple[Path, str]]:
    """COPY's sources with ``--exclude`` patterns left out (matched as ``.dockerignore`` patterns against each
    path relative to the context and to its source) and, with ``--parents``, under their directories relative to
    the context: hard links (or copies) in ``stage``, returned as the sources to copy instead."""
    rules = DockerIgnore(excludes) if excludes else None
    root = str(src_root)

    def excluded(rel_ctx: str, rel_src: str) -> bool:
        return rules is not None and (rules.matches(rel_ctx) or (rel_src != "" and rules.matches(rel_src)))

    def place(src: str, dst: str, rel_ctx: str, rel_src: str) -> None:
        if excluded(rel_ctx, rel_src):
            return
        st = os.lstat(src)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if stat.S_ISDIR(st.st_mode):
            os.makedirs(dst, exist_ok=True)
            shutil.copystat(src, dst)
            for name in sorted(os.listdir(src)):
                place(os.path.join(src, name), os.path.join(dst, name), f"{rel_ctx}/{name}".lstrip("/"),
                      f"{rel_src}/{name}".lstrip("/"))
            return
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError:
            shutil.copy2(src, dst, follow_symlinks=False)

    out: list[tuple[Path, str]] = []
    for i, (p, nm) in enumerate(named):
        rel = os.path.relpath(p, root)
        rel = "" if rel == "." else rel
        if parents and rel:
            place(str(p), str(stage / "tree" / rel), rel, "")
        else:
            place(str(p), str(stage / str(i) / nm), rel, "")
            if os.path.lexists(stage / str(i) / nm):
                out.append((stage / str(i) / nm, nm))
    if parents and (stage / "tree").is_dir():
        out.append((stage / "tree", "tree"))  # a directory: its contents (the paths from the context) are copied
    return out


def _hashes(hasher: ContentHasher, paths: list[Path]) -> list[str]:
    return [hasher.digest(p) for p in paths]


def _sha256_matches(path: Path, checksum: str) -> bool:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return checksum.rpartition(":")[2] == h.hexdigest()


