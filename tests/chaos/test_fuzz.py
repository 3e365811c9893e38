"""The short form of `make chaos`'s fuzz: 500 malformed inputs against a real `kefu serve` subprocess."""

from __future__ import annotations

from pathlib import Path

from chaos.fuzz import run_fuzz
from chaos.harness import Options, table


async def test_500_malformed_inputs_get_no_5xx_no_traceback_and_no_hang(tmp_path: Path) -> None:
    result, tally = await run_fuzz(Options(count=500, seed=2026, concurrency=8, workdir=str(tmp_path)))
    assert result.counts["inputs"] >= 500
    assert (result.counts["5xx"], result.counts["tracebacks"], result.counts["hangs>5s"]) == (0, 0, 0), (
        table({"fuzz": result}),
        result.examples,
    )
    # The inputs reached the parsers: most were refused with a 4xx, some were valid enough to be answered.
    assert sum(n for status, n in tally.statuses.items() if 400 <= status < 500) > 100
    assert tally.statuses[200] > 10
