"""`python -m chaos [--only NAME] [--count N] [--seed S]`: run the scenarios and print the table."""

from __future__ import annotations

import argparse
import asyncio
import sys

import chaos.conformance  # noqa: F401
import chaos.fuzz  # noqa: F401  (registers its scenario)
import chaos.outage  # noqa: F401
from chaos.harness import COLUMNS, SCENARIOS, Options, run, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run just this scenario")
    parser.add_argument("--count", type=int, default=10_000, help="inputs per fuzz run (default 10000)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workdir", help="keep the gateway's config, database and log here")
    parser.add_argument("--examples", type=int, default=200, help="schemathesis examples per operation")
    args = parser.parse_args(argv)
    options = Options(
        count=args.count,
        seed=args.seed,
        concurrency=args.concurrency,
        workdir=args.workdir,
        examples=args.examples,
    )
    results = asyncio.run(run(args.only or list(SCENARIOS), options))
    print(table(results))
    for name, result in results.items():
        extra = {k: v for k, v in result.counts.items() if k not in COLUMNS}
        if extra:
            print(f"  {name}: {extra}")
        for example in result.examples[:10]:
            print(f"  {name}: {example}")
    return 0 if all(r.ok for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
