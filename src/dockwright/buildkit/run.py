"""RUN in a BuildKit stage (:class:`RunStep`): the command with the stage's environment and build args, its
``--mount``s (cache directories, binds of the context or another stage, secrets from the client, tmpfs) and
``--network``, keyed by all of them (not by a cache mount's or secret's content), run in runc on a writable
snapshot whose difference is the step's layer; mount stubs that runc made are removed as BuildKit removes them."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..builder.paths import follow_in_scope
from ..dockerfile import Env, Node, parse_heredoc
from ..errors import DockwrightError, InvalidArgument
from ..metadata.db import LayerRecord
from .exec import ExecRequest
from .frontend import MountSpec, StagePlan, parse_mount, step_flags
from .progress import VertexHandle
from .sshforward import AgentSocket
from .stage import StageBase
from .state import (
    SolveError,
    State,
    history_entry,
    not_found,
    step_key,
)

__all__ = ["RunStep"]


class RunStep(StageBase):
    """RUN steps."""

    # ---- RUN ------------------------------------------------------------------------------------------------------
    async def _run(self, sp: StagePlan, state: State, n: Node, v: VertexHandle) -> None:
        env_list = self._env(state, run=True)
        env = Env(self._env(state))
        flags = step_flags(n)
        mounts = [parse_mount(self.lex.process_word(m, env), n.start_line) for m in flags.get("mount", [])]
        ssh = [m for m in mounts if m.type == "ssh"]
        for i, m in enumerate(ssh):
            m.target = m.target or f"/run/buildkit/ssh_agent.{i}"  # LLB's AddSSHSocket numbering
        if ssh and not any(e.startswith("SSH_AUTH_SOCK=") for e in env_list):
            env_list = env_list + [f"SSH_AUTH_SOCK={ssh[0].target}"]  # whether an agent is forwarded or not
        network = flags.get("network", [self.opts.network or "default"])[0]
        if network not in ("default", "none", "host", "sandbox"):
            raise InvalidArgument(f"unsupported network mode \"{network}\"")
        files: list[tuple[str, bytes]] = []  # heredoc scripts run as files (a shebang line)
        if n.attributes.get("json"):
            args = [a.value for a in n.args]
        else:
            script = n.args[0].value if n.args else ""
            words = script.split()
            if n.heredocs and len(words) == 1 and parse_heredoc(words[0]) is not None:
                doc = n.heredocs[0]  # the heredoc is the command: a script, or a program with a shebang
                if doc.content.startswith("#!"):
                    path = f"/dev/pipes/{doc.name}"
                    files.append((path, doc.content.encode("utf-8", "surrogateescape")))
                    args = [path]
                else:
                    args = list(state.shell) + [doc.content]
            else:
                if n.heredocs:  # heredocs fed to a command: the shell reads them after the command line
                    script += "\n" + "".join(f"{h.content}{h.name}\n" for h in n.heredocs)
                args = list(state.shell) + [script]
        for k in state.args:
            if k in self.opts.buildargs:
                self.used_args.add(k)
        shown_args = [f"{k}={self._arg(state, k)}" for k in state.args if self._arg(state, k) is not None]
        created_by = "RUN " + (f"|{len(shown_args)} " + " ".join(shown_args) + " " if shown_args else "") \
            + " ".join(args) + " # buildkit"
        mount_keys = [await self._mount_key(sp, state, m) for m in mounts]
        key = step_key("exec", state.key, args, env_list, state.config.get("WorkingDir") or "/",
                       state.config.get("User") or "", network, mount_keys, self.opts.extra_hosts, files)
        description = "mount / from exec " + " ".join(args)

        async def make() -> LayerRecord | None:
            return await self._exec(sp, state, args, env_list, mounts, network, v, files)

        layer = await self._cached_or(v, key, make, description, state.key, state.ref)
        state.history.append(history_entry(created_by, empty=layer is None, at=self.made_at))
        self._advance(state, key, layer)

    async def _mount_key(self, sp: StagePlan, state: State, m: MountSpec) -> Any:
        if m.type == "bind":
            if m.from_:  # keyed by the content of the selected path, as BuildKit's checksum of the mount's source
                src_state = await self._from_state(sp, m.from_)
                vkey, vdir = await self.s.view(src_state.ref)
                try:
                    rel = follow_in_scope(vdir, m.source.lstrip("/") or ".")
                    path = vdir / rel if rel != "." else vdir
                    h = await asyncio.to_thread(self.s.hasher.digest, path) if os.path.lexists(path) else "missing"
                finally:
                    await self.s.drop_view(vkey, vdir)
                return ["bind", m.target, m.source, "from:" + h, m.readonly]
            ctx = await self.sources.context()
            src = m.source.lstrip("/") or "."
            rel = follow_in_scope(ctx, src)
            h = await asyncio.to_thread(self.s.hasher.digest, ctx / rel if rel != "." else ctx)
            return ["bind", m.target, m.source, "context:" + h, m.readonly]
        if m.type == "cache":
            return ["cache", m.target, m.id, m.sharing, m.readonly]
        if m.type == "secret":
            return ["secret", m.target, m.id, m.env]
        if m.type == "ssh":
            return ["ssh", m.target, m.id, m.required, m.uid, m.gid, m.mode]
        return [m.type, m.target, m.size]

    async def _exec(self, sp: StagePlan, state: State, args: list[str], env: list[str], mounts: list[MountSpec],
                    network: str, v: VertexHandle, files: list[tuple[str, bytes]]) -> LayerRecord | None:
        cleanups: list[Callable[[], Awaitable[None]]] = []
        binds: list[tuple[str | Path, str, bool]] = []
        tmpfs: list[tuple[str, str]] = []
        holders: list[Any] = []
        secret_env: list[str] = []
        try:
            for target, content in files:
                path = await asyncio.to_thread(self._script_file, content)
                cleanups.append(functools.partial(asyncio.to_thread, shutil.rmtree, path.parent, True))
                binds.append((path, target, True))
            for m in mounts:
                target = m.target if m.target.startswith("/") else os.path.join(
                    state.config.get("WorkingDir") or "/", m.target)
                if m.type == "tmpfs":
                    tmpfs.append((target, f"size={m.size}" if m.size else ""))
                elif m.type == "bind":
                    if m.from_:
                        src_state = await self._from_state(sp, m.from_)
                        vkey, vdir = await self.s.view(src_state.ref)
                        cleanups.append(functools.partial(self.s.drop_view, vkey, vdir))
                        base = vdir
                    else:
                        base = await self.sources.context()
                    rel = follow_in_scope(base, m.source.lstrip("/") or ".")
                    src = base / rel if rel != "." else base
                    if not os.path.lexists(src):
                        raise not_found(m.source)
                    binds.append((src, target, True))
                elif m.type == "cache":
                    seed = None
                    if m.from_:
                        src_state = await self._from_state(sp, m.from_)
                        vkey, vdir = await self.s.view(src_state.ref)
                        cleanups.append(functools.partial(self.s.drop_view, vkey, vdir))
                        rel = follow_in_scope(vdir, m.source.lstrip("/") or ".")
                        seed_src = vdir / rel if rel != "." else vdir

                        def seed(dst: Path, s: Path = seed_src) -> None:
                            shutil.copytree(s, dst, symlinks=True, dirs_exist_ok=True)
                    cm = self.s.cache_mounts.use(
                        m.id, m.sharing, mode=m.mode if m.mode is not None else 0o755, uid=m.uid or 0,
                        gid=m.gid or 0, description=f"cached mount {m.target} from exec {' '.join(args)}", seed=seed)
                    path = await cm.__aenter__()
                    holders.append(cm)
                    binds.append((path, target, m.readonly))
                elif m.type == "secret":
                    data = await self.sources.secret(m.id)
                    if data is None:
                        if m.required:
                            raise SolveError(f"secret {m.id}: not found")
                        continue
                    if m.env:
                        secret_env.append(f"{m.env}={data.decode(errors='replace')}")
                    if m.target:
                        path = await asyncio.to_thread(self._secret_file, data, m)
                        cleanups.append(functools.partial(asyncio.to_thread, shutil.rmtree, path.parent, True))
                        binds.append((path, target, True))
                elif m.type == "ssh":
                    try:
                        open_agent = await self.sources.ssh_agent(m.id)
                    except DockwrightError as exc:
                        if not m.required:  # optional: the step runs without the socket
                            continue
                        raise SolveError(str(exc)) from None
                    sock = AgentSocket(open_agent, uid=m.uid or 0, gid=m.gid or 0,
                                       mode=m.mode if m.mode is not None else 0o600)
                    cleanups.append(sock.close)
                    binds.append((await sock.start(self.s.secrets_dir), target, False))

            async def run(rootfs: Path) -> None:
                files_ = [b[1] for b in binds if not os.path.isdir(b[0])]  # files, sockets
                stubs = await asyncio.to_thread(_missing_files, rootfs, files_ + list(_ETC_MOUNTS))
                req = ExecRequest(rootfs=rootfs, args=args, env=env + secret_env,
                                  cwd=state.config.get("WorkingDir") or "/", user=state.config.get("User") or "",
                                  network="host" if network == "host" else ("none" if network == "none"
                                                                            else "default"),
                                  binds=binds, tmpfs=tmpfs, extra_hosts=self.opts.extra_hosts)
                code = await self.s.runner.run(req, v.log)
                await asyncio.to_thread(_remove_stubs, rootfs, stubs)
                if code != 0:
                    raise SolveError(f"executor failed running [{' '.join(args)}]: exit code: {code}")

            return await self.s.change(state.ref, run, clamp=self._clamp())
        finally:
            for cm in reversed(holders):
                await cm.__aexit__(None, None, None)
            for c in reversed(cleanups):
                await c()

    def _script_file(self, content: bytes) -> Path:
        d = self.s.secrets_dir / os.urandom(8).hex()
        d.mkdir(parents=True, mode=0o700)
        path = d / "script"
        path.write_bytes(content)
        os.chmod(path, 0o755)
        return path

    def _secret_file(self, data: bytes, m: MountSpec) -> Path:
        d = self.s.secrets_dir / os.urandom(8).hex()
        d.mkdir(parents=True, mode=0o700)
        path = d / "secret"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, m.mode if m.mode is not None else 0o400)
        os.chown(path, m.uid or 0, m.gid or 0)
        return path



#: the files every step's sandbox has mounted from its bundle (stubs runc makes where the rootfs has none)
_ETC_MOUNTS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")


def _missing_files(rootfs: Path, targets: list[str]) -> list[str]:
    """The file mount targets missing in ``rootfs``: runc makes an empty file for each, which BuildKit removes
    after the step (the directories it made stay in the layer, as with dockerd 20.10's BuildKit)."""
    out: list[str] = []
    for t in targets:
        rel = t.strip("/")
        if rel and not os.path.lexists(rootfs / rel):
            out.append(rel)
    return out


def _remove_stubs(rootfs: Path, stubs: list[str]) -> None:
    for rel in stubs:
        path = rootfs / rel
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(path)


