"""The website chat channel: a JSON webhook, a polling endpoint, and an optional callback for later replies.

Signing (when `channels.web.secret` is set): `X-Kefu-Signature: sha256=<hex hmac_sha256(secret, data)>`
where data is the raw request body for POST, and the path with its query string for GET, which must
include `ts=<unix seconds>` within `channels.web.max_clock_skew_s` of the server's clock
(e.g. `/web/conversations/u1/messages?after=3&ts=1764950400`), so a captured URL stops working. Callbacks to `callback_url` are signed over their body.

Each user_id may post `channels.web.rate_limit_burst` messages at once and `rate_limit_per_minute` after
that; past it the answer is 429 with Retry-After and `{"error", "code": "rate_limited", "retry_after"}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.channels.base import Outgoing, SendError
from gateway.http.bodies import http_error, parse_int, parse_json, read_body
from gateway.message import Message
from gateway.rate_limit import RateLimiter, VisitorLimit, retry_after_header
from gateway.signing import signature_matches, unix_seconds, within_replay_window

if TYPE_CHECKING:
    from gateway.channels.web.settings import WebChannelSettings
    from gateway.runtime import Runtime

logger = logging.getLogger(__name__)

CHANNEL = "web"
DEFAULT_ACCOUNT = "default"
SIGNATURE_HEADER = "X-Kefu-Signature"
MAX_USER_ID = 128
MAX_TEXT = 2000
MAX_NAME = 64
MAX_MESSAGE_ID = 128
FIELDS = ("user_id", "text", "message_id", "user_name")
# What a visitor over the rate limit is told (the widget shows it); `code` is for programs.
RATE_LIMITED = "rate_limited"
RATE_LIMITED_TEXT = "您发送得太快了，请稍等几秒再发。"


def sign(secret: str, data: bytes) -> str:
    """The X-Kefu-Signature value for some bytes."""
    return "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def conversation_key(account: str, user_id: str) -> str:
    """`web:{account}:{user_id}`, the web channel's conversation key."""
    return f"{CHANNEL}:{account}:{user_id}"


def visitor_message_id(user_id: str, message_id: str) -> str:
    """The pipeline's dedupe id of a visitor's message_id: per visitor, so two visitors' "1" stay apart.

    `{user_id}:{message_id}` as /web/ws writes it when that is unambiguous and fits the 128-character
    column; otherwise `:` + a SHA-256 of both (no readable form starts with `:`).
    """
    readable = f"{user_id}:{message_id}"
    if ":" not in user_id and len(readable) <= MAX_MESSAGE_ID:
        return readable
    digest = hashlib.sha256(json.dumps([user_id, message_id]).encode()).hexdigest()
    return ":" + digest


def visitor_rate_limit(settings: WebChannelSettings, runtime: Runtime | None = None) -> VisitorLimit | None:
    """The per-visitor message limit of `channels.web` (None when `rate_limit_per_minute` is null).

    With the runtime's coordination in Redis the buckets are shared by every process.
    """
    if settings.rate_limit_per_minute is None:
        return None
    if runtime is None:
        return RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    return runtime.coord.rate_limiter("web", settings.rate_limit_per_minute, settings.rate_limit_burst)


