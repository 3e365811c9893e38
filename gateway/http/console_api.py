"""The agent console's own endpoints beside the agent API (`/agent/api/…`, agent tokens, as the suggestions).

- `GET /agent/api/conversations/{id}/customer` — the customer panel: name, channel identity (phone and ID
  numbers masked), first contact, past conversations (with whether this agent may open them), tags, and
  whether an order lookup is configured;
- `PUT /agent/api/conversations/{id}/customer/tags {tags}` — replace the customer's tags;
- `POST /agent/api/conversations/{id}/order-info` — run `actions.order_info` (a custom action) with the
  conversation's tracker; its texts are shown to the agent, nothing is sent to the customer;
- `GET /agent/api/search?q=&before=&limit=` — history search over the conversations the agent may open.

Every conversation route checks `handoff.permissions.can_view` through the handoff service (404/403), so
the panel of a conversation is as private as the conversation.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.actions.runners import ActionFailed
from gateway.handoff_events import HandoffError
from gateway.http.auth import require_agent
from gateway.http.bodies import http_error, parse_int, path_id, read_json
from gateway.keys import HANDOFF, RUNTIME
from gateway.storage import Conflict, console_queries
from handoff.agents import AgentInfo
from handoff.permissions import can_view
from handoff.privacy import mask_sensitive

PREFIX = "/agent/api"
MAX_QUERY = 100
MAX_PAGE = 50
_CONTROL = re.compile(r"[\x00-\x1f]")
_STATUS = {400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound, 409: web.HTTPConflict}


def console_routes() -> list[web.AbstractRouteDef]:
    """Routes of the console's customer panel and search."""
    return [
        web.get(f"{PREFIX}/conversations/{{id}}/customer", customer_panel),
        web.put(f"{PREFIX}/conversations/{{id}}/customer/tags", put_tags),
        web.post(f"{PREFIX}/conversations/{{id}}/order-info", order_info),
        web.get(f"{PREFIX}/search", search),
    ]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(
        body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False, default=_default)
    )


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


async def _conversation(request: web.Request) -> tuple[AgentInfo, Any]:
    """The agent and the conversation row, after the same view check as the agent API."""
    agent = await require_agent(request)
    cid = path_id(request, "conversation")
    try:
        await request.app[HANDOFF].conversation_for(agent, str(cid))
    except HandoffError as exc:
        raise http_error(_STATUS.get(exc.status, web.HTTPBadRequest), exc.message) from None
    conv = await request.app[RUNTIME].store.conversation(cid)
    if conv is None:
        raise http_error(web.HTTPNotFound, f"no conversation {cid}")
    return agent, conv


def identity(user_id: str) -> str:
    """The channel identity as agents see it: phone, ID-card and bank-card numbers masked."""
    return mask_sensitive(user_id)


async def customer_panel(request: web.Request) -> web.Response:
    """GET …/customer — who the customer is, their history, tags, and whether 订单信息 is available."""
    agent, conv = await _conversation(request)
    service = request.app[HANDOFF]
    runtime = request.app[RUNTIME]
    customer = await service.db.customer(conv.customer_id) or {}
    past = []
    for c in await service.db.customer_conversations(conv.customer_id):
        if c.id == conv.id:
            continue
        ref = await service.db.get_conversation(str(c.id))
        past.append(
            {
                "id": c.id,
                "state": c.state,
                "opened_at": c.opened_at,
                "closed_at": c.closed_at,
                "handoff_reason": c.handoff_reason,
                # The console links only what this agent may open (can_view), and says so otherwise.
                "viewable": bool(ref is not None and can_view(agent, ref)),
            }
        )
    return _json(
        {
            "id": conv.customer_id,
            "name": customer.get("name"),
            "channel": conv.channel,
            "account": conv.account,
            "identity": identity(customer.get("user_id") or ""),
            "first_contact": customer.get("first_seen_at"),
            "conversations": past[:50],
            "tags": await console_queries.customer_tags(runtime.store, conv.customer_id),
            "order_info": runtime.settings.actions.order_info is not None,
        }
    )


def _tags(data: Any) -> list[str]:
    tags = data.get("tags") if isinstance(data, dict) else None
    if not isinstance(tags, list) or len(tags) > console_queries.MAX_TAGS:
        raise http_error(web.HTTPBadRequest, f"tags 必须是不超过 {console_queries.MAX_TAGS} 个标签的列表")
    out = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag.strip()) > console_queries.TAG_MAX:
            raise http_error(web.HTTPBadRequest, f"每个标签 1–{console_queries.TAG_MAX} 个字")
        if _CONTROL.search(tag):
            raise http_error(web.HTTPBadRequest, "标签不能含控制字符")
        out.append(tag.strip())
    return out


async def put_tags(request: web.Request) -> web.Response:
    """PUT …/customer/tags {tags} — the customer's tags, replaced; returns them."""
    agent, conv = await _conversation(request)
    runtime = request.app[RUNTIME]
    tags = _tags(await read_json(request, runtime.settings.server.max_body_bytes))
    try:
        saved = await console_queries.set_customer_tags(runtime.store, conv.customer_id, tags, int(agent.id))
    except Conflict:
        raise http_error(web.HTTPConflict, "标签刚被同事修改，请刷新后再试") from None
    return _json({"tags": saved})


async def order_info(request: web.Request) -> web.Response:
    """POST …/order-info — `actions.order_info` run on the conversation's tracker; 404 when not configured."""
    _agent, conv = await _conversation(request)
    runtime = request.app[RUNTIME]
    action = runtime.settings.actions.order_info
    service = runtime.pipeline.actions
    snapshot = runtime.kb.snapshot()
    if action is None or service is None or snapshot is None:
        raise http_error(web.HTTPNotFound, "未配置订单查询（actions.order_info）")
    try:
        texts = await service.lookup(action, conv.conversation_key, conv.channel, snapshot[0])
    except ActionFailed as exc:
        raise http_error(web.HTTPBadGateway, f"订单查询暂时不可用（{exc.kind}），请稍后再试") from None
    return _json({"action": action, "texts": texts})


async def search(request: web.Request) -> web.Response:
    """GET /agent/api/search?q=&before=&limit= — messages containing q, newest first, in viewable conversations."""
    agent = await require_agent(request)
    query = (request.query.get("q") or "").strip()
    if not query or len(query) > MAX_QUERY or _CONTROL.search(query):
        raise http_error(web.HTTPBadRequest, f"q 必须是 1–{MAX_QUERY} 个字的搜索词")
    limit = min(parse_int(request.query.get("limit"), "limit", default=20, minimum=1), MAX_PAGE)
    before = request.query.get("before")
    cursor = parse_int(before, "before", default=0, minimum=1) if before else None
    scope = console_queries.Scope(None if agent.role.sees_everything else int(agent.id), tuple(agent.groups))
    store = request.app[RUNTIME].store
    hits, next_before = await console_queries.search_messages(store, query, scope, limit=limit, before=cursor)
    service = request.app[HANDOFF]
    items = []
    for hit in hits:
        # Defence in depth: the SQL mirrors can_view; the rule itself has the last word.
        ref = await service.db.get_conversation(str(hit.conversation_id))
        if ref is None or not can_view(agent, ref):
            continue
        items.append(
            {
                "message_id": hit.message_id,
                "conversation_id": hit.conversation_id,
                "direction": hit.direction,
                "sender": hit.sender,
                "text": hit.text,
                "created_at": hit.created_at,
                "channel": hit.channel,
                "state": hit.state,
                "customer_name": hit.customer_name,
            }
        )
    return _json({"items": items, "next_before": next_before})
