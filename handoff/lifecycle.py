"""When a conversation ends by itself: the rules reports count conversations by, written once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from handoff.state import ConversationState


@dataclass(frozen=True, slots=True)
class LifecycleRules:
    """Idle gaps after which a conversation is over (config `conversation:` in gateway.yaml)."""

    bot_idle: timedelta = timedelta(minutes=30)  # a bot-only conversation ends after this gap
    human_idle: timedelta = timedelta(
        minutes=30
    )  # an assigned one is auto-closed after this customer silence
    # Silence after which an assigned customer is reminded before the auto-close; None = close unannounced.
    idle_reminder: timedelta | None = None

    def __post_init__(self) -> None:
        if self.idle_reminder is not None and not timedelta(0) < self.idle_reminder < self.human_idle:
            # A reminder at or after the close would never be seen; say so instead of silently skipping it.
            raise ValueError(
                f"idle_reminder ({self.idle_reminder}) must be positive and shorter than human_idle ({self.human_idle})"
            )


def is_expired(
    state: ConversationState, last_activity_at: datetime, now: datetime, rules: LifecycleRules
) -> bool:
    """True when the next customer message must open a new conversation instead of continuing this one."""
    if state is ConversationState.CLOSED:
        return True
    gap = now - last_activity_at
    if state is ConversationState.BOT:
        return gap >= rules.bot_idle
    # With a human, only the idle auto-close (a handoff job) ends it; a late customer message continues it.
    return False


class IdleAction(StrEnum):
    NONE = "none"
    REMIND = "remind"  # send notices.idle_reminder()
    CLOSE = "close"  # close with reason idle and send notices.auto_closed()


def idle_action(
    state: ConversationState,
    last_customer_at: datetime | None,
    last_agent_at: datetime | None,
    reminded_at: datetime | None,
    now: datetime,
    rules: LifecycleRules,
) -> IdleAction:
    """What the idle job does to an assigned conversation now: nothing, remind the customer, or close it.

    Silence counts from the agent's last message, and only when it answered the customer: while the
    customer waits for us (queued, or the agent has not replied) we never close on them. With
    `rules.idle_reminder` set, a reminder always goes first and the customer gets the full
    `human_idle - idle_reminder` after it, even if the job ran late.
    """
    if state is not ConversationState.ASSIGNED or last_agent_at is None:
        return IdleAction.NONE
    if last_customer_at is not None and last_customer_at >= last_agent_at:
        return IdleAction.NONE  # the ball is in the agent's court
    silence = now - last_agent_at
    reminder_after = rules.idle_reminder
    if reminder_after is None:
        return IdleAction.CLOSE if silence >= rules.human_idle else IdleAction.NONE
    if reminded_at is None or reminded_at < last_agent_at:  # no reminder since the agent last spoke
        return IdleAction.REMIND if silence >= reminder_after else IdleAction.NONE
    grace = rules.human_idle - reminder_after
    if silence >= rules.human_idle and now - reminded_at >= grace:
        return IdleAction.CLOSE
    return IdleAction.NONE
