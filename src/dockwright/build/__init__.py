"""The classic builder: build contexts, .dockerignore, COPY/ADD sources and their checksums."""
