"""The OCI distribution / Docker registry v2 client, on aiohttp. It knows no store.

* :mod:`.http`: the factory of every outbound aiohttp session (timeouts, limits, User-Agent, proxies, certs.d TLS).
* :mod:`.hosts`: which URLs serve a registry domain (mirrors, insecure registries, certs.d TLS), as dockerd.
* :mod:`.auth`: credentials (``AuthConfig``, ``X-Registry-Auth``), bearer tokens and basic auth;
  :mod:`.challenges`: ``WWW-Authenticate`` parsing.
* :mod:`.transport`: the client's session, pings and the TLS-or-plain-HTTP settling of insecure registries.
* :mod:`.repository`: a repository's endpoints (fallthrough as dockerd) and its authorized requests.
* :mod:`.manifests`, :mod:`.blobs`, :mod:`.upload`: resolve/fetch/put manifests and tags; ranged, resumed blob
  reads; mounts and monolithic, chunked or streamed uploads.
* :mod:`.client`: :class:`RegistryClient` (repositories, login, search) and :class:`Repository`.
* :mod:`.errors`: registry error bodies and transport failures worded like dockerd, and the messages of a whole
  pull or push (:func:`pull_error`, :func:`push_error`).

It deals in references, descriptors, bytes and async streams; the engine composes it with the content store.
"""

from __future__ import annotations

from .auth import *  # noqa: F401,F403
from .auth import __all__ as _auth_all
from .challenges import *  # noqa: F401,F403
from .challenges import __all__ as _challenges_all
from .client import *  # noqa: F401,F403
from .client import __all__ as _client_all
from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all
from .hosts import *  # noqa: F401,F403
from .hosts import __all__ as _hosts_all
from .http import *  # noqa: F401,F403
from .http import __all__ as _http_all
from .manifests import *  # noqa: F401,F403
from .manifests import __all__ as _manifests_all

__all__ = [*_http_all, *_hosts_all, *_auth_all, *_challenges_all, *_client_all, *_manifests_all, *_errors_all]
