"""The admin API (`/admin/api/…`): the outbox, the knowledge base (status, reload) and the dashboard.

`GET /admin/api/stats?from=&to=` gives the numbers behind the admin dashboard (`/admin`):

Messages per hour (ranges up to 48 h) or per day by channel, bot resolution and handoff rates,
first-response and waiting times, satisfaction, agents online and their load, the knowledge base's
status, and the questions the bot could not answer grouped by similarity (`handoff.questions.cluster_questions`
with the intents normaliser, as in `kefu report`), so the FAQ editor sees what to add.

Every endpoint takes `admin.token` from the settings or the token of an agent whose role is `admin`
(gateway/http/auth.py).
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from aiohttp import web

from gateway.http.admin_agents_api import agent_admin_routes
from gateway.http.admin_faq_api import faq_routes, kb_errors_zh
from gateway.http.auth import require_admin
from gateway.http.bodies import http_error, parse_int
from gateway.keys import RUNTIME
from gateway.logs import mask
from gateway.norms import group_hours
from gateway.runtime import Runtime
from gateway.storage import OUTBOX_STATUSES, stats_queries
from gateway.storage.report_queries import conversation_records
from handoff.kpis import duration_stats
from handoff.metrics import conversation_rates, is_handed_off
from handoff.privacy import mask_sensitive
from handoff.questions import cluster_questions_capped
from handoff.reports import year_problem
from intents.normalize import normalize

DEFAULT_RANGE = timedelta(days=1)
MAX_RANGE = timedelta(days=92)
HOURLY_UP_TO = timedelta(hours=48)
MAX_CLUSTERS = 50
MAX_EXAMPLES = 5  # wordings shown per group, the lead included
MAX_DRILL = 20  # a group's latest messages, for the drill-down to their conversations
MAX_LIST = 500  # outbox rows per request


def admin_routes() -> list[web.AbstractRouteDef]:
    """Routes of the admin API."""
    return [
        web.get("/admin/api/outbox", list_outbox),
        web.get("/admin/api/kb", kb_status),
        web.post("/admin/api/kb/reload", kb_reload),
        web.get("/admin/api/stats", stats_view),
        *faq_routes(),  # the FAQ editor (admin_faq_api.py)
        *agent_admin_routes(),  # agent management (admin_agents_api.py)
    ]


def parse_range(query: Any, now: datetime | None = None, tz: tzinfo = UTC) -> tuple[datetime, datetime]:
    """`from`/`to` as ISO 8601; default: the last 24 hours.

    A date is that day's midnight in `tz` (business_hours.timezone, the dashboard's days); a datetime
    without an offset is UTC.
    """
    now = now or datetime.now(UTC)
    end = _parse_time(query.get("to"), "to", tz) or now
    start = _parse_time(query.get("from"), "from", tz) or end - DEFAULT_RANGE
    if start >= end:
        raise http_error(web.HTTPBadRequest, "from must be before to")
    if end - start > MAX_RANGE:
        raise http_error(web.HTTPBadRequest, f"the range may span at most {MAX_RANGE.days} days")
    return start, end


def _parse_time(value: str | None, name: str, tz: tzinfo = UTC) -> datetime | None:
    if not value:
        return None
    if len(value) == 10 and value[4:5] == "-":  # a date: midnight where the business is
        try:
            day = datetime.strptime(value, "%Y-%m-%d")
        except ValueError:
            raise http_error(
                web.HTTPBadRequest, f"{name} must be an ISO 8601 date or time, e.g. 2026-11-24T08:00:00Z"
            ) from None
        _year_ok(day, name)
        return day.replace(tzinfo=tz).astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise http_error(
            web.HTTPBadRequest, f"{name} must be an ISO 8601 date or time, e.g. 2026-11-24T08:00:00Z"
        ) from None
    _year_ok(parsed, name)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _year_ok(moment: datetime, name: str) -> None:
    if problem := year_problem(moment, name):
        raise http_error(web.HTTPBadRequest, problem)


# --- unanswered questions, grouped ---------------------------------------------------------------------


def unanswered_clusters(
    rows: Sequence[stats_queries.UnansweredRow], limit: int = MAX_CLUSTERS, *, mask: bool = True
) -> list[dict[str, Any]]:
    """`unanswered_groups` without the truncation flag."""
    return unanswered_groups(rows, limit, mask=mask)[0]


def unanswered_groups(
    rows: Sequence[stats_queries.UnansweredRow], limit: int = MAX_CLUSTERS, *, mask: bool = True
) -> tuple[list[dict[str, Any]], bool]:
    """(rows, truncated: the clustering cap dropped rare wordings). CPU-bound: run it in a thread.

    The dashboard's rows: `handoff.questions.cluster_questions` plus each group's channels and last time.

    mask: phone, ID-card and bank-card numbers masked in the texts, as in reports (`privacy.mask_exports`):
    the dashboard shows what customers ask, not who they are.
    """
    shown = mask_sensitive if mask else _as_is
    # The query returns newest first; clustering breaks ties by first seen, so feed it oldest first.
    ordered = sorted(rows, key=lambda r: r.created_at)
    clusters, truncated = cluster_questions_capped(
        (r.text for r in ordered), normalize=normalize, limit=limit, max_examples=MAX_EXAMPLES - 1
    )
    out: list[dict[str, Any]] = []
    for cluster in clusters:
        members = [ordered[i] for i in cluster.members]
        out.append(
            {
                "text": shown(cluster.text),
                "count": cluster.count,
                # The lead wording first, as before (admin.js drops it when listing the other wordings).
                "examples": [shown(text) for text in (cluster.text, *cluster.examples)],
                "channels": dict(Counter(m.channel for m in members)),
                "last_at": max(m.created_at for m in members).isoformat(),
                # The drill-down: the group's latest messages, each with its conversation.
                "messages": [
                    {
                        "conversation_id": m.conversation_id,
                        "channel": m.channel,
                        "text": shown(m.text),
                        "decision": m.decision,
                        "at": m.created_at.isoformat(),
                    }
                    for m in sorted(members, key=lambda m: m.created_at, reverse=True)[:MAX_DRILL]
                ],
            }
        )
    return out, truncated


def _as_is(text: str) -> str:
    return text


# --- the numbers ----------------------------------------------------------------------------------------


def buckets(start: datetime, end: datetime, tz: tzinfo = UTC) -> tuple[str, list[datetime]]:
    """("hour" | "day", bucket start times covering [start, end)), aligned in `tz`.

    The dashboard's hours and days are those of `business_hours.timezone`, not the viewer's browser:
    a day starts at local midnight (23 or 25 hours long across a DST change), returned as UTC.
    """
    out: list[datetime] = []
    if end - start <= HOURLY_UP_TO:
        local = start.astimezone(tz)
        # Whole local hours; zones with half-hour offsets still get hour-long buckets.
        at = (
            local - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
        ).astimezone(UTC)
        while at < end:
            out.append(at)
            at += timedelta(hours=1)
        return "hour", out
    day = start.astimezone(tz).date()
    while (at := datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)) < end:
        out.append(at)
        day += timedelta(days=1)
    return "day", out


def bucket_labels(starts: list[datetime], unit: str, tz: tzinfo) -> list[str]:
    """Axis labels in `tz`: "08:00" per hour, "12/6" per day."""
    local = [s.astimezone(tz) for s in starts]
    if unit == "hour":
        return [f"{t.hour:02d}:00" for t in local]
    return [f"{t.month}/{t.day}" for t in local]


def _index(starts: list[datetime], at: datetime) -> int:
    lo, hi = 0, len(starts) - 1
    while lo < hi:  # the last bucket start <= at
        mid = (lo + hi + 1) // 2
        if starts[mid] <= at:
            lo = mid
        else:
            hi = mid - 1
    return lo


def durations(values: Iterable[float]) -> dict[str, float | int | None]:
    """count, avg, p50, p90 (seconds, rounded): the one definition, shared with the agent KPIs."""
    return duration_stats(values)


async def compute_stats(runtime: Runtime, start: datetime, end: datetime) -> dict[str, Any]:
    """Everything the dashboard draws, for [start, end)."""
    store = runtime.store
    tz = group_hours(runtime.settings).default.timezone
    unit, starts = buckets(start, end, tz)
    inbound = await stats_queries.inbound_messages(store, start, end)
    convs = await stats_queries.conversations(store, start, end)
    ratings = await stats_queries.csat_ratings(store, start, end)
    misses = await stats_queries.unanswered(store, start, end)
    # Quadratic in distinct questions: off the event loop, so webhooks keep their deadlines meanwhile.
    unanswered, clustering_cut = await asyncio.to_thread(
        unanswered_groups, misses, mask=runtime.settings.privacy.mask_exports
    )

    channels = sorted({r.channel for r in inbound} | {c.channel for c in convs})
    per_channel = {ch: [0] * len(starts) for ch in channels}
    decisions: Counter[str] = Counter()
    for row in inbound:
        per_channel[row.channel][_index(starts, row.created_at)] += 1
        decisions[row.decision or "none"] += 1

    # Conversations, handoffs and the bot's resolution counted as the 受理记录 counts them (handoff/metrics.py).
    records = await conversation_records(store, start, end)
    rates = conversation_rates(records)
    handoff_per_bucket = [0] * len(starts)
    conv_per_bucket = [0] * len(starts)
    for r in records:
        i = _index(starts, r.started_at)
        conv_per_bucket[i] += 1
        if is_handed_off(r):
            handoff_per_bucket[i] += 1
    waits = [(c.assigned_at - c.queued_at).total_seconds() for c in convs if c.assigned_at and c.queued_at]
    first = [
        (c.first_response_at - c.assigned_at).total_seconds()
        for c in convs
        if c.first_response_at and c.assigned_at
    ]
    rating_counts = Counter(ratings)

    agents: list[dict[str, Any]] = []
    queue_length = 0
    if runtime.handoff is not None:
        for row in await runtime.handoff.db.list_agents():
            agents.append(
                {
                    "name": row.info.name,
                    "role": row.info.role.value,
                    "groups": sorted(row.info.groups),
                    "presence": row.presence.value,
                    "load": row.load,
                    "max_chats": row.info.max_chats,
                }
            )
        queue_length = await runtime.handoff.db.queue_length()

    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "bucket": unit,
        "buckets": [s.isoformat() for s in starts],
        # Charts are drawn in business_hours.timezone: labels made here, the zone for other times.
        "timezone": str(tz),
        "bucket_labels": bucket_labels(starts, unit, tz),
        "kb": {**runtime.kb.status(), "errors_zh": await kb_errors_zh(runtime)},
        "totals": {
            "messages": len(inbound),
            "conversations": rates.total,
            "handoffs": rates.handed_off,
            "bot_resolved": rates.bot_resolved,
            "resolution_rate": rates.bot_resolution_rate,
            "handoff_rate": rates.handoff_rate,
            "queue_length": queue_length,
        },
        "messages_by_channel": per_channel,
        "conversations_per_bucket": conv_per_bucket,
        "handoffs_per_bucket": handoff_per_bucket,
        "decisions": dict(decisions),
        "handoff_reasons": dict(Counter(r.handoff_reason or "other" for r in records if is_handed_off(r))),
        "first_response_s": durations(first),
        "waiting_s": durations(waits),
        "csat": {
            "count": len(ratings),
            "avg": round(statistics.fmean(ratings), 2) if ratings else None,
            "distribution": {str(k): rating_counts.get(k, 0) for k in range(1, 6)},
        },
        "agents": agents,
        "unanswered": unanswered,
        # A query hit stats_queries.MAX_ROWS or the clustering cap dropped rare questions: numbers are partial.
        "truncated": clustering_cut
        or any(len(rows) >= stats_queries.MAX_ROWS for rows in (inbound, convs, ratings, misses)),
    }


async def list_outbox(request: web.Request) -> web.Response:
    """GET /admin/api/outbox?status=&limit= — outbox rows, newest first."""
    await require_admin(request)
    status = request.query.get("status") or None
    if status is not None and status not in OUTBOX_STATUSES:
        raise http_error(web.HTTPBadRequest, f"status must be one of {', '.join(OUTBOX_STATUSES)}")
    limit = min(parse_int(request.query.get("limit"), "limit", default=100, minimum=1), MAX_LIST)
    store = request.app[RUNTIME].store
    rows = await store.list_outbox(status, limit=limit)
    counts = await store.outbox_counts()
    return web.json_response({"counts": counts, "items": [_masked(r.as_json()) for r in rows]}, dumps=_dumps)


def _masked(item: dict[str, Any]) -> dict[str, Any]:
    """An outbox row for operators: agent replies and errors can quote a customer's phone or ID number."""
    for name in ("text", "last_error"):
        if item.get(name):
            item[name] = mask(item[name])
    return item


