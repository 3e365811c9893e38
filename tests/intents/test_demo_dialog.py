"""Dialogue table for the demo FAQ in config/faq: what a customer types → what the bot decides.

In the style of Zulip's verify_dialog: one row per customer message, written the way people really
type in WeChat/QQ/web chat, and deliberately NOT copied from any entry's `similar:` list (a test
checks that), so the table measures whether the matcher generalises, not whether it can look up
its own index. A failing row means: add a similar question, a synonym or a jieba word to
config/faq (or fix the matcher) — do not just delete the row.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from intents.matcher import Classifier
from intents.prediction import Decision, Prediction, Thresholds
from kb.loader import load_kb
from kb.model import KnowledgeBase
from kb.text import fold_question

CONFIG = Path(__file__).resolve().parents[2] / "config"
FAQ_DIR = CONFIG / "faq"

# Expected outcomes that are not a single Decision.
NOT_ANSWER = "not-answer"  # off-topic: anything but an FAQ answer (small talk, suggest or handoff)


def answer(text: str, entry_id: str):
    return pytest.param(text, Decision.ANSWER, entry_id, "normal", id=f"answer-{entry_id}-{text}")


def handoff(text: str, intent: str, priority: str = "normal"):
    return pytest.param(text, Decision.HANDOFF, intent, priority, id=f"handoff-{intent}-{text}")


def smalltalk(text: str):
    return pytest.param(text, Decision.SMALLTALK, None, "normal", id=f"smalltalk-{text}")


def off_topic(text: str):
    return pytest.param(text, NOT_ANSWER, None, "normal", id=f"off-topic-{text}")


DIALOG = [
    # 售前咨询
    answer("身高170体重130斤穿什么尺码合适", "size-guide"),
    answer("这件衣服是什么面料的", "material"),
    answer("你们这个是现货吗", "in-stock"),
    answer("你们卖的是正品吗", "authentic"),
    answer("今天拍的今天能发出去吗", "ship-time"),
    answer("卖断货了还会再补吗", "restock"),
    answer("付了定金后悔了可以退吗", "presale-deposit"),
    answer("买这个有赠品吗", "gift"),
    answer("质保是几年", "warranty"),
    answer("买了需要上门安装吗", "installation"),
    # 下单支付
    answer("能用信用卡付款吗", "payment-methods"),
    answer("付款老是失败", "payment-failed"),
    answer("我被扣了两次钱", "double-charge"),
    answer("你们能货到付款吗", "cash-on-delivery"),
    answer("可以用花呗分期付吗", "installment"),
    # 修改地址 / 修改订单 / 取消订单
    answer("收货地址写错了能改吗", "change-address"),
    answer("刚下的单怎么取消啊", "cancel-order"),
    # 价保、优惠券、活动
    answer("买了没几天就降价了能退差价不", "price-protection"),
    answer("去哪里领优惠券", "coupon-get"),
    answer("优惠券怎么用不上啊", "coupon-cannot-use"),
    answer("满减和优惠券能一起用吗", "coupon-stack"),
    answer("秒杀什么时候开始", "flash-sale"),
    # 物流查询与催件
    answer("帮我查一下我的快递到哪了", "track-order"),
    answer("发货以后大概多久能收到", "delivery-time"),
    answer("快递太慢了能帮我催一下吗", "urge-delivery"),
    answer("下单三天了怎么还没发货", "not-shipped"),
    answer("物流好几天没有更新了", "tracking-stuck"),
    answer("可以给我发顺丰快递吗", "courier-choice"),
    answer("西藏能发货吗", "remote-area"),
    answer("买多少钱可以包邮", "shipping-fee"),
    answer("物流显示签收了可是我没拿到", "signed-not-received"),
    # 退换货、退款
    answer("我要退货怎么操作", "return-how"),
    answer("拆了包装还能七天无理由退吗", "return-7days"),
    answer("退货运费要我自己出吗", "return-shipping-fee"),
    answer("鞋子小了能换大一码吗", "exchange-size"),
    answer("退货要寄到什么地址", "return-address"),
    answer("退款多长时间能到账", "refund-time"),
    answer("退款是原路返回吗", "refund-original"),
    # 破损 / 少件 / 错发
    answer("收到的时候盘子碎了", "damaged"),
    answer("我买了三件只到了两件", "missing-item"),
    answer("你们给我发错货了", "wrong-item"),
    # 发票
    answer("需要开发票怎么弄", "invoice-how"),
    answer("公司需要开增值税专票", "invoice-special"),
    # 会员积分、账号
    answer("积分可以抵现金吗", "points-redeem"),
    answer("积分什么时候清零", "points-expire"),
    answer("登录密码忘了怎么办", "reset-password"),
    answer("怎么换绑新的手机号", "change-phone"),
    answer("我的账号怎么注销", "delete-account"),
    # 营业时间与联系方式
    answer("客服上班时间是几点", "service-hours"),
    answer("你们客服热线是多少", "contact-phone"),
    answer("東西不喜歡可以退貨嗎", "return-how"),
    # typos, fragments, 亲/在吗 prefixes, 繁体 and long-winded messages
    answer("亲 退获怎么弄", "return-how"),
    answer("在吗 我的快递到哪了", "track-order"),
    answer("这个裤子是什么料子", "material"),
    answer("你好 请问这个T恤会缩水吗", "material"),
    answer("会员有什么好处", "member-level"),
    answer("怎么成为金卡会员", "member-level"),
    answer("登陆不上去", "login-failed"),
    answer("手机号不用了怎么换", "change-phone"),
    answer("优惠卷怎么领", "coupon-get"),
    answer("亲 能便宜点不", "bargain"),
    answer("抬头开错了能换吗", "invoice-title"),
    answer("请问发票可以开公司抬头吗", "invoice-title"),
    answer("去年的订单还能开发票吗", "invoice-reissue"),
    answer("颜色发错了", "wrong-item"),
    answer("买的黑色发来白色", "wrong-item"),
    answer("用了一个月就坏了能修吗", "warranty"),
    answer("保修卡丢了还能保修吗", "warranty"),
    answer("赠品没给我", "gift"),
    answer("说明书找不到了", "usage-manual"),
    answer("这个东西怎么安装", "installation"),
    answer("退款怎么还没到账", "refund-time"),
    answer("退款都一个星期了还没到", "refund-time"),
    answer("银行卡退款要几天", "refund-time"),
    answer("退款被拒了", "refund-failed"),
    answer("钱退到哪里", "refund-original"),
    answer("拒收了钱怎么退", "reject-delivery"),
    answer("新疆运费多少", "remote-area"),
    answer("物流不动了", "tracking-stuck"),
    answer("亲 快递一直显示在转运中 三天没动静了", "tracking-stuck"),
    answer("快递丢件了怎么办", "tracking-stuck"),
    answer("帮我催一下", "urge-delivery"),
    answer("亲 我上周买的外套到现在还没发货 什么情况", "not-shipped"),
    answer("在吗 退货地址发我一下", "return-address"),
    answer("我寄回去的退货你们收到没", "return-progress"),
    answer("我想退这个裤子 运费是你们出吗", "return-shipping-fee"),
    answer("衣服收到了但是尺码偏小 想换个L", "exchange-size"),
    answer("在吗 我收到的杯子有裂缝", "damaged"),
    answer("收到的东西和图片颜色差好多", "color-difference"),
    answer("我想改颜色", "change-order"),
    answer("我昨天下的单 地址填成公司了 想改成家里的", "change-address"),
    answer("降价了能补差价吗", "price-protection"),
    answer("買了之後降價了可以退差價嗎", "price-protection"),
    answer("請問幾天能到貨", "delivery-time"),
    answer("海南多久能到", "delivery-time"),
    answer("會員積分能換東西不", "points-redeem"),
    answer("最近有啥活动", "activity-info"),
    answer("双十一什么时候开始", "activity-info"),
    answer("我买了两个订单能一起发吗", "merge-order"),
    answer("快递给我放到驿站了 我要送上门", "pickup-station"),
    answer("订单显示已完成但我没收到货", "signed-not-received"),
    answer("付款的时候一直转圈", "payment-failed"),
    answer("预售的定金可以退吗", "presale-deposit"),
    answer("我是开店的能拿批发价吗", "bulk-purchase"),
    answer("你们是哪里发货的", "offline-store"),
    answer("晚上十点以后还有客服吗", "service-hours"),
    answer("有个建议想提一下", "feedback"),
    answer("在哪里写评价", "evaluation"),
    # a third batch, written after the FAQ was filled in
    answer("我一米五八 九十斤 穿s码会大吗", "size-guide"),
    answer("这个包是真皮的还是pu", "material"),
    answer("下午五点下单今天能发吗", "ship-time"),
    answer("尾款什么时候开始付", "presale-deposit"),
    answer("这个空调包安装吗", "installation"),
    answer("能用京东白条吗", "installment"),
    answer("付款时提示余额不足", "payment-failed"),
    answer("怎么扣了我两笔钱", "double-charge"),
    answer("已经发货了还能改地址吗", "change-address"),
    answer("订单颜色选错了帮我改一下", "change-order"),
    answer("昨天刚买今天就便宜了50", "price-protection"),
    answer("为什么券减不了", "coupon-cannot-use"),
    answer("店铺券和平台券可以一起用吗", "coupon-stack"),
    answer("满199减30是怎么算的", "full-reduction"),
    answer("秒杀的东西可以退吗", "flash-sale"),
    answer("寄到成都一般几天", "delivery-time"),
    answer("物流信息一直停在杭州", "tracking-stuck"),
    answer("满多少免运费", "shipping-fee"),
    answer("没拆封的可以无理由退吗", "return-7days"),
    answer("退货寄回去三天了还没处理", "return-progress"),
    answer("退款能退到余额吗", "refund-original"),
    answer("还没收到货就想退款", "refund-only"),
    answer("衣服穿了一次就褪色", "quality-issue"),
    answer("需要专票 怎么提交资质", "invoice-special"),
    answer("三个月前的单子能补发票吗", "invoice-reissue"),
    answer("积分年底会不会作废", "points-expire"),
    answer("银卡升金卡要多少钱", "member-level"),
    answer("不会注册", "register"),
    answer("换了新手机号 账号怎么办", "change-phone"),
    answer("怎么改昵称和头像", "personal-info"),
    answer("你们有门店吗 想去试穿", "offline-store"),
    answer("想合作怎么联系", "business-cooperation"),
    answer("评价写完能改吗", "evaluation"),
    answer("碗收到的时候已经碎成两半", "damaged"),
    answer("积分怎么攒", "points-rule"),
    answer("快递说放门卫了我没找到", "signed-not-received"),
    answer("这个零食保质期多久", "shelf-life"),
    answer("能送礼盒吗", "gift-wrap"),
    answer("我付了钱订单怎么被取消了", "order-cancelled-by-shop"),
    answer("收货后几天自动确认", "confirm-receipt"),
    # a fourth batch: short, colloquial
    answer("185的个子穿什么码", "size-guide"),
    answer("纯棉的吗", "material"),
    answer("补货了能通知我吗", "restock"),
    answer("这次买有送东西吗", "gift"),
    answer("付款说银行卡异常", "payment-failed"),
    answer("货到付款要手续费吗", "cash-on-delivery"),
    answer("我不想要了 取消掉吧", "cancel-order"),
    answer("有没有新人券", "coupon-get"),
    answer("麻烦帮我催催件", "urge-delivery"),
    answer("都一个礼拜了还没发", "not-shipped"),
    answer("内蒙古发货吗", "remote-area"),
    answer("快递显示签收了 人不在家", "signed-not-received"),
    answer("驿站不想去 能送到楼下吗", "pickup-station"),
    answer("能寄美国吗", "overseas-shipping"),
    answer("用过一次还能退吗", "return-7days"),
    answer("退款退到哪个账户", "refund-original"),
    answer("积分换礼品", "points-redeem"),
    answer("几点有人工", "service-hours"),
    answer("有意见找谁", "feedback"),
    # a negated request for a person is not a handoff
    answer("不需要人工 帮我查下物流", "track-order"),
    answer("不用转人工 我就问下退货地址", "return-address"),
    # complaints: handoff with high priority, even when an FAQ topic is mentioned
    handoff("东西收到就是坏的我要投诉你们", "complaint", "high"),
    handoff("你们就是骗人的", "complaint", "high"),
    handoff("再不给我退款我就去12315", "complaint", "high"),
    handoff("质量这么差我要给差评", "complaint", "high"),
    handoff("你们客服态度太差了", "complaint", "high"),
    handoff("东西是假的 你们卖假货", "complaint", "high"),
    handoff("再不处理我就去平台申诉", "complaint", "high"),
    handoff("黑店", "complaint", "high"),
    handoff("你们这什么服务啊 等了十天了还不发货 太过分了", "complaint", "high"),
    # asked for a person
    handoff("帮我转人工", "human"),
    handoff("不想跟机器人说 找人工", "human"),
    handoff("有没有真人客服啊", "human"),
    handoff("我要找你们经理", "human"),
    handoff("人工", "human"),
    # small talk, never an FAQ answer
    smalltalk("你好"),
    smalltalk("在吗"),
    smalltalk("谢谢啊"),
    smalltalk("好的拜拜"),
    smalltalk("你是机器人吧"),
    smalltalk("早上好"),
    smalltalk("多谢"),
    smalltalk("你叫啥名字"),
    smalltalk("嗯嗯好的"),
    # off-topic: must not get an FAQ answer
    off_topic("今天天气怎么样"),
    off_topic("帮我写首诗"),
    off_topic("推荐一部好看的电影"),
    off_topic("附近有什么好吃的"),
    off_topic("1加1等于几"),
    off_topic("讲个笑话听听"),
    off_topic("今天星期几"),
    off_topic("怎么做红烧肉"),
]


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    result = load_kb([FAQ_DIR])
    assert result.ok, "\n".join(str(p) for p in result.problems)
    assert result.kb is not None
    return result.kb


def _shipped_thresholds() -> Thresholds:
    """The cut-offs the demo deployment runs with (config/gateway.yaml `matcher:`), else the defaults."""
    default = Thresholds()
    path = CONFIG / "gateway.yaml"
    if not path.exists():
        return default
    matcher = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("matcher") or {}
    return Thresholds(
        answer=float(matcher.get("answer_threshold", default.answer)),
        suggest=float(matcher.get("suggest_threshold", default.suggest)),
    )


@pytest.fixture(scope="module")
def classifier(kb: KnowledgeBase) -> Classifier:
    return Classifier.build(kb, _shipped_thresholds())


def _describe(p: Prediction) -> str:
    alts = ", ".join(f"{a.entry_id}={a.score}" for a in p.alternatives)
    entry = p.entry.id if p.entry else None
    return (
        f"decision={p.decision.value} entry={entry} intent={p.intent} reason={p.reason} "
        f"confidence={p.confidence} priority={p.priority} alternatives=[{alts}] tokens={p.tokens}"
    )


@pytest.mark.parametrize(("text", "expected", "target", "priority"), DIALOG)
def test_dialog(classifier: Classifier, text: str, expected, target: str | None, priority: str) -> None:
    p = classifier.classify(text)
    why = f"{text!r}: {_describe(p)}"
    if expected == NOT_ANSWER:
        assert p.decision is not Decision.ANSWER, why
        return
    assert p.decision is expected, why
    if expected is Decision.ANSWER:
        assert p.entry is not None and p.entry.id == target, why
    elif expected is Decision.HANDOFF:
        assert p.intent == target, why
        assert p.priority == priority, why
    elif expected is Decision.SMALLTALK:
        assert p.entry is None, why


def test_rows_are_new_phrasings(kb: KnowledgeBase) -> None:
    """The table must not just repeat the kb: no row may be one of the entries' own questions."""
    questions = {fold_question(q): e.id for e in kb.entries for q in e.questions}
    examples = {fold_question(x) for i in kb.intents for x in i.examples}
    copied = []
    for param in DIALOG:
        text, expected = param.values[0], param.values[1]
        key = fold_question(text)
        if key in questions:
            copied.append(f"{text} (a question of {questions[key]})")
        # Off-topic rows copied from chit-chat examples would also prove nothing.
        if expected in (NOT_ANSWER, Decision.SMALLTALK) and key in examples and len(key) > 2:
            copied.append(f"{text} (an intent example)")
    assert not copied, "rows copied from config/faq: " + "; ".join(copied)


def test_table_covers_the_demo() -> None:
    answers = [p for p in DIALOG if p.values[1] is Decision.ANSWER]
    assert len(DIALOG) >= 40
    assert len({p.values[2] for p in answers}) >= 40, "cover at least 40 different entries"
    assert any(p.values[3] == "high" for p in DIALOG), "a complaint row must expect high priority"


def test_every_question_answers_its_own_entry(classifier: Classifier, kb: KnowledgeBase) -> None:
    """Every question and similar question must be answered by its own entry: none is shadowed by
    another entry's wording, a rule intent's keyword, or a bare function-word phrasing."""
    wrong = []
    for entry in kb.enabled_entries:
        for question in entry.questions:
            p = classifier.classify(question)
            if p.decision is not Decision.ANSWER or p.entry is None or p.entry.id != entry.id:
                wrong.append(f"{entry.id}: {question!r} → {_describe(p)}")
    assert not wrong, "\n".join(wrong)
