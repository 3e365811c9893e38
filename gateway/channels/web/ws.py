"""`/web/ws`: the website chat widget's live connection (one socket per open browser tab).

Protocol (JSON text frames):

- the browser connects to `/web/ws?visitor=<random id>` (16–64 of `A-Za-z0-9_-`, kept in localStorage:
  the id is the visitor's only credential, so it must be unguessable) and gets
  `{"type": "history", "messages": [...], "status": {...}}` — the visitor's earlier messages;
- `{"type": "message", "client_id": "c-…", "text": "…", "name": "…"}` sends a text. The client id becomes the
  pipeline's `channel_msg_id` (`{visitor}:{client_id}`), so a resend after a reconnect is stored and
  answered once; the server answers `{"type": "ack", "client_id", "message_id", "duplicate"}`;
- the server pushes every new message of the visitor's conversations as
  `{"type": "message", "message": {id, direction, sender, sender_name, text, suggestions, client_id, at}}`
  (the visitor's own lines too, so several tabs stay in step) followed by
  `{"type": "status", "state", "position", "agent_name", "csat_pending"}`;
- `{"type": "message", "client_id", "attachment": "<key>", "text": "<optional caption>"}` sends an image or
  file uploaded first with `POST /web/uploads` (gateway/channels/web/uploads.py); messages carry
  `attachment: {kind, name, size, mime, url}` with a signed, expiring URL;
- `{"type": "typing"}` (the page sends one every ~2 s while the visitor types) tells the agent serving
  the conversation; `{"type": "typing", "who": "agent"}` comes the other way (gateway/typing_relay.py);
- the history frame also carries `welcome: {text, questions}` (`channels.web.welcome`, common questions);
- `{"type": "ping"}` → `{"type": "pong"}`;
- a visitor sending faster than `channels.web.rate_limit_*` allows (all their tabs and POST /web/messages
  share one bucket) gets `{"type": "error", "code": "rate_limited", "client_id", "error": "您发送得太快了…",
  "retry_after": <seconds>}` instead of an ack: that message is neither handled nor stored;
- while the shared limit's Redis is down (`redis.url`): `{"type": "error", "code": "unavailable", "client_id",
  "error": "抱歉，系统暂时繁忙…"}`, also neither handled nor stored (the page may send it again).

Later texts (agent replies, queue notices, the CSAT question) reach the socket through the outbox:
`WebChatSockets.send` wakes the visitor's sockets, which read the new rows from the database, so a
message is never lost when the visitor is offline — it is in the history when they come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from gateway.channels.base import ChannelAdapter, Outgoing
from gateway.channels.web.adapter import (
    CHANNEL,
    MAX_NAME,
    MAX_TEXT,
    RATE_LIMITED,
    RATE_LIMITED_TEXT,
    WebAdapter,
    conversation_key,
    visitor_rate_limit,
)
from gateway.channels.web.uploads import UPLOAD_PATH, visitor_upload
from gateway.http.bodies import expect_within, http_error, loads, parse_int
from gateway.media.service import attachment_of
from gateway.media.upload_body import upload_body_limit
from gateway.message import Attachment, Message, utcnow
from gateway.rate_limit import VisitorLimit, retry_after_header
from gateway.storage import MessageRow
from gateway.wakeups import WakeLoop
from handoff.state import ConversationState

if TYPE_CHECKING:
    from gateway.runtime import Runtime

logger = logging.getLogger(__name__)

WS_PATH = "/web/ws"
VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,60}$")
HISTORY_LIMIT = 200
# A socket also re-reads the database this often: texts written by another gateway process show up.
POLL_S = 5.0
UNAVAILABLE = "unavailable"
UNAVAILABLE_TEXT = "抱歉，系统暂时繁忙，这条消息没有发出，请稍后重试。"


class WebChatSockets:
    """The web channel adapter with live delivery: wraps the webhook adapter, adds `/web/ws`.

    `send` (called by the outbox) wakes the visitor's open sockets and then lets the wrapped adapter do
    its own delivery (the optional HTTP callback); with no socket open the text simply waits in the
    database for the visitor's next visit.
    """

    def __init__(
        self, inner: ChannelAdapter, runtime: Runtime, rate_limit: VisitorLimit | None = None
    ) -> None:
        self.inner = inner
        self.runtime = runtime
        self.rate_limit = rate_limit  # per conversation key, so a visitor's tabs share one bucket
        self.channel = inner.channel
        self.account = inner.account
        self._sessions: dict[str, set[_Session]] = {}  # by conversation key: typing notices
        self.sockets: set[web.WebSocketResponse] = set()

    def routes(self) -> list[web.AbstractRouteDef]:
        """The wrapped adapter's routes and the WebSocket (what `kefu serve` lists for this channel)."""
        return [*self.inner.routes(), *self.own_routes()]

    def own_routes(self) -> list[web.AbstractRouteDef]:
        """Only the WebSocket: the wrapped adapter's routes are registered by the app factory already."""
        # The rule of gateway.http.expect.upload_route, built here: a channel does not import the http room.
        expect = expect_within(lambda _request: upload_body_limit(self.runtime.settings.uploads.max_bytes))
        return [web.get(WS_PATH, self.websocket), web.post(UPLOAD_PATH, self.upload, expect_handler=expect)]

    async def upload(self, request: web.Request) -> web.Response:
        """`POST /web/uploads?visitor=…`: see gateway/channels/web/uploads.py."""
        visitor = request.query.get("visitor", "")
        if not VISITOR_ID.match(visitor):
            raise http_error(web.HTTPBadRequest, "visitor must be 16–64 characters of A-Z a-z 0-9 _ -")
        return await visitor_upload(self, visitor, request)

    async def show_typing(self, key: str) -> None:
        """The agent is typing to this visitor: tell their open tabs (the agent socket throttles)."""
        for session in list(self._sessions.get(key, ())):
            with contextlib.suppress(Exception):
                await session.send_json({"type": "typing", "who": "agent"})

    async def send(self, outgoing: Outgoing) -> None:
        """Wake the visitor's sockets (they read the stored row), then the wrapped adapter's delivery."""
        self.wake(outgoing.conversation_key)
        await self.inner.send(outgoing)

    def wake(self, key: str) -> None:
        """Something new is stored for this conversation key (its sockets on every process look now)."""
        self.runtime.coord.bus.publish(_topic(key))

    async def startup(self) -> None:
        """The wrapped adapter's start-up hook, if it has one."""
        startup = getattr(self.inner, "startup", None)
        if startup is not None:
            await startup()

    async def close_connections(self) -> None:
        """Close open visitor sockets (1001: going away) on app shutdown; the pages reconnect by themselves.

        Called before aiohttp waits for open handlers, so a visitor's tab does not hold the shutdown up.
        """
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"server shutdown")
        close = getattr(self.inner, "close_connections", None)
        if close is not None:
            await close()

    async def shutdown(self) -> None:
        """Close open visitor sockets (app cleanup), then the wrapped adapter's shutdown hook."""
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"server shutdown")
        shutdown = getattr(self.inner, "shutdown", None)
        if shutdown is not None:
            await shutdown()

    # --- the socket ------------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """One browser tab of one visitor: history first, then live messages both ways."""
        visitor = request.query.get("visitor", "")
        if not VISITOR_ID.match(visitor):
            raise web.HTTPBadRequest(text="visitor must be 16–64 characters of A-Z a-z 0-9 _ -")
        after = _int(request.query.get("after"), 0)
        key = conversation_key(self.account, visitor)
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=16 * 1024)
        await ws.prepare(request)
        flag = self.runtime.coord.bus.subscribe(_topic(key))
        self.sockets.add(ws)
        session = _Session(self, ws, visitor, key, after)
        self._sessions.setdefault(key, set()).add(session)
        pusher = WakeLoop(flag, POLL_S, session.push_step, lambda: not ws.closed)
        pusher.start(f"kefu-web-ws-{visitor[:8]}")
        try:
            await session.send_history()
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await session.on_frame(msg.data)
        except ConnectionResetError:
            pass
        finally:
            await pusher.stop()
            sessions = self._sessions.get(key)
            if sessions is not None:
                sessions.discard(session)
                if not sessions:
                    self._sessions.pop(key, None)
            self.runtime.coord.bus.unsubscribe(_topic(key), flag)
            self.sockets.discard(ws)
        return ws


