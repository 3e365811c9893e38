"""`channel_cursors`: where a pulling channel's fetch stands, per scope (queries in gateway/storage/cursor_store.py).

With the other tables so that the models' metadata (migrations, autogenerate) is complete without the stores.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.schema.core import Base, UTCDateTime

__all__ = ["ChannelCursorRecord"]


class ChannelCursorRecord(Base):
    """Where a channel account's pull stands for one scope (WeCom: one 客服帐号, open_kfid)."""

    __tablename__ = "channel_cursors"

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(128), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    requested: Mapped[int] = mapped_column(Integer, default=0)
    pulled: Mapped[int] = mapped_column(Integer, default=0)
    # The last callback's pull token (WeCom: valid for minutes; it lifts sync_msg's strict rate limit).
    token: Mapped[str | None] = mapped_column(String(255))
    token_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Who is pulling this scope now, until when (a crashed puller's lease simply runs out).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
