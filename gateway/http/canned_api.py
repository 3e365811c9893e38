"""Canned replies (话术) under `/api/v1/canned`: list, add, edit, delete, fill placeholders.

Supervisors and admins manage every reply (shared ones: `group` null); agents add replies for their own
groups and edit or delete the ones they added (handoff.canned.may_edit_canned). Placeholders follow
handoff.canned: the console fills the known ones through `render` and asks the agent for the rest.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.handoff_service import HandoffService
from gateway.http.bodies import ID_MAX, http_error, path_id, read_json
from gateway.keys import RUNTIME
from gateway.storage.handoff_store import CannedRow
from handoff.agents import AgentInfo
from handoff.canned import (
    CannedReply,
    canned_for_agent,
    may_edit_canned,
    placeholders,
    render_canned_report,
    validate_canned,
)

MAX_TITLE = 64
MAX_CANNED_TEXT = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def canned_json(row: CannedRow, agent: AgentInfo) -> dict[str, Any]:
    """One canned reply as the API shows it to this agent."""
    return {
        "id": row.id,
        "title": row.title,
        "text": row.text,
        "group": row.group,
        "placeholders": list(placeholders(row.text)),
        "editable": may_edit_canned(agent, row.created_by, row.group),
    }


def _offered(rows: list[CannedRow], agent: AgentInfo) -> list[CannedRow]:
    keep = {(c.title, c.text, c.group) for c in canned_for_agent([_reply(r) for r in rows], agent)}
    return [r for r in rows if (r.title, r.text, r.group) in keep]


def _reply(row: CannedRow) -> CannedReply:
    return CannedReply(row.title, row.text, row.group)


async def list_canned(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Canned replies offered to this agent: global ones and their groups' (all for supervisors)."""
    rows = _offered(await service.db.canned(), agent)
    return _json({"canned": [canned_json(r, agent) for r in rows]})


async def _fields(request: web.Request, agent: AgentInfo) -> tuple[str, str, str | None]:
    """The title, text and group of a canned reply in the body, checked (400 / 403)."""
    data = await _body(request)
    title = _field(data, "title", MAX_TITLE)
    text = _field(data, "text", MAX_CANNED_TEXT)
    group = data.get("group")
    if group is not None:
        group = _field(data, "group", MAX_TITLE)
    assert title is not None and text is not None
    problems = validate_canned(text)
    if problems:
        raise http_error(web.HTTPBadRequest, "; ".join(problems))
    if not agent.role.sees_everything and (group is None or not agent.serves(group)):
        raise http_error(web.HTTPForbidden, "agents can only add canned replies for their own groups")
    return title, text, group


def _field(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise http_error(web.HTTPBadRequest, f"{name} must be a non-empty string")
    if len(value) > limit:
        raise http_error(web.HTTPBadRequest, f"{name} is longer than {limit} characters")
    if _CONTROL.search(value):  # PostgreSQL cannot store NUL; the others are never typed
        raise http_error(web.HTTPBadRequest, f"{name} contains control characters")
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await read_json(request, request.app[RUNTIME].settings.server.max_body_bytes)
    if not isinstance(data, dict):
        raise http_error(web.HTTPBadRequest, "body must be a JSON object")
    return data


async def add_canned(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Create a canned reply for one of the agent's groups (supervisors: any group, or shared)."""
    title, text, group = await _fields(request, agent)
    row = await service.db.add_canned(title, text, group, agent.id)
    return _json(canned_json(row, agent), status=201)


async def _own(request: web.Request, agent: AgentInfo, service: HandoffService) -> CannedRow:
    """The canned reply of the path if this agent may change it (404 / 403)."""
    canned_id = path_id(request, "canned reply")
    row = next((r for r in await service.db.canned() if r.id == canned_id), None)
    if row is None or not _offered([row], agent):
        raise http_error(web.HTTPNotFound, f"no canned reply {canned_id}")
    if not may_edit_canned(agent, row.created_by, row.group):
        raise http_error(
            web.HTTPForbidden, "only supervisors and admins change shared replies; agents change their own"
        )
    return row


async def update_canned(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Edit a canned reply (title, text, group)."""
    row = await _own(request, agent, service)
    title, text, group = await _fields(request, agent)
    updated = await service.db.update_canned(row.id, title=title, text=text, group=group)
    if updated is None:
        raise http_error(web.HTTPNotFound, f"no canned reply {row.id}")
    return _json(canned_json(updated, agent))


async def delete_canned(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Delete a canned reply."""
    row = await _own(request, agent, service)
    if not await service.db.delete_canned(row.id):
        raise http_error(web.HTTPNotFound, f"no canned reply {row.id}")
    return _json({"deleted": row.id})


async def render_canned(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Fill a canned reply's placeholders for a conversation (`conversation_id`) and extra `values`."""
    canned_id = path_id(request, "canned reply")
    row = next((r for r in await service.db.canned() if r.id == canned_id), None)
    if row is None or not _offered([row], agent):
        raise http_error(web.HTTPNotFound, f"no canned reply {canned_id}")
    data = await _body(request)
    values = data.get("values", {})
    if not isinstance(values, dict) or not all(isinstance(v, str) and len(v) <= 200 for v in values.values()):
        raise http_error(
            web.HTTPBadRequest, "values must be an object of placeholder → text (≤ 200 characters)"
        )
    raw_cid = data.get("conversation_id")
    if "conversation_id" in data and not (
        isinstance(raw_cid, int) and not isinstance(raw_cid, bool) and 1 <= raw_cid <= ID_MAX
    ):
        raise http_error(web.HTTPBadRequest, "conversation_id must be a conversation id (a positive integer)")
    hours = service.hours.default
    runtime = request.app[RUNTIME]
    context: dict[str, Any] = {
        "agent_name": agent.name,
        "date": datetime.now(hours.timezone).date().isoformat(),
        **runtime.pipeline.placeholders,  # {service_hours}, as the bot says it
    }
    cid = data.get("conversation_id")
    if cid is not None:
        ref = await service.conversation_for(agent, str(cid))
        conv = await runtime.store.conversation(int(ref.id))
        customer = await service.db.customer(conv.customer_id) if conv else None
        context.update(customer_name=(customer or {}).get("name"), group=ref.group)
    context.update({k: v for k, v in values.items() if v.strip()})
    rendered = render_canned_report(row.text, context)
    return _json({"text": rendered.text, "missing": list(rendered.missing), "complete": rendered.complete})


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))
