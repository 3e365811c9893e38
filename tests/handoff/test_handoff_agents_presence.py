"""Agents (roles, groups, capacity, tokens) and presence from the console heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handoff.agents import (
    TOKEN_PREFIX,
    AgentInfo,
    Role,
    hash_token,
    new_token,
    validate_agent_name,
    validate_group_name,
    verify_token,
)
from handoff.presence import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    Presence,
    accepts_new_chats,
    is_reachable,
    presence_from_heartbeat,
)


def test_token_is_shown_once_and_only_its_hash_is_kept() -> None:
    plain, stored = new_token()
    assert plain.startswith(TOKEN_PREFIX) and len(plain) > 40
    assert plain not in stored and stored == hash_token(plain) and len(stored) == 64
    assert verify_token(plain, stored)
    assert verify_token(plain, stored.upper())  # hex case from another tool does not matter


def test_tokens_are_unique_and_do_not_verify_each_other() -> None:
    (p1, h1), (p2, h2) = new_token(), new_token()
    assert p1 != p2
    assert not verify_token(p1, h2)
    assert not verify_token("", h1)
    assert not verify_token(p1, "")
    assert not verify_token(p1, "不是哈希")  # a garbled stored value must not raise


def test_agent_accepts_config_values() -> None:
    agent = AgentInfo("7", "小王", role="supervisor", groups=["售前", "售后"], max_chats=4)  # type: ignore[arg-type]
    assert agent.role is Role.SUPERVISOR and agent.role.sees_everything
    assert agent.groups == frozenset({"售前", "售后"})
    assert agent.serves("售后") and not agent.serves("物流")
    assert agent.serves_any(["物流", "售前"])
    assert not Role.AGENT.sees_everything and Role.ADMIN.sees_everything


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "boss"}, "role must be one of agent, supervisor, admin"),
        ({"groups": "售后"}, "groups must be a list"),
        ({"max_chats": -1}, "max_chats must be between 0 and 50"),
        ({"max_chats": 51}, "max_chats must be between 0 and 50"),
        ({"max_chats": "3"}, "max_chats must be an integer"),
        ({"max_chats": True}, "max_chats must be an integer"),
        ({"name": ""}, "agent name must not be empty"),
        ({"name": " 小王"}, "must not start or end with whitespace"),
        ({"name": "小王\n客服"}, "control characters"),
        ({"name": "小\u200b王"}, "control characters"),
        ({"name": "王" * 33}, "longer than 32"),
        ({"id": ""}, "agent id must be a non-empty string"),
        ({"groups": ["售后", "售/前"]}, "must not contain"),
    ],
)
def test_invalid_agents_say_what_to_fix(kwargs: dict, message: str) -> None:
    fields = {"id": "1", "name": "小王"} | kwargs
    with pytest.raises(ValueError, match=message):
        AgentInfo(**fields)


def test_name_validators_return_the_valid_name() -> None:
    assert validate_agent_name("Lily 李") == "Lily 李"
    assert validate_group_name("售后") == "售后"
    with pytest.raises(ValueError, match="group name must not be empty"):
        validate_group_name("  ")


NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("age", "declared", "expected"),
    [
        (timedelta(seconds=5), Presence.ONLINE, Presence.ONLINE),
        (timedelta(seconds=5), Presence.AWAY, Presence.AWAY),
        (DEFAULT_HEARTBEAT_TIMEOUT, Presence.ONLINE, Presence.ONLINE),  # exactly at the limit: still there
        (DEFAULT_HEARTBEAT_TIMEOUT + timedelta(seconds=1), Presence.ONLINE, Presence.OFFLINE),
        (timedelta(hours=3), Presence.AWAY, Presence.OFFLINE),
        (timedelta(seconds=-30), Presence.ONLINE, Presence.ONLINE),  # clock skew: counts as fresh
        (timedelta(seconds=1), Presence.OFFLINE, Presence.OFFLINE),  # logged out explicitly
    ],
)
def test_presence_from_heartbeat(age: timedelta, declared: Presence, expected: Presence) -> None:
    assert presence_from_heartbeat(NOW - age, declared, NOW) is expected


def test_no_heartbeat_ever_is_offline_and_timeout_is_configurable() -> None:
    assert presence_from_heartbeat(None, Presence.ONLINE, NOW) is Presence.OFFLINE
    beat = NOW - timedelta(seconds=20)
    assert (
        presence_from_heartbeat(beat, Presence.ONLINE, NOW, timeout=timedelta(seconds=10)) is Presence.OFFLINE
    )


def test_only_online_takes_new_chats_but_away_can_still_answer() -> None:
    assert [accepts_new_chats(p) for p in Presence] == [True, False, False]
    assert [is_reachable(p) for p in Presence] == [True, True, False]


def test_presence_parse() -> None:
    assert Presence.parse(" Away ") is Presence.AWAY
    with pytest.raises(ValueError, match="online, away, offline"):
        Presence.parse("busy")


def test_an_agent_has_left_only_after_the_timeout_and_the_grace() -> None:
    from handoff.presence import has_left

    t0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    timeout, grace = timedelta(seconds=60), timedelta(seconds=30)
    heartbeat, assigned = t0, t0 - timedelta(minutes=10)
    assert not has_left((heartbeat, assigned, None), t0 + timedelta(seconds=90), timeout, grace)
    assert has_left((heartbeat, assigned, None), t0 + timedelta(seconds=91), timeout, grace)
    # A reply through the API is a sign of life too; a chat just given to them gets the grace as well.
    assert not has_left(
        (heartbeat, assigned, t0 + timedelta(seconds=80)), t0 + timedelta(seconds=91), timeout, grace
    )
    assert not has_left((None, t0, None), t0 + timedelta(seconds=10), timeout, grace)
    assert has_left((None, None, None), t0, timeout, grace)
