"""排班 over HTTP: `/api/v1/shifts` (schedule, coverage, swaps).

- `GET /api/v1/shifts?from=&to=&group=&agent=`: the shifts overlapping the range (any agent; the team's
  schedule is no secret);
- `POST /api/v1/shifts` `{"agent", "group", "start", "end", "breaks"?}` → 201 `{"id"}` (supervisors);
  ISO-8601 times, naive ones in the business-hours time zone; `DELETE /api/v1/shifts/{id}` → 204;
- `GET /api/v1/shifts/coverage?from=&to=&group=`: business hours with nobody on shift, in Chinese;
- `POST /api/v1/shifts/swaps` `{"shift_id", "with_agent"}` by the shift's agent → 201, or 422 with the
  rule it breaks in Chinese (`shifts.swap_notice_days`, `shifts.max_swaps_per_month`, a busy colleague);
- `GET /api/v1/shifts/swaps?status=` (supervisors see all, agents their own);
- `POST /api/v1/shifts/swaps/{id}/approve|reject` `{"note"?}` (supervisors) → 200, 409 when not pending.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway.handoff_service import HandoffService
from gateway.http.auth import require_agent, require_supervisor, resolve
from gateway.http.bodies import http_error, parse_int, path_id, read_json
from gateway.http.expect import body_capped, capped_limit
from gateway.keys import HANDOFF, RUNTIME
from gateway.norms import group_hours
from gateway.runtime import Runtime
from gateway.storage import shifts_store
from handoff.reports import parse_bound, year_problem
from handoff.shifts import ShiftSpan, SwapPolicy, check_swap, coverage_gaps

__all__ = ["shift_routes"]

PREFIX = "/api/v1/shifts"
MAX_RANGE = timedelta(days=62)
MAX_BODY = 16 * 1024

_body_limit = capped_limit(MAX_BODY)


def shift_routes() -> list[web.AbstractRouteDef]:
    """The 排班 endpoints."""
    return [
        web.get(PREFIX, list_view),
        web.get(f"{PREFIX}/coverage", coverage_view),
        web.get(f"{PREFIX}/swaps", list_swaps_view),
        web.delete(f"{PREFIX}/{{id:[0-9]+}}", delete_view),
        *body_capped(
            _body_limit,
            [
                web.post(PREFIX, create_view),
                web.post(f"{PREFIX}/swaps", request_swap_view),
                web.post(f"{PREFIX}/swaps/{{id:[0-9]+}}/approve", approve_view),
                web.post(f"{PREFIX}/swaps/{{id:[0-9]+}}/reject", reject_view),
            ],
        ),
    ]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def _handoff(request: web.Request) -> HandoffService:
    return request.app[HANDOFF]


def _tz(runtime: Runtime) -> ZoneInfo:
    return group_hours(runtime.settings).default.timezone


def policy_of(runtime: Runtime) -> SwapPolicy:
    """The swap rules from `shifts.swap_notice_days` and `shifts.max_swaps_per_month`."""
    s = runtime.settings.shifts
    return SwapPolicy(swap_notice_days=s.swap_notice_days, max_swaps_per_month=s.max_swaps_per_month)


def _range(request: web.Request, tz: ZoneInfo, *, default_days: int = 7) -> tuple[datetime, datetime]:
    """from/to of the query (dates or ISO times); default: this week from Monday."""
    try:
        start = parse_bound(request.query.get("from"), tz, end=False)
        end = parse_bound(request.query.get("to"), tz, end=True)
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, str(exc).replace("--", "")) from None
    if start is None:
        today = datetime.now(UTC).astimezone(tz).date()
        start = datetime.combine(today - timedelta(days=today.weekday()), time(0), tzinfo=tz)
    end = end or start + timedelta(days=default_days)
    if start >= end:
        raise http_error(web.HTTPBadRequest, "from must be before to")
    if end - start > MAX_RANGE:
        raise http_error(web.HTTPBadRequest, f"the range may span at most {MAX_RANGE.days} days")
    return start, end


def _moment(value: Any, name: str, tz: ZoneInfo) -> datetime:
    if not isinstance(value, str) or not value.strip():
        raise http_error(
            web.HTTPBadRequest, f"{name}: required, an ISO-8601 time like 2026-12-07T09:00:00+08:00"
        )
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise http_error(
            web.HTTPBadRequest, f"{name}: {value!r} is not an ISO-8601 time like 2026-12-07T09:00:00+08:00"
        ) from None
    if problem := year_problem(moment, name):
        raise http_error(web.HTTPBadRequest, problem)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def _id(request: web.Request) -> int:
    return path_id(request, "such id")


async def list_view(request: web.Request) -> web.Response:
    """The shifts overlapping the range."""
    await resolve(request)
    runtime = _runtime(request)
    start, end = _range(request, _tz(runtime))
    agent_id = None
    if name := request.query.get("agent"):
        agent = await _handoff(request).db.agent_by_name(name)
        if agent is None:
            raise http_error(web.HTTPBadRequest, f"unknown agent {name!r}")
        agent_id = int(agent.id)
    rows = await shifts_store.list_shifts(
        runtime.store, start, end, group=request.query.get("group") or None, agent_id=agent_id
    )
    tz = _tz(runtime)
    return _json({"from": start.isoformat(), "to": end.isoformat(), "shifts": [r.as_json(tz) for r in rows]})


async def create_view(request: web.Request) -> web.Response:
    """Add one shift (supervisors): `{"agent", "group", "start", "end", "breaks"?}` → 201 `{"id"}`."""
    caller = await require_supervisor(request)
    runtime = _runtime(request)
    tz = _tz(runtime)
    body = await read_json(request, _body_limit(request))
    if not isinstance(body, dict):
        raise http_error(web.HTTPBadRequest, "body must be a JSON object with agent, group, start, end")
    name, group = body.get("agent"), body.get("group")
    if not isinstance(name, str) or not name.strip():
        raise http_error(web.HTTPBadRequest, "agent: required, the agent's name")
    if not isinstance(group, str) or not group.strip():
        raise http_error(web.HTTPBadRequest, "group: required, a skill group")
    service = _handoff(request)
    if service.rules.get(group) is None:
        known = ", ".join(service.rules.group_names)
        raise http_error(web.HTTPBadRequest, f"group: unknown group {group!r}; known: {known}")
    agent = await service.db.agent_by_name(name)
    if agent is None:
        raise http_error(web.HTTPBadRequest, f"agent: unknown agent {name!r}")
    if group not in agent.groups:
        raise http_error(web.HTTPBadRequest, f"agent: {name} is not in group {group}; add the group first")
    start, end = _moment(body.get("start"), "start", tz), _moment(body.get("end"), "end", tz)
    raw_breaks = body.get("breaks") or []
    if not isinstance(raw_breaks, list) or not all(isinstance(b, list) and len(b) == 2 for b in raw_breaks):
        raise http_error(web.HTTPBadRequest, "breaks: a list of [start, end] pairs")
    breaks = tuple((_moment(a, "breaks", tz), _moment(b, "breaks", tz)) for a, b in raw_breaks)
    try:
        span = ShiftSpan(name, group, start, end, breaks)
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, str(exc)) from None
    clash = await shifts_store.list_shifts(runtime.store, span.start, span.end, agent_id=int(agent.id))
    if clash:
        other = clash[0]
        raise http_error(
            web.HTTPConflict,
            f"{name} already has a shift {other.start.astimezone(tz):%m-%d %H:%M}–"
            f"{other.end.astimezone(tz):%H:%M} ({other.group}) that overlaps",
            fields={"shift_id": other.id},
        )
    shift_id = await shifts_store.add_shift(
        runtime.store,
        int(agent.id),
        group,
        span.start,
        span.end,
        breaks=breaks,
        by=caller.who,
        at=datetime.now(UTC),
    )
    await runtime.store.audit("shift_add", caller.who, {"id": shift_id, "agent": name, "group": group})
    return _json({"id": shift_id}, status=201)


async def delete_view(request: web.Request) -> web.Response:
    """Remove a shift (supervisors) → 204."""
    caller = await require_supervisor(request)
    runtime = _runtime(request)
    shift_id = _id(request)
    if not await shifts_store.delete_shift(runtime.store, shift_id):
        raise http_error(web.HTTPNotFound, f"no shift {shift_id}")
    await runtime.store.audit("shift_delete", caller.who, {"id": shift_id})
    return web.Response(status=204)


async def coverage_view(request: web.Request) -> web.Response:
    """Business hours with nobody of the group on shift: `{"gaps": [{group, start, end, text}]}`."""
    await resolve(request)
    runtime = _runtime(request)
    start, end = _range(request, _tz(runtime))
    groups = list(_handoff(request).rules.group_names)
    if wanted := request.query.get("group"):
        if wanted not in groups:
            raise http_error(web.HTTPBadRequest, f"unknown group {wanted!r}; known: {', '.join(groups)}")
        groups = [wanted]
    rows = await shifts_store.list_shifts(runtime.store, start, end)
    gaps = coverage_gaps([r.span for r in rows], group_hours(runtime.settings), groups, start, end)
    return _json(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "gaps": [
                {
                    "group": g.group,
                    "start": g.start.isoformat(),
                    "end": g.end.isoformat(),
                    "text": g.text,
                    "date_text": g.date_text,
                }
                for g in gaps
            ],
        }
    )


async def request_swap_view(request: web.Request) -> web.Response:
    """The shift's agent asks a colleague to take it: 201 `{"id", "status"}`, or 422 with the rule."""
    agent = await require_agent(request)
    runtime = _runtime(request)
    body = await read_json(request, _body_limit(request))
    if not isinstance(body, dict):
        raise http_error(web.HTTPBadRequest, "body must be a JSON object with shift_id and with_agent")
    shift_id, with_name = body.get("shift_id"), body.get("with_agent")
    if isinstance(shift_id, bool) or not isinstance(shift_id, int | str):
        raise http_error(web.HTTPBadRequest, "shift_id: required, the id of one of your shifts")
    # As a number or a string of ASCII digits ("²" is a digit to str.isdigit), at most a row id.
    shift_id = parse_int(str(shift_id), "shift_id", minimum=1)
    if not isinstance(with_name, str) or not with_name.strip():
        raise http_error(web.HTTPBadRequest, "with_agent: required, the colleague's name")
    shift = await shifts_store.get_shift(runtime.store, int(shift_id))
    if shift is None:
        raise http_error(web.HTTPNotFound, f"no shift {shift_id}")
    colleague = await _handoff(request).db.agent_by_name(with_name)
    if colleague is None:
        raise http_error(web.HTTPBadRequest, f"with_agent: unknown agent {with_name!r}")
    tz = _tz(runtime)
    now = datetime.now(UTC)
    policy = policy_of(runtime)
    local = shift.start.astimezone(tz)
    month_start = datetime.combine(local.date().replace(day=1), time(0), tzinfo=tz)
    month_end = datetime.combine((month_start + timedelta(days=32)).date().replace(day=1), time(0), tzinfo=tz)
    earlier = await shifts_store.list_swaps(
        runtime.store, requester_id=int(agent.id), shift_from=month_start, shift_to=month_end
    )
    others = await shifts_store.list_shifts(runtime.store, shift.start, shift.end, agent_id=int(colleague.id))
    refusal = check_swap(
        shift.span,
        agent.name,
        colleague.name,
        now=now,
        policy=policy,
        earlier=[s.request for s in earlier],
        others=[o.span for o in others],
        timezone=tz,
    )
    if refusal is not None:
        status = web.HTTPForbidden if refusal.code == "not_own_shift" else web.HTTPUnprocessableEntity
        raise http_error(status, refusal.message, fields={"rule": refusal.code})
    swap_id = await shifts_store.add_swap(runtime.store, shift, int(colleague.id), at=now)
    await runtime.store.audit(
        "shift_swap_request",
        f"agent:{agent.name}",
        {"id": swap_id, "shift_id": shift.id, "with": colleague.name},
    )
    return _json({"id": swap_id, "status": "pending"}, status=201)


