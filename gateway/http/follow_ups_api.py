"""Complaint follow-ups (回访) in the agent API: agents list and close the ones of their groups
(supervisors: all) at `GET /api/v1/follow-ups` and `POST /api/v1/follow-ups/{id}/close`.

The follow-up itself is opened by the handoff service when a complaint's human part ends
(gateway/jobs/follow_ups.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from gateway.http.auth import require_agent
from gateway.http.bodies import http_error, path_id, read_json
from gateway.keys import RUNTIME
from gateway.message import utcnow
from gateway.storage.sla_store import FollowUp, close_follow_up, get_follow_up, list_follow_ups
from handoff.sla import is_overdue, overdue_by

__all__ = ["follow_up_routes"]

MAX_NOTE = 500


def follow_up_routes() -> list[web.AbstractRouteDef]:
    """The follow-up endpoints of the agent API."""
    return [
        web.get("/api/v1/follow-ups", _list_view),
        web.post("/api/v1/follow-ups/{id}/close", _close_view),
    ]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise http_error(web.HTTPBadRequest, "all must be 0 or 1")
    return value == "1"


def _as_json(item: FollowUp) -> dict[str, Any]:
    now = utcnow()
    late = overdue_by(item, now)
    return {
        "id": item.id,
        "conversation_id": item.conversation_id,
        "group": item.group,
        "created_at": item.created_at.isoformat(),
        "due_at": item.due_at.isoformat(),
        "closed_at": item.closed_at.isoformat() if item.closed_at else None,
        "closed_by": item.closed_by,
        "note": item.note,
        "overdue": is_overdue(item, now),
        "overdue_s": round(late.total_seconds()) if late is not None else 0,
    }


async def _list_view(request: web.Request) -> web.Response:
    """Open follow-ups of the agent's groups (all for supervisors), earliest due first; `all=1` adds closed."""
    agent = await require_agent(request)
    groups = None if agent.role.sees_everything else agent.groups
    items = await list_follow_ups(
        request.app[RUNTIME].store, groups, include_closed=_flag(request.query.get("all", "0"))
    )
    return _json({"follow_ups": [_as_json(i) for i in items]})


async def _close_view(request: web.Request) -> web.Response:
    """Close a follow-up with an optional note of what was done ({"note": "已电话回访，客户满意"})."""
    agent = await require_agent(request)
    store = request.app[RUNTIME].store
    follow_up_id = path_id(request, "follow-up")
    item = await get_follow_up(store, follow_up_id)
    if item is None:
        raise http_error(web.HTTPNotFound, f"no follow-up {follow_up_id}")
    if not agent.role.sees_everything and (item.group is None or not agent.serves(item.group)):
        raise http_error(web.HTTPForbidden, f"follow-up {follow_up_id} belongs to group {item.group}")
    note = None
    if request.can_read_body:
        data = await read_json(request, request.app[RUNTIME].settings.server.max_body_bytes)
        if not isinstance(data, dict):
            raise http_error(web.HTTPBadRequest, "body must be a JSON object")
        raw = data.get("note")
        if raw is not None and (
            not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_NOTE or _CONTROL.search(raw)
        ):
            raise http_error(
                web.HTTPBadRequest, f"note must be a non-empty text of at most {MAX_NOTE} characters"
            )
        note = raw.strip() if raw else None
    if not await close_follow_up(store, follow_up_id, by=agent.id, note=note, at=utcnow()):
        raise http_error(web.HTTPConflict, "the follow-up is already closed")
    closed = await get_follow_up(store, follow_up_id)
    return _json(_as_json(closed) if closed else {})
