"""Who gets the next conversation: least busy, round robin, manual claim; capacity and presence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handoff.agents import AgentInfo
from handoff.presence import Presence
from handoff.queue import (
    AgentLoad,
    AssignmentPolicy,
    Priority,
    QueueItem,
    choose_agent,
    ineligibility,
    is_group_staffed,
    plan_assignments,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
LEAST, RR, MANUAL = AssignmentPolicy.LEAST_BUSY, AssignmentPolicy.ROUND_ROBIN, AssignmentPolicy.MANUAL


def agent(
    aid: str,
    load: int = 0,
    *,
    presence: Presence = Presence.ONLINE,
    groups: tuple[str, ...] = ("售后",),
    max_chats: int = 3,
    enabled: bool = True,
    last: int | None = None,
) -> AgentLoad:
    info = AgentInfo(aid, f"客服{aid}", groups=frozenset(groups), max_chats=max_chats, enabled=enabled)
    last_at = None if last is None else T0 + timedelta(minutes=last)
    return AgentLoad(info, presence, load, last_at)


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (agent("a"), None),
        (agent("a", enabled=False), "disabled"),
        (agent("a", groups=("售前",)), "not in group 售后"),
        (agent("a", presence=Presence.AWAY), "presence is away"),
        (agent("a", presence=Presence.OFFLINE), "presence is offline"),
        (agent("a", load=3), "at capacity (3/3)"),
        (agent("a", max_chats=0), "at capacity (0/0)"),
    ],
)
def test_ineligibility_names_the_reason(candidate: AgentLoad, reason: str | None) -> None:
    assert ineligibility(candidate, "售后") == reason


def test_least_busy_picks_the_fewest_open_chats() -> None:
    agents = [agent("a", 2), agent("b", 0), agent("c", 1)]
    assert choose_agent(LEAST, "售后", agents) == "b"


def test_least_busy_skips_full_away_offline_disabled_and_other_group_agents() -> None:
    agents = [
        agent("full", 3),
        agent("away", presence=Presence.AWAY),
        agent("offline", presence=Presence.OFFLINE),
        agent("disabled", enabled=False),
        agent("presale", groups=("售前",)),
        agent("busy-but-free", 2),
    ]
    assert choose_agent(LEAST, "售后", agents) == "busy-but-free"


def test_least_busy_tie_goes_to_who_waited_longest_then_id() -> None:
    assert choose_agent(LEAST, "售后", [agent("a", 1, last=10), agent("b", 1, last=5)]) == "b"
    # Never assigned = waited the longest.
    assert choose_agent(LEAST, "售后", [agent("a", 1, last=1), agent("z", 1)]) == "z"
    assert choose_agent(LEAST, "售后", [agent("b", 1, last=5), agent("a", 1, last=5)]) == "a"


def test_load_beats_waiting_time() -> None:
    assert choose_agent(LEAST, "售后", [agent("idle-long", 2), agent("recent", 1, last=59)]) == "recent"


@pytest.mark.parametrize("policy", [LEAST, RR, MANUAL])
def test_nobody_eligible_means_none(policy: AssignmentPolicy) -> None:
    assert choose_agent(policy, "售后", [agent("a", 3), agent("b", presence=Presence.AWAY)]) is None
    assert choose_agent(policy, "售后", []) is None


def test_manual_never_assigns_even_with_free_agents() -> None:
    assert choose_agent(MANUAL, "售后", [agent("a")]) is None
    items = [QueueItem("c1", "售后", Priority.NORMAL, T0)]
    assert plan_assignments(MANUAL, items, [agent("a")], T0) == []


def test_round_robin_rotates_by_id_and_wraps() -> None:
    agents = [agent("c"), agent("a"), agent("b")]
    turns = []
    last = None
    for _ in range(4):
        last = choose_agent(RR, "售后", agents, last)
        turns.append(last)
    assert turns == ["a", "b", "c", "a"]


def test_round_robin_ignores_load_but_skips_who_cannot_take_one() -> None:
    agents = [agent("a", 0), agent("b", 3), agent("c", 2)]
    assert choose_agent(RR, "售后", agents, "a") == "c"  # b is full: skipped, not waited for
    assert choose_agent(RR, "售后", agents, "c") == "a"


def test_round_robin_continues_after_a_cursor_agent_who_left() -> None:
    assert choose_agent(RR, "售后", [agent("a"), agent("c")], last_assigned="b") == "c"


def test_policy_accepts_the_config_string() -> None:
    assert choose_agent("round_robin", "售后", [agent("a")]) == "a"  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        choose_agent("fastest", "售后", [agent("a")])  # type: ignore[arg-type]


def test_staffed_means_someone_online_even_if_full() -> None:
    assert is_group_staffed("售后", [agent("a", 3)])
    assert not is_group_staffed(
        "售后", [agent("a", presence=Presence.AWAY), agent("b", presence=Presence.OFFLINE)]
    )
    assert not is_group_staffed("售后", [agent("a", enabled=False)])
    assert not is_group_staffed("售前", [agent("a")])


def q(cid: str, minute: int, group: str = "售后", priority: str = "normal") -> QueueItem:
    return QueueItem(cid, group, Priority(priority), T0 + timedelta(minutes=minute))


def test_plan_spreads_the_queue_by_load_and_respects_capacity() -> None:
    agents = [agent("a", 1, max_chats=2), agent("b", 0, max_chats=2)]
    items = [q("c1", 1), q("c2", 2), q("c3", 3), q("c4", 4)]
    # b (0) gets c1; a and b tie at 1, a waited longer (b was just assigned) → c2; b → c3; all full → c4 waits.
    assert plan_assignments(LEAST, items, agents, T0) == [("c1", "b"), ("c2", "a"), ("c3", "b")]


def test_plan_serves_complaints_first() -> None:
    items = [q("normal", 1), q("angry", 5, priority="high")]
    assert plan_assignments(LEAST, items, [agent("a", 2)], T0) == [("angry", "a")]


def test_plan_shares_one_capacity_across_groups() -> None:
    both = agent("a", 0, groups=("售前", "售后"), max_chats=1)
    items = [q("post", 2, "售后"), q("pre", 1, "售前")]
    assert plan_assignments(LEAST, items, [both], T0) == [("pre", "a")]


def test_plan_a_full_group_does_not_block_another() -> None:
    agents = [agent("post", 3), agent("pre", groups=("售前",))]
    items = [q("waits", 1, "售后"), q("served", 2, "售前")]
    assert plan_assignments(LEAST, items, agents, T0) == [("served", "pre")]


def test_plan_round_robin_continues_from_the_stored_cursor() -> None:
    agents = [agent("a"), agent("b"), agent("c")]
    items = [q("c1", 1), q("c2", 2)]
    assert plan_assignments(RR, items, agents, T0, {"售后": "b"}) == [("c1", "c"), ("c2", "a")]


# --- 排班: agents on shift first ------------------------------------------------------------------------


def test_agents_on_shift_are_preferred_whatever_the_policy() -> None:
    agents = [agent("a", load=0), agent("b", load=2), agent("c", load=1)]
    assert choose_agent(LEAST, "售后", agents) == "a"
    assert choose_agent(LEAST, "售后", agents, on_shift={"b", "c"}) == "c"
    assert choose_agent(RR, "售后", agents, last_assigned="b", on_shift={"a", "b"}) == "a"


def test_off_shift_agents_still_help_when_nobody_on_shift_can() -> None:
    agents = [agent("a", load=0), agent("b", load=3)]  # b is on shift but full
    assert choose_agent(LEAST, "售后", agents, on_shift={"b"}) == "a"
    assert choose_agent(LEAST, "售后", agents, on_shift=set()) == "a"


def test_plan_assignments_uses_each_groups_shift() -> None:
    items = [QueueItem(str(i), "售后", Priority.NORMAL, T0 + timedelta(seconds=i)) for i in range(2)]
    agents = [agent("a"), agent("b")]
    plan = plan_assignments(LEAST, items, agents, T0, on_shift={"售后": {"b"}})
    assert plan == [("0", "b"), ("1", "b")]
