"""The agent KPI report (绩效) of a period: gathered from storage, computed by handoff.kpis, laid out as
JSON, CSV or XLSX. Shared by `GET /api/v1/reports/agents` and `kefu report agents`."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from gateway.norms import group_hours, sla_policy
from gateway.settings import Settings
from gateway.storage import Store
from gateway.storage.kpi_queries import agent_message_counts, agent_names, presence_intervals, transfers
from gateway.storage.qa_store import list_results
from gateway.storage.report_queries import conversation_records
from gateway.storage.shifts_store import list_shifts
from handoff.kpis import KPI_COLUMNS, KpiRow, QaResult, agent_kpis, group_kpis, kpi_table, write_kpis_csv
from handoff.routing import RoutingRules
from handoff.shifts import ShiftSpan, attendance

__all__ = ["KpiReport", "build_kpi_report", "group_names_of", "kpi_csv", "kpi_xlsx"]


@dataclass(frozen=True, slots=True)
class KpiReport:
    """Agent and group rows of one period."""

    start: datetime
    end: datetime
    agents: list[KpiRow]
    groups: list[KpiRow]

    def as_json(self) -> dict[str, Any]:
        """JSON-ready: `rows` (one per agent, named) and `groups`."""
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "columns": list(KPI_COLUMNS),
            "rows": [{"agent": r.name, **r.as_dict()} for r in self.agents],
            "groups": [{"group": r.name, **r.as_dict()} for r in self.groups],
        }


async def build_kpi_report(
    store: Store, settings: Settings, start: datetime, end: datetime, *, now: datetime, group_names: list[str]
) -> KpiReport:
    """Every agent's and group's KPIs for conversations started in [start, end)."""
    hours = group_hours(settings)
    sla = sla_policy(settings)
    records = await conversation_records(store, start, end)
    names = await agent_names(store)
    ids_by_name = {name: aid for aid, name in names.items()}
    messages_by_name = await agent_message_counts(store, start, end)
    messages = {ids_by_name[n]: c for n, c in messages_by_name.items() if n in ids_by_name}
    moved = await transfers(store, start, end)
    presence = await presence_intervals(store, start, end, now=now)
    grace = timedelta(minutes=settings.shifts.attendance_grace_minutes)
    kept = []
    for row in await list_shifts(store, start, end):
        # Keyed by agent id like the conversation records, so one agent is one row.
        span = ShiftSpan(str(row.agent_id), row.group, row.start, row.end, row.breaks, id=str(row.id))
        kept.append(attendance(span, presence.get(str(row.agent_id), []), now=now, grace=grace))
    qa = [
        QaResult(str(r.conversation_id), str(r.agent_id), r.score, r.flagged, r.group)
        for r in await list_results(store, start, end)
        if r.agent_id is not None
    ]
    options: dict[str, Any] = {"now": now, "sla": sla, "hours": hours.default}
    agents = agent_kpis(
        records, agents=names, agent_messages=messages, transfers=moved, attendance=kept, qa=qa, **options
    )
    groups = group_kpis(records, groups=group_names, transfers=moved, attendance=kept, qa=qa, **options)
    return KpiReport(start, end, agents, groups)


def group_names_of(settings: Settings) -> list[str]:
    """The configured skill groups (for `kefu report agents`, which has no running handoff service)."""
    data = settings.handoff
    rules = RoutingRules.from_config({"groups": data.groups, "default_group": data.default_group})
    return list(rules.group_names)


def kpi_csv(report: KpiReport) -> bytes:
    """The agent rows as CSV (UTF-8 with BOM for Excel)."""
    text = io.StringIO()
    write_kpis_csv(report.agents, text, bom=True)
    return text.getvalue().encode("utf-8")


def kpi_xlsx(report: KpiReport, out: IO[bytes]) -> None:
    """An .xlsx with a 客服绩效 sheet and a 技能组绩效 sheet."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    sheets = ((wb.active, "客服绩效", report.agents, "客服"), (None, "技能组绩效", report.groups, "技能组"))
    for ws, title, rows, first in sheets:
        ws = ws or wb.create_sheet(title)
        ws.title = title
        ws.append([first, *KPI_COLUMNS[1:]])
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for values in kpi_table(rows):
            ws.append(list(values))
        ws.column_dimensions["A"].width = 14
        ws.freeze_panes = "B2"
    wb.save(out)
