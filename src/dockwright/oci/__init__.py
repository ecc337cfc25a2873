"""Typed OCI data: digests, media types, descriptors, platforms and image configs. Knows no storage."""

from __future__ import annotations

from .descriptor import *  # noqa: F401,F403
from .descriptor import __all__ as _desc_all
from .digest import *  # noqa: F401,F403
from .digest import __all__ as _digest_all
from .mediatypes import *  # noqa: F401,F403
from .mediatypes import __all__ as _mt_all
from .platform import *  # noqa: F401,F403
from .platform import __all__ as _plat_all

__all__ = [*_digest_all, *_mt_all, *_desc_all, *_plat_all]
