"""The QQ official bot (QQ 机器人开放平台) in webhook mode: Ed25519-signed pushes, passive replies via the OpenAPI.

One `QQBotAdapter` per configured bot serves `POST /qqbot/{name}`:
- op 13 (callback-URL validation): answer `{"plain_token", "signature"}` signed with the key derived
  from the bot secret;
- op 0 (dispatch): verify `X-Signature-Ed25519` over `X-Signature-Timestamp + body`, store the message
  and its replies' outbox rows (gateway/channels/delivery.py), then acknowledge with `{"op": 12, "d": 0}`
  (never before the store). The acknowledgement cannot carry a reply (unlike WeChat or OneBot), so the
  pipeline's answers always go out through the outbox and `send` → `POST /v2/groups|users/…/messages`
  as passive replies (`msg_id` of the customer's message, increasing `msg_seq`).

QQ stopped unsolicited (主动) messages on 2025-04-21: every send must reply to a customer message within
its window (5 min in groups, 60 min in C2C, at most 5 replies). Agent replies outside it are
undeliverable, and the outbox records why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from gateway.channels.base import Outgoing, SendError
from gateway.channels.delivery import Delivery
from gateway.channels.platform_http import maybe_delivered
from gateway.channels.qq import parse_conversation_key
from gateway.channels.qqbot.crypto import signing_key, validation_signature, verify_push
from gateway.channels.qqbot.settings import QQBotAccountSettings
from gateway.channels.tokens import TokenCache, parse_expires_in
from gateway.http.bodies import http_error, parse_json, read_body
from gateway.media.fetch import FetchError, download
from gateway.message import Attachment, Message, utcnow

if TYPE_CHECKING:
    from gateway.runtime import Runtime

logger = logging.getLogger(__name__)

CHANNEL = "qqbot"
# QQ wants the webhook answered within 3 s; the pipeline gets this long before the ack goes out anyway.
ACK_DEADLINE_S = 2.0
# The docs advise a send timeout of at least 5 s (a shorter one may miss the answer of a send that worked).
API_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)
# QQ issues a new token only within the last 60 s of the old one's life; refresh inside that window.
TOKEN_MARGIN_S = 30.0
GROUP_WINDOW = timedelta(minutes=5)
C2C_WINDOW = timedelta(minutes=60)
MAX_REPLIES = 5
# Passive-reply counters outlive the longest window (C2C, 60 min).
COUNTER_TTL_S = C2C_WINDOW.total_seconds() + 300
_MEMORY = 4096  # passive-reply state kept for this many customer messages

# Platform codes (community-documented, not in the official docs): msg_seq already used for this msg_id,
# and "the passive-reply window has passed".
CODE_DUPLICATE_SEQ = 40054005
WINDOW_CODES = frozenset({304103, 40034005, 40034128})
CODE_RATE_LIMIT = 22009

# op 13 signs event_ts + plain_token with the bot's key, the same key QQ signs pushes with. Only plain
# tokens are signed: a push is signed over timestamp + a JSON body, which always contains "{", so a
# validation request can never be abused to obtain a valid push signature.
_PLAIN_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_DIGITS = re.compile(r"^[0-9]{1,20}$")


# --- events in ---------------------------------------------------------------------------------

EVENTS = ("GROUP_AT_MESSAGE_CREATE", "C2C_MESSAGE_CREATE")


class QQBotEventError(Exception):
    """A message event kefu cannot read (400)."""


def _str(d: Mapping[str, Any], key: str, where: str = "d") -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise QQBotEventError(f"{where}.{key} missing or not a string")
    return value


def to_message(account: str, event_type: str, d: Any, received_at: datetime | None = None) -> Message:
    """Map GROUP_AT_MESSAGE_CREATE / C2C_MESSAGE_CREATE to kefu's Message; QQBotEventError if unreadable."""
    if not isinstance(d, Mapping):
        raise QQBotEventError("d must be an object")
    author = d.get("author")
    if not isinstance(author, Mapping):
        raise QQBotEventError("d.author missing")
    msg_id = _str(d, "id")
    content = d.get("content", "")
    if not isinstance(content, str):
        raise QQBotEventError("d.content must be a string")
    text = content.strip()  # group @ messages arrive with a leading space where the @ was
    attachments = d.get("attachments") if isinstance(d.get("attachments"), list) else []
    kind = "text"
    picture = _picture(attachments)
    if not text and attachments:
        types = {str(a.get("content_type", "")) for a in attachments if isinstance(a, Mapping)}
        kind = "image" if any(t.startswith("image") for t in types) else "other"
        text = "[图片]" if kind == "image" else ""
    common: dict[str, Any] = {
        "channel": CHANNEL,
        "account": account,
        "text": text,
        "kind": kind,
        "attachment": picture,
        "channel_msg_id": msg_id,
        "received_at": received_at or utcnow(),
        "raw": dict(d),
    }
    if event_type == "GROUP_AT_MESSAGE_CREATE":
        group = _str(d, "group_openid")
        member = _str(author, "member_openid", "d.author")
        return Message(
            conversation_key=f"qq:{account}:group:{group}:{member}",
            user_id=member,
            chat_type="group",
            group_id=group,
            to_bot=True,  # QQ only pushes group messages that @ the bot
            **common,
        )
    user = _str(author, "user_openid", "d.author")
    return Message(conversation_key=f"qq:{account}:private:{user}", user_id=user, **common)


