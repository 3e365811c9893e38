"""Permissions matrix: agents see their groups' queue and their own chats; supervisors everything."""

from __future__ import annotations

import pytest

from handoff.agents import AgentInfo, Role
from handoff.permissions import (
    ConversationRef,
    PermissionDenied,
    can_claim,
    can_close,
    can_hand_back,
    can_manage_agents,
    can_reassign,
    can_reply,
    can_transfer,
    can_view,
    require,
)
from handoff.state import ConversationState as S

ALICE = AgentInfo("alice", "小艾", Role.AGENT, frozenset({"售后"}))
BOB = AgentInfo("bob", "小博", Role.AGENT, frozenset({"售后"}))
PRESALE = AgentInfo("pre", "小倩", Role.AGENT, frozenset({"售前"}))
SUPER = AgentInfo("sup", "主管", Role.SUPERVISOR, frozenset())
ADMIN = AgentInfo("adm", "管理员", Role.ADMIN, frozenset(), max_chats=0)
GONE = AgentInfo("gone", "离职", Role.SUPERVISOR, frozenset({"售后"}), enabled=False)

QUEUED = ConversationRef("c1", "售后", S.QUEUED)
ALICES = ConversationRef("c2", "售后", S.ASSIGNED, "alice")
CLOSED_ALICES = ConversationRef("c3", "售后", S.CLOSED, "alice")
BOT = ConversationRef("c4", "售后", S.BOT)


@pytest.mark.parametrize(
    ("agent", "conversation", "allowed"),
    [
        (ALICE, QUEUED, True),  # her group's queue
        (PRESALE, QUEUED, False),  # another group's queue
        (ALICE, ALICES, True),  # her own
        (BOB, ALICES, False),  # a colleague's, same group
        (ALICE, CLOSED_ALICES, True),  # her history
        (BOB, CLOSED_ALICES, False),
        (ALICE, BOT, False),
        (SUPER, ALICES, True),
        (SUPER, BOT, True),
        (ADMIN, QUEUED, True),
        (GONE, QUEUED, False),  # disabled loses everything, role or not
    ],
)
def test_view_matrix(agent: AgentInfo, conversation: ConversationRef, allowed: bool) -> None:
    assert bool(can_view(agent, conversation)) is allowed


def test_denials_say_why() -> None:
    assert (
        can_view(PRESALE, QUEUED).reason == "the conversation is queued for group 售后, which you are not in"
    )
    assert can_view(BOB, ALICES).reason == "the conversation is not yours"
    assert can_view(GONE, QUEUED).reason == "your account is disabled"
    assert can_view(ALICE, QUEUED).reason == ""


@pytest.mark.parametrize(
    ("agent", "conversation", "load", "allowed"),
    [
        (ALICE, QUEUED, 0, True),
        (ALICE, QUEUED, None, True),
        (ALICE, QUEUED, 5, False),  # at capacity
        (PRESALE, QUEUED, 0, False),
        (SUPER, QUEUED, 0, True),  # not in the group, but sees everything
        (BOB, ALICES, 0, False),  # no silent takeover of an assigned chat
        (SUPER, ALICES, 0, False),  # supervisors reassign instead
        (ALICE, CLOSED_ALICES, 0, False),
        (GONE, QUEUED, 0, False),
    ],
)
def test_claim_matrix(
    agent: AgentInfo, conversation: ConversationRef, load: int | None, allowed: bool
) -> None:
    assert bool(can_claim(agent, conversation, load)) is allowed


def test_claim_at_capacity_names_the_limit() -> None:
    assert "limit of 5" in can_claim(ALICE, QUEUED, load=5).reason


@pytest.mark.parametrize(
    ("agent", "conversation", "allowed"),
    [
        (ALICE, ALICES, True),
        (BOB, ALICES, False),
        (SUPER, ALICES, False),  # only the assignee talks to the customer
        (ALICE, QUEUED, False),
        (ALICE, CLOSED_ALICES, False),
    ],
)
def test_reply_matrix(agent: AgentInfo, conversation: ConversationRef, allowed: bool) -> None:
    assert bool(can_reply(agent, conversation)) is allowed


def test_supervisor_reply_denial_tells_them_to_reassign() -> None:
    assert "reassign it to yourself first" in can_reply(SUPER, ALICES).reason
    assert "reassign" not in can_reply(BOB, ALICES).reason


@pytest.mark.parametrize(
    ("agent", "conversation", "target", "allowed"),
    [
        (ALICE, ALICES, {"to_group": "售前"}, True),
        (ALICE, ALICES, {"to_agent": BOB}, True),
        (ALICE, ALICES, {"to_agent": ALICE}, False),  # already hers
        (ALICE, ALICES, {"to_agent": GONE}, False),  # disabled target
        (BOB, ALICES, {"to_group": "售前"}, False),  # not his
        (ALICE, QUEUED, {"to_group": "售前"}, True),  # re-route a mis-routed queue item of her group
        (PRESALE, QUEUED, {"to_group": "售前"}, False),  # another group's queue
        (ALICE, QUEUED, {"to_group": "售后"}, False),  # already queued there
        (SUPER, ALICES, {"to_agent": BOB}, True),
        (ALICE, CLOSED_ALICES, {"to_group": "售前"}, False),
        (ALICE, ALICES, {}, False),  # no target
        (ALICE, ALICES, {"to_group": "售前", "to_agent": BOB}, False),  # two targets
    ],
)
def test_transfer_matrix(
    agent: AgentInfo, conversation: ConversationRef, target: dict, allowed: bool
) -> None:
    assert bool(can_transfer(agent, conversation, **target)) is allowed


@pytest.mark.parametrize(
    ("agent", "conversation", "to_agent", "allowed"),
    [
        (SUPER, ALICES, BOB, True),
        (ADMIN, QUEUED, BOB, True),
        (SUPER, ALICES, ALICE, False),  # already hers
        (SUPER, ALICES, GONE, False),
        (SUPER, CLOSED_ALICES, BOB, False),
        (ALICE, ALICES, BOB, False),  # agents transfer, only supervisors reassign
        (GONE, ALICES, BOB, False),
    ],
)
def test_reassign_matrix(
    agent: AgentInfo, conversation: ConversationRef, to_agent: AgentInfo, allowed: bool
) -> None:
    assert bool(can_reassign(agent, conversation, to_agent)) is allowed


@pytest.mark.parametrize(
    ("agent", "conversation", "allowed"),
    [
        (ALICE, ALICES, True),
        (BOB, ALICES, False),
        (SUPER, ALICES, True),
        (SUPER, QUEUED, True),
        (ALICE, QUEUED, False),  # claim it first
        (ALICE, CLOSED_ALICES, False),
    ],
)
def test_close_matrix(agent: AgentInfo, conversation: ConversationRef, allowed: bool) -> None:
    assert bool(can_close(agent, conversation)) is allowed


def test_only_enabled_admins_manage_agents() -> None:
    assert can_manage_agents(ADMIN)
    assert not can_manage_agents(SUPER)
    assert not can_manage_agents(AgentInfo("x", "前管理员", Role.ADMIN, enabled=False))


def test_require_raises_with_the_reason() -> None:
    require(can_view(ALICE, QUEUED))
    with pytest.raises(PermissionDenied, match="only supervisors and admins can reassign"):
        require(can_reassign(ALICE, ALICES, BOB))


def test_hand_back_follows_close() -> None:
    assert can_hand_back(ALICE, ALICES)
    assert not can_hand_back(BOB, ALICES)
