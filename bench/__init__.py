"""Benchmarks run against the local infrastructure (``make bench-*``); see ``bench/README.md``."""
