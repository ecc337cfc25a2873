"""The base of the services that talk to registries (pull, push): the image service, content store, metadata, event
bus and registry client they work with."""

from __future__ import annotations

from ..content.store import ContentStore
from ..distribution import RegistryClient
from ..metadata.db import MetadataDB
from .events import EventBus
from .images.service import ImagesService

__all__ = ["RegistryService"]


class RegistryService:
    """Holds what pulling and pushing work with: images, the content store, the metadata, events, the client."""

    def __init__(self, images: ImagesService, content: ContentStore, db: MetadataDB, events: EventBus,
                 client: RegistryClient) -> None:
        self.images = images
        self.content = content
        self.db = db
        self.events = events
        self.client = client
