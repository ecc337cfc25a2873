"""Layer formats: the compression of layer blobs and the tar streams inside them.

``compression`` detects, decompresses and compresses layer blobs (gzip, bzip2, xz, zstd) and maps
layer media types to compressions (the tar streams themselves are read and written by :mod:`dockwright.tar`);
``ingest`` turns a layer stream into a stored blob and ``verify`` checks one without storing its tar;
``extract`` is the one hardened tar extractor, ``apply`` unpacks a layer into a snapshot with it (overlay
whiteouts) and ``diff`` turns an
overlay upper directory back into a layer (``.wh.`` whiteouts, opaque directories).
"""
