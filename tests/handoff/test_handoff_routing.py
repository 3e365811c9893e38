"""Skill-group routing from config: intents and FAQ categories to groups, complaints at high priority."""

from __future__ import annotations

import pytest

from handoff.queue import Priority
from handoff.routing import DEFAULT_GROUP, Route, RoutingConfigError, RoutingRules, SkillGroup
from kb.model import RuleIntent, SourceRef

CONFIG = {
    "default_group": "售前",
    "groups": [
        {"name": "售前", "categories": ["商品咨询", "下单支付"]},
        {"name": "售后", "categories": ["退换货", "物流"], "intents": ["complaint"], "priority": "high"},
    ],
}


@pytest.fixture
def rules() -> RoutingRules:
    return RoutingRules.from_config(CONFIG)


def test_a_complaint_goes_to_after_sales_at_high_priority(rules: RoutingRules) -> None:
    assert rules.route("complaint", "下单支付") == Route("售后", Priority.HIGH)


def test_the_category_decides_when_no_intent_is_routed(rules: RoutingRules) -> None:
    assert rules.route("human", "退换货") == Route("售后", Priority.NORMAL)
    assert rules.group_for(None, "下单支付") == "售前"


def test_unknown_intent_and_category_go_to_the_default_group(rules: RoutingRules) -> None:
    assert rules.group_for("human", "火星快递") == "售前"
    assert rules.group_for() == "售前"


def test_the_kb_declared_priority_is_never_lowered(rules: RoutingRules) -> None:
    # A kb intent flagged high stays high even though config routes it nowhere special.
    assert rules.priority_for("refund_fraud", "high") is Priority.HIGH
    assert rules.priority_for("human", None) is Priority.NORMAL
    assert rules.priority_for("complaint", "normal") is Priority.HIGH


def test_groups_may_be_a_mapping_and_the_default_is_the_first_group() -> None:
    rules = RoutingRules.from_config({"groups": {"售后": {"intents": ["complaint"]}, "售前": None}})
    assert rules.group_names == ("售后", "售前")
    assert rules.default_group == "售后"


def test_no_config_means_one_default_group() -> None:
    for section in (None, {}, {"groups": []}):
        rules = RoutingRules.from_config(section)
        assert rules.group_names == (DEFAULT_GROUP,)
        assert rules.group_for("complaint", "物流") == DEFAULT_GROUP


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"groups": [{"name": "售后", "priority": "urgent"}]},
            r"groups\[0\]: priority must be one of normal, high",
        ),
        ({"groups": [{"name": "售后", "categorys": ["物流"]}]}, r"groups\[0\]: unknown keys \['categorys'\]"),
        ({"groups": [{"name": "售后", "intents": "complaint"}]}, r"groups\[0\]: intents: must be a list"),
        ({"groups": [{"categories": ["物流"]}]}, r"groups\[0\]: group name must be a string"),
        ({"groups": ["售后"]}, r"groups\[0\]: must be a mapping"),
        (
            {"groups": [{"name": "售后"}], "default_group": "售前"},
            r"default_group: '售前' is not a configured group",
        ),
        ({"groups": [{"name": "a"}, {"name": "a"}]}, r"duplicate group names \['a'\]"),
        (
            {"groups": [{"name": "a", "categories": ["物流"]}, {"name": "b", "categories": ["物流"]}]},
            r"category '物流' is routed to both a and b",
        ),
    ],
)
def test_config_errors_name_the_field(section: dict, message: str) -> None:
    with pytest.raises(RoutingConfigError, match=message):
        RoutingRules.from_config(section)


def test_kb_rule_intent_groups_are_added_but_config_wins(rules: RoutingRules) -> None:
    merged = rules.with_rule_intents(
        [
            RuleIntent("refund", "handoff", group="售后"),
            RuleIntent("complaint", "handoff", group="售前"),  # config already routes complaint → 售后
            RuleIntent("human", "handoff"),
        ]
    )
    assert merged.group_for("refund") == "售后"
    assert merged.group_for("complaint") == "售后"
    assert merged.group_for("human") == "售前"


def test_kb_rule_intent_with_an_unknown_group_names_file_and_line(rules: RoutingRules) -> None:
    intent = RuleIntent("vip", "handoff", group="大客户", source=SourceRef("faq/intents.yaml", 12))
    with pytest.raises(
        RoutingConfigError, match=r"vip \(faq/intents.yaml:12\): group '大客户'.*known: 售前, 售后"
    ):
        rules.with_rule_intents([intent])


def test_skill_group_rejects_a_string_where_a_list_belongs() -> None:
    with pytest.raises(ValueError, match="categories must be a list"):
        SkillGroup("售后", categories="物流")  # type: ignore[arg-type]


def test_only_a_default_group_named_makes_that_the_one_group() -> None:
    rules = RoutingRules.from_config({"default_group": "人工客服"})
    assert rules.group_names == ("人工客服",)
    assert rules.group_for("complaint") == "人工客服"
