"""WeChat official accounts (公众号): URL verification, signed/encrypted webhooks, passive XML replies, 客服消息.

One `WeChatAdapter` per configured account serves `GET/POST /wechat/{name}`:
- GET answers WeChat's URL verification (echostr) when the signature matches;
- POST verifies the signature (and in safe mode `msg_signature` + AES), parses the XML refusing any DTD
  before wechatpy sees it, and hands the `Message` to the delivery policy (gateway/channels/delivery.py):
  ONE passive text reply if the answer is stored within `pipeline.wechat_reply_deadline_s`; otherwise,
  once the message is stored (never before), `success` (WeChat then neither shows an error nor retries)
  and the replies go out through the outbox and `send`. A message that cannot be stored gets a 503, so
  WeChat retries it.
"""

from __future__ import annotations

import hashlib
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import defusedxml
import defusedxml.ElementTree as SafeET
from aiohttp import web
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import MESSAGE_TYPES, UnknownMessage
from wechatpy.replies import TextReply

from gateway.channels.base import Outgoing, SendError
from gateway.channels.delivery import Delivery
from gateway.channels.wechat.api import MAX_TEXT_BYTES, AccessTokenManager, CustomerServiceSender, clean_text
from gateway.coord.connection import CoordUnavailable
from gateway.http.bodies import read_body
from gateway.media.fetch import FetchError, download
from gateway.message import Attachment, Message, Reply
from gateway.signing import signature_matches, within_replay_window

if TYPE_CHECKING:
    from gateway.channels.wechat.settings import WeChatAccountSettings
    from gateway.runtime import Runtime

logger = logging.getLogger(__name__)

CHANNEL = "wechat"
SUCCESS = "success"  # WeChat's "nothing to say, do not retry" answer (needs no encryption in safe mode)


class WeChatRequestError(Exception):
    """A webhook request kefu refuses; `status` is the HTTP answer (400, 403, 413)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- signatures ----------------------------------------------------------------------------------


def sign(*parts: str) -> str:
    """WeChat's signature: sha1 of the sorted parts, concatenated (token/timestamp/nonce[/Encrypt])."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


# --- XML in ------------------------------------------------------------------------------------

MAX_XML_DEPTH = 16


def parse_xml(body: bytes | str) -> ET.Element:
    """Parse untrusted XML: any DOCTYPE, entity or external reference is refused (defusedxml).

    Every entity attack needs a DTD, and a DTD needs `<!DOCTYPE` in the text. A str without it (what
    WeChat sends, decoded) goes to the stdlib's C parser, a quarter of defusedxml's cost (its Python
    parser object per call was ~6 % of a message's CPU, twice per message in safe mode); anything else
    (bytes, whose declared encoding could hide the marker; a DOCTYPE even inside CDATA) to defusedxml.
    For a str, CPython's expat reads UTF-8 whatever the XML declaration says, so the check sees what
    the parser sees.
    """
    try:
        if isinstance(body, str) and "<!DOCTYPE" not in body:
            root = ET.fromstring(body)
        else:
            root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise WeChatRequestError(400, f"XML with {type(exc).__name__} refused") from None
    except (ET.ParseError, ValueError) as exc:
        raise WeChatRequestError(400, f"body is not XML: {exc}") from None
    if root.tag != "xml":
        raise WeChatRequestError(400, f"unexpected XML root <{root.tag}>, expected <xml>")
    # WeChat nests at most a few levels; ElementTree serialises (xml_fields) and wechatpy walks recursively,
    # so thousands of levels would end in RecursionError.
    if xml_depth(root) > MAX_XML_DEPTH:
        raise WeChatRequestError(400, f"XML nested deeper than {MAX_XML_DEPTH} levels")
    return root


def xml_depth(root: ET.Element) -> int:
    """Deepest element nesting, counted without recursion."""
    if not any(len(child) for child in root):  # the flat payload every real message is: no walk
        return 2 if len(root) else 1
    deepest = 0
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in element)
    return deepest


def xml_fields(root: ET.Element) -> dict[str, str]:
    """The flat `<xml><Field>value</Field>…</xml>` payload as a dict (kept as the message's `raw`)."""
    return {
        child.tag: (child.text or "") if len(child) == 0 else ET.tostring(child, "unicode") for child in root
    }