def _picture(attachments: list[Any]) -> Attachment | None:
    """The first image attachment (QQ gives its URL, sometimes without a scheme); fetched on first view."""
    for item in attachments:
        if isinstance(item, Mapping) and str(item.get("content_type", "")).startswith("image"):
            url = str(item.get("url") or "")
            if url and "://" not in url:
                url = "https://" + url.lstrip("/")
            if url.startswith(("http://", "https://")):
                name = str(item.get("filename") or "image.jpg")
                return Attachment(kind="image", mime=str(item["content_type"]), name=name, url=url)
    return None


# --- passive-reply bookkeeping -------------------------------------------------------------------


@dataclass(slots=True)
class _Passive:
    """What kefu knows about replying to one customer message (msg_id).

    The last msg_seq used and the replies sent are counters shared by every process
    (`runtime.coord.counters`: Redis with `redis.url`), so two processes never reuse a seq or pass 5 replies.
    """

    received_at: datetime | None
    # msg_seq given to a text whose send failed retryably: the retry reuses it, so that if the first try
    # did reach QQ (an answer lost in transit) QQ refuses the copy instead of showing it twice.
    pending: dict[str, int] = field(default_factory=dict)


def window_reason(chat_type: str, received_at: datetime, now: datetime) -> str | None:
    """Why a passive reply is no longer allowed (None = still inside the window)."""
    age = now - received_at
    minutes = int(age.total_seconds() // 60)
    if chat_type == "group" and age > GROUP_WINDOW:
        return (
            f"QQ 群被动回复窗口（5 分钟）已过：客户的消息是 {minutes} 分钟前发的，QQ 不再允许机器人回复，"
            "请等客户再次 @机器人 后回复 / QQ group passive-reply window (5 min) has passed"
        )
    if chat_type != "group" and age > C2C_WINDOW:
        return (
            f"QQ 单聊被动回复窗口（60 分钟）已过：客户的消息是 {minutes} 分钟前发的，QQ 不再允许机器人回复，"
            "请等客户再次发消息后回复 / QQ C2C passive-reply window (60 min) has passed"
        )
    return None


# --- the adapter ---------------------------------------------------------------------------------


class QQBotAdapter:
    """One QQ official bot: signed webhook in, passive replies through the OpenAPI out."""

    channel = CHANNEL

    def __init__(
        self,
        settings: QQBotAccountSettings,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.account = settings.name
        self.runtime = runtime
        self.clock = clock
        self.ack_deadline_s = ACK_DEADLINE_S
        self._key = signing_key(settings.secret)
        self._public_key = self._key.public_key()
        self._passive: OrderedDict[str, _Passive] = OrderedDict()
        self._tokens: TokenCache | None = None
        self._logged: set[str] = set()
        # The ack cannot carry replies: they are written as pending outbox rows with the message, and the
        # ack goes out only once both are stored (a slow store delays it; QQ pushes again, deduped).
        self.delivery = Delivery(
            runtime, name=f"qqbot-{self.account}", mode="pending", deadline=lambda: self.ack_deadline_s
        )

    @property
    def path(self) -> str:
        return f"/qqbot/{self.account}"

    def routes(self) -> list[web.AbstractRouteDef]:
        """POST for validation and event pushes."""
        return [web.post(self.path, self.handle_post)]

    # --- inbound ---

    async def handle_post(self, request: web.Request) -> web.StreamResponse:
        """Validation (op 13), or a signed dispatch (op 0) acknowledged with op 12."""
        body = await read_body(request, self.runtime.settings.server.max_body_bytes)
        signature = request.headers.get("X-Signature-Ed25519")
        timestamp = request.headers.get("X-Signature-Timestamp", "")
        signed = signature is not None
        if signed and not (
            _DIGITS.match(timestamp) and verify_push(self._public_key, signature or "", timestamp, body)
        ):
            logger.warning("qqbot push with a bad signature refused", extra={"account": self.account})
            raise http_error(web.HTTPUnauthorized, "X-Signature-Ed25519 does not verify")
        payload = parse_json(body)
        if not isinstance(payload, dict):
            raise http_error(web.HTTPBadRequest, "a payload must be a JSON object")
        op = payload.get("op")
        if op == 13:
            return self._validate(payload)
        if not signed:
            # The docs show the validation request without signature headers; everything else must be signed.
            raise http_error(web.HTTPUnauthorized, "X-Signature-Ed25519 missing")
        if op != 0:
            self._log_once(f"op={op}")
            return web.Response(status=204)
        event_type = payload.get("t")
        if event_type not in EVENTS:
            # QQ accepts 200 or 204 as "received"; 204 says kefu took no action.
            self._log_once(f"t={event_type}")
            return web.Response(status=204)
        try:
            message = to_message(self.account, str(event_type), payload.get("d"), self.clock())
        except QQBotEventError as exc:
            raise http_error(web.HTTPBadRequest, str(exc)) from None
        self._remember(message)
        try:
            answer = await self.delivery.deliver(message)
        except Exception:
            # Nothing was stored (one transaction): a 5xx lets QQ push the event again.
            logger.exception("qqbot message failed in the pipeline", extra={"account": self.account})
            raise http_error(web.HTTPServiceUnavailable, "temporarily unavailable") from None
        if answer.late:
            logger.info("qqbot event stored after the ack deadline", extra={"account": self.account})
        return _ack()

    def _validate(self, payload: Mapping[str, Any]) -> web.Response:
        d = payload.get("d")
        plain_token = d.get("plain_token") if isinstance(d, Mapping) else None
        event_ts = d.get("event_ts") if isinstance(d, Mapping) else None
        if not isinstance(plain_token, str) or not isinstance(event_ts, str):
            raise http_error(web.HTTPBadRequest, "op 13 needs d.plain_token and d.event_ts strings")
        if not _PLAIN_TOKEN.match(plain_token) or not _DIGITS.match(event_ts):
            raise http_error(web.HTTPBadRequest, "op 13 plain_token/event_ts have unexpected characters")
        logger.info("qqbot callback URL validated", extra={"account": self.account})
        return web.json_response(
            {"plain_token": plain_token, "signature": validation_signature(self._key, event_ts, plain_token)}
        )

    def _log_once(self, what: str) -> None:
        if what not in self._logged and len(self._logged) < 64:
            self._logged.add(what)
            logger.info("qqbot ignores %s pushes", what, extra={"account": self.account})

    def _remember(self, message: Message) -> None:
        msg_id = message.channel_msg_id or ""
        if msg_id not in self._passive:
            self._passive[msg_id] = _Passive(received_at=message.received_at)
        self._passive.move_to_end(msg_id)
        while len(self._passive) > _MEMORY:
            self._passive.popitem(last=False)

    # --- outbound ---

    def _token_cache(self) -> TokenCache:
        if self._tokens is None:
            self._tokens = TokenCache(
                self._fetch_token,
                margin_s=TOKEN_MARGIN_S,
                name=f"qqbot:{self.settings.appid}",
                shared=self.runtime.coord.tokens,  # one token for every process (redis.url)
            )
        return self._tokens

    async def _fetch_token(self) -> tuple[str, float]:
        payload = {"appId": self.settings.appid, "clientSecret": self.settings.secret}
        status, body = await self._post_json(
            self.settings.token_url, failing="QQ bot token fetch failed", delivers=False, json=payload
        )
        token = body.get("access_token") if isinstance(body, dict) else None
        if status >= 400 or not isinstance(token, str) or not token:
            code = body.get("code") if isinstance(body, dict) else None
            logger.error(
                "qqbot token fetch refused (HTTP %s, code %s): check channels.qqbot appid/secret",
                status,
                code,
                extra={"account": self.account},
            )
            # Retryable: once the operator fixes the credentials the queued replies go out (if still in time).
            raise SendError(f"QQ bot token fetch refused: HTTP {status} code {code}", retryable=True)
        expires_in = parse_expires_in(body.get("expires_in"))
        logger.info("qqbot access token refreshed", extra={"account": self.account, "expires_in": expires_in})
        return token, expires_in

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> bytes:
        """A customer's picture from the URL in the event's attachments."""
        if not attachment.url:
            raise FetchError("the attachment had no url")
        return (await download(self.runtime.http, attachment.url, max_bytes))[0]

    async def send(self, outgoing: Outgoing) -> None:
        """Deliver one text as a passive reply; SendError(retryable=False) once QQ no longer allows it."""
        self._check_media(outgoing)
        address = {
            **parse_conversation_key(outgoing.conversation_key),
            **{k: v for k, v in outgoing.target.items() if v not in (None, "")},
        }
        chat_type = str(address.get("chat_type") or "private")
        user_id = str(address.get("user_id") or "")
        group_id = str(address.get("group_id") or "")
        if (chat_type == "group" and not group_id) or (chat_type != "group" and not user_id):
            raise SendError(f"no QQ openid in conversation {outgoing.conversation_key!r}", retryable=False)
        msg_id, state = await self._anchor(outgoing)
        if msg_id is None or state is None:
            raise SendError(
                "QQ 不再允许机器人主动发消息（2025-04-21 起），这个会话没有可以回复的客户消息 / "
                "no customer message to reply to (QQ no longer allows unsolicited messages)",
                retryable=False,
            )
        if state.received_at is not None:
            reason = window_reason(chat_type, state.received_at, self.clock())
            if reason is not None:
                raise SendError(reason, retryable=False)
        path = f"/v2/groups/{group_id}/messages" if chat_type == "group" else f"/v2/users/{user_id}/messages"
        if outgoing.outbox_id is not None:
            await self._send_row(path, outgoing, msg_id, state)
            return
        text_key = hashlib.sha1(outgoing.text.encode("utf-8", "surrogatepass")).hexdigest()
        reused = text_key in state.pending
        counters = self.runtime.coord.counters
        if not reused and await counters.get(self._count(msg_id, "sent")) + len(state.pending) >= MAX_REPLIES:
            raise SendError(
                f"QQ 每条客户消息最多被动回复 {MAX_REPLIES} 次，这条消息的回复次数已用完，请等客户再次发消息 / "
                f"at most {MAX_REPLIES} replies per customer message",
                retryable=False,
            )
        if not reused:
            state.pending[text_key] = await counters.add(self._count(msg_id, "seq"), 1, COUNTER_TTL_S)
        seq = state.pending[text_key]
        payload = await self._payload(path, outgoing, msg_id, seq)
        try:
            await self._post(path, payload)
        except _DuplicateSeq:
            state.pending.pop(text_key, None)
            if reused:
                await counters.add(
                    self._count(msg_id, "sent"), 1, COUNTER_TTL_S
                )  # the earlier try did reach QQ
                return
            # A seq used before a restart (the counter lives in memory): move on and retry with a new one.
            raise SendError(
                "QQ refused a reused msg_seq; retrying with the next one", retryable=True
            ) from None
        except SendError as exc:
            if not exc.retryable:
                state.pending.pop(text_key, None)
            raise
        state.pending.pop(text_key, None)
        await counters.add(self._count(msg_id, "sent"), 1, COUNTER_TTL_S)

    def _count(self, msg_id: str, what: str) -> str:
        return f"qqbot:{self.account}:{msg_id}:{what}"

    def _check_media(self, outgoing: Outgoing) -> None:
        """QQ takes pictures only, and downloads them itself: our signed URL under server.public_url."""
        attachment = outgoing.attachment
        if attachment is None:
            return
        if attachment.kind != "image":
            raise SendError("QQ 机器人渠道不能发送文件，只能发送图片，请改用文字说明", retryable=False)
        if not self.runtime.settings.server.public_url or self.runtime.media is None or not attachment.key:
            raise SendError(
                "QQ 机器人发送图片需要 QQ 能访问的图片地址：请设置 server.public_url / set server.public_url",
                retryable=False,
            )

    async def _payload(self, path: str, outgoing: Outgoing, msg_id: str, seq: int | None) -> dict[str, Any]:
        """A text (msg_type 0), or a picture: uploaded by URL to /files first, then sent as msg_type 7."""
        attachment, media = outgoing.attachment, self.runtime.media
        if attachment is None or media is None or attachment.key is None:
            return {"content": outgoing.text, "msg_type": 0, "msg_id": msg_id, "msg_seq": seq}
        public = str(self.runtime.settings.server.public_url).rstrip("/")
        url = public + media.signed_path(attachment.key, ttl_s=86_400)  # QQ fetches it now or on a retry
        files = path.rsplit("/", 1)[0] + "/files"
        # srv_send_msg false: the upload shows the customer nothing, so one that timed out is no possible double.
        uploaded = await self._post(
            files, {"file_type": 1, "url": url, "srv_send_msg": False}, delivers=False
        )
        file_info = uploaded.get("file_info") if isinstance(uploaded, Mapping) else None
        if not isinstance(file_info, str) or not file_info:
            raise SendError("QQ /files gave no file_info for the picture", retryable=True)
        return {
            "content": " ",
            "msg_type": 7,
            "media": {"file_info": file_info},
            "msg_id": msg_id,
            "msg_seq": seq,
        }

    async def _send_row(self, path: str, outgoing: Outgoing, msg_id: str, state: _Passive) -> None:
        """Send an outbox row with msg_seq = its row id: every try of the row (a lost answer, a resend after
        a crash) carries the same seq, so QQ refuses a copy (40054005) instead of showing it twice."""
        counters = self.runtime.coord.counters
        if await counters.get(self._count(msg_id, "sent")) >= MAX_REPLIES:
            raise SendError(
                f"QQ 每条客户消息最多被动回复 {MAX_REPLIES} 次，这条消息的回复次数已用完，请等客户再次发消息 / "
                f"at most {MAX_REPLIES} replies per customer message",
                retryable=False,
            )
        seq = outgoing.outbox_id
        # A direct send never reuses a row's seq.
        await counters.raise_to(self._count(msg_id, "seq"), seq or 0, COUNTER_TTL_S)
        payload = await self._payload(path, outgoing, msg_id, seq)
        try:
            await self._post(path, payload)
        except _DuplicateSeq:
            logger.info("qqbot: an earlier try of this reply reached QQ; not shown twice")
        await counters.add(self._count(msg_id, "sent"), 1, COUNTER_TTL_S)

    async def _anchor(self, outgoing: Outgoing) -> tuple[str | None, _Passive | None]:
        """The customer message to reply to, and its passive-reply state.

        The bot's own replies answer the message in their target. Agent and system messages reply to the
        customer's latest message (the freshest window), looked up in the store; the target's message is
        the fallback.
        """
        msg_id = str(outgoing.target.get("channel_msg_id") or "") or None
        received_at: datetime | None = None
        if outgoing.sender != "bot" or msg_id is None:
            latest = await self._latest_inbound(outgoing.conversation_key)
            if latest is not None:
                msg_id, received_at = latest
        if msg_id is None:
            return None, None
        state = self._passive.get(msg_id)
        if state is None:
            if received_at is None:
                latest = await self._inbound(outgoing.conversation_key, msg_id)
                received_at = latest[1] if latest is not None else None
            state = _Passive(received_at=received_at)
            self._passive[msg_id] = state
            while len(self._passive) > _MEMORY:
                self._passive.popitem(last=False)
        return msg_id, state

    async def _latest_inbound(self, key: str) -> tuple[str, datetime] | None:
        return await self._inbound(key, None)

    async def _inbound(self, key: str, msg_id: str | None) -> tuple[str, datetime] | None:
        """(channel_msg_id, received time) of the latest inbound message of `key` (or of that msg_id)."""
        store = self.runtime.store
        found: tuple[str, datetime] | None = None
        after = 0
        while True:
            rows = await store.messages_for_key(key, after=after, direction="in", limit=200)
            for row in rows:
                if row.channel_msg_id and (msg_id is None or row.channel_msg_id == msg_id):
                    found = (row.channel_msg_id, row.created_at)
            if len(rows) < 200:
                return found
            after = rows[-1].id

    async def _post_json(
        self, url: str, *, failing: str, delivers: bool = True, **request: Any
    ) -> tuple[int, Any]:
        """POST; (status, JSON body or None when the body is not JSON). Unreachable: a retryable SendError
        (`delivers`: the request carries a message, which a timeout may have delivered all the same)."""
        try:
            async with self.runtime.http.post(url, timeout=API_TIMEOUT, **request) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                return resp.status, body
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SendError(
                f"{failing}: {_network(exc)}",
                retryable=True,
                maybe_delivered=delivers and maybe_delivered(exc),
            ) from None

    async def _post(self, path: str, payload: Mapping[str, Any], *, delivers: bool = True) -> Any:
        """POST to the OpenAPI with the access token (fetched anew once when QQ rejects it). `delivers`: the
        request shows the customer a message (see _post_json)."""
        tokens = self._token_cache()
        token = await tokens.get()
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        for attempt in range(2):
            status, body = await self._post_json(
                f"{self.settings.api_base}{path}",
                failing="QQ OpenAPI unreachable",
                delivers=delivers,
                data=data,
                headers={"Authorization": f"QQBot {token}", "Content-Type": "application/json"},
            )
            if 200 <= status < 300:
                return body
            if status == 401 and attempt == 0:
                logger.info(
                    "qqbot access token rejected, fetching a new one", extra={"account": self.account}
                )
                token = await tokens.refresh(token)
                continue
            raise _classify(status, body)
        raise SendError("QQ OpenAPI rejected a freshly fetched access token", retryable=True)


class _DuplicateSeq(Exception):
    """QQ refused the msg_id + msg_seq pair as already used."""


def _classify(status: int, body: Any) -> Exception:
    """Turn an OpenAPI error answer into what `send` raises."""
    code = None
    message = ""
    if isinstance(body, dict):
        code = body.get("code", body.get("err_code"))
        message = str(body.get("message") or "")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    if code == CODE_DUPLICATE_SEQ:
        return _DuplicateSeq()
    if code in WINDOW_CODES:
        return SendError(
            f"QQ 被动回复已过期或次数已用完 (code {code}): {message}".rstrip(": "), retryable=False
        )
    if status == 429 or status >= 500 or code == CODE_RATE_LIMIT:
        return SendError(f"QQ OpenAPI HTTP {status} code {code}: {message}".rstrip(": "), retryable=True)
    if status == 401:
        return SendError("QQ OpenAPI rejected the access token twice", retryable=True)
    # Other 4xx: the platform refuses this message for good (content, permissions, bad openid).
    return SendError(
        f"QQ OpenAPI refused the message: HTTP {status} code {code} {message}".rstrip(), retryable=False
    )


def _network(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    return type(exc).__name__


def _ack() -> web.Response:
    return web.json_response({"op": 12, "d": 0})
