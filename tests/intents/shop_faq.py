"""A small shop FAQ built in code, so the matcher tests do not depend on the YAML loader."""

from __future__ import annotations

from kb.model import FaqEntry, KnowledgeBase, RuleIntent

SHOP = {
    "return-how": ("怎么退货", ("我想退货", "退货流程是什么", "买的东西不想要了怎么退", "如何申请退货")),
    "refund-time": ("退款多久到账", ("钱什么时候退回来", "退款几天能到", "退款一直没到账")),
    "shipping-fee": ("运费怎么算", ("包邮吗", "邮费多少钱", "满多少包邮")),
    "invoice": ("怎么开发票", ("能开发票吗", "我要开增值税专用发票", "电子发票在哪里下载")),
    "change-address": ("怎么修改收货地址", ("地址填错了", "下单后能改地址吗", "收货地址写错了怎么办")),
    "tracking": ("怎么查物流", ("我的快递到哪了", "物流信息怎么看", "包裹一直不更新")),
}


def make_kb(
    faqs: dict[str, tuple[str, tuple[str, ...]]] | None = None,
    *,
    intents: tuple[RuleIntent, ...] = (),
    synonyms: tuple[tuple[str, ...], ...] = (),
    words: tuple[str, ...] = (),
    disabled: frozenset[str] = frozenset(),
) -> KnowledgeBase:
    """A KnowledgeBase from {id: (question, similar)}; answers are "<id> 的答案"."""
    entries = tuple(
        FaqEntry(id=i, question=q, similar=s, answer=f"{i} 的答案", enabled=i not in disabled)
        for i, (q, s) in (SHOP if faqs is None else faqs).items()
    )
    return KnowledgeBase(entries=entries, version="test", synonyms=synonyms, words=words, intents=intents)
