"""The bot-only paced phases of the webhook bench: PACED_RATE messages a second, open loop, each mix on a
fresh `kefu serve` after a warm-up (its start-up is not the steady state: the first sight of each text costs
the semantic stage an embedding), with the server's CPU per answered message and the customers it queued.

    python -m bench.webhook --paced-only      # these alone (KEFU_BENCH_PACED_SECONDS shortens them)
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from bench.webhook import (
    PACED_RATE,
    TARGET_P99_MS,
    WARMUP_REQUESTS,
    Result,
    _closed,
    _fmt,
    _paced,
    _queued,
    _server,
    _write_config,
    measured,
)

# The bot-only paced phases: (label, account, safe mode, every text new, semantic stage on).
PACED_MIXES = (
    ("plaintext", "plain", False, False, True),
    ("safe", "safe", True, False, True),
    ("every text new, lexical", "plain", False, True, False),
    ("every text new, semantic", "plain", False, True, True),
)


def run_paced(tmp: Path, api_base: str) -> tuple[list[str], dict[str, Result]]:
    """The paced phases at PACED_RATE: each on a fresh server (a saturating open-loop run leaves a backlog
    behind: handlers keep running after the client gives up), with the server's CPU per answered message."""
    lines: list[str] = []
    results: dict[str, Result] = {}
    for i, (label, account, safe, distinct, semantic) in enumerate(PACED_MIXES):
        directory = tmp / f"paced-{i}"
        with _server("kefu", _write_config(directory, api_base, semantic=semantic)) as base:
            asyncio.run(_closed(base, account, safe, WARMUP_REQUESTS, customers="w"))
            result, ms = measured(base, _paced(base, account, safe, distinct=distinct, customers="p"))
        results[label] = result
        queued = _queued(directory / "kefu.db", "p")
        lines.append(
            f"{_fmt(f'kefu paced {PACED_RATE}/s, {label}', result)}   CPU {ms:.2f} ms/msg   queued {queued}"
        )
    return lines, results


def p99_verdicts(results: dict[str, Result]) -> list[str]:
    lines = []
    for label, result in results.items():
        p99 = result.pct(0.99)
        verdict = "meets" if p99 <= TARGET_P99_MS else "ABOVE"
        extra = "" if label != "every text new, semantic" else ", not a target"
        lines.append(
            f"p99 at {PACED_RATE} msg/s, {label}: {p99:.1f} ms (achieved {result.throughput:.0f} msg/s; "
            f"{verdict} the {TARGET_P99_MS:.0f} ms target{extra})"
        )
    return lines


def run_paced_only() -> list[str]:
    """`--paced-only`: the bot-only paced phases alone."""
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp, _server("api", None) as api_base:
        lines, results = run_paced(Path(tmp), api_base)
    return lines + p99_verdicts(results)
