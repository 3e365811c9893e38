"""Agent presence: online / away / offline, derived from the console's WebSocket heartbeat."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "Presence",
    "accepts_new_chats",
    "has_left",
    "is_reachable",
    "presence_from_heartbeat",
]

# The console sends a heartbeat every ~20 s; three missed beats mean the tab or the network is gone.
DEFAULT_HEARTBEAT_TIMEOUT = timedelta(seconds=60)


class Presence(StrEnum):
    ONLINE = "online"  # at the console and taking new chats
    AWAY = "away"  # at the console, keeps their chats, but gets no new ones
    OFFLINE = "offline"  # no console connected (or its heartbeat stopped)

    @classmethod
    def parse(cls, value: str) -> Presence:
        """The presence named by `value` (case-insensitive), or ValueError listing the allowed values."""
        try:
            return cls(value.strip().lower())
        except (ValueError, AttributeError):
            allowed = ", ".join(p.value for p in cls)
            raise ValueError(f"presence must be one of {allowed}, got {value!r}") from None


def presence_from_heartbeat(
    last_heartbeat: datetime | None,
    declared: Presence,
    now: datetime,
    timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
) -> Presence:
    """The effective presence: what the agent declared, or offline once the heartbeat is older than timeout."""
    if last_heartbeat is None:
        return Presence.OFFLINE
    # A heartbeat "from the future" (clock skew between processes) counts as fresh, not as stale.
    if now - last_heartbeat > timeout:
        return Presence.OFFLINE
    return declared


def accepts_new_chats(presence: Presence) -> bool:
    """True only when online: away agents keep their chats but get none assigned."""
    return presence is Presence.ONLINE


def is_reachable(presence: Presence) -> bool:
    """True when someone is at the console (online or away) to answer an existing chat."""
    return presence is not Presence.OFFLINE


def has_left(
    last_signs: tuple[datetime | None, ...], now: datetime, timeout: timedelta, grace: timedelta
) -> bool:
    """True when an agent holding a conversation is gone: no sign of them (a heartbeat, a reply, the
    assignment itself) for the heartbeat timeout plus a grace period (a reload or a short network cut
    must not cost the agent their chats)."""
    signs = [t for t in last_signs if t is not None]
    return not signs or now - max(signs) > timeout + grace
