"""The agent API under `/api/v1/`: what the console (or any client) uses to work the queue.

Every route but the spec needs `Authorization: Bearer <token>` (from `kefu agent add`): 401 without a
valid one, 403 when the agent's role or groups do not allow the action (the reason is in the body),
409 when someone else was faster. Documented in gateway/openapi.py and docs/api.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.delivery_state import delivery_view
from gateway.handoff_events import HandoffError
from gateway.handoff_service import QUEUE_PAGE, QUEUE_PAGE_MAX, HandoffService
from gateway.http import canned_api
from gateway.http.agent_ws import agent_ws
from gateway.http.auth import require_agent
from gateway.http.bodies import ID_MAX, http_error, path_id, read_json
from gateway.http.console_api import console_routes
from gateway.http.follow_ups_api import follow_up_routes
from gateway.http.learn_api import learn_routes
from gateway.http.openapi import spec
from gateway.http.pages import suggestions
from gateway.keys import HANDOFF, QA, RUNTIME
from gateway.media import Media
from gateway.qa_service import blocked_reply
from gateway.storage import MessageRow
from handoff.agents import AgentInfo
from handoff.canned import unfilled_refusal
from handoff.permissions import can_reply
from handoff.presence import Presence
from handoff.wrapup import CloseReason

PREFIX = "/api/v1"
MAX_TEXT = 2000
MAX_NOTE = 4000
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")

_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
}

AgentHandler = Callable[[web.Request, AgentInfo, HandoffService], Awaitable[web.StreamResponse]]


def agent_routes() -> list[web.AbstractRouteDef]:
    """Routes of the agent API (the WebSocket is in gateway.http.agent_ws, follow-ups in follow_ups_api)."""
    p = PREFIX
    return [
        web.get(f"{p}/openapi.json", openapi_view),
        web.get(f"{p}/me", _authed(me)),
        web.post(f"{p}/me/presence", _authed(set_presence)),
        web.get(f"{p}/queue", _authed(queue)),
        web.get(f"{p}/conversations", _authed(list_conversations)),
        web.get(f"{p}/conversations/{{id}}", _authed(get_conversation)),
        web.post(f"{p}/conversations/{{id}}/claim", _authed(claim)),
        web.post(f"{p}/conversations/{{id}}/messages", _authed(reply)),
        web.post(f"{p}/conversations/{{id}}/messages/{{message_id}}/retry", _authed(retry_send)),
        web.post(f"{p}/conversations/{{id}}/notes", _authed(add_note)),
        web.post(f"{p}/conversations/{{id}}/transfer", _authed(transfer)),
        web.post(f"{p}/conversations/{{id}}/reassign", _authed(reassign)),
        web.post(f"{p}/conversations/{{id}}/close", _authed(close)),
        web.post(f"{p}/conversations/{{id}}/handback", _authed(handback)),
        web.get(f"{p}/canned", _authed(canned_api.list_canned)),
        web.post(f"{p}/canned", _authed(canned_api.add_canned)),
        web.put(f"{p}/canned/{{id}}", _authed(canned_api.update_canned)),
        web.delete(f"{p}/canned/{{id}}", _authed(canned_api.delete_canned)),
        web.post(f"{p}/canned/{{id}}/render", _authed(canned_api.render_canned)),
        web.get(f"{p}/conversations/{{id}}/suggestions", suggestions),
        *learn_routes(p),  # 教机器人, in the console and (/admin/api/…) on the dashboard
        web.get(f"{p}/agent/ws", agent_ws),
        *follow_up_routes(),
        *console_routes(),  # /agent/api/…: the console's customer panel and history search
    ]


def service_of(request: web.Request) -> HandoffService:
    """The app's handoff service."""
    return request.app[HANDOFF]


def _authed(handler: AgentHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        agent = await require_agent(request)
        try:
            return await handler(request, agent, service_of(request))
        except HandoffError as exc:
            raise http_error(_STATUS.get(exc.status, web.HTTPBadRequest), exc.message) from None

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(
        body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False, default=_default)
    )


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    data = await read_json(request, request.app[RUNTIME].settings.server.max_body_bytes)
    if not isinstance(data, dict):
        raise http_error(web.HTTPBadRequest, "body must be a JSON object")
    return data