# Events that reach the pipeline (mapped to kefu's event names); any other event is acknowledged and dropped:
# VIEW (menu link opened), LOCATION reports, TEMPLATESENDJOBFINISH and friends carry nothing to answer.
_EVENTS = {
    "subscribe": "subscribe",
    "subscribe_scan": "subscribe",
    "subscribe_scan_product": "subscribe",
    "click": "click",
    "unsubscribe": "unsubscribe",
}
_EVENT_TEXTS = {"subscribe": "关注了公众号", "click": "点击了菜单", "unsubscribe": "取消了关注"}
# Events that are recorded but never answered (the customer can no longer read an answer).
_SILENT_EVENTS = frozenset({"unsubscribe"})


def to_message(account: str, xml_text: str, raw: Mapping[str, str], *, flat: bool = False) -> Message | None:
    """Map one decrypted WeChat payload to kefu's `Message` (None for events kefu ignores).

    `flat`: `raw` holds every field of the payload (no nested elements), so a message (not an event, whose
    type wechatpy works out from several fields) gets wechatpy's class without parsing the XML again.
    """
    msg_type = (raw.get("MsgType") or "").lower()
    try:
        if flat and msg_type != "event" and not msg_type.startswith("device_"):
            # What parse_message's xmltodict would hand the class: stripped text, None for empty elements.
            fields = {tag: (value.strip() or None) for tag, value in raw.items()}
            wx = MESSAGE_TYPES.get(msg_type, UnknownMessage)(fields)
        else:
            wx = parse_message(xml_text)
        openid = wx.source
        create_time = str(raw.get("CreateTime") or "0")
        msg_id = wx.id  # MsgId as int (0 for events); junk raises ValueError here, not later
    except Exception as exc:  # wechatpy raises KeyError/ValueError/AttributeError on odd payloads
        raise WeChatRequestError(400, f"not a WeChat message: {type(exc).__name__}") from None
    if not openid or not isinstance(openid, str):
        raise WeChatRequestError(400, "FromUserName (openid) missing")
    base: dict[str, Any] = {
        "channel": CHANNEL,
        "account": account,
        "conversation_key": f"wechat:{account}:{openid}",
        "user_id": openid,
        "raw": dict(raw),
    }
    if msg_type == "event":
        # wechatpy normalises "subscribe" with a qrscene_ key to "subscribe_scan"; unknown events keep Event.
        event_type = str(wx.event if wx.type == "event" else raw.get("Event", "")).lower()
        event = _EVENTS.get(event_type)
        if event is None:
            return None
        event_key = None
        if event == "click":
            event_key = _plain(wx.key, "EventKey") or None
        elif event_type == "subscribe_scan":
            # the qrscene_ parameter of the QR code the customer scanned
            event_key = _plain(wx.scene_id, "EventKey") or None
        # WeChat retries events with the same FromUserName + CreateTime; the event name keeps two different
        # events in the same second (subscribe, then a menu click) apart.
        # What happened, in words: the console shows events as a line, never as an empty customer bubble.
        said = _EVENT_TEXTS.get(event, event)
        return Message(
            **base,
            text=f"{said}：{event_key}" if event == "click" and event_key else said,
            kind="event",
            event=event,
            event_key=event_key,
            channel_msg_id=f"evt:{openid}:{create_time}:{event}",
        )
    channel_msg_id = str(msg_id) if msg_id else f"msg:{openid}:{create_time}:{msg_type}"
    if msg_type == "text":
        return Message(**base, text=_plain(wx.content, "Content"), kind="text", channel_msg_id=channel_msg_id)
    if msg_type == "voice":
        # With 语音识别 switched on WeChat transcribes the voice message; answer the transcript as text.
        recognition = _plain(getattr(wx, "recognition", None), "Recognition").strip()
        return Message(**base, text=recognition, kind="voice", channel_msg_id=channel_msg_id)
    if msg_type == "image":
        # PicUrl serves the picture for a while, MediaId through media/get: fetched on the console's first view.
        pic_url, media_id = raw.get("PicUrl") or None, raw.get("MediaId") or None
        picture = Attachment(
            kind="image", mime="image/jpeg", name="image.jpg", url=pic_url, media_id=media_id
        )
        return Message(**base, text="[图片]", kind="image", attachment=picture, channel_msg_id=channel_msg_id)
    return Message(**base, text="", kind="other", channel_msg_id=channel_msg_id)


