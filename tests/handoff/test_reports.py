"""The 受理记录 of one scripted Tuesday (2026-11-24, Shanghai): every count and time checked by hand."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from handoff.hours import from_config
from handoff.reports import (
    RECORD_COLUMNS,
    ConversationRecord,
    FaqHit,
    HandledBy,
    build_rows,
    cluster_questions,
    summarize,
    summary_table,
    write_records_csv,
)

SH = ZoneInfo("Asia/Shanghai")
HOURS = from_config({"weekly": {"mon-sat": ["08:30-12:00", "13:00-17:30"]}})
END_OF_DAY = datetime(2026, 11, 24, 23, 59, tzinfo=SH)
SHIP = FaqHit("faq-ship", "什么时候发货")
REFUND = FaqHit("faq-refund", "如何退款")


def t(hh: int, mm: int, ss: int = 0, day: int = 24) -> datetime:
    """Local wall clock, stored as UTC like the database does."""
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=SH).astimezone(UTC)


DAY = [
    # 09:05 WeChat: the bot answers, the customer leaves satisfied.
    ConversationRecord(
        "c1", t(9, 5), "wechat", "u1", "张先生", "请问几点发货", ended_at=t(9, 6), faq_hits=(SHIP,)
    ),
    # 09:30 web: asks for a human straight away; 小王 answers in 50 s.
    ConversationRecord(
        "c2",
        t(9, 30),
        "web",
        "u2",
        "",
        "我要转人工",
        ended_at=t(9, 40),
        handoff_reason="asked_human",
        handed_off_at=t(9, 30, 10),
        group="售前",
        agent_id="a1",
        agent_name="小王",
        assigned_at=t(9, 30, 40),
        first_agent_reply_at=t(9, 31),
        human_ended_at=t(9, 40),
        close_reason="agent",
        rating=5,
        tags=("物流",),
    ),
    # 09:50 the first customer again, another answer: still the bot's.
    ConversationRecord(
        "c8", t(9, 50), "wechat", "u1", "张先生", "发货了吗", ended_at=t(9, 51), faq_hits=(SHIP,)
    ),
    # 10:15 WeChat complaint with a phone number; 小李 is late (150 s); a follow-up is due next morning.
    ConversationRecord(
        "c3",
        t(10, 15),
        "wechat",
        "u3",
        "李女士",
        "东西太差了我要投诉，电话13812345678",
        ended_at=t(10, 45, 5),
        category="破损/少件/错发",
        handoff_reason="complaint",
        handed_off_at=t(10, 15, 5),
        group="售后",
        agent_id="a2",
        agent_name="小李",
        assigned_at=t(10, 17, 5),
        first_agent_reply_at=t(10, 17, 35),
        human_ended_at=t(10, 45, 5),
        close_reason="agent",
        rating=2,
        tags=("投诉", "质量"),
        follow_up_due_at=t(10, 45, 5, day=25),
    ),
    # 11:20 QQ: the bot answers about refunds...
    ConversationRecord("c4", t(11, 20), "qq", "u4", "", "怎么退款", ended_at=t(11, 22), faq_hits=(REFUND,)),
    # ...but 18 minutes later the same customer asks for a human: c4 was not resolved by the bot.
    ConversationRecord(
        "c5",
        t(11, 40),
        "qq",
        "u4",
        "",
        "还是不行，转人工",
        ended_at=t(11, 50, 5),
        handoff_reason="asked_human",
        handed_off_at=t(11, 40, 5),
        group="售前",
        agent_id="a1",
        agent_name="小王",
        assigned_at=t(11, 40, 25),
        first_agent_reply_at=t(11, 42, 5),
        human_ended_at=t(11, 50, 5),
        close_reason="idle",
    ),
    # 14:00 web: two questions the FAQ does not cover, no handoff.
    ConversationRecord(
        "c6",
        t(14, 0),
        "web",
        "u5",
        "",
        "你们支持货到付款吗",
        ended_at=t(14, 5),
        unanswered=("你们支持货到付款吗", "可以货到付款吗"),
    ),
    # 18:30 WeChat, after hours: the handoff became a 留言, still open at the end of the day.
    ConversationRecord(
        "c7",
        t(18, 30),
        "wechat",
        "u6",
        "",
        "支持货到付款么？身份证11010519491231002X",
        unanswered=("支持货到付款么？",),
        handoff_reason="no_match",
        handed_off_at=t(18, 30, 10),
        is_ticket=True,
        group="售前",
    ),
]


@pytest.fixture
def rows() -> dict[str, dict[str, object]]:
    built = build_rows(DAY, hours=HOURS, now=END_OF_DAY)
    assert [r.conversation_id for r in built] == ["c1", "c2", "c8", "c3", "c4", "c5", "c6", "c7"]
    return {r.conversation_id: r.as_dict() for r in built}


def test_a_bot_answer_row(rows: dict[str, dict[str, object]]) -> None:
    assert rows["c1"] == {
        "会话编号": "c1",
        "受理时间": datetime(2026, 11, 24, 9, 5),
        "结束时间": datetime(2026, 11, 24, 9, 6),
        "渠道": "微信公众号",
        "客户": "张先生",
        "咨询内容": "请问几点发货",
        "分类": "",
        "FAQ条目": "什么时候发货",
        "处理方式": "机器人",
        "技能组": "",
        "客服": "",
        "转人工原因": "",
        "等待时长(秒)": None,
        "首次响应时长(秒)": None,
        "处理时长(秒)": None,
        "首响超时": "",
        "处理结果": "机器人已解答",
        "满意度": None,
        "满意度评价": "",
        "标签": "",
    }


def test_agent_rows_carry_the_times_and_the_rating(rows: dict[str, dict[str, object]]) -> None:
    c2 = rows["c2"]
    assert (c2["客户"], c2["处理方式"], c2["客服"], c2["技能组"], c2["转人工原因"]) == (
        "u2",
        "人工",
        "小王",
        "售前",
        "客户要求转人工",
    )
    assert (c2["等待时长(秒)"], c2["首次响应时长(秒)"], c2["处理时长(秒)"], c2["首响超时"]) == (
        30,
        50,
        560,
        "否",
    )
    assert (c2["处理结果"], c2["满意度"], c2["满意度评价"], c2["标签"]) == (
        "客服已结束",
        5,
        "非常满意",
        "物流",
    )

    c3 = rows["c3"]
    assert c3["咨询内容"] == "东西太差了我要投诉，电话138****5678"  # masked by default
    assert (c3["等待时长(秒)"], c3["首次响应时长(秒)"], c3["处理时长(秒)"], c3["首响超时"]) == (
        120,
        150,
        1680,
        "是",
    )
    assert (c3["分类"], c3["满意度评价"], c3["标签"]) == ("破损/少件/错发", "不满意", "投诉、质量")

    c5 = rows["c5"]
    assert (c5["等待时长(秒)"], c5["首次响应时长(秒)"], c5["处理时长(秒)"], c5["首响超时"]) == (
        20,
        120,
        580,
        "是",
    )
    assert c5["处理结果"] == "超时自动结束" and c5["渠道"] == "QQ"


def test_bot_rows_and_the_ticket(rows: dict[str, dict[str, object]]) -> None:
    assert rows["c8"]["处理结果"] == "机器人已解答"
    assert rows["c4"]["处理结果"] == "解答后仍转人工"
    assert rows["c6"]["处理结果"] == "未解答"
    c7 = rows["c7"]
    assert (c7["处理方式"], c7["处理结果"], c7["首响超时"], c7["结束时间"]) == (
        "留言",
        "留言待处理",
        "",
        None,
    )
    assert c7["咨询内容"] == "支持货到付款么？身份证110105********002X"


def test_unmasked_rows_for_the_database_view() -> None:
    row = next(r for r in build_rows(DAY, now=END_OF_DAY, mask=False) if r.conversation_id == "c3")
    assert "13812345678" in str(row.as_dict()["咨询内容"])


def test_the_days_aggregates() -> None:
    s = summarize(DAY, hours=HOURS, now=END_OF_DAY)
    assert s.total == 8
    assert s.by_channel == {"wechat": 4, "qq": 2, "web": 2}
    assert {h: n for h, n in enumerate(s.by_hour) if n} == {9: 3, 10: 1, 11: 2, 14: 1, 18: 1}
    assert s.by_hour_channel[(9, "wechat")] == 2 and s.by_hour_channel[(11, "qq")] == 2
    assert (s.bot_resolved, s.bot_resolution_rate) == (2, 0.25)  # c1 and c8; c4 was followed by 转人工
    assert (s.handed_off, s.tickets) == (4, 1)
    assert s.handoff_reasons == {"asked_human": 2, "complaint": 1, "no_match": 1}
    assert s.top_faq == [("faq-ship", "什么时候发货", 2), ("faq-refund", "如何退款", 1)]
    # Three wordings of one question (the 吗/么/你们/可以 frame is not what they are about).
    assert [(c.text, c.count, c.examples) for c in s.top_unanswered] == [
        ("你们支持货到付款吗", 3, ("可以货到付款吗", "支持货到付款么？")),
    ]
    assert s.first_response_breaches == ["c3", "c5"]
    assert s.follow_up_overdue == []
    assert (s.avg_waiting_s, s.avg_first_response_s, s.avg_handling_s) == (56.67, 106.67, 940.0)
    sat = s.satisfaction
    assert (sat.average, sat.count) == (3.5, 2)
    assert sat.by_agent == {"小李": (2.0, 1), "小王": (5.0, 1)}
    assert sat.by_group == {"售前": (5.0, 1), "售后": (2.0, 1)}
    assert sat.distribution == {5: 1, 4: 0, 3: 0, 2: 1, 1: 0}


def test_a_follow_up_goes_overdue_the_next_day() -> None:
    later = datetime(2026, 11, 25, 12, 0, tzinfo=SH)
    assert summarize(DAY, now=later).follow_up_overdue == ["c3"]
    done = [r if r.conversation_id != "c3" else _replace(r, follow_up_closed_at=t(9, 0, day=25)) for r in DAY]
    assert summarize(done, now=later).follow_up_overdue == []


def _replace(record: ConversationRecord, **changes: object) -> ConversationRecord:
    from dataclasses import replace

    return replace(record, **changes)  # type: ignore[arg-type]


def test_a_recontact_after_the_window_keeps_the_bot_answer_resolved() -> None:
    rows = build_rows(DAY, now=END_OF_DAY, recontact_window=timedelta(minutes=10))
    assert {r.conversation_id for r in rows if r.bot_resolved} == {"c1", "c4", "c8"}


def test_handled_by() -> None:
    by = {r.conversation_id: r.handled_by for r in DAY}
    assert by["c1"] is HandledBy.BOT and by["c2"] is HandledBy.AGENT and by["c7"] is HandledBy.TICKET
    queued = ConversationRecord("q", t(9, 0), "web", "u9", handed_off_at=t(9, 0))
    assert queued.handled_by is HandledBy.UNSERVED
    (row,) = build_rows([queued], now=t(9, 5))
    assert row.as_dict()["处理结果"] == "排队中" and row.first_response_breached is True


def test_csv_has_chinese_headers_and_one_line_per_conversation() -> None:
    out = io.StringIO()
    write_records_csv(build_rows(DAY, hours=HOURS, now=END_OF_DAY), out)
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert lines[0] == list(RECORD_COLUMNS)
    assert len(lines) == 1 + len(DAY)
    c3 = dict(zip(lines[0], lines[4], strict=True))
    assert c3["受理时间"] == "2026-11-24 10:15:00" and c3["首次响应时长(秒)"] == "150"
    assert "13812345678" not in out.getvalue() and "11010519491231002X" not in out.getvalue()
    bom = io.StringIO()
    write_records_csv([], bom, bom=True)
    assert bom.getvalue().startswith("\ufeff会话编号,")


def test_customer_text_never_becomes_a_spreadsheet_formula() -> None:
    evil = ConversationRecord("e", t(9, 0), "web", "u", "=cmd|'/c calc'!A1", '=HYPERLINK("http://x")')
    out = io.StringIO()
    write_records_csv(build_rows([evil], now=END_OF_DAY), out)
    row = list(csv.reader(io.StringIO(out.getvalue())))[1]
    assert row[4].startswith("'=") and row[5].startswith("'=")


def test_xlsx_opens_with_openpyxl(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from openpyxl import load_workbook

    from gateway.report_files import write_records_xlsx

    rows = build_rows(DAY, hours=HOURS, now=END_OF_DAY)
    summary = summarize(DAY, hours=HOURS, now=END_OF_DAY)
    path = tmp_path / "受理记录.xlsx"
    write_records_xlsx(rows, summary, str(path))
    wb = load_workbook(path)
    assert wb.sheetnames == ["受理记录", "汇总"]
    sheet = wb["受理记录"]
    values = list(sheet.iter_rows(values_only=True))
    assert values[0] == RECORD_COLUMNS
    assert len(values) == 1 + len(DAY)
    c3 = dict(zip(values[0], values[4], strict=True))
    assert c3["受理时间"] == datetime(2026, 11, 24, 10, 15)
    assert (c3["等待时长(秒)"], c3["首次响应时长(秒)"], c3["满意度"]) == (120, 150, 2)
    assert c3["咨询内容"] == "东西太差了我要投诉，电话138****5678"
    summary_rows = {(a, b): c for a, b, c in wb["汇总"].iter_rows(min_row=2, values_only=True)}
    assert summary_rows[("总量", "会话数")] == 8
    assert summary_rows[("机器人", "机器人解决率")] == 0.25
    assert summary_rows[("满意度", "平均分")] == 3.5
    assert len(summary_table(summary)) == wb["汇总"].max_row - 1


def test_xlsx_to_a_stream() -> None:
    from openpyxl import load_workbook

    from gateway.report_files import write_records_xlsx

    buf = io.BytesIO()
    write_records_xlsx(build_rows(DAY, now=END_OF_DAY), None, buf)
    buf.seek(0)
    assert load_workbook(buf).sheetnames == ["受理记录"]


def test_clustering_groups_similar_wordings() -> None:
    clusters = cluster_questions(
        ["怎么开发票", "怎么开发票？", "如何开发票", "发票怎么开", "你们几点下班", "几点下班"], threshold=0.4
    )
    assert clusters[0].text == "怎么开发票" and clusters[0].count >= 3
    assert ("几点下班" in clusters[1].text) and clusters[1].count == 2
    assert cluster_questions(["", "  ", "？？"]) == []
    assert cluster_questions(["a", "b", "c"], limit=2) == cluster_questions(["a", "b", "c"])[:2]


def test_clustering_takes_the_projects_normalizer() -> None:
    clusters = cluster_questions(
        ["退貨怎麼辦", "退货怎么办"],
        normalize=lambda s: s.replace("貨", "货").replace("麼", "么").replace("辦", "办"),
    )
    assert [(c.text, c.count) for c in clusters] == [("退貨怎麼辦", 2)]


def test_clustering_groups_paraphrases_and_keeps_unrelated_questions_apart() -> None:
    clusters = cluster_questions(
        [
            "请问你们几点下班",
            "请问你们几点发货",  # same frame, different question
            "几点下班呢",
            "如何开发票",
            "怎么开发票？",
            "可以开发票吗",
            "运费谁出",
        ]
    )
    assert [(c.text, c.count, c.examples) for c in clusters] == [
        ("如何开发票", 3, ("怎么开发票？", "可以开发票吗")),
        ("请问你们几点下班", 2, ("几点下班呢",)),
        ("请问你们几点发货", 1, ()),
        ("运费谁出", 1, ()),
    ]


def test_clustering_orders_by_count_then_first_seen_and_reports_members() -> None:
    texts = ["运费谁出", "几点发货", "怎么退款", "怎么退款？", "几点发货", "运费谁出"]
    clusters = cluster_questions(texts)
    assert [(c.text, c.count, c.members) for c in clusters] == [
        ("运费谁出", 2, (0, 5)),
        ("几点发货", 2, (1, 4)),
        ("怎么退款", 2, (2, 3)),
    ]
    # Another arrival order, another tie order; a bigger group still comes first.
    again = [
        "怎么退款",
        "几点发货",
        "运费谁出",
        "几点发货",
        "运费谁出",
        "怎么退款",
        "包邮吗",
        "包邮吗",
        "包邮吗",
    ]
    assert [(c.text, c.count) for c in cluster_questions(again)] == [
        ("包邮吗", 3),
        ("怎么退款", 2),
        ("几点发货", 2),
        ("运费谁出", 2),
    ]


def test_the_most_asked_wording_and_its_most_common_spelling_represent_a_group() -> None:
    clusters = cluster_questions(["能开专票吗？", "可以开专票吗", "能开专票吗", "能开专票吗", "可以开专票吗"])
    assert [(c.text, c.count, c.examples) for c in clusters] == [("能开专票吗", 5, ("可以开专票吗",))]


def test_punctuation_width_case_and_spaces_do_not_make_a_new_wording() -> None:
    clusters = cluster_questions(["退款ＡＢＣ！", "退款 abc", " 退款，Abc？ ", "\t退款abc"])
    assert [(c.text, c.count, c.examples, c.members) for c in clusters] == [
        ("退款ＡＢＣ！", 4, (), (0, 1, 2, 3))
    ]


def test_a_wording_joins_the_group_it_is_most_similar_to() -> None:
    # "优惠券过期了怎么用" clears the threshold for both leads (0.44 and 0.78): it goes to the closer one,
    # not to the first (bigger) group it is similar enough to.
    texts = ["优惠券怎么用", "优惠券怎么用", "优惠券怎么用", "优惠券过期了怎么办", "优惠券过期了怎么用"]
    clusters = cluster_questions(texts, threshold=0.4)
    assert [(c.text, c.count, c.examples) for c in clusters] == [
        ("优惠券怎么用", 3, ()),
        ("优惠券过期了怎么办", 2, ("优惠券过期了怎么用",)),
    ]


def test_examples_and_limit() -> None:
    texts = ["怎么开发票", "如何开发票", "怎样开发票", "怎么样开发票", "开发票怎么", "其他"]
    [first, *_] = cluster_questions(texts, max_examples=2)
    assert first.count == 5 and first.examples == ("如何开发票", "怎样开发票")
    assert cluster_questions(texts, limit=1) == cluster_questions(texts, limit=None)[:1]
    # A text that is all frame is compared as written rather than dropped.
    assert [(c.text, c.count) for c in cluster_questions(["你好吗", "你好吗"])] == [("你好吗", 2)]