def _topic(key: str) -> str:
    """The wake-up topic of one visitor's conversation key (gateway/coord/events.py)."""
    return f"web:{key}"


class _Session:
    """The state of one open visitor socket: its cursor (the last message id it has sent)."""

    def __init__(
        self, hub: WebChatSockets, ws: web.WebSocketResponse, visitor: str, key: str, after: int
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.visitor = visitor
        self.key = key
        self.cursor = max(after, 0)
        self.lock = asyncio.Lock()
        self.name: str | None = None

    @property
    def runtime(self) -> Runtime:
        return self.hub.runtime

    async def send_json(self, data: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(data, ensure_ascii=False))

    async def send_history(self) -> None:
        async with self.lock:
            rows = await self.runtime.store.messages_for_key(self.key, after=self.cursor, limit=10_000)
            rows = rows[-HISTORY_LIMIT:]
            if rows:
                self.cursor = rows[-1].id
            await self.send_json(
                {
                    "type": "history",
                    "messages": [self._message_json(r) for r in rows],
                    "status": await self.status(),
                    "welcome": welcome(self.runtime),
                    "uploads": {
                        "max_bytes": self.runtime.settings.uploads.max_bytes,
                        "types": list(self.runtime.settings.uploads.allowed_types),
                    },
                }
            )

    async def push_step(self) -> bool:
        """One push of what is new (the socket's WakeLoop); False ends the pushing."""
        try:
            await self.flush()
        except ConnectionResetError:
            return False
        except Exception:
            logger.exception("web ws: pushing to visitor %s… failed", self.visitor[:6])
        return True

    async def flush(self) -> None:
        """Send every stored message after the cursor, then the conversation's status."""
        async with self.lock:
            rows = await self.runtime.store.messages_for_key(self.key, after=self.cursor, limit=500)
            if not rows:
                return
            for row in rows:
                self.cursor = row.id
                await self.send_json({"type": "message", "message": self._message_json(row)})
            await self.send_json({"type": "status", **await self.status()})

    async def on_frame(self, raw: str) -> None:
        try:
            data = loads(raw)
        except ValueError:
            await self.send_json({"type": "error", "error": "frames must be JSON objects"})
            return
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "message":
            await self.on_message(data)
        elif kind == "typing":
            await self.on_typing()
        else:
            await self.send_json({"type": "error", "error": f"unknown type {kind!r}; use message or ping"})

    async def on_typing(self) -> None:
        """Tell the agent who has this conversation (nobody else: a queue is no audience)."""
        handoff = self.runtime.handoff
        if handoff is None or not self.runtime.typing.allow("customer", self.key):
            return
        conversations = await self.runtime.store.conversations_for_key(self.key)
        latest = conversations[-1] if conversations else None
        if latest is None or latest.state is not ConversationState.ASSIGNED:
            return
        ref = await handoff.db.get_conversation(str(latest.id))
        if ref is not None and ref.assigned_agent_id is not None:
            await self.runtime.typing.to_agent(str(ref.assigned_agent_id), latest.id)

    async def on_message(self, data: dict[str, Any]) -> None:
        client_id = data.get("client_id")
        text = data.get("text")
        name = data.get("name")
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id):
            await self.send_json({"type": "error", "error": "client_id must be 1–60 of A-Z a-z 0-9 _ -"})
            return
        attachment = None
        if data.get("attachment") is not None:
            attachment = await self._attachment(data.get("attachment"))
            if attachment is None:
                error = "附件不存在或已过期，请重新选择文件。"
                await self.send_json({"type": "error", "client_id": client_id, "error": error})
                return
            text = text.strip() if isinstance(text, str) and text.strip() else attachment.placeholder()
        problem = _text_problem(text)
        if problem is not None:
            await self.send_json({"type": "error", "client_id": client_id, "error": problem})
            return
        limit = self.hub.rate_limit
        try:
            wait = await limit.check(self.key) if limit is not None else 0.0
        except ConnectionError:  # the shared limit's Redis is down: not handled, the page may resend
            await self.send_json(
                {"type": "error", "code": UNAVAILABLE, "client_id": client_id, "error": UNAVAILABLE_TEXT}
            )
            return
        if wait > 0:
            await self.send_json(
                {
                    "type": "error",
                    "code": RATE_LIMITED,
                    "client_id": client_id,
                    "error": RATE_LIMITED_TEXT,
                    "retry_after": int(retry_after_header(wait)),
                }
            )
            return
        if isinstance(name, str) and name.strip() and len(name) <= MAX_NAME:
            self.name = name.strip()
        assert isinstance(text, str)
        message = Message(
            channel=CHANNEL,
            account=self.hub.account,
            conversation_key=self.key,
            user_id=self.visitor,
            user_name=self.name,
            text=text,
            channel_msg_id=f"{self.visitor}:{client_id}",
            kind=attachment.kind if attachment is not None else "text",
            attachment=attachment,
            raw={"source": "web_ws"},
        )
        try:
            result = await self.runtime.pipeline.handle(message)
        except Exception:
            # Nothing half-written (one transaction); the page reconnects and resends the same client id.
            logger.exception("web ws: handling a message of visitor %s… failed", self.visitor[:6])
            await self.ws.close(code=1011, message=b"temporarily unavailable, resend")
            return
        await self.send_json(
            {
                "type": "ack",
                "client_id": client_id,
                "message_id": result.message_id,
                "duplicate": result.duplicate,
            }
        )
        self.hub.wake(self.key)  # this tab and the visitor's other tabs read the new rows
        await self.flush()

    async def _attachment(self, key: Any) -> Attachment | None:
        """The visitor's own upload by key (another visitor's key is as good as none)."""
        media = self.runtime.media
        if media is None or not isinstance(key, str):
            return None
        stored = await media.store.info(key)
        if stored is None or stored.owner != self.key:
            return None
        return attachment_of(stored)

    async def status(self) -> dict[str, Any]:
        """Where the visitor's conversation stands: bot / queued (position) / assigned (agent) / rating."""
        out: dict[str, Any] = {"state": "bot", "position": None, "agent_name": None, "csat_pending": False}
        conversations = await self.runtime.store.conversations_for_key(self.key)
        handoff = self.runtime.handoff
        if not conversations or handoff is None:
            return out
        latest = conversations[-1]
        out["state"] = latest.state.value
        if latest.state is ConversationState.QUEUED:
            out["position"] = await handoff.db.queue_position(str(latest.id))
        elif latest.state is ConversationState.ASSIGNED:
            ref = await handoff.db.get_conversation(str(latest.id))
            if ref is not None and ref.assigned_agent_id is not None:
                agent = await handoff.db.get_agent(ref.assigned_agent_id)
                out["agent_name"] = agent.name if agent else None
        elif latest.state is ConversationState.CLOSED:
            out["csat_pending"] = await handoff.db.pending_csat_for_key(self.key, utcnow()) is not None
        return out

    def _message_json(self, row: MessageRow) -> dict[str, Any]:
        media = self.runtime.media if row.attachment else None
        prefix = f"{self.visitor}:"
        client_id = None
        if row.channel_msg_id and row.channel_msg_id.startswith(prefix):
            client_id = row.channel_msg_id[len(prefix) :]
        return {
            "id": row.id,
            "direction": row.direction,
            "sender": row.sender,
            "sender_name": row.sender_name if row.sender == "agent" else None,
            "text": row.text,
            "suggestions": list(row.suggestions),
            "client_id": client_id,
            "at": row.created_at.isoformat(),
            "kind": row.kind,
            "attachment": media.message_json(row.id, row.attachment) if media is not None else None,
        }


