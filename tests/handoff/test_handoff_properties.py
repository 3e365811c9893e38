"""Properties of the queue and the assigner over generated queues and teams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from handoff.agents import AgentInfo
from handoff.presence import Presence
from handoff.queue import (
    AgentLoad,
    AssignmentPolicy,
    Priority,
    QueueItem,
    choose_agent,
    ineligibility,
    order_queue,
    plan_assignments,
    position_of,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
GROUPS = ["售前", "售后"]

items_st = st.lists(
    st.builds(
        QueueItem,
        conversation_id=st.text("abcdef", min_size=1, max_size=4),
        group=st.sampled_from(GROUPS),
        priority=st.sampled_from(list(Priority)),
        queued_at=st.integers(0, 30).map(lambda m: T0 + timedelta(minutes=m)),
        is_ticket=st.booleans(),
    ),
    max_size=12,
    unique_by=lambda i: i.conversation_id,
)

agents_st = st.lists(
    st.builds(
        AgentLoad,
        agent=st.builds(
            AgentInfo,
            id=st.text("wxyz", min_size=1, max_size=3),
            name=st.just("客服"),
            groups=st.frozensets(st.sampled_from(GROUPS)),
            max_chats=st.integers(0, 3),
            enabled=st.booleans(),
        ),
        presence=st.sampled_from(list(Presence)),
        load=st.integers(0, 4),
        last_assigned_at=st.none() | st.integers(0, 30).map(lambda m: T0 + timedelta(minutes=m)),
    ),
    max_size=6,
    unique_by=lambda a: a.agent.id,
)


@settings(max_examples=100, deadline=None)
@given(items_st)
def test_order_is_a_permutation_and_positions_are_1_to_n_per_group(items: list[QueueItem]) -> None:
    ordered = order_queue(items)
    assert sorted(map(id, ordered)) == sorted(map(id, items))
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        assert earlier.priority.rank >= later.priority.rank  # complaints never behind normal chats
    for group in GROUPS:
        members = [i for i in items if i.group == group]
        assert sorted(position_of(i.conversation_id, items) for i in members) == list(
            range(1, len(members) + 1)
        )


@settings(max_examples=100, deadline=None)
@given(
    agents_st,
    st.sampled_from(GROUPS),
    st.sampled_from([AssignmentPolicy.LEAST_BUSY, AssignmentPolicy.ROUND_ROBIN]),
)
def test_the_chosen_agent_can_always_take_it_and_none_means_nobody_could(
    agents: list[AgentLoad], group: str, policy: AssignmentPolicy
) -> None:
    chosen = choose_agent(policy, group, agents)
    eligible = {a.agent.id for a in agents if ineligibility(a, group) is None}
    assert (chosen is None) == (not eligible)
    assert chosen is None or chosen in eligible


@settings(max_examples=100, deadline=None)
@given(items_st, agents_st, st.sampled_from([AssignmentPolicy.LEAST_BUSY, AssignmentPolicy.ROUND_ROBIN]))
def test_a_plan_never_exceeds_capacity_nor_assigns_twice(
    items: list[QueueItem], agents: list[AgentLoad], policy: AssignmentPolicy
) -> None:
    plan = plan_assignments(policy, items, agents, T0)
    assert len({cid for cid, _ in plan}) == len(plan)
    by_id = {a.agent.id: a for a in agents}
    groups = {i.conversation_id: i.group for i in items}
    for agent_id in {aid for _, aid in plan}:
        taken = sum(1 for _, aid in plan if aid == agent_id)
        assert by_id[agent_id].load + taken <= by_id[agent_id].agent.max_chats
    for cid, aid in plan:
        chosen = by_id[aid].agent
        assert chosen.enabled and chosen.serves(groups[cid]) and by_id[aid].presence is Presence.ONLINE
