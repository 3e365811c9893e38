"""绩效 and 质检 over HTTP.

- `GET /api/v1/reports/agents?from=YYYY-MM-DD&to=YYYY-MM-DD&format=json|csv|xlsx`: one row per agent (and,
  in JSON, per group) for conversations started in the range (supervisors);
- `GET /api/v1/qa?from=&to=&flagged=1&review=open|confirmed|dismissed`: 质检 results of conversations
  whose human part ended in the range, lowest score first, each with its `conversation_id` and the rules
  hit (supervisors);
- `GET /api/v1/qa/{conversation_id}`: one result with the conversation's messages (masked) and the hits;
- `POST /api/v1/qa/{conversation_id}/review` `{"action": "confirm"|"dismiss", "note"}`: a supervisor's
  decision on a flag, kept on the result and in the audit log; 409 when it was decided already;
- `POST /api/v1/qa/check` `{"text", "first_reply"?, "closing"?}`: the console's draft check (any agent);
- `GET /api/v1/qa/rules`: the rules in use and the problems of the last load of config/qa.yaml.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

from aiohttp import web

from gateway.http.auth import require_supervisor, resolve
from gateway.http.bodies import http_error, path_id, read_json
from gateway.http.expect import body_capped, capped_limit
from gateway.keys import HANDOFF, QA, RUNTIME
from gateway.kpi_report import build_kpi_report, kpi_csv, kpi_xlsx
from gateway.norms import group_hours
from gateway.runtime import Runtime
from gateway.storage import qa_store
from handoff.privacy import mask_sensitive
from handoff.qa import check_draft
from handoff.reports import parse_bound

__all__ = ["qa_routes"]

MAX_RANGE = timedelta(days=92)
MAX_BODY = 64 * 1024  # a 2,000-character draft of \uXXXX escapes fits (24 KiB)
MAX_DRAFT = 2000
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_body_limit = capped_limit(MAX_BODY)


def qa_routes() -> list[web.AbstractRouteDef]:
    """The 绩效 and 质检 endpoints."""
    return [
        web.get("/api/v1/reports/agents", agents_report_view),
        web.get("/api/v1/qa", list_view),
        web.get("/api/v1/qa/rules", rules_view),
        web.get("/api/v1/qa/{id:[0-9]+}", detail_view),
        *body_capped(
            _body_limit,
            [
                web.post("/api/v1/qa/check", check_view),
                web.post("/api/v1/qa/{id:[0-9]+}/review", review_view),
            ],
        ),
    ]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def _range(request: web.Request, runtime: Runtime) -> tuple[datetime, datetime]:
    """from/to (dates or ISO times, a `to` date is the whole day); default: yesterday."""
    tz = group_hours(runtime.settings).default.timezone
    try:
        start = parse_bound(request.query.get("from"), tz, end=False)
        end = parse_bound(request.query.get("to"), tz, end=True)
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, str(exc).replace("--", "")) from None
    if start is None:
        today = datetime.now(UTC).astimezone(tz).date()
        start = datetime.combine(today - timedelta(days=1), time(0), tzinfo=tz)
    end = end or start + timedelta(days=1)
    if start >= end:
        raise http_error(web.HTTPBadRequest, "from must be before to")
    if end - start > MAX_RANGE:
        raise http_error(web.HTTPBadRequest, f"the range may span at most {MAX_RANGE.days} days")
    return start, end


async def agents_report_view(request: web.Request) -> web.StreamResponse:
    """The agent KPI table as JSON (rows naming each agent), CSV or XLSX."""
    caller = await require_supervisor(request)
    runtime: Runtime = request.app[RUNTIME]
    fmt = request.query.get("format", "json").lower()
    if fmt not in ("json", "csv", "xlsx"):
        raise http_error(web.HTTPBadRequest, f"format must be json, csv or xlsx, got {fmt!r}")
    start, end = _range(request, runtime)
    groups = list(request.app[HANDOFF].rules.group_names)
    report = await build_kpi_report(
        runtime.store, runtime.settings, start, end, now=datetime.now(UTC), group_names=groups
    )
    await runtime.store.audit(
        "report_agents", caller.who, {"from": start.isoformat(), "to": end.isoformat(), "format": fmt}
    )
    if fmt == "json":
        return _json(report.as_json())
    tz = group_hours(runtime.settings).default.timezone
    name = f"kefu-agents-{start.astimezone(tz):%Y%m%d}-{(end - timedelta(seconds=1)).astimezone(tz):%Y%m%d}"
    if fmt == "csv":
        return web.Response(
            body=kpi_csv(report),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    buffer = io.BytesIO()
    await asyncio.to_thread(kpi_xlsx, report, buffer)  # openpyxl is CPU-bound: off the loop
    return web.Response(
        body=buffer.getvalue(),
        content_type=XLSX_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
    )


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise http_error(web.HTTPBadRequest, f"flagged must be 1 or 0, got {value!r}")


async def list_view(request: web.Request) -> web.Response:
    """质检 results of the range; `flagged=1` only the flagged ones."""
    await require_supervisor(request)
    runtime: Runtime = request.app[RUNTIME]
    start, end = _range(request, runtime)
    review = request.query.get("review") or None
    if review not in (None, *qa_store.REVIEWS):
        raise http_error(web.HTTPBadRequest, f"review must be one of {', '.join(qa_store.REVIEWS)}")
    rows = await qa_store.list_results(
        runtime.store, start, end, flagged=_flag(request.query.get("flagged")), review=review
    )
    return _json({"from": start.isoformat(), "to": end.isoformat(), "results": [r.as_json() for r in rows]})


def _conversation_id(request: web.Request) -> int:
    return path_id(request, "质检 result for conversation")


async def detail_view(request: web.Request) -> web.Response:
    """One result with the conversation's messages; hits point at messages by index and span."""
    await require_supervisor(request)
    runtime: Runtime = request.app[RUNTIME]
    cid = _conversation_id(request)
    row = await qa_store.get_result(runtime.store, cid)
    if row is None:
        raise http_error(web.HTTPNotFound, f"no 质检 result for conversation {cid}")
    messages = await qa_store.conversation_messages(runtime.store, cid)
    # Masking keeps lengths (138****5678), so the hits' spans still point at the right characters.
    clean = mask_sensitive if runtime.settings.privacy.mask_exports else (lambda s: s)
    body = row.as_json()
    body["messages"] = [
        {"index": i, "sender": m.sender, "text": clean(m.text), "at": m.at.isoformat() if m.at else None}
        for i, m in enumerate(messages)
    ]
    return _json(body)


