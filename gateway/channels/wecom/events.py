"""WeCom 微信客服 payloads in: the encrypted callback envelope, and the items of kf/sync_msg as kefu Messages.

A callback (`MsgType=event`, `Event=kf_msg_or_event`) carries no message, only the pull `Token` and the
`OpenKfId`. The messages come from kf/sync_msg, each with an `origin`: 3 the customer, 4 a system event,
5 a reception staff member of WeCom itself.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from gateway.channels.wechat.adapter import WeChatRequestError, parse_xml, sign
from gateway.message import Attachment, Message, MessageKind, without_nul
from gateway.signing import signature_matches

CHANNEL = "wecom"
ORIGIN_CUSTOMER = 3
ORIGIN_EVENT = 4
ORIGIN_SERVICER = 5
# The 转人工 entry of a 猜你想问 menu (the pipeline's human keys know "human").
HUMAN_MENU_ID = "human"


class CallbackError(Exception):
    """A callback request kefu refuses; `status` is the HTTP answer (400 or 403)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --- the callback -------------------------------------------------------------------------------------


def _xml(text: str | bytes) -> ET.Element:
    try:
        return parse_xml(text)  # defusedxml: no DOCTYPE, entities or external references
    except WeChatRequestError as exc:
        raise CallbackError(exc.status, exc.reason) from None


def verify_echostr(crypto: WeChatCrypto, token: str, query: Mapping[str, str]) -> str:
    """URL verification: the decrypted `echostr` when `msg_signature` matches; raises CallbackError."""
    missing = [k for k in ("msg_signature", "timestamp", "nonce", "echostr") if not query.get(k)]
    if missing:
        raise CallbackError(400, f"missing query parameters: {', '.join(missing)}")
    echostr = query["echostr"]
    expected = sign(token, query["timestamp"], query["nonce"], echostr)
    if not signature_matches(expected, query["msg_signature"]) and " " in echostr:
        # An unescaped "+" of the base64 echostr arrives as a space after form decoding.
        echostr = echostr.replace(" ", "+")
        expected = sign(token, query["timestamp"], query["nonce"], echostr)
    if not signature_matches(expected, query["msg_signature"]):
        raise CallbackError(403, "msg_signature mismatch")
    return _decrypt(lambda: crypto.check_signature(expected, query["timestamp"], query["nonce"], echostr))


def _decrypt(run: Callable[[], Any]) -> str:
    try:
        plain = run()
    except InvalidCorpIdException:
        raise CallbackError(403, "encrypted for another corp id") from None
    except InvalidSignatureException:  # pragma: no cover - checked in constant time before
        raise CallbackError(403, "msg_signature mismatch") from None
    except Exception as exc:  # bad base64/padding/length: wechatpy does not validate PKCS#7 itself
        raise CallbackError(400, f"cannot decrypt: {type(exc).__name__}") from None
    return plain.decode("utf-8") if isinstance(plain, bytes) else str(plain)


@dataclass(frozen=True, slots=True)
class Callback:
    """A decrypted callback: its event, and for kf_msg_or_event the pull token and the 客服帐号."""

    event: str
    token: str | None
    open_kfid: str | None


