"""Streaming writer and reader for ``docker save`` / ``docker load`` archives.

``save`` streams images as a Docker 25+ archive (OCI image layout plus manifest.json) from blob streams; ``load``
(walked and spooled by ``spool``, read by ``manifests`` and ``legacy``, results in ``results``) reads every format
``docker load`` accepts (Docker 25+, legacy ≤ 24, pre-1.10, pure OCI layouts; plain or compressed) in one pass,
committing layer blobs to a content store. The package deals in descriptors and blob streams; it knows no metadata
database, names store or HTTP.
"""

from __future__ import annotations

from .load import read_archive
from .results import JSON_LIMIT, ArchiveError, LoadedImage, LoadedLayer, LoadResult
from .save import SaveImage, SaveLayer, write_save

__all__ = [
    "ArchiveError",
    "JSON_LIMIT",
    "LoadResult",
    "LoadedImage",
    "LoadedLayer",
    "SaveImage",
    "SaveLayer",
    "read_archive",
    "write_save",
]