async def review_view(request: web.Request) -> web.Response:
    """Confirm or dismiss a flag with a note (kept for the audit)."""
    caller = await require_supervisor(request)
    runtime: Runtime = request.app[RUNTIME]
    cid = _conversation_id(request)
    body = await read_json(request, _body_limit(request))
    if not isinstance(body, dict):
        raise http_error(web.HTTPBadRequest, 'body must be {"action": "confirm"|"dismiss", "note": "…"}')
    action, note = body.get("action"), body.get("note")
    if action not in ("confirm", "dismiss"):
        raise http_error(web.HTTPBadRequest, "action must be confirm or dismiss")
    if not isinstance(note, str) or not note.strip() or len(note) > 1000:
        raise http_error(web.HTTPBadRequest, "note: required, why (at most 1000 characters)")
    row = await qa_store.get_result(runtime.store, cid)
    if row is None or not row.flagged:
        raise http_error(web.HTTPNotFound, f"conversation {cid} has no flag to review")
    done = await qa_store.review_flag(
        runtime.store,
        cid,
        confirm=action == "confirm",
        note=note.strip(),
        by=caller.who,
        at=datetime.now(UTC),
    )
    if not done:
        raise http_error(web.HTTPConflict, f"the flag of conversation {cid} was already {row.review}")
    return _json({"conversation_id": str(cid), "review": "confirmed" if action == "confirm" else "dismissed"})


async def check_view(request: web.Request) -> web.Response:
    """The draft check: `{"hits": [...], "blocked": bool}` with spans to underline and suggested wording."""
    await resolve(request)
    body = await read_json(request, _body_limit(request))
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise http_error(web.HTTPBadRequest, 'body must be {"text": "…"}')
    text = body["text"]
    if len(text) > MAX_DRAFT:
        raise http_error(web.HTTPBadRequest, f"text is longer than {MAX_DRAFT} characters")
    rules = request.app[QA].rules
    if rules is None:
        return _json({"hits": [], "blocked": False, "rules_version": None})
    result = check_draft(
        text, rules, first_reply=body.get("first_reply") is True, closing=body.get("closing") is True
    )
    return _json(
        {
            "hits": [h.as_dict() for h in result.hits],
            "blocked": result.blocked,
            "rules_version": rules.version,
        }
    )


async def rules_view(request: web.Request) -> web.Response:
    """The 质检 rules in use and the problems of the last load."""
    await resolve(request)
    return _json(request.app[QA].status())
