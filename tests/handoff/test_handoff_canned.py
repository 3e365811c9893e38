"""Canned replies (话术): rendering placeholders safely and validating templates."""

from __future__ import annotations

from handoff.agents import AgentInfo, Role
from handoff.canned import (
    CannedReply,
    canned_for_agent,
    missing_placeholders,
    placeholders,
    render_canned,
    render_canned_report,
    validate_canned,
)

TEMPLATE = "{customer_name}您好，我是客服{agent_name}，您的订单 {order_id} 已为您加急处理。"


def test_placeholders_are_filled() -> None:
    text = render_canned(TEMPLATE, {"customer_name": "张女士", "agent_name": "小王", "order_id": "A1001"})
    assert text == "张女士您好，我是客服小王，您的订单 A1001 已为您加急处理。"


def test_unknown_or_empty_placeholders_stay_visible_and_are_reported() -> None:
    report = render_canned_report(TEMPLATE, {"customer_name": "", "agent_name": "小王", "order_id": None})
    assert report.text == "{customer_name}您好，我是客服小王，您的订单 {order_id} 已为您加急处理。"
    assert report.missing == ("customer_name", "order_id")
    assert not report.complete
    assert missing_placeholders(TEMPLATE, {}) == ("customer_name", "agent_name", "order_id")


def test_a_value_is_inserted_verbatim_never_expanded_again() -> None:
    text = render_canned("{customer_name}您好", {"customer_name": "{order_id}", "order_id": "X"})
    assert text == "{order_id}您好"


def test_format_tricks_and_stray_braces_are_plain_text() -> None:
    template = "{0.__class__} {customer_name!r} {{ {customer_name:>10} 表情{^_^} {} {customer_name}"
    assert render_canned(template, {"customer_name": "李"}) == (
        "{0.__class__} {customer_name!r} {{ {customer_name:>10} 表情{^_^} {} 李"
    )


def test_non_string_values_are_rendered() -> None:
    assert render_canned("预计 {date} 发货", {"date": 3}) == "预计 3 发货"


def test_placeholders_in_order_without_duplicates() -> None:
    assert placeholders("{a}{b}{a}") == ("a", "b")


def test_validation_names_what_to_fix() -> None:
    assert validate_canned(TEMPLATE) == []
    assert validate_canned("  ") == ["the reply text is empty"]
    problems = validate_canned("您好 {customer} 和 {customer name}")
    assert any("unknown placeholder {customer}" in p and "{customer_name}" in p for p in problems)
    assert any("{customer name} is not a valid placeholder" in p for p in problems)
    assert validate_canned("您好 {vip_level}", allowed={"vip_level"}) == []
    assert any("keep it under" in p for p in validate_canned("好" * 601))


def test_agents_get_global_and_their_groups_replies_supervisors_all() -> None:
    replies = [
        CannedReply("问候", "您好"),
        CannedReply("退货地址", "请寄回…", group="售后"),
        CannedReply("尺码", "请参考尺码表", group="售前"),
    ]
    after_sales = AgentInfo("a", "小艾", groups=frozenset({"售后"}))
    supervisor = AgentInfo("s", "主管", Role.SUPERVISOR)
    assert [r.title for r in canned_for_agent(replies, after_sales)] == ["问候", "退货地址"]
    assert len(canned_for_agent(replies, supervisor)) == 3
