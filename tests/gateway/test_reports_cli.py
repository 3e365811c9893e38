"""`kefu report` and `kefu purge` on a real database, as an operator runs them."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.storage.store import Store
from tests.conftest import TEST_FAQ
from tests.gateway.test_reports_queries import seed


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> str:
    async def prepare() -> None:
        store = Store.from_url(db_url)
        await store.create_all()
        await seed(store)
        await store.dispose()

    asyncio.run(prepare())
    path = tmp_path / "gateway.yaml"
    data = {
        "database": {"url": db_url},
        "kb": {"paths": [str(TEST_FAQ)], "watch": False},
        "business_hours": {"weekly": {"mon-sat": ["08:30-12:00", "13:00-17:30"]}},
        "sla": {"first_response_s": 60},
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_report_prints_csv_of_the_day(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", config, "--from", "2026-11-24", "--to", "2026-11-24"]) == 0
    out, err = capsys.readouterr()
    lines = list(csv.reader(io.StringIO(out)))
    assert lines[0][:3] == ["会话编号", "受理时间", "结束时间"]
    assert [line[1] for line in lines[1:]] == [
        "2026-11-24 09:05:00",
        "2026-11-24 10:00:00",
        "2026-11-24 19:00:00",
    ]
    assert "138****5678" in out and "13812345678" not in out
    assert "3 conversations" in err


def test_report_summary_csv(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["report", "--config", config, "--from", "2026-11-24", "--to", "2026-11-24", "--summary"]) == 0
    )
    rows = {(a, b): c for a, b, c in csv.reader(io.StringIO(capsys.readouterr().out))}
    assert rows[("总量", "会话数")] == "3" and rows[("时效", "首响超时")] == "1"


def test_report_writes_xlsx_that_opens(config: str, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    target = tmp_path / "受理记录.xlsx"
    assert (
        main(["report", "--config", config, "--from", "2026-11-24", "--to", "2026-11-25", "-o", str(target)])
        == 0
    )
    wb = load_workbook(target)
    assert wb.sheetnames == ["受理记录", "汇总"]
    assert wb["受理记录"].max_row == 1 + 3


def test_report_csv_file_has_a_bom_for_excel(config: str, tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    assert (
        main(["report", "--config", config, "--from", "2026-11-24", "--to", "2026-11-24", "-o", str(target)])
        == 0
    )
    assert target.read_bytes().startswith("\ufeff会话编号".encode())


def test_report_rejects_a_bad_range(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--config", config, "--from", "24/11/2026"]) == 2
    assert "--from" in capsys.readouterr().err
    assert main(["report", "--config", config, "--from", "2026-11-25", "--to", "2026-11-24"]) == 2


def test_purge_needs_a_retention(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["purge", "--config", config]) == 2
    assert "retention" in capsys.readouterr().err


def test_purge_dry_run_then_for_real(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["purge", "--config", config, "--before", "2026-11-24", "--dry-run"]) == 0
    assert "would delete 1 conversations and 1 messages" in capsys.readouterr().out
    # Everything finished before December goes; the waiting 留言 stays whatever its age.
    assert main(["purge", "--config", config, "--before", "2026-12-01"]) == 0
    assert "deleted 3 conversations" in capsys.readouterr().out
    assert main(["report", "--config", config, "--from", "2026-11-23", "--to", "2026-11-24"]) == 0
    out = capsys.readouterr().out
    assert len(list(csv.reader(io.StringIO(out)))) == 2  # header + the waiting 留言


def test_purge_by_days_keeps_recent_conversations(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The seeded day lies in the past or the near future of the test run; 5000 days back keeps all of it.
    assert main(["purge", "--config", config, "--days", "5000"]) == 0
    assert "deleted 0 conversations" in capsys.readouterr().out
    assert main(["purge", "--config", config, "--before", "soon"]) == 2


def test_xlsx_export_survives_control_characters_in_customer_text(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from gateway.report_files import write_records_xlsx
    from handoff.reports import RECORD_COLUMNS, RecordRow

    values = tuple(
        "\x1b[31m红色\x00" if i == 5 else "=1+1" if i == 4 else "" for i in range(len(RECORD_COLUMNS))
    )
    target = tmp_path / "r.xlsx"
    write_records_xlsx([RecordRow("1", values, False, None)], None, str(target))
    row = [c.value for c in load_workbook(target)["受理记录"][2]]
    assert row[5] == "[31m红色" and row[4] == "'=1+1"
