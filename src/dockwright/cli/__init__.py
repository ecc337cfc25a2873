"""Command line: ``dockwright serve`` (dockerd's flag names and daemon.json keys) and ``dockwright fsck``."""
