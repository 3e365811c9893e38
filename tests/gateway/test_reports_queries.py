"""The 受理记录 read back from the real tables (SQLite and PostgreSQL), and the retention purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from gateway.storage.report_queries import EntryInfo, conversation_records, purge_before
from gateway.storage.schema.core import Conversation, Customer, MessageRecord, OutboxRecord
from gateway.storage.schema.handoff import AgentRecord, AssignmentRecord, CsatRecord, TicketRecord
from gateway.storage.store import Store
from handoff.reports import build_rows, summarize

SH = ZoneInfo("Asia/Shanghai")
DAY_START = datetime(2026, 11, 24, tzinfo=SH)
DAY_END = DAY_START + timedelta(days=1)
ENTRIES = {"faq-ship": EntryInfo("什么时候发货", "物流查询与催件")}


def t(hh: int, mm: int, ss: int = 0, day: int = 24) -> datetime:
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=SH).astimezone(UTC)


async def seed(store: Store) -> None:
    """Three conversations of 2026-11-24 and one of the day before, written as the gateway writes them."""
    async with store.engine.begin() as conn:

        async def insert(model: Any, **values: Any) -> int:
            # Attribute names → column names ("group" is stored as group_name).
            columns = {model.__mapper__.attrs[key].columns[0].name: value for key, value in values.items()}
            result = await conn.execute(model.__table__.insert().values(**columns))
            return int(result.inserted_primary_key[0])

        now = t(8, 0)
        zhang = await insert(
            Customer,
            channel="wechat",
            account="demo",
            user_id="openid-zhang",
            name="张先生",
            created_at=now,
            last_seen_at=now,
        )
        li = await insert(
            Customer,
            channel="web",
            account="site",
            user_id="v-li",
            name=None,
            created_at=now,
            last_seen_at=now,
        )
        wang = await insert(
            AgentRecord,
            name="小王",
            role="agent",
            groups=["售前"],
            max_chats=5,
            enabled=True,
            token_hash="x" * 64,
            created_at=now,
        )

        async def conversation(customer: int, channel: str, opened: datetime, **values: Any) -> int:
            base = {
                "customer_id": customer,
                "channel": channel,
                "account": "demo",
                "conversation_key": f"{channel}:demo:{customer}:{opened.isoformat()}",
                "state": "closed",
                "priority": "normal",
                "miss_streak": 0,
                "opened_at": opened,
                "last_activity_at": opened,
            }
            return await insert(Conversation, **{**base, **values})

        async def message(
            conv: int, direction: str, sender: str, text: str, at: datetime, **values: Any
        ) -> int:
            return await insert(
                MessageRecord,
                conversation_id=conv,
                conversation_key="k",
                channel="wechat",
                account="demo",
                direction=direction,
                sender=sender,
                text=text,
                kind="text",
                created_at=at,
                **values,
            )

        # 1. Bot answer, 09:05.
        c1 = await conversation(
            zhang, "wechat", t(9, 5), closed_at=t(9, 36), closed_reason="idle", last_activity_at=t(9, 6)
        )
        await message(
            c1,
            "in",
            "customer",
            "请问几点发货",
            t(9, 5),
            decision="answer",
            reason="faq",
            entry_id="faq-ship",
        )
        await message(c1, "out", "bot", "下单后48小时内发货。", t(9, 5), entry_id="faq-ship")
        # 2. Complaint from the web at 10:00, 小王 takes it after 40 s, answers after 70 s; rated 4.
        c2 = await conversation(
            li,
            "web",
            t(10, 0),
            handoff_reason="complaint",
            group="售后",
            queued_at=t(10, 0, 5),
            closed_at=t(10, 20),
            closed_reason="agent",
            last_activity_at=t(10, 20),
        )
        await message(
            c2,
            "in",
            "customer",
            "投诉！我的电话13812345678没人回",
            t(10, 0),
            decision="handoff",
            reason="complaint",
        )
        await message(c2, "out", "agent", "您好，非常抱歉……", t(10, 1, 15), sender_name="小王")
        await insert(
            AssignmentRecord,
            conversation_id=c2,
            agent_id=wang,
            active=False,
            group="售后",
            auto=True,
            assigned_at=t(10, 0, 45),
            first_response_at=t(10, 1, 15),
            ended_at=t(10, 20),
            tags=["投诉", "物流"],
        )
        await insert(
            CsatRecord, conversation_id=c2, asked_at=t(10, 20), rating=4, raw_text="4", answered_at=t(10, 21)
        )
        # 3. 19:00 unanswered question, handed off as a 留言 that is still waiting.
        c3 = await conversation(
            zhang,
            "wechat",
            t(19, 0),
            state="queued",
            handoff_reason="no_match",
            group="售前",
            queued_at=t(19, 0, 2),
            last_activity_at=t(19, 0, 2),
        )
        await message(c3, "in", "customer", "可以开专票吗", t(19, 0), decision="handoff", reason="no_match")
        await insert(TicketRecord, conversation_id=c3, group="售前", created_at=t(19, 0, 2))
        # The day before: outside the report range, and old enough for the purge.
        c0 = await conversation(
            zhang, "wechat", t(9, 0, day=23), closed_at=t(9, 30, day=23), last_activity_at=t(9, 1, day=23)
        )
        m0 = await message(c0, "in", "customer", "在吗", t(9, 0, day=23), decision="smalltalk")
        await insert(
            OutboxRecord,
            channel="wechat",
            account="demo",
            conversation_key="k",
            text="您好",
            sender="bot",
            target={},
            status="sent",
            attempts=1,
            next_attempt_at=t(9, 0, day=23),
            created_at=t(9, 0, day=23),
            message_id=m0,
        )


async def test_records_of_a_day_match_the_tables(store: Store) -> None:
    await seed(store)
    records = await conversation_records(store, DAY_START, DAY_END, entries=ENTRIES.get)
    assert [r.first_question for r in records] == [
        "请问几点发货",
        "投诉！我的电话13812345678没人回",
        "可以开专票吗",
    ]
    rows = [r.as_dict() for r in build_rows(records, now=t(23, 0))]

    bot = rows[0]
    assert (bot["受理时间"], bot["渠道"], bot["客户"], bot["FAQ条目"], bot["分类"]) == (
        datetime(2026, 11, 24, 9, 5),
        "微信公众号",
        "张先生",
        "什么时候发货",
        "物流查询与催件",
    )
    assert (bot["处理方式"], bot["处理结果"]) == ("机器人", "机器人已解答")

    agent = rows[1]
    assert (agent["客户"], agent["咨询内容"]) == ("v-li", "投诉！我的电话138****5678没人回")
    assert (agent["处理方式"], agent["客服"], agent["技能组"], agent["转人工原因"]) == (
        "人工",
        "小王",
        "售后",
        "投诉",
    )
    assert (agent["等待时长(秒)"], agent["首次响应时长(秒)"], agent["处理时长(秒)"], agent["首响超时"]) == (
        40,
        70,
        1155,
        "是",
    )
    assert (agent["处理结果"], agent["满意度"], agent["标签"]) == ("客服已结束", 4, "投诉、物流")

    ticket = rows[2]
    assert (ticket["处理方式"], ticket["处理结果"], ticket["等待时长(秒)"]) == ("留言", "留言待处理", None)

    s = summarize(records, now=t(23, 0))
    assert (s.total, s.bot_resolved, s.handed_off, s.tickets) == (3, 1, 2, 1)
    assert s.by_channel == {"wechat": 2, "web": 1}
    assert [(c.text, c.count) for c in s.top_unanswered] == [("可以开专票吗", 1)]
    assert (s.satisfaction.average, s.satisfaction.by_agent) == (4.0, {"小王": (4.0, 1)})


async def test_an_empty_range(store: Store) -> None:
    await seed(store)
    assert await conversation_records(store, DAY_END, DAY_END + timedelta(days=1)) == []


async def count(store: Store, model: Any) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(model)))


async def test_purge_deletes_what_is_over_and_older_than_the_cutoff(store: Store) -> None:
    await seed(store)
    cutoff = DAY_START.astimezone(UTC)
    dry = await purge_before(store, cutoff, dry_run=True)
    assert (dry.conversations, dry.messages) == (1, 1)
    assert await count(store, Conversation) == 4  # nothing deleted on a dry run

    done = await purge_before(store, cutoff)
    assert (done.conversations, done.messages) == (1, 1)
    assert (
        await count(store, Conversation),
        await count(store, MessageRecord),
        await count(store, OutboxRecord),
    ) == (3, 5, 0)
    assert await count(store, Customer) == 2

    # A week later everything finished goes; the waiting 留言 stays, whatever its age.
    await purge_before(store, cutoff + timedelta(days=7))
    async with store.engine.connect() as conn:
        left = list(await conn.execute(select(Conversation.state)))
    assert [r.state for r in left] == ["queued"]
    assert await count(store, TicketRecord) == 1 and await count(store, CsatRecord) == 0
