"""Benchmarks run by `make bench`; each module exposes `run() -> list[str]` (lines to print)."""
