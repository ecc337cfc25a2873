"""Images in the store: one service (``service.ImagesService``: leases, resolve, import, commit, tag, get, and the
way to pull, push, save and load) with ``listing`` (list, history), ``removal`` (rmi, prune) and ``importer``
(import sources: a path, a file, async chunks or a URL)."""

from __future__ import annotations

from .service import ImagesService

__all__ = ["ImagesService"]
