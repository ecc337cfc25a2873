"""Containers: one service (``service.ContainersService``) built as stages — ``base`` (dependencies, records in
memory, paths), ``create``, ``lifecycle`` (start, exit, wait, kill, stop, pause), ``removal`` (rm, prune) — with
``record`` (the container record and its typed views), ``config`` (create bodies, HostConfig defaults, names),
``top`` (ps), and ``fs``/``fs_view``/``fs_tar``/``fs_untar`` (docker cp and export of a container's files)."""

from __future__ import annotations

from .service import ContainersService

__all__ = ["ContainersService"]
