"""BuildKit's and fsutil's protobuf messages and grpclib stubs, generated from proto/ by scripts/gen-proto
(``make proto``): do not edit; the wire must match moby/buildkit and tonistiigi/fsutil."""