def welcome(runtime: Runtime) -> dict[str, Any]:
    """What the chat shows on open: `channels.web.welcome` (else the FAQ's greeting) and common questions."""
    settings = runtime.settings.channels.web
    snapshot = runtime.kb.snapshot()
    kb = snapshot[0] if snapshot else None
    text = settings.welcome or (kb.replies.get("greeting") if kb else "您好，请问有什么可以帮您？")
    questions: list[str] = []
    if kb is not None:
        entries = [e for e in kb.entries if e.enabled]
        if settings.common_questions:
            by_id = {e.id: e.question for e in entries}
            questions = [by_id.get(q, q) for q in settings.common_questions]
        else:
            questions = [e.question for e in entries[: settings.common_question_count]]
    return {"text": text, "questions": questions}


def _text_problem(text: Any) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return "text must be a non-empty string"
    if len(text) > MAX_TEXT:
        return f"text is longer than {MAX_TEXT} characters"
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        return "text contains control characters"
    return None


def _int(value: str | None, default: int) -> int:
    try:  # lenient: a junk cursor replays from the start rather than refusing the socket
        return parse_int(value, "after", default=default)
    except web.HTTPException:
        return default


def install_web_chat(runtime: Runtime, add_routes: Callable[[list[web.AbstractRouteDef]], Any]) -> None:
    """Wrap the configured web adapter with live sockets and register `/web/ws` (no-op without one)."""
    key = (CHANNEL, "default")
    inner = runtime.adapters.get(key)
    if inner is None or isinstance(inner, WebChatSockets):
        return
    # The webhook adapter's limiter, so a visitor's socket and HTTP posts spend from the same bucket.
    if isinstance(inner, WebAdapter):
        rate_limit = inner.rate_limit
    else:
        rate_limit = visitor_rate_limit(runtime.settings.channels.web, runtime)
    hub = WebChatSockets(inner, runtime, rate_limit)
    runtime.adapters[key] = hub  # the outbox now delivers web texts through the hub
    add_routes(hub.own_routes())
