"""`/api/v1/agent/ws`: the console's live feed (queue changes, customer messages, assignments, transfers).

Every event is a row in `agent_events` with a sequence number, so it survives restarts and is the same
for every gateway process. A console that reconnects sends `{"type": "resume", "after": <last seq>}` and
gets what it missed. `{"type": "ping"}` every ~20 s is the heartbeat that keeps the agent online.
The coordination bus wakes the sockets at once: those of this process, and with `redis.url` those of
every process (Redis pub/sub, gateway/coord/events.py); a socket also polls the table now and then
(`poll_s`: 1 s without Redis, 10 s with it), so a lost wake-up only delays.

Authentication: `Authorization: Bearer <token>` (programs), or the subprotocols
`Sec-WebSocket-Protocol: kefu.agent, token.<token>` (browsers, which cannot set headers on a WebSocket);
the server answers with `kefu.agent`. `?token=<token>` still works but is deprecated (see PROTOCOL).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, hdrs, web

from gateway.coord import CoordUnavailable
from gateway.handoff_events import visible_to
from gateway.http.auth import bearer_token, require_agent
from gateway.http.bodies import ID_MAX, client_gone, http_error, loads
from gateway.keys import HANDOFF
from gateway.wakeups import WakeLoop
from handoff.agents import AgentInfo

if TYPE_CHECKING:
    from gateway.handoff_service import HandoffService

logger = logging.getLogger(__name__)

# The browser console sends its token as a subprotocol, not in the URL, which proxies and access logs
# record. Chosen over "token in the first frame": the token is still checked before the upgrade, so a
# bad one is a plain 401 and there is no unauthenticated open socket to time out, and the Sec-WebSocket-
# Protocol header is the only one a browser lets a page set on a WebSocket. Agent tokens (`kefu_` +
# URL-safe base64) are valid subprotocol names as they are.
PROTOCOL = "kefu.agent"
MAX_FRAME_BYTES = 64 * 1024  # the largest frame an agent's socket takes (a larger one closes it: 1009)
TOKEN_PROTOCOL = "token."
_query_token_warned = False  # the deprecation warning is logged once per process


async def agent_ws(request: web.Request) -> web.StreamResponse:
    """Authenticate (401 before the upgrade), then push events and read pings/resumes until closed."""
    agent = await require_agent(request, token=handshake_token(request))
    service = request.app[HANDOFF]
    # Answers `kefu.agent` when the client offered it (a browser fails a handshake that selects none).
    # An agent's frames are small JSON commands (ping, resume, typing); aiohttp's default allows 4 MiB.
    ws = web.WebSocketResponse(heartbeat=None, protocols=(PROTOCOL,), max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    try:
        await service.connected(agent)
    except CoordUnavailable:
        # Redis is down: the console reconnects by itself (1013: try again later).
        await ws.close(code=1013, message=b"temporarily unavailable")
        return ws
    service.sockets.add(ws)
    flag = service.bus.subscribe()
    lock = asyncio.Lock()  # the cursor and the sends move together (resume vs. live push)
    cursor = 0
    # Every event after `floor` has been sent on this socket (or is about to be, by the live push): a
    # resume replays only what lies below it, so an event pushed live before the resume arrived is not
    # sent a second time.
    floor = 0

    async def send(data: dict[str, Any]) -> None:
        await ws.send_str(json.dumps(data, ensure_ascii=False))

    async def push(after: int, upto: int | None = None) -> int:
        """Send the visible events after `after` (and at most `upto`) in order; the last seq read."""
        while rows := await service.db.events_after(after, 200):
            for row in rows:
                if upto is not None and row.seq > upto:
                    return after
                after = row.seq
                if service_visible(row):
                    await send({"type": "event", **row.as_json()})
        return after

    async def flush() -> None:
        nonlocal cursor
        async with lock:
            cursor = await push(cursor)

    def service_visible(row: Any) -> bool:
        return visible_to(row, agent)

    async def push_step() -> bool:
        try:
            await flush()
        except ConnectionResetError:
            return False
        return True

    pusher = WakeLoop(flag, service.bus.poll_s, push_step, lambda: not ws.closed)
    # Everything after `connected` is undone in `finally`, also when the console hangs up before its hello:
    # a reset at the upgrade left the agent connected (and its socket and subscription kept) for good.
    try:
        cursor = floor = await service.db.last_seq()
        # Online before the hello: a console that got its hello is already eligible for new chats.
        await service.heartbeat(agent)
        await send(
            {
                "type": "hello",
                "agent": {"id": agent.id, "name": agent.name, "role": agent.role.value},
                "seq": cursor,
            }
        )
        service.runtime.typing.join(agent.id, send)  # "对方正在输入…" of their customers (left in finally)
        pusher.start(f"kefu-agent-ws-{agent.id}")
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                data = loads(msg.data)
            except ValueError:
                await send({"type": "error", "error": "messages must be JSON objects"})
                continue
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "ping":
                await service.heartbeat(agent)
                await send({"type": "pong", "seq": cursor})
            elif kind == "resume":
                after = data.get("after")
                if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= ID_MAX:
                    await send({"type": "error", "error": "resume needs after: a sequence number >= 0"})
                    continue
                async with lock:
                    if after < floor:
                        await push(after, floor)
                        floor = after
                    # A cursor ahead of ours: the console says it has those events already.
                    cursor = max(cursor, after)
                await flush()
                await send({"type": "resumed", "seq": cursor})
            elif kind == "typing":
                await agent_typing(service, agent, data.get("conversation_id"))
            else:
                await send({"type": "error", "error": f"unknown message type {kind!r}; use ping or resume"})
    except ConnectionResetError:
        if not (ws.closed or client_gone(request)):
            raise  # not this socket's (a driver's connection): error_middleware says what it was
        # The console hung up while something was written to it (even the hello): nobody left to tell.
    finally:
        await pusher.stop()
        service.bus.unsubscribe(flag)
        service.runtime.typing.leave(agent.id, send)
        service.sockets.discard(ws)
        try:
            await service.disconnected(agent)
        except Exception:  # the database may be gone at shutdown; presence then times out by itself
            logger.warning("agent ws: could not mark agent %s offline", agent.id)
    return ws


async def agent_typing(service: HandoffService, agent: AgentInfo, conversation_id: Any) -> None:
    """`{"type": "typing", "conversation_id"}`: the assignee is typing; a web visitor's tabs show it.

    Throttled per conversation before any read; silently dropped for a conversation that is not theirs.
    """
    if (
        isinstance(conversation_id, bool)
        or not isinstance(conversation_id, int)
        or not 1 <= conversation_id <= ID_MAX
    ):
        return
    runtime = service.runtime
    if not runtime.typing.allow("agent", str(conversation_id)):
        return
    ref = await service.db.get_conversation(str(conversation_id))
    if ref is None or str(ref.assigned_agent_id) != agent.id:
        return
    conversation = await runtime.store.conversation(conversation_id)
    adapter = runtime.adapters.get((conversation.channel, conversation.account)) if conversation else None
    show = getattr(adapter, "show_typing", None)  # only the web chat can show it
    if show is not None and conversation is not None:
        await show(conversation.conversation_key)


def handshake_token(request: web.Request) -> str | None:
    """The token of the `token.<token>` subprotocol, else of the deprecated `?token=`; None when neither.

    A bearer token in the request header wins over both (see `gateway.http.auth.resolve`).
    """
    offered = [p.strip() for p in request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "").split(",")]
    tokens = [p[len(TOKEN_PROTOCOL) :] for p in offered if p.startswith(TOKEN_PROTOCOL)]
    if tokens:
        if PROTOCOL not in offered:
            # Refused here: aiohttp would log the offered protocols (the token among them) as unknown.
            raise http_error(
                web.HTTPBadRequest, f"offer the {PROTOCOL} subprotocol along with {TOKEN_PROTOCOL}<token>"
            )
        return tokens[0]
    query = request.query.get("token", "").strip()
    if query and bearer_token(request) is None:
        _warn_query_token()
        return query
    return None


def _warn_query_token() -> None:
    global _query_token_warned
    if _query_token_warned:
        return
    _query_token_warned = True
    logger.warning(
        "agent ws: a client sent its token as ?token= in the URL, which proxies and access logs may record; "
        "this is deprecated: send Sec-WebSocket-Protocol: %s, %s<token> (docs/api.md)",
        PROTOCOL,
        TOKEN_PROTOCOL,
    )
