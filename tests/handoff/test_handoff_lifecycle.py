"""Conversation states, allowed transitions, when a conversation expires, and the idle reminder/close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handoff.lifecycle import IdleAction, LifecycleRules, idle_action, is_expired
from handoff.state import (
    ALLOWED_TRANSITIONS,
    InvalidTransition,
    check_transition,
    is_with_human,
)
from handoff.state import (
    ConversationState as S,
)
from handoff.wrapup import CloseReason, state_after

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)

VALID = [
    (S.BOT, S.QUEUED),  # handoff
    (S.BOT, S.CLOSED),  # bot-only conversation ends
    (S.QUEUED, S.ASSIGNED),  # claimed
    (S.QUEUED, S.BOT),  # customer gave up / handed back
    (S.QUEUED, S.CLOSED),
    (S.ASSIGNED, S.QUEUED),  # transferred to a group
    (S.ASSIGNED, S.BOT),  # handed back to the bot
    (S.ASSIGNED, S.CLOSED),
]


@pytest.mark.parametrize(("current", "new"), VALID)
def test_valid_transitions_pass(current: S, new: S) -> None:
    check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [(a, b) for a in S for b in S if (a, b) not in VALID],
)
def test_every_other_transition_raises(current: S, new: S) -> None:
    with pytest.raises(InvalidTransition, match=f"from {current.value} to {new.value}"):
        check_transition(current, new)


def test_the_table_has_exactly_the_valid_transitions() -> None:
    assert {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets} == set(VALID)


def test_the_bot_stays_quiet_while_queued_or_assigned() -> None:
    assert [is_with_human(s) for s in (S.BOT, S.QUEUED, S.ASSIGNED, S.CLOSED)] == [False, True, True, False]


RULES = LifecycleRules(bot_idle=30 * MIN, human_idle=30 * MIN)


@pytest.mark.parametrize(
    ("state", "gap", "expired"),
    [
        (S.BOT, 29 * MIN, False),
        (S.BOT, 30 * MIN, True),  # the gap is inclusive
        (S.BOT, 3 * 60 * MIN, True),
        (S.CLOSED, 0 * MIN, True),  # the next message always opens a new one
        (S.QUEUED, 5 * 60 * MIN, False),  # a late message continues a human conversation
        (S.ASSIGNED, 5 * 60 * MIN, False),
    ],
)
def test_is_expired(state: S, gap: timedelta, expired: bool) -> None:
    assert is_expired(state, NOW - gap, NOW, RULES) is expired


def test_is_expired_follows_the_configured_gap() -> None:
    assert is_expired(S.BOT, NOW - 6 * MIN, NOW, LifecycleRules(bot_idle=5 * MIN))


REMIND = LifecycleRules(human_idle=30 * MIN, idle_reminder=25 * MIN)


def idle(
    rules: LifecycleRules,
    *,
    customer: int | None,
    agent: int | None,
    reminded: int | None = None,
    state: S = S.ASSIGNED,
) -> IdleAction:
    """Minutes ago of the customer's and agent's last message and the reminder."""
    ago = lambda m: None if m is None else NOW - m * MIN  # noqa: E731
    return idle_action(state, ago(customer), ago(agent), ago(reminded), NOW, rules)


def test_no_reminder_or_close_while_the_customer_waits_for_us() -> None:
    assert idle(REMIND, customer=60, agent=None) is IdleAction.NONE  # agent never wrote
    assert idle(REMIND, customer=40, agent=50) is IdleAction.NONE  # customer wrote last
    assert idle(REMIND, customer=None, agent=None, state=S.QUEUED) is IdleAction.NONE
    assert idle(REMIND, customer=90, agent=60, state=S.QUEUED) is IdleAction.NONE


def test_reminder_then_close_after_the_customer_goes_silent() -> None:
    assert idle(REMIND, customer=30, agent=24) is IdleAction.NONE
    assert idle(REMIND, customer=30, agent=25) is IdleAction.REMIND
    assert idle(REMIND, customer=40, agent=29, reminded=4) is IdleAction.NONE
    assert idle(REMIND, customer=40, agent=30, reminded=5) is IdleAction.CLOSE


def test_a_late_job_still_reminds_first_and_gives_the_full_grace() -> None:
    assert idle(REMIND, customer=120, agent=90) is IdleAction.REMIND
    assert idle(REMIND, customer=120, agent=90, reminded=1) is IdleAction.NONE
    assert idle(REMIND, customer=120, agent=90, reminded=5) is IdleAction.CLOSE


def test_a_reminder_before_the_agents_latest_message_does_not_count() -> None:
    assert idle(REMIND, customer=70, agent=26, reminded=40) is IdleAction.REMIND


def test_without_a_reminder_it_just_closes() -> None:
    assert idle(RULES, customer=40, agent=29) is IdleAction.NONE
    assert idle(RULES, customer=40, agent=30) is IdleAction.CLOSE


def test_how_an_ending_changes_the_state_and_whether_csat_is_asked() -> None:
    assert state_after(CloseReason.BACK_TO_BOT) is S.BOT
    assert state_after(CloseReason.AGENT) is S.CLOSED
    assert [r.asks_csat for r in CloseReason] == [True, False, False, True]


@pytest.mark.parametrize("reminder", [30 * MIN, 45 * MIN, 0 * MIN, -MIN])
def test_a_reminder_that_could_never_be_seen_is_a_config_error(reminder: timedelta) -> None:
    with pytest.raises(ValueError, match="idle_reminder .* must be positive and shorter than human_idle"):
        LifecycleRules(human_idle=30 * MIN, idle_reminder=reminder)
