"""QQ groups and private chats through OneBot v11 (NapCat, Lagrange, go-cqhttp, LLOneBot).

One `OneBotAdapter` per configured account serves:
- `POST /onebot/{name}` — OneBot's HTTP POST events (`X-Signature: sha1=…` when a secret is set). The
  bot's answer goes back in the HTTP response as a quick operation when the pipeline is done within
  `QUICK_REPLY_DEADLINE_S`; otherwise 204 and the answer is pushed through the outbox.
- `GET /onebot/{name}/ws` — the reverse WebSocket (kefu is the server): events in, API calls out. While
  an API-capable client is connected, `send` goes over it; otherwise through the HTTP API at `api_url`.

Group chats: every member is their own conversation (`qq:{name}:group:{gid}:{uid}`); the bot answers
only when @-mentioned unless `reply_in_group: always`, and @s the member it answers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from gateway.channels.base import Outgoing, SendError
from gateway.channels.delivery import Delivery
from gateway.channels.onebot import cq
from gateway.channels.onebot.settings import OneBotAccountSettings
from gateway.channels.onebot.ws import DEFAULT_API_TIMEOUT_S, ROLES, OneBotConnection
from gateway.channels.platform_http import maybe_delivered
from gateway.channels.qq import parse_conversation_key
from gateway.http.bodies import http_error, parse_json, read_body
from gateway.media.fetch import FetchError, download
from gateway.message import Attachment, Message, Reply, utcnow
from gateway.signing import signature_matches
from gateway.storage import is_database_error, is_refused

if TYPE_CHECKING:
    from gateway.runtime import Runtime

logger = logging.getLogger(__name__)

CHANNEL = "onebot"
# OneBot implementations wait a few seconds for the HTTP POST answer (go-cqhttp 5 s by default); past
# this the answer goes out through the API instead of the quick operation.
QUICK_REPLY_DEADLINE_S = 4.0
# A reverse-WebSocket event that could not be stored is tried again after this, doubling up to the cap.
WS_EVENT_RETRY_S = 0.5
WS_EVENT_RETRY_MAX_S = 30.0
HTTP_API_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)
WS_HEARTBEAT_S = 30.0


class OneBotEventError(Exception):
    """A message event kefu cannot read (400)."""


# --- events in ---------------------------------------------------------------------------------


def conversation_key(account: str, chat_type: str, user_id: str, group_id: str | None = None) -> str:
    """`qq:{account}:group:{gid}:{uid}` or `qq:{account}:private:{uid}` (after NoneBot's session id)."""
    if chat_type == "group":
        return f"qq:{account}:group:{group_id}:{user_id}"
    return f"qq:{account}:private:{user_id}"


def _id(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
        raise OneBotEventError(f"{field} missing or not an id")
    return str(value).strip()


def _received_at(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 2**33:
        return datetime.fromtimestamp(value, UTC)
    return utcnow()


def ignored_reason(event: Mapping[str, Any], self_id: str | None) -> str | None:
    """Why an event is not a customer message kefu answers (None = it is one)."""
    post_type = event.get("post_type")
    if post_type != "message":
        # meta_event (heartbeat, lifecycle), notice, request, and go-cqhttp's message_sent (own messages).
        return f"post_type={post_type}"
    message_type = event.get("message_type")
    if message_type not in ("group", "private"):
        return f"message_type={message_type}"
    if message_type == "group" and event.get("sub_type") == "notice":
        return "group system notice"
    if self_id is not None and str(event.get("user_id")) == self_id:
        return "own message"
    return None


def to_message(
    account: str, event: Mapping[str, Any], *, reply_in_group: str = "mention", self_id: str | None = None
) -> Message:
    """Map a OneBot message event to kefu's Message; raises OneBotEventError when it cannot be read."""
    bot = str(event.get("self_id") or self_id or "").strip()
    if not bot:
        raise OneBotEventError("self_id missing (neither in the event nor in X-Self-ID)")
    message_type = str(event.get("message_type"))
    user_id = _id(event.get("user_id"), "user_id")
    anonymous = event.get("anonymous")
    if isinstance(anonymous, Mapping) and anonymous.get("id") is not None:
        # Every anonymous member has the same user_id (80000000); their anonymous id tells them apart.
        user_id = f"anon{_id(anonymous.get('id'), 'anonymous.id')}"
    try:
        segments = cq.normalise(event.get("message", ""))
    except ValueError as exc:
        raise OneBotEventError(str(exc)) from None
    group_id = _id(event.get("group_id"), "group_id") if message_type == "group" else None
    to_bot = True
    if group_id is not None:
        to_bot = reply_in_group == "always" or cq.mentions(segments, bot)
        segments = cq.without_mention(segments, bot)
    text = cq.plain_text(segments).strip()
    picture = _picture(segments)
    if text:
        kind = "text"
    elif any(s.get("type") == "image" for s in segments):
        kind, text = "image", "[图片]"
    else:
        kind = "other" if segments else "text"
    sender = event.get("sender") if isinstance(event.get("sender"), Mapping) else {}
    name = (sender.get("card") or sender.get("nickname") or None) if sender else None
    message_id = event.get("message_id")
    return Message(
        channel=CHANNEL,
        account=account,
        conversation_key=conversation_key(account, "group" if group_id else "private", user_id, group_id),
        user_id=user_id,
        user_name=str(name) if name else None,
        text=text,
        chat_type="group" if group_id else "private",
        group_id=group_id,
        to_bot=to_bot,
        kind=kind,  # type: ignore[arg-type]
        segments=tuple(segments),
        attachment=picture,
        # message_id is an int32 that implementations recycle; with the time it identifies one event,
        # and the same event delivered by both HTTP POST and the reverse WebSocket is deduped.
        channel_msg_id=f"{message_type}:{message_id}:{event.get('time')}" if message_id is not None else None,
        received_at=_received_at(event.get("time")),
        raw=dict(event),
    )


def _picture(segments: Sequence[Mapping[str, Any]]) -> Attachment | None:
    """The first image segment's picture (its `url` is fetched on the console's first view)."""
    for segment in segments:
        data = segment.get("data") or {}
        if segment.get("type") == "image" and isinstance(data, Mapping):
            url = str(data.get("url") or "")
            if not url and str(data.get("file") or "").startswith(("http://", "https://")):
                url = str(data["file"])  # some implementations put the URL in `file`
            if url.startswith(("http://", "https://")):
                return Attachment(kind="image", mime="image/jpeg", name="image.jpg", url=url)
    return None


def reply_text(replies: Sequence[Reply]) -> str:
    """All replies as one QQ message: blank lines between them (suggestions are already numbered in)."""
    parts: list[str] = []
    for reply in replies:
        text = reply.text.strip()
        missing = [s for s in reply.suggestions if s not in text]
        if missing:
            text = "\n".join([text, *(f"{i}. {s}" for i, s in enumerate(reply.suggestions, 1))])
        if text:
            parts.append(text)
    return "\n\n".join(parts)


def quick_operation(message: Message, text: str) -> dict[str, Any]:
    """The HTTP POST quick-operation answer; `at_sender` is explicit because OneBot defaults it to true in groups."""
    return {"reply": text, "auto_escape": True, "at_sender": message.chat_type == "group"}


def outgoing_message(chat_type: str, user_id: str, text: str, image: str | None = None) -> str:
    """A CQ string for send_*_msg: the text escaped (or an image), in groups prefixed with an @ of the member."""
    segments: list[cq.Segment] = []
    if chat_type == "group" and user_id.isdigit():  # anonymous members ("anon…") cannot be @-ed
        segments = [cq.at_segment(user_id), cq.text_segment(" ")]
    segments.append({"type": "image", "data": {"file": image}} if image else cq.text_segment(text))
    return cq.render(segments)


def sign_body(secret: str, body: bytes) -> str:
    """OneBot's HTTP POST signature header value: `sha1=` + hex HMAC-SHA1 of the raw body."""
    return "sha1=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha1).hexdigest()


def _bearer(request: web.Request) -> str | None:
    """The client's token: `Authorization: Bearer …` (go-cqhttp also sends `Token …`) or `?access_token=`."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    return request.query.get("access_token") or None


# --- the adapter ---------------------------------------------------------------------------------


class OneBotAdapter:
    """One OneBot v11 bot: HTTP POST and reverse-WebSocket events in, quick operations / API calls out."""

    channel = CHANNEL

    def __init__(
        self,
        settings: OneBotAccountSettings,
        runtime: Runtime,
        *,
        api_timeout_s: float = DEFAULT_API_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.account = settings.name
        self.runtime = runtime
        self.api_timeout_s = api_timeout_s
        self.quick_reply_deadline_s = QUICK_REPLY_DEADLINE_S
        self._api_conn: OneBotConnection | None = None
        self._event_conn: OneBotConnection | None = None
        self._connections: set[OneBotConnection] = set()
        self._logged: set[str] = set()  # event kinds already logged as ignored (once per kind, not per event)
        # HTTP POST: a quick operation within the deadline carries the replies (held rows cancelled),
        # else 204 once stored and the rows go through the API. Reverse WebSocket: no answer to carry.
        self.delivery = Delivery(
            runtime,
            name=f"onebot-{self.account}-post",
            mode="held",
            deadline=lambda: self.quick_reply_deadline_s,
            repeat_passive=False,
        )
        self.ws_delivery = Delivery(
            runtime, name=f"onebot-{self.account}-ws", mode="pending", deadline=lambda: None
        )
        if not settings.access_token:
            logger.warning(
                "channels.onebot[%s].access_token is not set: anyone who can reach %s/ws can connect",
                self.account,
                self.path,
            )

    @property
    def path(self) -> str:
        return f"/onebot/{self.account}"

    def routes(self) -> list[web.AbstractRouteDef]:
        """POST for HTTP POST events, GET for the reverse WebSocket."""
        return [
            web.post(self.path, self.handle_post),
            web.get(f"{self.path}/ws", self.handle_ws, allow_head=False),
        ]

    @property
    def connected(self) -> bool:
        """True while an API-capable reverse WebSocket client is connected."""
        return self._api_conn is not None and self._api_conn.open

    async def close_connections(self) -> None:
        """Close the reverse WebSocket connections (1001: going away); the clients reconnect to the next process.

        Called on app shutdown, before aiohttp waits for open handlers: a connected client would
        otherwise hold the shutdown up until its timeout.
        """
        for conn in list(self._connections):
            await conn.close("server shutting down", code=1001)

    async def shutdown(self) -> None:
        """Cleanup hook: close whatever connection is still open."""
        await self.close_connections()

    # --- HTTP POST ---

    async def handle_post(self, request: web.Request) -> web.StreamResponse:
        """One HTTP POST event: verify, parse, run the pipeline, answer with a quick operation or 204."""
        body = await read_body(request, self.runtime.settings.server.max_body_bytes)
        if self.settings.secret:
            given = request.headers.get("X-Signature")
            if not given:
                logger.warning("onebot POST without X-Signature refused", extra={"account": self.account})
                raise http_error(web.HTTPUnauthorized, "X-Signature missing")
            if not signature_matches(sign_body(self.settings.secret, body), given.strip()):
                logger.warning("onebot POST with a bad X-Signature refused", extra={"account": self.account})
                raise http_error(web.HTTPForbidden, "X-Signature mismatch")
        event = parse_json(body)
        if not isinstance(event, dict):
            raise http_error(web.HTTPBadRequest, "an event must be a JSON object")
        try:
            message = self.parse_event(event, request.headers.get("X-Self-ID"))
        except OneBotEventError as exc:
            raise http_error(web.HTTPBadRequest, str(exc)) from None
        if message is None:
            return web.Response(status=204)
        try:
            answer = await self.delivery.deliver(message)
        except Exception:
            # Not stored (one transaction): an error, never a 204 for a message kefu does not have.
            logger.exception("onebot message failed in the pipeline", extra={"account": self.account})
            raise http_error(web.HTTPServiceUnavailable, "temporarily unavailable") from None
        if answer.late:
            logger.info(
                "onebot answer missed the quick-operation deadline; it goes out via the API",
                extra={"account": self.account},
            )
        text = reply_text(answer.replies)
        if not text:
            return web.Response(status=204)
        return web.json_response(quick_operation(message, text), dumps=_dumps)

    def parse_event(self, event: Mapping[str, Any], header_self_id: str | None = None) -> Message | None:
        """A Message for a customer message event, None for everything kefu ignores (logged once per kind)."""
        self_id = str(event.get("self_id") or header_self_id or "").strip() or None
        reason = ignored_reason(event, self_id)
        if reason is not None:
            # Capped: the kinds come from the payload, so an unsigned sender could otherwise grow the set.
            if reason not in self._logged and reason != "own message" and len(self._logged) < 64:
                self._logged.add(reason)
                logger.info("onebot ignores %s events", reason, extra={"account": self.account})
            return None
        return to_message(self.account, event, reply_in_group=self.settings.reply_in_group, self_id=self_id)

    # --- reverse WebSocket ---

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        """The reverse WebSocket: authenticate before the upgrade, then read events and API answers."""
        expected = self.settings.access_token
        if expected:
            given = _bearer(request)
            if given is None:
                raise http_error(
                    web.HTTPUnauthorized, "access token missing", headers={"WWW-Authenticate": "Bearer"}
                )
            if not signature_matches(expected, given):
                logger.warning(
                    "onebot WebSocket with a wrong access token refused", extra={"account": self.account}
                )
                raise http_error(web.HTTPForbidden, "access token mismatch")
        role = request.headers.get("X-Client-Role", "Universal").strip().lower()
        if role not in ROLES:
            raise http_error(
                web.HTTPBadRequest, f"X-Client-Role must be one of Universal, API, Event (got {role!r})"
            )
        ws = web.WebSocketResponse(
            heartbeat=WS_HEARTBEAT_S, max_msg_size=self.runtime.settings.server.max_body_bytes
        )
        if not ws.can_prepare(request).ok:
            raise http_error(web.HTTPBadRequest, "expected a WebSocket upgrade")
        await ws.prepare(request)
        conn = OneBotConnection(ws, role, request.headers.get("X-Self-ID"))
        await self._swap_in(conn)
        logger.info(
            "onebot reverse WebSocket connected",
            extra={"account": self.account, "role": role, "self_id": conn.self_id},
        )
        events: asyncio.Queue[Mapping[str, Any] | None] = asyncio.Queue()
        self.runtime.spawn(self._event_worker(events), name=f"onebot-{self.account}-events")
        try:
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._on_frame(conn, frame.data, events)
                elif frame.type == aiohttp.WSMsgType.BINARY:
                    self._on_frame(conn, frame.data.decode("utf-8", "replace"), events)
                elif frame.type == aiohttp.WSMsgType.ERROR:
                    logger.warning(
                        "onebot WebSocket error: %s", ws.exception(), extra={"account": self.account}
                    )
                    break
        finally:
            conn.fail_all("closed")
            self._connections.discard(conn)
            if self._api_conn is conn:
                self._api_conn = None
            if self._event_conn is conn:
                self._event_conn = None
            events.put_nowait(None)  # the worker finishes the events already received, then stops
            logger.info(
                "onebot reverse WebSocket disconnected", extra={"account": self.account, "role": role}
            )
        return ws

    async def _swap_in(self, conn: OneBotConnection) -> None:
        """A reconnecting client replaces its previous connection (half-open sockets linger otherwise)."""
        replaced: set[OneBotConnection] = set()
        if conn.api_capable:
            if self._api_conn is not None:
                replaced.add(self._api_conn)
            self._api_conn = conn
        if conn.event_capable:
            if self._event_conn is not None:
                replaced.add(self._event_conn)
            self._event_conn = conn
        self._connections.add(conn)
        for old in replaced:
            if old is self._api_conn or old is self._event_conn:
                continue  # still serves the other role (an API+Event pair replaced by half)
            self._connections.discard(old)
            await old.close("replaced by a new connection")

    def _on_frame(self, conn: OneBotConnection, data: str, events: asyncio.Queue[Any]) -> None:
        try:
            frame = parse_json(data.encode("utf-8", "surrogatepass"))
        except web.HTTPException:
            logger.info("onebot WebSocket frame is not valid JSON; ignored", extra={"account": self.account})
            return
        if not isinstance(frame, dict):
            return
        if "post_type" in frame:
            if conn.event_capable:
                events.put_nowait(frame)
            return
        if "echo" in frame and not conn.resolve(frame):
            logger.debug("onebot API answer for an unknown echo", extra={"account": self.account})

    async def _event_worker(self, events: asyncio.Queue[Mapping[str, Any] | None]) -> None:
        # One worker per connection: events are handled in the order they arrived, and the read loop
        # never waits on the pipeline (it must keep reading API answers meanwhile).
        while (event := await events.get()) is not None:
            try:
                message = self.parse_event(event)
            except OneBotEventError as exc:
                logger.info("onebot WebSocket event unreadable: %s", exc, extra={"account": self.account})
                continue
            if message is not None:
                await self._store_event(message)

    async def _store_event(self, message: Message) -> None:
        """Store one reverse-WebSocket event and its replies' rows, retrying until it is stored.

        The OneBot implementation never sends a WebSocket event again, so a failure of the moment (a busy or
        restarting database) is retried with backoff instead of dropped; later events wait, which keeps their
        order (a full disk, a deadlock, an error not known to be final: retried too). An event refused for
        what it is (a data error, a constraint) or failing in our own code is logged and skipped: retried, it
        would hold every later event of the connection behind it for good.
        """
        delay = WS_EVENT_RETRY_S
        while True:
            try:
                await self.ws_delivery.deliver(message)
                return
            except Exception as exc:
                if not is_database_error(exc):  # a bug of ours: the traceback says where
                    logger.exception(
                        "onebot WebSocket event %s failed and is skipped",
                        message.channel_msg_id,
                        extra={"account": self.account},
                    )
                    return
                if is_refused(exc):  # a data error or a constraint: the same again would fail again
                    logger.error(
                        "onebot WebSocket event %s refused by the database (%s) and skipped",
                        message.channel_msg_id,
                        type(exc).__name__,  # not its text: a driver's error may quote the customer's message
                        extra={"account": self.account},
                    )
                    return
                logger.warning(
                    "onebot WebSocket event %s not stored yet (%s); retrying in %.1fs",
                    message.channel_msg_id,
                    type(exc).__name__,
                    delay,
                    extra={"account": self.account},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, WS_EVENT_RETRY_MAX_S)

    # --- outbound ---

    async def send(self, outgoing: Outgoing) -> None:
        """Deliver one text with send_group_msg / send_private_msg over the WebSocket or the HTTP API."""
        target = {
            **parse_conversation_key(outgoing.conversation_key),
            **{k: v for k, v in outgoing.target.items() if v not in (None, "")},
        }
        chat_type = str(target.get("chat_type") or "private")
        user_id = str(target.get("user_id") or "")
        if not user_id or (chat_type == "group" and not target.get("group_id")):
            raise SendError(
                f"no QQ user/group in conversation {outgoing.conversation_key!r}", retryable=False
            )
        message = outgoing_message(chat_type, user_id, outgoing.text, await self._image(outgoing))
        if chat_type == "group":
            action = "send_group_msg"
            params: dict[str, Any] = {
                "group_id": _number(target["group_id"]),
                "message": message,
                "auto_escape": False,
            }
        else:
            action = "send_private_msg"
            params = {"user_id": _number(user_id), "message": message, "auto_escape": False}
        await self.call_api(action, params)

    async def _image(self, outgoing: Outgoing) -> str | None:
        """The CQ:image `file` of an agent's picture: our signed URL (server.public_url), else base64://."""
        attachment = outgoing.attachment
        if attachment is None:
            return None
        if attachment.kind != "image":
            raise SendError("QQ（OneBot）渠道不能发送文件，只能发送图片，请改用文字说明", retryable=False)
        media = self.runtime.media
        public = self.runtime.settings.server.public_url
        if media is not None and attachment.key and public:
            # Valid for a day: the OneBot implementation downloads it when it sends (or on a retry).
            return public.rstrip("/") + media.signed_path(attachment.key, ttl_s=86_400)
        data = await media.store.read(attachment.key) if media is not None and attachment.key else None
        if data is None:
            raise SendError("the image to send is no longer stored (uploads.dir)", retryable=False)
        return "base64://" + base64.b64encode(data).decode()

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> bytes:
        """A customer's picture from the URL the OneBot implementation gave (QQ's image server)."""
        if not attachment.url:
            raise FetchError("the image segment had no url")
        return (await download(self.runtime.http, attachment.url, max_bytes))[0]

    async def call_api(self, action: str, params: Mapping[str, Any]) -> Any:
        """Call a OneBot action (reverse WebSocket when connected, else HTTP API); returns its `data`."""
        conn = self._api_conn
        if conn is not None and conn.open:
            answer = await conn.call(action, params, self.api_timeout_s)
        elif self.settings.api_url:
            answer = await self._http_call(action, params)
        else:
            raise SendError(
                f"OneBot bot {self.account!r} is not connected: no reverse WebSocket client and "
                f"channels.onebot[{self.account}].api_url is not set",
                retryable=True,
            )
        return _check(action, answer)

    async def _http_call(self, action: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if self.settings.access_token:
            headers["Authorization"] = f"Bearer {self.settings.access_token}"
        data = _dumps(params).encode("utf-8")
        try:
            async with self.runtime.http.post(
                f"{self.settings.api_url}/{action}", data=data, headers=headers, timeout=HTTP_API_TIMEOUT
            ) as resp:
                if resp.status in (401, 403):
                    raise SendError(
                        f"OneBot HTTP API refused the access token (HTTP {resp.status}): check "
                        f"channels.onebot[{self.account}].access_token",
                        retryable=True,
                    )
                if resp.status == 404:
                    raise SendError(f"OneBot HTTP API has no action {action} (HTTP 404)", retryable=False)
                if resp.status >= 400:
                    raise SendError(f"OneBot HTTP API answered HTTP {resp.status}", retryable=True)
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    raise SendError("OneBot HTTP API answer is not JSON", retryable=True) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise SendError(
                f"OneBot HTTP API unreachable: {what}", retryable=True, maybe_delivered=maybe_delivered(exc)
            ) from None
        if not isinstance(body, dict):
            raise SendError("OneBot HTTP API answer is not a JSON object", retryable=True)
        return body


def _check(action: str, answer: Mapping[str, Any]) -> Any:
    """The `data` of an ok/async answer; SendError(retryable) for `failed` (the outbox retries, then shows it)."""
    status = answer.get("status")
    if status in ("ok", "async"):
        return answer.get("data")
    retcode = answer.get("retcode")
    detail = answer.get("wording") or answer.get("message") or answer.get("msg") or ""
    raise SendError(
        f"OneBot {action} {status or 'failed'}: retcode {retcode} {detail}".rstrip(), retryable=True
    )


def _number(value: Any) -> Any:
    """QQ numbers go out as JSON numbers (some implementations refuse strings); anything else as is."""
    text = str(value)
    return int(text) if text.isdigit() else value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
