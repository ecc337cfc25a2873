"""BuildKit (``POST /build?version=2``, ``/session``, ``/grpc``): the client session's transport and services, the
Dockerfile frontend with BuildKit's semantics, and the solver that runs its steps on the engine's stores."""