def _plain(value: Any, field: str) -> str:
    """A text field's value; nested elements (never sent by WeChat) are refused rather than stringified."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WeChatRequestError(400, f"<{field}> must be text")
    return value


# --- XML out -----------------------------------------------------------------------------------


def cdata_safe(text: str) -> str:
    """Text safe inside wechatpy's `<![CDATA[…]]>`: XML-invalid characters dropped, `]]>` split across sections."""
    return clean_text(text).replace("]]>", "]]]]><![CDATA[>")


def reply_text(replies: Sequence[Reply]) -> str:
    """All replies as one passive message (WeChat allows one): blank lines between them."""
    parts: list[str] = []
    for reply in replies:
        text = reply.text.strip()
        missing = [s for s in reply.suggestions if s not in text]
        if missing:  # the pipeline normally numbers suggestions into the text; never lose one if not
            text = "\n".join([text, *(f"{i}. {s}" for i, s in enumerate(reply.suggestions, 1))])
        if text:
            parts.append(text)
    return "\n\n".join(parts)


def render_text_reply(text: str, *, openid: str, gh_id: str, now: int | None = None) -> str:
    """The passive text reply XML (wechatpy's TextReply, with CDATA-safe fields)."""
    reply = TextReply(
        source=cdata_safe(gh_id),
        target=cdata_safe(openid),
        content=cdata_safe(text),
        time=now if now is not None else int(time.time()),
    )
    return reply.render()


# --- the adapter ---------------------------------------------------------------------------------


