"""The OCI distribution / Docker registry v2 client, on aiohttp. It knows no store.

* :mod:`.hosts`: which URLs serve a registry domain (mirrors, insecure registries, certs.d TLS), as dockerd.
* :mod:`.auth`: credentials (``AuthConfig``, ``X-Registry-Auth``), challenges, bearer tokens and basic auth.
* :mod:`.client`: :class:`RegistryClient` and :class:`Repository`: resolve, fetch (ranged, resumed), push
  (monolithic or chunked), mount, tags, login and search.
* :mod:`.errors`: registry error bodies and transport failures worded like dockerd, and the messages of a whole
  pull or push (:func:`pull_error`, :func:`push_error`).

It deals in references, descriptors, bytes and async streams; the engine composes it with the content store.
"""

from __future__ import annotations

from .auth import *  # noqa: F401,F403
from .auth import __all__ as _auth_all
from .client import *  # noqa: F401,F403
from .client import __all__ as _client_all
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all
from .hosts import *  # noqa: F401,F403
from .hosts import __all__ as _hosts_all

__all__ = [*_hosts_all, *_auth_all, *_client_all, *_errors_all]
