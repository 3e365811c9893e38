"""The pure rules for a customer waiting for a human (handoff.waiting), the canned-reply placeholder rule
(handoff.canned) and the wording about service hours (handoff.hours, handoff.notices)."""

from __future__ import annotations

from handoff import notices, waiting
from handoff.agents import AgentInfo, Role
from handoff.canned import may_edit_canned, unfilled_refusal
from handoff.hours import BusinessHours, group_hours_from_config
from handoff.state import ConversationState


def test_the_bot_answers_only_while_queued() -> None:
    assert waiting.bot_answers_while(ConversationState.QUEUED)
    for state in (ConversationState.ASSIGNED, ConversationState.BOT, ConversationState.CLOSED):
        assert not waiting.bot_answers_while(state)


def test_what_a_waiting_customer_is_told() -> None:
    assert waiting.still_queued(1) == "如仍需人工服务，您仍在排队，您是下一位，客服接入后会第一时间回复您。"
    assert "前面还有 4 位" in waiting.still_queued(5)
    acks = {waiting.queued_ack(3, turn) for turn in range(3)}
    assert len(acks) == 3 and all("前面还有 2 位" in a for a in acks)  # varied, each with the place
    assert len({waiting.ticket_ack(turn) for turn in range(3)}) == 3
    for text in (*acks, waiting.ticket_ack(0), waiting.still_queued(2)):
        assert "客服" in text and "请稍候" not in text  # nobody promised "right away"


def test_an_unfilled_placeholder_is_refused_ordinary_braces_are_text() -> None:
    refusal = unfilled_refusal("订单 {order_id} 已发货，{foo} 见")
    assert refusal is not None and refusal["code"] == "unfilled_placeholder"
    assert refusal["placeholders"] == ["order_id", "foo"]
    assert "{order_id}（订单号）、{foo}" in str(refusal["error"])
    for text in ("{ 订单号 }", "{}", "{1,2}", '{"a": 1}', "{型号}", "{{", "a}b{"):
        assert unfilled_refusal(text) is None, text


def test_who_may_change_a_canned_reply() -> None:
    wang = AgentInfo("1", "小王", Role.AGENT, frozenset({"售前"}), 5)
    boss = AgentInfo("2", "主管", Role.SUPERVISOR, frozenset({"售前"}), 5)
    assert may_edit_canned(boss, None, None) and may_edit_canned(boss, "1", "售后")
    assert may_edit_canned(wang, "1", "售前")
    assert not may_edit_canned(wang, "1", None)  # shared: admins only
    assert not may_edit_canned(wang, "3", "售前")  # a colleague's
    assert not may_edit_canned(wang, None, "售前")  # seeded by the deployment


def test_round_the_clock_hours_are_said_so_and_have_no_outside() -> None:
    always = BusinessHours.always_open()
    assert always.round_the_clock and always.describe() == "每天 24 小时"
    shop = group_hours_from_config({"weekly": {"mon-fri": ["09:00-18:00"]}}).default
    assert not shop.round_the_clock and shop.describe() == "周一至周五 09:00-18:00"
    holidays = group_hours_from_config({"weekly": {"daily": "00:00-24:00"}, "holidays": ["2026-12-31"]})
    assert not holidays.default.round_the_clock  # closed on a holiday: there is an "outside" after all


def test_an_agent_leaving_is_told_honestly() -> None:
    assert "已为您重新排队" in notices.agent_left(True) and "请稍候" in notices.agent_left(True)
    alone = notices.agent_left(False)
    assert "没有其他客服在线" in alone and "请稍候" not in alone