def _text(data: dict[str, Any], name: str, limit: int, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise http_error(web.HTTPBadRequest, f"{name} must be a non-empty string")
    if len(value) > limit:
        raise http_error(web.HTTPBadRequest, f"{name} is longer than {limit} characters")
    if _CONTROL.search(value):  # PostgreSQL cannot store NUL; the others are never typed
        raise http_error(web.HTTPBadRequest, f"{name} contains control characters")
    return value


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ID_MAX


def _agent_json(agent: AgentInfo) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "role": agent.role.value,
        "groups": sorted(agent.groups),
        "max_chats": agent.max_chats,
    }


# --- me ------------------------------------------------------------------------------------------


async def me(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Who the token belongs to, presence and open conversations."""
    row = await service.db.agent_row(agent.id)
    assert row is not None
    return _json(
        {
            **_agent_json(agent),
            "presence": row.presence.value,
            "declared_presence": row.declared.value,
            "load": row.load,
        }
    )


async def set_presence(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Set online / away / offline (online also counts as a heartbeat)."""
    value = (await _body(request)).get("presence")
    if not isinstance(value, str) or value not in {p.value for p in Presence}:
        raise http_error(web.HTTPBadRequest, "presence must be one of online, away, offline")
    presence = Presence(value)
    await service.set_presence(agent, presence)
    return await me(request, agent, service)


# --- queue and conversations -----------------------------------------------------------------------


async def queue(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """A page of the waiting conversations of the agent's groups (all for supervisors), in serving order.

    `limit` (1-500, default 50) and `cursor` (the previous page's `next_cursor`); O(page) whatever the
    queue's length.
    """
    raw = request.query.get("limit", str(QUEUE_PAGE))
    try:
        limit = int(raw)
    except ValueError:
        raise http_error(web.HTTPBadRequest, f"limit must be a number, got {raw!r}") from None
    if not 1 <= limit <= QUEUE_PAGE_MAX:
        raise http_error(web.HTTPBadRequest, f"limit must be between 1 and {QUEUE_PAGE_MAX}")
    try:
        items, next_cursor, total = await service.queue_for(
            agent, limit=limit, cursor=request.query.get("cursor")
        )
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, str(exc)) from None
    return _json({"queue": items, "next_cursor": next_cursor, "total": total})


async def _summary(service: HandoffService, conversation_id: int) -> dict[str, Any] | None:
    store = service.runtime.store
    conv = await store.conversation(conversation_id)
    if conv is None:
        return None
    ref = await service.db.get_conversation(str(conversation_id))
    customer = await service.db.customer(conv.customer_id)
    messages = await store.messages(conversation_id)
    last = messages[-1] if messages else None
    return {
        "id": conv.id,
        "state": conv.state.value,
        "group": ref.group if ref else conv.group,
        "priority": conv.priority,
        "channel": conv.channel,
        "assigned_agent_id": ref.assigned_agent_id if ref else None,
        "customer": {"name": customer["name"], "user_id": customer["user_id"]} if customer else None,
        "last_message": {"sender": last.sender, "text": last.text, "at": last.created_at} if last else None,
    }


async def list_conversations(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """The agent's open conversations (`mine=1`, and always for agents); supervisors get every assigned one."""
    raw = request.query.get("mine", "0")
    if raw not in ("0", "1", "true", "false"):
        raise http_error(web.HTTPBadRequest, "mine must be 0, 1, true or false")
    mine = raw in ("1", "true")
    if mine or not agent.role.sees_everything:
        ids = await service.db.conversations_of(agent.id)
    else:
        ids = await service.db.all_assigned()
    items = [s for cid in ids if (s := await _summary(service, cid)) is not None]
    return _json({"conversations": items})


def attachment_json(media: Media | None, m: MessageRow) -> dict[str, Any] | None:
    """A message's image or file with a signed URL (gateway.media), or None."""
    return media.message_json(m.id, m.attachment) if media is not None and m.attachment else None


def _conversation_id(request: web.Request) -> str:
    return str(path_id(request, "conversation"))


async def get_conversation(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Full history, customer (channel, name, earlier conversations), handoff reason, the bot's last guesses."""
    cid = _conversation_id(request)
    ref = await service.conversation_for(agent, cid)
    store = service.runtime.store
    conv = await store.conversation(int(cid))
    assert conv is not None
    customer = await service.db.customer(conv.customer_id)
    earlier = [
        {
            "id": c.id,
            "state": c.state,
            "opened_at": c.opened_at,
            "closed_reason": c.closed_reason,
            "handoff_reason": c.handoff_reason,
        }
        for c in await service.db.customer_conversations(conv.customer_id)
        if c.id != conv.id
    ]
    messages = await store.messages(conv.id)
    # A send the platform refused (e.g. WeCom's 5-per-message quota) shows the agent why.
    delivery = await store.delivery([m.id for m in messages if m.direction == "out"])
    replies_by_inbound: dict[int, list[Any]] = {}
    for m in messages:
        if m.reply_to is not None:
            replies_by_inbound.setdefault(m.reply_to, []).append(m)
    guesses = []
    for m in messages:
        if m.direction != "in" or m.decision in (None, "with_human", "csat", "event", "not_addressed"):
            continue
        alternatives = [s for r in replies_by_inbound.get(m.id, []) for s in r.suggestions]
        guesses.append(
            {
                "message_id": m.id,
                "text": m.text,
                "decision": m.decision,
                "reason": m.reason,
                "entry_id": m.entry_id,
                "confidence": m.confidence,
                "alternatives": alternatives,
            }
        )
    assignment = await service.db.assignment(conv.id)
    agent_name = None
    if ref.assigned_agent_id is not None:
        holder = await service.db.get_agent(ref.assigned_agent_id)
        agent_name = holder.name if holder else None
    body = {
        "id": conv.id,
        "state": conv.state.value,
        "group": ref.group,
        "priority": conv.priority,
        "handoff_reason": conv.handoff_reason,
        "queued_at": conv.queued_at,
        "opened_at": conv.opened_at,
        "closed_at": conv.closed_at,
        "closed_reason": conv.closed_reason,
        "channel": conv.channel,
        "account": conv.account,
        "customer": {**(customer or {}), "earlier_conversations": earlier},
        "assignment": {
            "agent_id": ref.assigned_agent_id,
            "agent_name": agent_name,
            "assigned_at": assignment.assigned_at if assignment else None,
            "first_response_at": assignment.first_response_at if assignment else None,
            "tags": assignment.tags if assignment else None,
        },
        "messages": [
            {
                "id": m.id,
                "direction": m.direction,
                "sender": m.sender,
                "sender_name": m.sender_name,
                "text": m.text,
                "kind": m.kind,
                "attachment": attachment_json(service.runtime.media, m),
                "created_at": m.created_at,
                # Every outgoing message: queued / sent / failed / undeliverable, the reason, retry allowed.
                "delivery": delivery_view(*delivery.get(m.id, (None, None)))
                if m.direction == "out"
                else None,
            }
            for m in messages
        ],
        "notes": [
            {
                "id": n.id,
                "agent_id": str(n.agent_id),
                "agent_name": n.agent_name,
                "text": n.text,
                "created_at": n.created_at,
            }
            for n in await service.db.notes(conv.id)
        ],
        "bot_guesses": guesses[-3:],
        "csat": await service.db.csat(conv.id),
    }
    return _json(body)


async def claim(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Take a queued conversation; 409 when another agent was faster."""
    cid = _conversation_id(request)
    await service.claim(agent, cid)
    return _json(await _summary(service, int(cid)))


async def reply(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Send a text to the customer (stored, then delivered by the outbox with retries)."""
    cid = _conversation_id(request)
    data = await _body(request)
    text = _text(data, "text", MAX_TEXT)
    assert text is not None
    if (unfilled := unfilled_refusal(text)) is not None:  # a canned reply's {placeholder} left in it
        raise http_error(
            web.HTTPUnprocessableEntity,
            str(unfilled["error"]),
            fields={k: v for k, v in unfilled.items() if k != "error"},
        )
    if (refusal := blocked_reply(request.app.get(QA), text)) is not None:  # 质检 rules with block: true
        raise http_error(web.HTTPUnprocessableEntity, str(refusal["error"]), fields={"hits": refusal["hits"]})
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise http_error(web.HTTPBadRequest, "Idempotency-Key must be 1–200 printable ASCII characters")
    # A console retrying after a network error sends the same key: the same stored message, one send.
    message_id = await service.reply(agent, cid, text, idempotency_key=key)
    return _json({"message_id": message_id, "conversation_id": int(cid)}, status=201)


async def retry_send(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Send a failed or undeliverable reply again (e.g. after the customer wrote, reopening WeChat's window)."""
    cid = _conversation_id(request)
    message_id = path_id(request, "message", "message_id")
    ref = await service.conversation_for(agent, cid)
    if not can_reply(agent, ref).allowed:
        raise http_error(web.HTTPForbidden, "only the agent who has the conversation can resend its messages")
    message = await service.runtime.store.message(message_id)
    if message is None or message.conversation_id != int(cid) or message.direction != "out":
        raise http_error(web.HTTPNotFound, f"no message {message_id} sent in conversation {cid}")
    status, error = (await service.runtime.store.delivery([message_id])).get(message_id, (None, None))
    if not delivery_view(status, error)["retry"]:
        raise http_error(web.HTTPConflict, "这条消息无需或无法重发（已送达、发送中，或需先修改配置）")
    if not await service.runtime.store.resend_message(message_id, service.clock.now()):
        raise http_error(web.HTTPConflict, "这条消息已在重发中")
    service.runtime.outbox.wake()
    view = delivery_view("pending", None)
    await service.publish(
        "message.delivery",
        {"message_id": message_id, "delivery": view},
        conversation_id=int(cid),
        agent_id=agent.id,
    )
    return _json({"message_id": message_id, "delivery": view})


async def add_note(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """An internal note: stored with the conversation, never sent to the customer."""
    cid = _conversation_id(request)
    await service.conversation_for(agent, cid)
    text = _text(await _body(request), "text", MAX_NOTE)
    assert text is not None
    note = await service.db.add_note(int(cid), agent.id, text)
    return _json(
        {"id": note.id, "agent_name": note.agent_name, "text": note.text, "created_at": note.created_at},
        status=201,
    )


async def transfer(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Hand over to `{"agent": name}` or to `{"group": name}`'s queue."""
    cid = _conversation_id(request)
    data = await _body(request)
    to_agent = _text(data, "agent", 64, required=False)
    to_group = _text(data, "group", 64, required=False)
    if (to_agent is None) == (to_group is None):
        raise http_error(web.HTTPBadRequest, "give exactly one of agent, group")
    await service.transfer(agent, cid, to_agent=to_agent, to_group=to_group)
    return _json(await _summary(service, int(cid)))


async def reassign(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Supervisors: move any open conversation to `{"agent": name}`."""
    cid = _conversation_id(request)
    to_agent = _text(await _body(request), "agent", 64)
    assert to_agent is not None
    await service.reassign(agent, cid, to_agent)
    return _json(await _summary(service, int(cid)))


def _tags(data: dict[str, Any]) -> list[str]:
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and len(t) <= 32 for t in tags):
        raise http_error(web.HTTPBadRequest, "tags must be a list of strings of at most 32 characters")
    return tags


async def close(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """End the conversation with wrap-up `tags`; the customer is asked the CSAT question."""
    cid = _conversation_id(request)
    await service.close(agent, cid, reason=CloseReason.AGENT, tags=_tags(await _body(request)))
    return _json(await _summary(service, int(cid)))


async def handback(request: web.Request, agent: AgentInfo, service: HandoffService) -> web.Response:
    """Give the conversation back to the bot (it answers the customer's next message again)."""
    cid = _conversation_id(request)
    await service.close(agent, cid, reason=CloseReason.BACK_TO_BOT, tags=_tags(await _body(request)))
    return _json(await _summary(service, int(cid)))


async def openapi_view(request: web.Request) -> web.Response:
    """The OpenAPI 3 description of this API."""
    return _json(spec())
