"""`GET /api/v1/reports/records?from=&to=&format=csv|xlsx|json`: the 受理记录 for supervisors and admins.

`from`/`to` are dates (`2026-11-24`, a `to` date counts as the whole day) or ISO times; naive values are
in the business-hours time zone. Default: today so far. At most 92 days per request. Authorised by an
agent token whose role is supervisor or admin, or by `admin.token`.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, time, timedelta
from typing import Any

from aiohttp import web

from gateway.http.auth import require_supervisor
from gateway.http.bodies import http_error
from gateway.keys import RUNTIME
from gateway.norms import entry_lookup, group_hours, sla_policy
from gateway.report_files import write_records_xlsx
from gateway.runtime import Runtime
from gateway.storage.report_queries import conversation_records
from handoff.reports import (
    RECORD_COLUMNS,
    build_rows,
    parse_bound,
    summarize,
    summary_table,
    write_records_csv,
)
from intents.normalize import normalize

__all__ = ["report_routes"]

MAX_RANGE = timedelta(days=92)
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def report_routes() -> list[web.AbstractRouteDef]:
    """The reports endpoints."""
    return [web.get("/api/v1/reports/records", records_view)]


async def records_view(request: web.Request) -> web.StreamResponse:
    """The 受理记录 of a range as CSV (default), XLSX (with the 汇总 sheet) or JSON (rows and summary)."""
    who = (await require_supervisor(request)).who
    runtime: Runtime = request.app[RUNTIME]
    settings = runtime.settings
    hours = group_hours(settings).default
    tz = hours.timezone
    now = datetime.now(UTC)
    fmt = request.query.get("format", "csv")
    if fmt not in ("csv", "xlsx", "json"):
        raise http_error(web.HTTPBadRequest, f"format must be csv, xlsx or json, got {fmt!r}")
    for name in ("from", "to"):
        value = request.query.get(name)
        if value is not None and not _BOUND.fullmatch(value):
            raise http_error(
                web.HTTPBadRequest, f"{name} must be a date (2026-11-24) or time (2026-11-24T09:00)"
            )
    try:
        start = parse_bound(request.query.get("from"), tz, end=False)
        end = parse_bound(request.query.get("to"), tz, end=True) or now
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, str(exc).replace("--", "")) from None
    start = start or datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)
    if start >= end:
        raise http_error(web.HTTPBadRequest, "from must be before to")
    if end - start > MAX_RANGE:
        raise http_error(web.HTTPBadRequest, f"the range may span at most {MAX_RANGE.days} days")
    snapshot = runtime.kb.snapshot()
    records = await conversation_records(
        runtime.store, start, end, entries=entry_lookup(snapshot[0] if snapshot else None)
    )
    options: dict[str, Any] = {
        "tz": tz,
        "sla": sla_policy(settings),
        "hours": hours,
        "now": now,
        "mask": settings.privacy.mask_exports,
    }
    await runtime.store.audit(
        "report_export", who, {"from": start.isoformat(), "to": end.isoformat(), "format": fmt}
    )
    name = f"kefu-records-{start.astimezone(tz):%Y%m%d}-{(end - timedelta(seconds=1)).astimezone(tz):%Y%m%d}"
    if fmt == "json":
        # Building rows and clustering unanswered questions are CPU-bound: off the event loop.
        rows, summary = await asyncio.to_thread(_rows_and_summary, records, options)
        body = {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "columns": list(RECORD_COLUMNS),
            "rows": [[_json_cell(v) for v in row.values] for row in rows],
            "summary": [list(item) for item in summary_table(summary)],
            "first_response_breaches": summary.first_response_breaches,
            "satisfaction": asdict(summary.satisfaction),
            "truncated": summary.unanswered_truncated,
        }
        return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False, default=str))
    if fmt == "xlsx":
        # openpyxl is CPU-bound for a month of rows: off the event loop.
        data = await asyncio.to_thread(_xlsx, records, options)
        return web.Response(
            body=data,
            content_type=XLSX_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    text = io.StringIO()
    write_records_csv(await asyncio.to_thread(build_rows, records, **options), text, bom=True)
    return web.Response(
        body=text.getvalue().encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# A date, or a date and time with an optional offset; as the OpenAPI document says (no "" or "20261124").
_BOUND = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?"
)


def _rows_and_summary(records: list[Any], options: dict[str, Any]) -> tuple[list[Any], Any]:
    return build_rows(records, **options), summarize(records, **options, normalize=normalize)


def _xlsx(records: list[Any], options: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    write_records_xlsx(
        build_rows(records, **options), summarize(records, **options, normalize=normalize), buffer
    )
    return buffer.getvalue()


def _json_cell(value: Any) -> Any:
    return value.isoformat(sep=" ") if isinstance(value, datetime) else value
