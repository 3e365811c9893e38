"""The short form of `make chaos`'s PostgreSQL scenarios: a PostgreSQL of its own (initdb, own port) restarted
and frozen mid-burst under a real `kefu serve`; 60 signed WeChat texts each."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.harness import Options, table
from chaos.postgres import pg_freeze, pg_restart


@pytest.mark.parametrize("scenario", [pg_restart, pg_freeze], ids=["restart", "freeze"])
async def test_postgres_restarted_or_frozen_mid_burst_loses_nothing(tmp_path: Path, scenario) -> None:
    result = await scenario(Options(count=60, workdir=str(tmp_path)))
    assert result.ok, (table({"pg": result}), result.examples[:10])
    assert result.counts["acked"] >= 55, result.counts  # nearly all acknowledged: the spool took them
    assert result.counts["doubled"] == 0, result.counts
