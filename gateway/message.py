"""The one internal message type and the replies the pipeline collects for it.

Channel adapters translate their platform payloads to `Message` and render `Reply`s back; nothing
platform-specific travels further than the adapter except inside `raw`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal

ChatType = Literal["private", "group"]
MessageKind = Literal["text", "event", "image", "file", "voice", "other"]
AttachmentKind = Literal["image", "file"]
Sender = Literal["bot", "agent", "system", "customer"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def without_nul(value: Any) -> Any:
    """`value` with NUL characters dropped from every string in it (nested mappings and lists too): nothing a
    customer meant, and PostgreSQL refuses them in text."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, Mapping):
        return {k: without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Attachment:
    """An image or file carried by a message, whatever channel it came from or goes to.

    `key` names our stored copy (gateway.media); a platform's image not fetched yet has only its `url`
    (WeChat PicUrl, OneBot CQ:image, QQ bot attachment) or `media_id` (WeChat MediaId, WeCom media_id).
    """

    kind: AttachmentKind
    mime: str = "application/octet-stream"
    name: str = ""
    size: int | None = None
    key: str | None = None
    url: str | None = None
    media_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The stored form (a JSON column); `None` fields left out."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {k: v for k, v in values if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Attachment | None:
        """Read the stored form back; None for no attachment (or an unreadable one)."""
        if not data or data.get("kind") not in ("image", "file"):
            return None
        known = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        return cls(**known)

    def placeholder(self) -> str:
        """The text that stands for it where only text fits (lists, reports, text-only channels)."""
        return "[图片]" if self.kind == "image" else f"[文件] {self.name}".rstrip()


@dataclass(frozen=True, slots=True)
class Message:
    """An inbound customer message or event, whatever channel it came from."""

    channel: str  # "wechat" | "web" | "onebot" | "qqbot" | "wecom"
    account: str  # the configured channel account name
    conversation_key: str  # e.g. wechat:{account}:{openid}, web:{account}:{user_id}
    user_id: str
    text: str
    channel_msg_id: str | None = None  # dedupe key within (channel, account); None = never deduped
    user_name: str | None = None
    chat_type: ChatType = "private"
    group_id: str | None = None
    kind: MessageKind = "text"
    event: str | None = None  # "subscribe", "click", ... when kind == "event"
    event_key: str | None = None  # e.g. the menu key of a CLICK
    to_bot: bool = True  # group chats: was the bot addressed?
    segments: tuple[Mapping[str, Any], ...] = ()
    attachment: Attachment | None = None  # kind image/file: what the customer sent
    received_at: datetime = field(default_factory=utcnow)
    raw: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A NUL character is nothing a customer meant, and PostgreSQL refuses it in text: a platform that
        # forwards one (a QQ nickname, a OneBot or web-socket text) must not make the message unstorable.
        for name in _TEXT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str) and "\x00" in value:  # (never raise here: every channel makes one)
                object.__setattr__(self, name, without_nul(value))
        if self.attachment is not None and "\x00" in self.attachment.name:
            object.__setattr__(
                self, "attachment", replace(self.attachment, name=without_nul(self.attachment.name))
            )

    def stored_kind(self) -> dict[str, Any]:
        """The `kind` and `attachment` columns of its stored row."""
        return {"kind": self.kind, "attachment": self.attachment.as_json() if self.attachment else None}

    def target(self) -> dict[str, Any]:
        """Where a later push to this customer goes (stored with the message; adapters read it back)."""
        return {
            "user_id": self.user_id,
            "chat_type": self.chat_type,
            "group_id": self.group_id,
            "channel_msg_id": self.channel_msg_id,
        }


_TEXT_FIELDS = (
    "conversation_key",
    "user_id",
    "text",
    "channel_msg_id",
    "user_name",
    "group_id",
    "event",
    "event_key",
)


@dataclass(frozen=True, slots=True)
class Reply:
    """One outgoing text for a conversation, collected by the pipeline; the adapter decides how to deliver."""

    conversation_key: str
    text: str
    sender: Sender = "bot"
    suggestions: tuple[str, ...] = ()
    entry_id: str | None = None
    sender_name: str | None = None
