"""The classic builder (``POST /build``): the step executor (:mod:`.executor`) with its RUN (:mod:`.run`) and
COPY/ADD (:mod:`.addcopy`) steps, the build cache's policy (:mod:`.cache`), build contexts and ``.dockerignore``
(:mod:`.context`, :mod:`.extract`), and dockerd's source checksums (:mod:`.srchash`) and ADD URLs (:mod:`.remote_add`).
It stands on :mod:`..dockerfile` and the layers below; what it needs from the engine's services is :mod:`.deps`."""
