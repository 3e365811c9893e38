import dataclasses

import pytest

from intents.matcher import Classifier
from intents.prediction import Decision, Thresholds
from tests.intents.shop_faq import SHOP, make_kb


def test_paraphrase_gets_the_faq_answer(shop):
    prediction = shop.classify("我买的东西想退货，怎么弄")
    assert prediction.decision is Decision.ANSWER
    assert prediction.entry is not None and prediction.entry.id == "return-how"
    assert prediction.reason == "faq"
    assert 0.62 <= prediction.confidence <= 1.0
    assert "退货" in prediction.tokens


def test_exact_question_in_traditional_and_full_width_is_answered(shop):
    prediction = shop.classify("怎麼查物流？")
    assert prediction.decision is Decision.ANSWER
    assert prediction.entry.id == "tracking"


def test_alternatives_are_one_per_entry_sorted_and_at_most_three(shop):
    for text in ("退款怎么退", "发票和运费", "地址", "怎么退货"):
        alternatives = shop.classify(text).alternatives
        ids = [c.entry_id for c in alternatives]
        scores = [c.score for c in alternatives]
        assert len(alternatives) <= 3
        assert len(set(ids)) == len(ids)
        assert scores == sorted(scores, reverse=True)
        for c in alternatives:
            assert 0.0 < c.score <= 1.0
            assert c.question in shop.kb.get(c.entry_id).questions


def test_off_topic_question_is_handed_off_not_answered(shop):
    prediction = shop.classify("明天上海会下雨吗")
    assert prediction.decision is Decision.HANDOFF
    assert prediction.reason == "no_match"
    assert prediction.entry is None


def test_thresholds_are_respected(shop):
    text = "我买的东西想退货，怎么弄"
    confidence = shop.classify(text).confidence
    strict = shop.with_thresholds(Thresholds(answer=confidence + 0.01, suggest=confidence - 0.01))
    unsure = strict.classify(text)
    assert unsure.decision is Decision.SUGGEST and unsure.reason == "unsure"
    assert unsure.entry is None and unsure.alternatives[0].entry_id == "return-how"
    stricter = shop.with_thresholds(Thresholds(answer=confidence + 0.02, suggest=confidence + 0.01))
    assert stricter.classify(text).decision is Decision.HANDOFF
    lax = Classifier.build(shop.kb, Thresholds(answer=confidence, suggest=0.0))
    assert lax.classify(text).decision is Decision.ANSWER


def test_a_question_between_two_entries_gets_them_both_as_suggestions_not_a_handoff():
    # Two entries share every word of the question: no margin to answer, but the question is theirs.
    faqs = {
        **SHOP,
        "coupon-get": ("优惠券怎么领", ("优惠券在哪领",)),
        "coupon-use": ("优惠券怎么用", ("优惠券在哪用",)),
    }
    classifier = Classifier.build(make_kb(faqs))
    for text in ("优惠券怎么弄", "优惠券在哪", "优惠券问题"):
        prediction = classifier.classify(text)
        assert prediction.decision is Decision.SUGGEST, text
        assert prediction.confidence < classifier.thresholds.suggest  # the margin alone would hand off
        assert {c.entry_id for c in prediction.alternatives[:2]} == {"coupon-get", "coupon-use"}
        assert prediction.entry is None
    assert classifier.classify("明天上海会下雨吗").decision is Decision.HANDOFF


@pytest.mark.parametrize(
    ("text", "bare"),
    [
        ("嗯嗯，那个，运费谁出？多谢啦", "运费谁出"),
        ("你好呀 包邮吗 感谢感谢", "包邮吗"),  # was answered as a thanks
        ("老板在吗？请问怎么查物流，谢谢！", "怎么查物流"),
        ("亲，在吗？能开发票吗？谢谢", "能开发票吗"),
    ],
)
def test_a_question_wrapped_in_courtesy_is_answered_like_the_bare_question(shop, text, bare):
    wrapped, plain = shop.classify(text), shop.classify(bare)
    assert plain.decision is Decision.ANSWER
    assert wrapped.decision is Decision.ANSWER and wrapped.entry == plain.entry, wrapped
    assert wrapped.confidence == plain.confidence  # the same words matched


