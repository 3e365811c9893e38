"""质检: scoring closed conversations and checking drafts with the shipped config/qa.yaml."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from handoff.qa import QaMessage, check_draft, message_hits, score_conversation
from kb.qa_rules import QaRules, load_qa_rules, parse_qa_rules

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> QaRules:
    result = load_qa_rules(REPO / "config" / "qa.yaml")
    assert result.rules is not None, result.problems
    return result.rules


def conv(*lines: tuple[str, str, int]) -> list[QaMessage]:
    """(sender, text, seconds after T0)."""
    return [QaMessage(sender, text, T0 + timedelta(seconds=s)) for sender, text, s in lines]


def ids(hits: object) -> list[str]:
    return [h.rule_id for h in hits]  # type: ignore[attr-defined]


def test_a_model_conversation_scores_full_marks(rules: QaRules) -> None:
    result = score_conversation(
        conv(
            ("customer", "我的快递三天没动了", 0),
            ("agent", "您好，很高兴为您服务，正在为您查询，请您稍等。", 20),
            ("agent", "您的包裹已到达本地网点，预计明天送达。", 60),
            ("customer", "好的谢谢", 80),
            ("agent", "不客气，请问还有其他问题吗？祝您生活愉快，再见！", 100),
        ),
        rules,
    )
    assert (result.score, result.max_score, result.hits, result.flagged) == (100, 100, (), False)


def test_a_bare_bu_zhi_dao_is_hit_with_its_span_and_a_better_wording_and_flags_the_conversation(
    rules: QaRules,
) -> None:
    messages = conv(
        ("customer", "这个能退吗", 0),
        ("agent", "您好，请问有什么可以帮您？", 10),
        ("customer", "退货运费谁出", 30),
        ("agent", "不知道。", 50),
        ("agent", "感谢您的耐心，再见", 70),
    )
    result = score_conversation(messages, rules)
    (hit,) = result.hits
    assert (hit.rule_id, hit.message_index, hit.start, hit.end, hit.text) == (
        "bare-unknown",
        3,
        0,
        3,
        "不知道",
    )
    assert messages[3].text[hit.start : hit.end] == "不知道"
    assert hit.suggestion == "这个问题我帮您确认一下，请您稍等"
    assert result.score == 80 and result.flagged and result.rules_hit == ["bare-unknown"]


@pytest.mark.parametrize(
    "text",
    [
        "这个我不知道，我帮您查询一下，请您稍等",  # a next step follows
        "如果您不知道订单号，可以在「我的订单」里查看",  # about the customer
        "您是否清楚订单号？不清楚的话我帮您找",
    ],
)
def test_not_bare_when_a_next_step_follows_or_the_clause_is_about_the_customer(
    rules: QaRules, text: str
) -> None:
    assert "bare-unknown" not in ids(message_hits(text, rules))


def test_missing_greeting_and_closing(rules: QaRules) -> None:
    result = score_conversation(
        conv(("customer", "发票怎么开", 0), ("agent", "在订单详情页申请电子发票即可。", 10)), rules
    )
    assert ids(result.hits) == ["greeting", "closing"]
    assert all(h.start == h.end == 0 and h.message_index == 1 for h in result.hits)
    assert result.score == 90 and not result.flagged
    # Still open: the closing phrase is not due yet.
    open_conv = score_conversation(conv(("agent", "您好，在的", 0)), rules, closed=False)
    assert open_conv.hits == ()


def test_rude_words_dismissive_phrases_and_patterns(rules: QaRules) -> None:
    hits = message_hits("你自己看吧，你没看吗，不归我管，妈的", rules)
    assert [(h.rule_id, h.text) for h in hits] == [
        ("dismissive", "你自己看"),
        ("dismissive", "你没看吗"),
        ("dismissive", "不归我管"),
        ("rude", "妈的"),
    ]
    assert [h.block for h in hits] == [False, False, False, True]
    # Ordinary words that contain a rude character are not hit.
    assert message_hits("滚筒洗衣机的滚动轴承在保修范围内", rules) == []


def test_vague_answers(rules: QaRules) -> None:
    (hit,) = message_hits("应该是吧，明天能到", rules)
    assert (hit.rule_id, hit.rule_type, hit.text) == ("vague", "vague", "应该是吧")
    assert message_hits("您可以看情况选择合适的尺码", rules) == []


def test_width_mix_and_placeholders(rules: QaRules) -> None:
    hits = message_hits("订单ＡＢ１２３已发货,请查收", rules)
    assert [(h.text, h.suggestion) for h in hits] == [
        ("ＡＢ１２３", "改为半角：AB123"),
        (",", "改为全角：，"),
    ]
    # English or numbers alone are not a mix; commas between digits are fine.
    assert message_hits("OK, order 1,234 shipped", rules) == []
    placeholder = message_hits("{name}您好，您的订单{{订单号}}已发出，金额${amount}", rules)
    assert [h.text for h in placeholder] == ["{name}", "{{订单号}}", "${amount}"]
    assert all(h.block for h in placeholder)


def test_response_gaps_count_after_the_first_reply_only(rules: QaRules) -> None:
    result = score_conversation(
        conv(
            ("customer", "在吗", 0),
            ("agent", "您好，在的，请问有什么可以帮您？", 600),  # first response: the SLA's business
            ("customer", "改地址", 620),
            ("customer", "能改吗", 700),
            ("agent", "可以的，已为您修改。感谢您的耐心，再见", 900),  # waited 280 s from 620
        ),
        rules,
    )
    (hit,) = result.hits
    assert (hit.rule_id, hit.message_index, hit.text) == ("slow-reply", 4, "客户等待 280 秒")


def test_score_never_goes_below_zero_and_a_conversation_without_agent_is_not_flagged(rules: QaRules) -> None:
    rude = conv(*[("agent", "妈的 卧槽 闭嘴 废物", i) for i in range(3)])
    result = score_conversation(rude, rules)
    assert result.score == 0 and result.flagged
    bot_only = score_conversation(conv(("customer", "你好", 0), ("bot", "您好", 1)), rules)
    assert bot_only.hits == () and not bot_only.flagged


def test_draft_check_uses_the_same_rules_and_blocks_only_block_rules(rules: QaRules) -> None:
    draft = check_draft("不知道", rules)
    assert ids(draft.hits) == ["bare-unknown"] and not draft.blocked
    assert check_draft("妈的", rules).blocked
    assert check_draft("{name}您好", rules, first_reply=True).blocked
    assert ids(check_draft("在的", rules, first_reply=True).hits) == ["greeting"]
    assert ids(check_draft("好的", rules, closing=True).hits) == ["closing"]
    assert check_draft("您好，正在为您查询，请您稍等", rules, first_reply=True).hits == ()
    hit = check_draft("不知道", rules).hits[0]
    assert hit.as_dict()["message_index"] is None and hit.as_dict()["rule"] == "bare-unknown"


def test_flag_below_threshold_without_flag_rules() -> None:
    rules = parse_qa_rules(
        "flag_below: 95\nrules:\n  - id: w\n    type: width_mix\n    weight: 3\n", "qa.yaml"
    ).rules
    assert rules is not None
    one = score_conversation(conv(("agent", "好的,收到", 0)), rules)
    assert (one.score, one.flagged) == (97, False)
    two = score_conversation(conv(("agent", "好的,收到,谢谢", 0)), rules)
    assert (two.score, two.flagged) == (94, True)
