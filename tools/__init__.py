"""Development and command-line tools: `make run`'s launcher, the process supervisor the
benchmarks and tests share, health probes, the documented configuration table, and
`make predict`. Nothing here ships in the service images (they carry `hitl/`, the runtime
plumbing, and their own service)."""
