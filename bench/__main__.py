"""`make bench`: run every benchmark and print its figures (no asserts: figures are for reading)."""

from __future__ import annotations

import importlib
import sys
import time

SUITES = (
    "bench.matcher",
    "bench.semantic",
    "bench.webhook",
    "bench.handoff",
    "bench.processes",
    "bench.outbox",
)


def main(argv: list[str]) -> int:
    wanted = argv or list(SUITES)
    for name in wanted:
        module = importlib.import_module(name if name.startswith("bench.") else f"bench.{name}")
        print(f"== {module.__name__} ==", flush=True)
        started = time.perf_counter()
        for line in module.run():
            print(line, flush=True)
        print(f"({time.perf_counter() - started:.1f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
