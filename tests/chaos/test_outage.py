"""The short form of `make chaos`'s api-outage: 3 customers, 10 simulated minutes of a failing 客服消息 API."""

from __future__ import annotations

from pathlib import Path

from chaos.harness import Options, table
from chaos.outage import run_outage


async def test_ten_simulated_minutes_of_api_failures_lose_double_and_shuffle_nothing(tmp_path: Path) -> None:
    result = await run_outage(Options(workdir=str(tmp_path)), customers=3)
    counts = result.counts
    assert counts["inputs"] == 30 and counts["simulated_minutes"] >= 10, counts
    assert (counts["lost"], counts["doubled"], counts["never_answered"]) == (0, 0, 0), (
        table({"api-outage": result}),
        result.examples,
    )
    assert counts["out_of_order_customers"] == 0, counts
    # Every kind of failure was met (500, hang, -1, 45009), past max_attempts: the slow schedule delivered.
    assert min(counts[f"api_{kind}"] for kind in ("status", "hang", "busy", "rate")) > 0, counts
