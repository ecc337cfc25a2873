"""``dockwright`` command line entry point (the console script): ``serve`` (:mod:`.serve`, configured by
:mod:`.config`) and ``fsck``, which checks a stopped data root and removes what a crash left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from ..engine.config import EngineConfig
from ..engine.engine import Engine
from ..errors import Unavailable
from .config import ConfigError, build_parser, merge_options
from .serve import serve

__all__ = ["main"]


def _setup_logging(level: str) -> None:
    lv = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
          "fatal": logging.CRITICAL}.get(level, logging.INFO)
    logging.basicConfig(level=lv, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr,
                        force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING if lv > logging.DEBUG else logging.DEBUG)


def _fsck(args: argparse.Namespace) -> int:
    try:
        engine = Engine.__new__(Engine)
        Engine.__init__(engine, EngineConfig(data_root=Path(args.data_root)))
    except Unavailable as exc:
        print(f"dockwright fsck: {exc}", file=sys.stderr)
        return 1
    rep = engine.startup_report
    print(f"orphan blobs removed: {len(rep['orphan_blobs'])}")
    print(f"unfinished ingests removed: {len(rep['ingests'])}")
    print(f"missing blobs: {len(rep['missing_blobs'])}")
    for d in rep["missing_blobs"]:
        print(f"  missing {d}")
    engine.close()
    return 1 if rep["missing_blobs"] else 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` when None); the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "fsck":
        _setup_logging("info")
        return _fsck(args)
    try:
        _setup_logging("info")
        opts = merge_options(args)
        _setup_logging(opts["log_level"])
        return asyncio.run(serve(opts, fsync=not args.no_fsync))
    except ConfigError as exc:
        print(f"dockwright: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