async def list_swaps_view(request: web.Request) -> web.Response:
    """Swap requests: every one for supervisors, one's own for agents; `?status=pending|approved|rejected`."""
    caller = await resolve(request)
    runtime = _runtime(request)
    status = request.query.get("status") or None
    if status not in (None, "pending", "approved", "rejected"):
        raise http_error(web.HTTPBadRequest, "status must be pending, approved or rejected")
    supervisor = caller.agent is None or caller.agent.role.sees_everything
    requester = None if supervisor else int(caller.agent.id)  # type: ignore[union-attr]
    rows = await shifts_store.list_swaps(runtime.store, status=status, requester_id=requester)
    return _json({"swaps": [r.as_json(_tz(runtime)) for r in rows]})


async def _decide(request: web.Request, approve: bool) -> web.Response:
    caller = await require_supervisor(request)
    runtime = _runtime(request)
    swap_id = _id(request)
    note = None
    if request.can_read_body:
        body = await read_json(request, _body_limit(request))
        if isinstance(body, dict) and isinstance(body.get("note"), str):
            note = body["note"].strip()[:500] or None
    swap = await shifts_store.get_swap(runtime.store, swap_id)
    if swap is None:
        raise http_error(web.HTTPNotFound, f"no swap request {swap_id}")
    if not await shifts_store.decide_swap(
        runtime.store, swap_id, approve=approve, by=caller.who, note=note, at=datetime.now(UTC)
    ):
        raise http_error(web.HTTPConflict, f"swap request {swap_id} is already {swap.status}")
    status = "approved" if approve else "rejected"
    await runtime.store.audit("shift_swap_" + status, caller.who, {"id": swap_id, "note": note})
    return _json({"id": swap_id, "status": status})


async def approve_view(request: web.Request) -> web.Response:
    """Approve a pending swap: the shift moves to the colleague."""
    return await _decide(request, True)


async def reject_view(request: web.Request) -> web.Response:
    """Reject a pending swap."""
    return await _decide(request, False)