def test_courtesy_with_nothing_else_is_still_small_talk_and_rules_see_every_word(shop):
    assert shop.classify("早上好亲爱的").decision is Decision.SMALLTALK
    # A question the FAQ does not know, politely asked, goes on as one: not a "不客气".
    unknown = shop.classify("您好，请问你们招聘吗？感谢感谢！")
    assert unknown.decision is not Decision.SMALLTALK and unknown.intent is None
    handoff = shop.classify("谢谢，转人工")
    assert handoff.decision is Decision.HANDOFF and handoff.reason == "asked_human"


def test_empty_text_asks_the_customer_to_type_a_question(shop):
    for text in ("", "   ", "？？？", "😀"):
        prediction = shop.classify(text)
        assert prediction.decision is Decision.SUGGEST
        assert prediction.reason == "empty"
        assert prediction.alternatives == ()
        assert prediction.reply


def test_disabled_entries_are_never_matched():
    kb = make_kb(disabled=frozenset({"invoice"}))
    classifier = Classifier.build(kb)
    prediction = classifier.classify("怎么开发票")
    assert prediction.entry is None or prediction.entry.id != "invoice"
    assert all(c.entry_id != "invoice" for c in prediction.alternatives)


def test_synonyms_from_the_kb_help_matching():
    faqs = {"tracking": ("怎么查物流", ()), "invoice": ("怎么开发票", ())}
    without = Classifier.build(make_kb(faqs)).classify("怎么查快件")
    with_synonyms = Classifier.build(make_kb(faqs, synonyms=(("物流", "快件"),))).classify("怎么查快件")
    assert with_synonyms.decision is Decision.ANSWER
    assert with_synonyms.confidence > without.confidence


def test_index_is_immutable_and_per_snapshot(shop):
    with pytest.raises(dataclasses.FrozenInstanceError):
        shop.thresholds = Thresholds()  # type: ignore[misc]
    other = Classifier.build(make_kb({"points": ("积分怎么用", ("积分能抵现金吗",))}))
    assert other.classify("积分怎么用").entry.id == "points"
    assert shop.classify("积分怎么用").decision is not Decision.ANSWER  # the old snapshot is untouched


def test_empty_kb_hands_everything_off():
    classifier = Classifier.build(make_kb({}))
    assert classifier.classify("怎么退货").decision is Decision.HANDOFF
    assert classifier.rank("怎么退货") == ()


def test_rank_ignores_rules_and_thresholds(shop):
    ranked = shop.rank("我要投诉退货太慢", 3)
    assert ranked and ranked[0].entry_id == "return-how"


def test_a_pasted_essay_is_matched_on_its_opening_and_still_fast(shop):
    import time

    text = "我想退货，怎么弄？" + "这个东西质量一般般，" * 500
    start = time.perf_counter()
    prediction = shop.classify(text)
    assert time.perf_counter() - start < 0.5
    assert prediction.alternatives and prediction.alternatives[0].entry_id == "return-how"
    assert shop.classify("退货的事。" + "啰嗦" * 300 + "我要投诉").intent == "complaint"


def test_a_repeated_text_is_answered_from_the_memo_with_the_same_prediction(shop):
    first = shop.classify("怎么退货")
    assert shop.classify("怎么退货") is first  # the memo's object, not a re-computation
    fresh = shop.classify("怎么退货", memo=False)
    assert fresh is not first and fresh == first  # computed again, and the same answer


def test_memo_is_per_index_and_bounded(shop, monkeypatch):
    shop.classify("怎么退货")
    stricter = shop.with_thresholds(Thresholds(answer=0.99, suggest=0.98))
    # Other thresholds, other decisions: the derived classifier must not reuse the memo's predictions.
    assert stricter.classify("怎么退货").decision is not Decision.ANSWER
    monkeypatch.setattr("intents.matcher.MEMO_SIZE", 3)
    texts = [f"退货{i}" for i in range(6)]
    for text in texts:
        stricter.classify(text)
    assert len(stricter._memo) == 3 and list(stricter._memo) == texts[-3:]
