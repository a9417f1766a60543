"""Benchmarks of the serving path against the peers users would pick instead (`sentinel bench
serve`), of the sidecar's cost (`bench monitor`) and of version swaps under load (`bench swap`).
Each command writes its tables into docs/benchmarks.md."""