class WebAdapter:
    """The web chat channel account."""

    channel = CHANNEL

    def __init__(
        self, settings: WebChannelSettings, runtime: Runtime, account: str = DEFAULT_ACCOUNT
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.account = account
        # Keyed by conversation key: /web/ws (which wraps this adapter) spends from the same buckets.
        self.rate_limit = visitor_rate_limit(settings, runtime)
        self.clock: Callable[[], float] = time.time  # injectable: the signed GETs' replay window
        if settings.secret is None:
            logger.warning(
                "web channel has no secret: anyone who reaches it can post as any user_id and read that "
                "user's conversation; set channels.web.secret outside local development"
            )

    def routes(self) -> list[web.AbstractRouteDef]:
        """POST /web/messages and GET /web/conversations/{user_id}/messages."""
        return [
            web.post("/web/messages", self.post_message),
            web.get("/web/conversations/{user_id}/messages", self.get_messages),
        ]

    # --- inbound -------------------------------------------------------------------------------

    def _verify_get(self, request: web.Request) -> None:
        """A signed GET: path and query signed, and a `ts` query parameter within the replay window."""
        self._verify(request, request.path_qs.encode())
        ts = request.query.get("ts", "")
        if unix_seconds(ts) is None:
            raise http_error(web.HTTPForbidden, "signed GETs need ts=<unix seconds> in the query")
        if not within_replay_window(ts, self.clock(), self.settings.max_clock_skew_s):
            raise http_error(web.HTTPForbidden, "ts outside the replay window")

    def _verify(self, request: web.Request, data: bytes) -> None:
        secret = self.settings.secret
        if secret is None:
            return
        given = request.headers.get(SIGNATURE_HEADER)
        if not given:
            raise http_error(web.HTTPForbidden, f"missing {SIGNATURE_HEADER}")
        if not signature_matches(sign(secret, data), given.strip()):
            raise http_error(web.HTTPForbidden, f"invalid {SIGNATURE_HEADER}")

    async def post_message(self, request: web.Request) -> web.Response:
        """A visitor's message in, the bot's replies out (a retried message_id gets the same replies).

        Past the visitor's rate limit: 429, and the message is neither handled nor stored.
        """
        raw = await read_body(request, self.runtime.settings.server.max_body_bytes)
        self._verify(request, raw)
        message = self.parse(parse_json(raw))
        # After the signature and parsing: a forged or broken request spends nobody's tokens.
        # Redis down (shared limits): CoordUnavailable → 503 with Retry-After (app.error_middleware).
        wait = await self.rate_limit.check(message.conversation_key) if self.rate_limit is not None else 0.0
        if wait > 0:
            retry_after = retry_after_header(wait)
            raise http_error(
                web.HTTPTooManyRequests,
                RATE_LIMITED_TEXT,
                fields={"code": RATE_LIMITED, "retry_after": int(retry_after)},
                headers={"Retry-After": retry_after},
            )
        result = await self.runtime.pipeline.handle(message)
        return web.json_response(
            {
                "conversation_id": result.conversation_id,
                "message_id": result.message_id,
                "duplicate": result.duplicate,
                "replies": [
                    {"text": r.text, "sender": r.sender, "suggestions": list(r.suggestions)}
                    for r in result.replies
                ],
            },
            dumps=_dumps,
        )

    def parse(self, data: Any) -> Message:
        """Validate the JSON body into a Message; 400 naming the field on anything wrong."""
        if not isinstance(data, dict):
            raise http_error(web.HTTPBadRequest, "body must be a JSON object with user_id and text")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise http_error(
                web.HTTPBadRequest, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}"
            )
        user_id = _text_field(data, "user_id", MAX_USER_ID, required=True)
        text = _text_field(data, "text", MAX_TEXT, required=True, strip=False)
        user_name = _text_field(data, "user_name", MAX_NAME)
        message_id = data.get("message_id")
        if isinstance(message_id, int) and not isinstance(message_id, bool):
            message_id = str(message_id)
        if message_id is not None:
            message_id = _text_field({"message_id": message_id}, "message_id", MAX_MESSAGE_ID)
        assert user_id is not None and text is not None
        return Message(
            channel=CHANNEL,
            account=self.account,
            conversation_key=conversation_key(self.account, user_id),
            user_id=user_id,
            user_name=user_name,
            text=text,
            channel_msg_id=None if message_id is None else visitor_message_id(user_id, message_id),
            raw={"source": "web"},
        )

    async def get_messages(self, request: web.Request) -> web.Response:
        """A visitor's conversation messages with id > after (agent replies arrive here without a callback)."""
        if self.settings.secret is not None:
            self._verify_get(request)
        user_id = _text_field(request.match_info, "user_id", MAX_USER_ID, required=True, strip=False)
        assert user_id is not None
        after = parse_int(request.query.get("after"), "after", default=0)
        rows = await self.runtime.store.messages_for_key(conversation_key(self.account, user_id), after=after)
        media = self.runtime.media
        items = [
            {
                "id": r.id,
                "direction": r.direction,
                "sender": r.sender,
                "text": r.text,
                "suggestions": list(r.suggestions),
                "created_at": r.created_at.isoformat(),
                "kind": r.kind,
                "attachment": media.message_json(r.id, r.attachment) if media and r.attachment else None,
            }
            for r in rows
        ]
        return web.json_response(
            {"messages": items, "after": items[-1]["id"] if items else after}, dumps=_dumps
        )

    # --- outbound ------------------------------------------------------------------------------

    async def send(self, outgoing: Outgoing) -> None:
        """POST a later reply to callback_url; without one, the stored reply waits for the client to poll."""
        url = self.settings.callback_url
        if url is None:
            return
        payload: dict[str, Any] = {
            "user_id": outgoing.target.get("user_id"),
            "conversation_key": outgoing.conversation_key,
            "text": outgoing.text,
            "sender": outgoing.sender,
        }
        if (attachment := self._attachment_json(outgoing)) is not None:
            payload["attachment"] = attachment
        body = _dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.settings.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.settings.secret, body)
        async with self.runtime.http.post(url, data=body, headers=headers) as response:
            if response.status < 300:
                return
            detail = (await response.text())[:200]
            # 408/429 and 5xx are the receiver's temporary trouble; other 4xx will not get better by retrying.
            retryable = response.status >= 500 or response.status in (408, 429)
            raise SendError(f"callback answered {response.status}: {detail}", retryable=retryable)

    def _attachment_json(self, outgoing: Outgoing) -> dict[str, Any] | None:
        """An agent's picture or file in the callback: its facts and a signed link (under server.public_url)."""
        attachment, media = outgoing.attachment, self.runtime.media
        if attachment is None or media is None or attachment.key is None:
            return None
        base = (self.runtime.settings.server.public_url or "").rstrip("/")
        facts = {
            "kind": attachment.kind,
            "name": attachment.name,
            "size": attachment.size,
            "mime": attachment.mime,
        }
        return {**facts, "url": base + media.signed_path(attachment.key)}


def _text_field(
    data: Mapping[str, Any], name: str, max_len: int, *, required: bool = False, strip: bool = True
) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise http_error(web.HTTPBadRequest, f"{name} is required")
        return None
    if not isinstance(value, str):
        raise http_error(web.HTTPBadRequest, f"{name} must be a string")
    if strip:
        value = value.strip()
    if not value.strip():
        raise http_error(web.HTTPBadRequest, f"{name} must not be empty")
    if len(value) > max_len:
        raise http_error(web.HTTPBadRequest, f"{name} is longer than {max_len} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise http_error(web.HTTPBadRequest, f"{name} contains control characters")
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise http_error(web.HTTPBadRequest, f"{name} contains a lone surrogate (invalid Unicode)")
    return value


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
