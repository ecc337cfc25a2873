"""Tar streams, read and written the way Go's ``archive/tar`` (dockerd, containerd) does.

``headers`` parses header fields (numbers, checksums, PAX records, entry names); ``reader`` is the streaming
push parser layers and build contexts go through (:class:`~.reader.TarInspector`, held to extraction's rules);
``walker`` walks a whole archive for ``docker load`` (:class:`~.walker.TarWalker`, bodies to the caller's sinks);
``members`` opens a tar stream for the extractors' members (:mod:`tarfile`, as Go reads); ``writer`` makes every
header the project writes (layers, ``docker save``, ``docker cp``).  A base package: it imports only
:mod:`dockwright.errors`.
"""
