"""`kefu shifts check` and `kefu report agents` on a real database, as an operator runs them."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from gateway.cli import main
from gateway.storage.shifts_store import add_shift
from gateway.storage.store import Store
from tests.conftest import TEST_FAQ
from tests.gateway.test_reports_queries import seed

TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> str:
    async def prepare() -> None:
        store = Store.from_url(db_url)
        await store.create_all()
        await seed(store)  # 小王 (agent id 1) served a conversation on 2026-11-24
        await store.dispose()

    asyncio.run(prepare())
    path = tmp_path / "gateway.yaml"
    data = {
        "database": {"url": db_url},
        "kb": {"paths": [str(TEST_FAQ)], "watch": False},
        "business_hours": {
            "weekly": {"mon-fri": ["09:00-18:00"]},
            "groups": {"售后": {"weekly": {"sat": ["09:00-12:00"]}}},
        },
        "handoff": {"default_group": "售后", "groups": [{"name": "售后"}]},
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def shift(url: str, day: int, start: int, end: int) -> None:
    async def run() -> None:
        store = Store.from_url(url)
        try:
            at = datetime(2026, 11, day, tzinfo=TZ)
            await add_shift(store, 1, "售后", at.replace(hour=start), at.replace(hour=end), by="test", at=at)
        finally:
            await store.dispose()

    asyncio.run(run())


def test_shifts_check_lists_gaps_and_passes_once_covered(
    config: str, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["shifts", "check", "--config", config, "--from", "2026-11-28", "--to", "2026-11-28"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == ["11月28日（周六）09:00–12:00 售后组无人值班"]
    assert "1 处无人值班" in err
    shift(db_url, 28, 9, 11)
    assert main(argv) == 1
    assert capsys.readouterr().out.splitlines() == ["11月28日（周六）11:00–12:00 售后组无人值班"]
    shift(db_url, 28, 11, 13)
    assert main(argv) == 0
    assert "排班已覆盖全部服务时间" in capsys.readouterr().out
    assert main(["shifts", "check", "--config", config, "--group", "VIP"]) == 2


def test_report_agents_json_and_xlsx(config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from openpyxl import load_workbook

    out = tmp_path / "agents.json"
    argv = ["report", "agents", "--config", config, "--from", "2026-11-24", "--to", "2026-11-24"]
    assert main([*argv, "--format", "json", "--output", str(out)]) == 0
    body = json.loads(out.read_text(encoding="utf-8"))
    (wang,) = [r for r in body["rows"] if r["agent"] == "小王"]
    assert wang["conversations"] >= 1 and wang["messages"] >= 1
    xlsx = tmp_path / "agents.xlsx"
    assert main([*argv, "--output", str(xlsx)]) == 0
    wb = load_workbook(xlsx)
    assert wb["客服绩效"]["A1"].value == "客服" and wb["客服绩效"]["A2"].value == "小王"
    assert "agents" in capsys.readouterr().err
    assert main(["report", "--config", config, "--format", "json"]) == 2