def open_callback(crypto: WeChatCrypto, token: str, query: Mapping[str, str], body: bytes) -> Callback:
    """Verify and decrypt a POSTed callback; raises CallbackError (403 for a forged signature)."""
    timestamp, nonce, signature = (
        query.get("timestamp", ""),
        query.get("nonce", ""),
        query.get("msg_signature", ""),
    )
    if not timestamp or not nonce or not signature:
        raise CallbackError(400, "missing query parameters: msg_signature, timestamp, nonce")
    if not body:
        raise CallbackError(400, "empty body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallbackError(400, "body is not UTF-8") from None
    encrypt = (_xml(text).findtext("Encrypt") or "").strip()
    if not encrypt:
        raise CallbackError(400, "no <Encrypt> in the body")
    expected = sign(token, timestamp, nonce, encrypt)
    if not signature_matches(expected, signature):
        raise CallbackError(403, "msg_signature mismatch")
    plain = _decrypt(lambda: crypto.decrypt_message({"Encrypt": encrypt}, expected, timestamp, nonce))
    root = _xml(plain)
    msg_type = (root.findtext("MsgType") or "").strip().lower()
    event = (root.findtext("Event") or "").strip() if msg_type == "event" else msg_type
    return Callback(
        event=event,
        token=(root.findtext("Token") or "").strip() or None,
        open_kfid=(root.findtext("OpenKfId") or "").strip() or None,
    )


# --- kf/sync_msg items ------------------------------------------------------------------------------


def conversation_key(account: str, open_kfid: str, external_userid: str) -> str:
    """`wecom:{account}:{open_kfid}:{external_userid}`: one customer of one 客服帐号."""
    return f"{CHANNEL}:{account}:{open_kfid}:{external_userid}"


def parse_conversation_key(key: str) -> tuple[str, str]:
    """(open_kfid, external_userid) of a WeCom conversation key; ValueError for anything else."""
    parts = key.split(":")
    if len(parts) != 4 or parts[0] != CHANNEL or not parts[2] or not parts[3]:
        raise ValueError(f"not a WeCom conversation key: {key!r}")
    return parts[2], parts[3]


@dataclass(frozen=True, slots=True)
class Item:
    """One kf/sync_msg entry, its common fields checked."""

    msgid: str
    origin: int
    open_kfid: str
    external_userid: str
    msgtype: str
    send_time: datetime
    raw: Mapping[str, Any]

    @property
    def event(self) -> Mapping[str, Any]:
        """The `event` object of an origin-4 item (empty otherwise)."""
        value = self.raw.get("event")
        return value if isinstance(value, Mapping) else {}

    @property
    def key(self) -> str:
        return f"{self.open_kfid}:{self.external_userid}"


def read_item(raw: Mapping[str, Any], now: Callable[[], datetime]) -> Item | None:
    """The checked fields of one sync_msg entry; None when it cannot be attributed to a customer."""
    # Some entries are stored as they are (a servicer's messages, stale ones), not as a Message (which drops
    # NUL itself): one NUL left in would stop the cursor behind it, on PostgreSQL, for good.
    raw = without_nul(raw)
    msgid = raw.get("msgid")
    try:
        origin = int(raw.get("origin") or 0)
    except (TypeError, ValueError):
        return None
    event = raw.get("event") if isinstance(raw.get("event"), Mapping) else {}
    # Events carry the customer and the account inside `event`; messages at the top level.
    open_kfid = raw.get("open_kfid") or event.get("open_kfid")
    external = raw.get("external_userid") or event.get("external_userid")
    if not isinstance(msgid, str) or not msgid or not isinstance(open_kfid, str) or not open_kfid:
        return None
    if not isinstance(external, str):
        external = ""
    try:
        send_time = datetime.fromtimestamp(int(raw.get("send_time") or 0), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        send_time = now()
    if send_time.year < 2000:
        send_time = now()
    return Item(msgid, origin, open_kfid, external, str(raw.get("msgtype") or ""), send_time, raw)


_KINDS: Mapping[str, MessageKind] = {"text": "text", "image": "image", "voice": "voice"}


def item_text(item: Item) -> str:
    """What the history shows for a message: its text, or a short label for other types."""
    if item.msgtype == "text":
        text = item.raw.get("text")
        content = text.get("content") if isinstance(text, Mapping) else None
        return content if isinstance(content, str) else ""
    if item.msgtype == "msgmenu":
        menu = item.raw.get("msgmenu")
        head = menu.get("head_content") if isinstance(menu, Mapping) else None
        return head if isinstance(head, str) else "[菜单消息]"
    return f"[{item.msgtype or '未知'}]"


def item_kind(item: Item) -> MessageKind:
    """kefu's message kind for a WeCom msgtype."""
    return _KINDS.get(item.msgtype, "other")


def customer_message(account: str, item: Item, known_entry: Callable[[str], bool]) -> Message:
    """An origin-3 item as a pipeline Message; a 猜你想问 menu click becomes a click on that FAQ entry."""
    base: dict[str, Any] = {
        "channel": CHANNEL,
        "account": account,
        "conversation_key": conversation_key(account, item.open_kfid, item.external_userid),
        "user_id": item.external_userid,
        "channel_msg_id": item.msgid,
        "received_at": item.send_time,
        "raw": dict(item.raw),
    }
    text = item_text(item)
    if item.msgtype == "text":
        menu_id = item.raw["text"].get("menu_id") if isinstance(item.raw.get("text"), Mapping) else None
        if isinstance(menu_id, str) and (menu_id == HUMAN_MENU_ID or known_entry(menu_id)):
            return Message(**base, text=text, kind="event", event="click", event_key=menu_id)
        return Message(**base, text=text, kind="text")
    if item.msgtype == "image":  # fetched with media/get on the console's first view
        image = item.raw.get("image")
        media_id = image.get("media_id") if isinstance(image, Mapping) else None
        picture = Attachment(
            kind="image", mime="image/jpeg", name="image.jpg", media_id=str(media_id or "") or None
        )
        return Message(**base, text="[图片]", kind="image", attachment=picture)
    # Voice comes without a transcript here: the pipeline treats it like an image (non-text).
    return Message(**base, text="", kind=item_kind(item))


def enter_session_message(account: str, item: Item) -> Message:
    """An enter_session event: with a welcome_code it greets (the pipeline's subscribe), else it is recorded."""
    welcome = item.event.get("welcome_code")
    return Message(
        channel=CHANNEL,
        account=account,
        conversation_key=conversation_key(account, item.open_kfid, item.external_userid),
        user_id=item.external_userid,
        text="进入了会话",  # the console shows events as a line, never as an empty customer bubble
        kind="event",
        event="subscribe" if welcome else "enter_session",
        channel_msg_id=item.msgid,
        received_at=item.send_time,
        raw=dict(item.raw),
    )
