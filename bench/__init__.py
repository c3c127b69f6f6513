"""Benchmarks and workload drivers for hoodydb: `python -m bench [contention|single] [--quick]`."""
