"""Rule intents that win over FAQ matches: complaints, asking for a human, small talk.

Handoff intents (complaint, human) fire on a keyword anywhere in the text, unless it is negated
("不用转人工"). Every other intent (small talk, canned answers) fires when the whole message is
close to one of its examples or keywords: it competes with the FAQ entries in the matcher's index,
so "你好，怎么退货" is still an FAQ question while "你好呀" is a greeting.

When a kb defines no `intents:`, `DEFAULT_INTENTS` apply — kefu's product defaults, written for
Chinese customer service; a kb that defines any intent replaces them all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from intents.normalize import normalize
from kb.model import KnowledgeBase, RuleIntent

__all__ = ["DEFAULT_INTENTS", "KeywordRules", "effective_intents"]


DEFAULT_INTENTS: tuple[RuleIntent, ...] = (
    RuleIntent(
        name="complaint",
        action="handoff",
        priority="high",
        keywords=(
            "投诉",
            "差评",
            "举报",
            "维权",
            "消协",
            "消费者协会",
            "12315",
            "工商局",
            "市场监管",
            "骗子",
            "欺诈",
            "坑人",
            "太垃圾",
            "什么破",
            "服务太差",
            "态度太差",
            "态度恶劣",
            "气死",
            "报警",
            "起诉",
            "律师函",
            "曝光你们",
        ),
        examples=("我要投诉你们", "你们这服务也太差了吧", "再不处理我就去消协了", "给你们差评"),
    ),
    RuleIntent(
        name="human",
        action="handoff",
        keywords=(
            "转人工",
            "人工客服",
            "人工服务",
            "人工坐席",
            "找人工",
            "要人工",
            "接人工",
            "真人客服",
            "找真人",
            "真人服务",
            "活人",
            "找客服",
            "叫你们经理",
            "找你们经理",
            "找你们领导",
            "不要机器人",
            "别用机器人",
        ),
        examples=("我要找人工", "能不能让真人来回答", "帮我转接客服人员", "有没有人工"),
    ),
    RuleIntent(
        name="greeting",
        action="smalltalk",
        reply="您好，很高兴为您服务！请问有什么可以帮您？",
        keywords=("你好", "您好", "在吗", "在不在", "哈喽", "hello", "hi", "嗨", "早上好", "晚上好"),
        examples=(
            "你好呀",
            "您好在吗",
            "有人在吗",
            "客服你好",
            "在么",
            "嗨你好",
            "早啊",
            "下午好",
            "中午好",
            "亲在吗",
            "喂",
            "哈喽哈喽",
            "早安",
            "晚安",
        ),
    ),
    RuleIntent(
        name="thanks",
        action="smalltalk",
        reply="不客气，很高兴能帮到您！还有其他问题随时找我。",
        keywords=("谢谢", "多谢", "感谢", "谢啦", "thanks", "thank you"),
        examples=("谢谢你", "太感谢了", "谢谢你的帮助", "好的谢谢", "辛苦了", "麻烦你了", "明白了谢谢"),
    ),
    RuleIntent(
        name="bye",
        action="smalltalk",
        reply="感谢您的咨询，祝您生活愉快，再见！",
        keywords=("再见", "拜拜", "bye", "回头见"),
        examples=("好的再见", "没有问题了", "没事了", "先这样吧", "下次再聊", "我走了", "88"),
    ),
    RuleIntent(
        name="identity",
        action="smalltalk",
        reply="我是智能客服助手，可以回答常见问题；需要人工服务请回复“转人工”。",
        examples=(
            "你是谁",
            "你叫什么名字",
            "你是机器人吗",
            "你是真人吗",
            "你是人还是机器",
            "你是ai吗",
            "你是男的还是女的",
            "你几岁了",
            "你多大了",
            "你住在哪里",
            "谁创造了你",
            "你能做什么",
            "你会干什么",
            "你有什么功能",
        ),
    ),
    RuleIntent(
        name="chitchat",
        action="smalltalk",
        reply="哈哈，闲聊我不太擅长～请问有什么关于商品或服务的问题可以帮您？",
        examples=(
            "你好吗",
            "最近怎么样",
            "你吃饭了吗",
            "你今天开心吗",
            "我好无聊",
            "陪我聊聊天",
            "我心情不好",
            "我很难过",
            "我好开心",
            "我爱你",
            "我喜欢你",
            "你喜欢我吗",
            "你真聪明",
            "你好笨",
            "你真可爱",
            "你真厉害",
            "讲个笑话",
            "给我唱首歌",
            "今天天气怎么样",
            "你在干嘛",
            "你睡了吗",
            "我饿了",
            "我困了",
            "我累了",
            "哈哈哈",
            "嘿嘿",
            "呵呵",
            "好吧",
            "好的",
            "嗯嗯",
            "哦",
            "知道了",
            "ok",
            "你猜",
            "为什么",
            "真的吗",
            "算了",
            "没意思",
            "你有男朋友吗",
            "你有女朋友吗",
            "你结婚了吗",
            "做我女朋友吧",
            "我们做朋友吧",
            "你会聊天吗",
            "晚饭吃什么",
            "周末去哪玩",
            "你喜欢什么",
            "你的爱好是什么",
            "你开心吗",
            "想你了",
            "抱抱",
            "生日快乐",
            "新年快乐",
            "我是谁",
        ),
    ),
)

# A keyword right after one of these is negated: "不用转人工", "没有投诉", "别找客服".
_NEGATIONS = "不用|不要|不需要|无需|没有|没|不|别"
_NEGATION = re.compile(rf"(?:{_NEGATIONS})$")


def effective_intents(kb: KnowledgeBase) -> tuple[RuleIntent, ...]:
    """The kb's own rule intents, or kefu's defaults when it defines none."""
    return kb.intents if kb.intents else DEFAULT_INTENTS


def compact(text: str) -> str:
    """Normalised text without spaces, the form keywords are looked up in."""
    return normalize(text).replace(" ", "")


@dataclass(frozen=True, slots=True)
class KeywordRules:
    """Keyword triggers of the handoff intents, high priority first (a complaint beats "转人工")."""

    rules: tuple[tuple[RuleIntent, tuple[str, ...]], ...]
    negated: re.Pattern[str] | None = None  # "不用转人工" etc., cut out before FAQ matching
    # Any keyword at all: most messages have none, and one search says so faster than a find per keyword.
    any_keyword: re.Pattern[str] | None = None

    @classmethod
    def build(cls, intents: Iterable[RuleIntent]) -> KeywordRules:
        """Collect the keywords of every handoff intent, normalised like the customer's text."""
        rules = []
        for intent in intents:
            if intent.action != "handoff":
                continue
            keywords = tuple(k for k in (compact(w) for w in intent.keywords) if k)
            if keywords:
                rules.append((intent, keywords))
        rules.sort(key=lambda r: r[0].priority != "high")  # stable: kb order within a priority
        words = sorted({k for _, keywords in rules for k in keywords}, key=len, reverse=True)
        if not words:
            return cls(tuple(rules))
        alternatives = "|".join(map(re.escape, words))
        return cls(
            tuple(rules), re.compile(rf"(?:{_NEGATIONS}) ?(?:{alternatives})"), re.compile(alternatives)
        )

    def strip_negated(self, normalized: str) -> str:
        """The text without negated triggers: "不用转人工，退货地址是哪" is matched as "退货地址是哪"."""
        if self.negated is None:
            return normalized
        return self.negated.sub(" ", normalized).strip()

    def match(self, compacted: str) -> RuleIntent | None:
        """The first handoff intent whose keyword occurs (not negated) in the compacted text."""
        if self.any_keyword is None or self.any_keyword.search(compacted) is None:
            return None
        for intent, keywords in self.rules:
            for keyword in keywords:
                start = compacted.find(keyword)
                while start >= 0:
                    if not _NEGATION.search(compacted[max(0, start - 3) : start]):
                        return intent
                    start = compacted.find(keyword, start + 1)
        return None


def example_phrases(intent: RuleIntent) -> tuple[str, ...]:
    """What an intent is matched on in the index: examples, plus keywords for non-handoff intents."""
    if intent.action == "handoff":
        return intent.examples
    return (*intent.examples, *intent.keywords)