class WeChatAdapter:
    """One WeChat official account: webhook routes, verification, parsing, passive replies and 客服消息 sends."""

    channel = CHANNEL

    def __init__(self, settings: WeChatAccountSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.account = settings.name
        self.runtime = runtime
        self._crypto = (
            WeChatCrypto(settings.token, settings.aes_key, settings.appid) if settings.aes_key else None
        )
        # WeChat's retries of a MsgId join the first delivery; a retry after it finds the stored rows.
        self.delivery = Delivery(
            runtime,
            name=f"wechat-{self.account}",
            mode="held",
            deadline=lambda: runtime.settings.pipeline.wechat_reply_deadline_s,
            retry_after_s=lambda: settings.retry_interval_s,  # shared in-flight claims with redis.url
        )
        self._sender: CustomerServiceSender | None = None
        self.clock: Callable[[], float] = time.time  # injectable: the replay window's "now"

    @property
    def path(self) -> str:
        return f"/wechat/{self.account}"

    def _fresh(self, timestamp: str) -> bool:
        """Whether a signed timestamp is within `max_clock_skew_s` of now (a replayed request is not).

        In plaintext mode the signature covers only token, timestamp and nonce, not the body: the window
        bounds how long a captured URL can be replayed with another body; safe mode (AES) signs the body.
        """
        return within_replay_window(timestamp, self.clock(), self.settings.max_clock_skew_s)

    def routes(self) -> list[web.AbstractRouteDef]:
        """GET for WeChat's URL verification, POST for messages and events."""
        return [
            web.get(self.path, self.handle_verify, allow_head=False),
            web.post(self.path, self.handle_post),
        ]

    # --- inbound ---

    async def handle_verify(self, request: web.Request) -> web.StreamResponse:
        """URL verification: echo `echostr` as is when the signature matches (never encrypted for 公众号)."""
        query = request.query
        missing = [k for k in ("signature", "timestamp", "nonce", "echostr") if not query.get(k)]
        if missing:
            return web.Response(status=400, text=f"missing query parameters: {', '.join(missing)}")
        if not signature_matches(
            sign(self.settings.token, query["timestamp"], query["nonce"]), query["signature"]
        ):
            logger.warning("wechat verification with a bad signature", extra={"account": self.account})
            return web.Response(status=403, text="signature mismatch")
        if not self._fresh(query["timestamp"]):
            return web.Response(status=403, text="timestamp outside the replay window")
        return web.Response(text=query["echostr"], content_type="text/plain")

    async def handle_post(self, request: web.Request) -> web.StreamResponse:
        """One message or event: verify, decrypt, parse, then the delivery policy: passive XML or `success`."""
        try:
            message, nonce, encrypted = await self.parse(request)
        except WeChatRequestError as exc:
            level = logging.WARNING if exc.status == 403 else logging.INFO
            logger.log(level, "wechat request refused: %s", exc.reason, extra={"account": self.account})
            return web.Response(status=exc.status, text=exc.reason)
        if message is None:
            return web.Response(text=SUCCESS)
        try:
            answer = await self.delivery.deliver(message, can_carry=self._fits)
        except CoordUnavailable as exc:
            # Redis (shared in-flight state) is down: without it a retry on another process could be
            # answered twice, so nothing is handled; WeChat retries, and so may the operator's monitor.
            logger.warning("wechat message refused: redis is down", extra={"account": self.account})
            return web.Response(
                status=503, text="temporarily unavailable", headers={"Retry-After": str(exc.retry_after_s)}
            )
        except Exception:
            # Not stored (one transaction), or its replies undecided: a 5xx makes WeChat retry, and the
            # retry finds whatever was committed. Never `success` for a message that is not stored.
            logger.exception("wechat message failed in the pipeline", extra={"account": self.account})
            return web.Response(status=503, text="temporarily unavailable")
        if answer.late:
            logger.info(
                "wechat answer missed the deadline; it goes out via 客服消息", extra={"account": self.account}
            )
        text = reply_text(answer.replies)
        if not text:
            await self.delivery.answered(answer)  # nothing to say is said at once
            return web.Response(text=SUCCESS)
        raw = message.raw
        xml = render_text_reply(text, openid=message.user_id, gh_id=str(raw.get("ToUserName", "")))
        if encrypted and self._crypto is not None:
            xml = self._crypto.encrypt_message(xml, nonce, str(int(time.time())))
        response = web.Response(text=xml, content_type="application/xml")
        if answer.claim is not None:
            # Several processes: written first, then recorded, so a retry elsewhere knows it went out.
            try:
                await response.prepare(request)
                await response.write_eof()
            except ConnectionError:
                return response  # WeChat gave up on this request; its retry decides (nothing recorded)
            await self.delivery.answered(answer)
        return response

    def _fits(self, result: Any) -> bool:
        """Whether one passive reply can carry the answer.

        One passive reply cannot be split, and WeChat shows "该公众号暂时无法提供服务" for one that is too
        long; with an AppSecret 客服消息 sends the text as several messages instead.
        """
        return len(reply_text(result.replies).encode("utf-8")) <= MAX_TEXT_BYTES or not self.settings.secret

    async def parse(self, request: web.Request) -> tuple[Message | None, str, bool]:
        """Verify and decode a POST into (message or None, nonce, reply-encrypted?); raises WeChatRequestError."""
        query = request.query
        timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
        signature = query.get("signature", "")
        if not timestamp or not nonce:
            raise WeChatRequestError(400, "missing query parameters: timestamp, nonce")
        # `signature` comes with every POST, also in safe mode: check it before reading the body.
        if not signature or not signature_matches(sign(self.settings.token, timestamp, nonce), signature):
            raise WeChatRequestError(403, "signature mismatch")
        if not self._fresh(timestamp):
            raise WeChatRequestError(403, "timestamp outside the replay window")
        # 413 before reading more than the cap (a JSON error body; WeChat never sends that much anyway).
        body = await read_body(request, self._max_body())
        if not body:
            raise WeChatRequestError(400, "empty body")
        try:
            xml_text = body.decode("utf-8")  # WeChat sends UTF-8; wechatpy's parser gets this same text
        except UnicodeDecodeError:
            raise WeChatRequestError(400, "body is not UTF-8") from None
        root = parse_xml(xml_text)
        encrypted = query.get("encrypt_type", "raw").lower() == "aes"
        if encrypted and self._crypto is not None:
            xml_text = self._decrypt(root, query.get("msg_signature", ""), timestamp, nonce)
            root = parse_xml(xml_text)
        elif encrypted:
            if root.find("MsgType") is None:
                raise WeChatRequestError(
                    400, f"encrypted message but channels.wechat[{self.account}].aes_key is not configured"
                )
            # Compatible mode carries the plaintext too; without a key we can only use (and answer) that.
            encrypted = False
        elif root.find("MsgType") is None:
            raise WeChatRequestError(400, "no MsgType: an encrypted message without encrypt_type=aes?")
        flat = all(len(child) == 0 for child in root)
        return to_message(self.account, xml_text, xml_fields(root), flat=flat), nonce, encrypted

    def _decrypt(self, root: ET.Element, msg_signature: str, timestamp: str, nonce: str) -> str:
        assert self._crypto is not None
        encrypt = (root.findtext("Encrypt") or "").strip()
        if not encrypt:
            raise WeChatRequestError(400, "encrypt_type=aes but no <Encrypt> in the body")
        expected = sign(self.settings.token, timestamp, nonce, encrypt)
        if not msg_signature or not signature_matches(expected, msg_signature):
            raise WeChatRequestError(403, "msg_signature mismatch")
        try:
            # Signature already checked in constant time above; wechatpy re-checks it with the same value.
            return self._crypto.decrypt_message({"Encrypt": encrypt}, expected, timestamp, nonce)
        except InvalidAppIdException:
            raise WeChatRequestError(403, "message encrypted for another appid") from None
        except InvalidSignatureException:  # pragma: no cover - cannot happen after the check above
            raise WeChatRequestError(403, "msg_signature mismatch") from None
        except Exception as exc:  # bad base64/padding/length: wechatpy does not validate PKCS#7 itself
            raise WeChatRequestError(400, f"cannot decrypt the message: {type(exc).__name__}") from None

    def _max_body(self) -> int:
        return self.runtime.settings.server.max_body_bytes

    def _deadline(self) -> float:
        return self.runtime.settings.pipeline.wechat_reply_deadline_s

    # --- outbound ---

    def _api(self) -> CustomerServiceSender:
        if self._sender is None:
            session = self.runtime.http
            tokens = AccessTokenManager(
                session,
                self.settings.appid,
                self.settings.secret,
                api_base=self.settings.api_base,
                shared=self.runtime.coord.tokens,  # one token for every process (redis.url)
            )
            # With redis.url, split-message progress is shared (the retry of a row may run elsewhere).
            progress = self.runtime.coord.counters if self.runtime.coord.shared else None
            self._sender = CustomerServiceSender(
                session, tokens, api_base=self.settings.api_base, progress=progress
            )
        return self._sender

    async def send(self, outgoing: Outgoing) -> None:
        """Deliver one text through the 客服消息 API (split when long); raise SendError on failure."""
        if not self.settings.secret:
            raise SendError(
                f"channels.wechat[{self.account}].secret is not set: 客服消息 (asynchronous replies) need the AppSecret",
                retryable=False,
            )
        # The pipeline keeps the openid as target["user_id"]; the conversation key ends with it as well.
        target = outgoing.target
        openid = (
            str(target.get("openid") or target.get("user_id") or "")
            or outgoing.conversation_key.rpartition(":")[2]
        )
        if not openid:
            raise SendError(f"no openid in conversation {outgoing.conversation_key!r}", retryable=False)
        attachment = outgoing.attachment
        if attachment is None:
            await self._api().send_text(openid, outgoing.text, row=outgoing.outbox_id)
            return
        if attachment.kind != "image":
            raise SendError(
                "微信公众号的客服消息不能发送文件（只能发送图片），请改用文字说明", retryable=False
            )
        data = await self._stored_bytes(attachment)
        await self._api().send_image(openid, data, attachment.name or "image.jpg", attachment.mime)
        if outgoing.text != attachment.placeholder():  # a caption goes after the picture
            await self._api().send_text(openid, outgoing.text, row=outgoing.outbox_id)

    async def _stored_bytes(self, attachment: Attachment) -> bytes:
        media = self.runtime.media
        data = await media.store.read(attachment.key) if media is not None and attachment.key else None
        if data is None:
            raise SendError("the image to send is no longer stored (uploads.dir)", retryable=False)
        return data

    async def fetch_media(self, attachment: Attachment, max_bytes: int) -> bytes:
        """A customer's picture: PicUrl while it serves, else media/get by MediaId."""
        if attachment.url:
            try:
                return (await download(self.runtime.http, attachment.url, max_bytes))[0]
            except (FetchError, aiohttp.ClientError, TimeoutError):
                if not attachment.media_id:
                    raise
        if not attachment.media_id or not self.settings.secret:
            raise FetchError("no PicUrl that serves, and no MediaId with an AppSecret to fetch it")
        return await self._api().get_media(attachment.media_id, max_bytes)
