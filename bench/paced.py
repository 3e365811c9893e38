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

# Texts new to the embedder cost the semantic stage ~16-19 ms of CPU each (one text per core at a time):
# two cores hold ~100 a second beside the rest of kefu, so that mix is paced at a rate they sustain (at
# PACED_RATE its backlog would only grow until the client's timeouts).
SEMANTIC_NOVEL_RATE = 50
# The bot-only paced phases: (label, account, safe mode, every text new, semantic stage on, rate); the
# last one is new to the embedder too, and not one of issue 14's targets.
PACED_MIXES = (
    ("plaintext", "plain", False, False, True, PACED_RATE),
    ("safe", "safe", True, False, True, PACED_RATE),
    ("every text new, lexical", "plain", False, True, False, PACED_RATE),
    ("every text new, semantic", "plain", False, True, True, SEMANTIC_NOVEL_RATE),
)
_RATES = {mix[0]: mix[5] for mix in PACED_MIXES}
_NOT_TARGETS = frozenset({"every text new, semantic"})


def run_paced(tmp: Path, api_base: str) -> tuple[list[str], dict[str, Result]]:
    """The paced phases, each on a fresh server (a saturating open-loop run leaves a backlog behind:
    handlers keep running after the client gives up), with the server's CPU per answered message."""
    lines: list[str] = []
    results: dict[str, Result] = {}
    for i, (label, account, safe, distinct, semantic, rate) in enumerate(PACED_MIXES):
        directory = tmp / f"paced-{i}"
        with _server("kefu", _write_config(directory, api_base, semantic=semantic)) as base:
            asyncio.run(_closed(base, account, safe, WARMUP_REQUESTS, customers="w"))
            novel = distinct and semantic  # new to the embedding memo too
            phase = _paced(base, account, safe, rate, distinct=distinct, customers="p", novel=novel)
            result, ms = measured(base, phase)
        results[label] = result
        queued = _queued(directory / "kefu.db", "p")
        lines.append(
            f"{_fmt(f'kefu paced {rate}/s, {label}', result)}   CPU {ms:.2f} ms/msg   queued {queued}"
        )
    return lines, results


def p99_verdicts(results: dict[str, Result]) -> list[str]:
    lines = []
    for label, result in results.items():
        p99 = result.pct(0.99)
        verdict = "meets" if p99 <= TARGET_P99_MS else "ABOVE"
        extra = ", not a target" if label in _NOT_TARGETS else ""
        lines.append(
            f"p99 at {_RATES[label]} msg/s, {label}: {p99:.1f} ms (achieved {result.throughput:.0f} msg/s; "
            f"{verdict} the {TARGET_P99_MS:.0f} ms target{extra})"
        )
    return lines


def run_paced_only() -> list[str]:
    """`--paced-only`: the bot-only paced phases alone."""
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp, _server("api", None) as api_base:
        lines, results = run_paced(Path(tmp), api_base)
    return lines + p99_verdicts(results)
