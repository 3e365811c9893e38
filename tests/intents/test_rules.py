from intents.matcher import Classifier
from intents.prediction import Decision
from intents.rules import DEFAULT_INTENTS
from kb.model import RuleIntent
from tests.intents.shop_faq import make_kb


def test_complaint_wins_over_a_matching_faq_and_is_high_priority(shop):
    prediction = shop.classify("我要投诉，退货退了半个月还没退款")
    assert prediction.decision is Decision.HANDOFF
    assert prediction.intent == "complaint"
    assert prediction.priority == "high"
    assert prediction.reason == "complaint"


def test_asking_for_a_human_hands_off(shop):
    for text in ("转人工", "我要人工客服", "找真人", "能不能转人工，退货的事"):
        prediction = shop.classify(text)
        assert prediction.decision is Decision.HANDOFF, text
        assert prediction.intent == "human"
        assert prediction.reason == "asked_human"
        assert prediction.priority == "normal"


def test_negated_request_is_not_a_handoff(shop):
    prediction = shop.classify("不用转人工，我就问下怎么退货")
    assert prediction.intent is None
    assert prediction.decision is Decision.ANSWER
    assert prediction.entry.id == "return-how"


def test_small_talk_gets_a_polite_reply_not_an_faq_answer(shop):
    for text in ("你好", "谢谢你", "再见", "你是谁", "你是机器人吗", "哈哈哈"):
        prediction = shop.classify(text)
        assert prediction.decision is Decision.SMALLTALK, text
        assert prediction.entry is None
        assert prediction.reply


def test_greeting_with_a_question_is_the_question(shop):
    prediction = shop.classify("你好，请问怎么退货")
    assert prediction.decision is Decision.ANSWER
    assert prediction.entry.id == "return-how"


def test_defaults_apply_only_when_the_kb_has_no_intents():
    names = {i.name for i in DEFAULT_INTENTS}
    assert {"complaint", "human", "greeting", "thanks", "bye"} <= names
    custom = (
        RuleIntent(name="human", action="handoff", keywords=("找小二",)),
        RuleIntent(name="hello", action="smalltalk", examples=("早上好",), reply="早上好呀"),
    )
    classifier = Classifier.build(make_kb(intents=custom))
    assert classifier.classify("找小二").intent == "human"
    assert classifier.classify("转人工").intent is None  # the kb's own list replaces the defaults
    hello = classifier.classify("早上好")
    assert hello.decision is Decision.SMALLTALK and hello.reply == "早上好呀"


def test_high_priority_intent_wins_when_both_fire():
    classifier = Classifier.build(make_kb())
    prediction = classifier.classify("转人工，我要投诉")
    assert prediction.intent == "complaint" and prediction.priority == "high"


def test_answer_action_intent_replies_with_its_own_text():
    intents = (RuleIntent(name="hours", action="answer", examples=("你们几点上班",), reply="每天9:00-21:00"),)
    prediction = Classifier.build(make_kb(intents=intents)).classify("你们几点上班")
    assert prediction.decision is Decision.ANSWER
    assert prediction.intent == "hours" and prediction.reply == "每天9:00-21:00"
    assert prediction.entry is None
