"""Development tools: `make run`'s launcher, the process supervisor the benchmarks and tests
share, health probes and the README's configuration table. Nothing here ships in the
service images (they carry `hitl/`, the runtime plumbing, and their own service)."""
