"""The contract every channel adapter fulfils (after NoneBot's Adapter and opsdroid's Connector)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from gateway.message import Attachment


class SendError(Exception):
    """An outbound send failed; `retryable` says whether the outbox should try again."""

    def __init__(self, reason: str, *, retryable: bool, maybe_delivered: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        # The request may have reached the platform (it timed out or lost its connection once sent): a
        # retry may then deliver the text a second time (counted as a possible double by the outbox).
        self.maybe_delivered = maybe_delivered


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What the outbox asks an adapter to deliver: one text to one conversation."""

    channel: str
    account: str
    conversation_key: str
    text: str
    sender: str = "bot"
    # Adapter-specific addressing kept at store time (openid, group id, msg_id for QQ passive replies...).
    target: Mapping[str, Any] = field(default_factory=dict)
    # The outbox row being delivered, stable across retries: the platform's idempotency handle where it has
    # one (QQ's msg_seq; WeCom derives its msgid from it).
    outbox_id: int | None = None
    # An image or file to deliver (its stored copy: Runtime.media); `text` is its placeholder or caption.
    attachment: Attachment | None = None


class ChannelAdapter(Protocol):
    """A channel account: its routes on the one aiohttp app, and asynchronous delivery."""

    channel: str
    account: str

    def routes(self) -> list[web.AbstractRouteDef]:
        """The URL routes this adapter serves."""
        ...

    async def send(self, outgoing: Outgoing) -> None:
        """Deliver one text through the platform API; raise SendError on failure."""
        ...
