"""Benchmarks: each `bench/bench_*.py` measures a product path against the raw tool doing the same work."""
