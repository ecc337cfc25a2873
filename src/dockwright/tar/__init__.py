"""Tar streams, read and written the way Go's ``archive/tar`` (dockerd, containerd) does.

``headers`` parses header fields (numbers, checksums, PAX records, entry names); ``reader`` is the streaming
push parser every tar in the project goes through (:class:`~.reader.TarInspector`: layers, build contexts) and
the outer-archive walker of ``docker load``; ``writer`` makes every header the project writes (layers, ``docker
save``, ``docker cp``).  A base package: it imports only :mod:`dockwright.errors`.
"""
