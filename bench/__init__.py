"""Benchmarks: ``python -m bench`` (throughput, latency, memory) and ``python -m bench.stories`` (story
grouping quality). What each measures and the recorded results: bench/README.md."""