async def kb_status(request: web.Request) -> web.Response:
    """GET /admin/api/kb — the served version, entry count and the last reload's errors (file:line)."""
    await require_admin(request)
    runtime = request.app[RUNTIME]
    return web.json_response({**runtime.kb.status(), "errors_zh": await kb_errors_zh(runtime)}, dumps=_dumps)


async def kb_reload(request: web.Request) -> web.Response:
    """POST /admin/api/kb/reload — reload the FAQ now (also the dashboard's button); 422 with the errors."""
    who = (await require_admin(request)).who
    runtime = request.app[RUNTIME]
    report = await runtime.kb.reload(reason=f"admin API ({who})", force=request.query.get("force") == "1")
    await runtime.store.audit("kb.reload", who, report.as_json())
    body = {**report.as_json(), "kb": {**runtime.kb.status(), "errors_zh": await kb_errors_zh(runtime)}}
    return web.json_response(body, status=200 if report.ok else 422, dumps=_dumps)


async def stats_view(request: web.Request) -> web.Response:
    """GET /admin/api/stats?from=&to= — the dashboard's numbers (admin token or an admin agent)."""
    await require_admin(request)
    runtime = request.app[RUNTIME]
    start, end = parse_range(request.query, tz=group_hours(runtime.settings).default.timezone)
    body = await compute_stats(runtime, start, end)
    return web.json_response(body, dumps=_dumps, headers={"Cache-Control": "no-store"})


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
