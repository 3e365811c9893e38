"""Background jobs with two gateway instances on one PostgreSQL (what `kefu serve --workers 2` runs): two
apps, each its own engine, pool, outbox worker and job loops, over real HTTP and a fake WeChat API.
An idle customer is reminded once and closed once, a first-response breach is noticed once, and every
outbox row reaches WeChat once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.jobs.first_response import first_response_sweep
from gateway.jobs.handoff_jobs import idle_sweep
from gateway.keys import RUNTIME
from gateway.message import utcnow
from gateway.storage.job_lock import job_lock
from handoff import notices
from handoff.sla import BUSY_NOTICE
from tests.fakes.wechat_api import FakeWeChatAPI, WeChatPush
from tests.gateway.test_handoff_flow import (  # noqa: F401
    TOKEN,
    Kefu,
    handoff_section,
    shop_account,
    wechat_api,
    write_config,
)
from tests.waiting import eventually

pytestmark = pytest.mark.postgres


@pytest.fixture
def two(
    aiohttp_client: Any,
    postgres_url: str,
    faq_dir: Path,
    wechat_api: FakeWeChatAPI,  # noqa: F811
    tmp_path: Path,
) -> Callable[..., Awaitable[tuple[Kefu, Kefu]]]:
    """Two running gateways on the same PostgreSQL database and WeChat account."""
    from gateway.settings import settings_from_mapping
    from tests.conftest import ADMIN_TOKEN, deep_merge

    async def run(sections: dict[str, Any] | None = None, **handoff: Any) -> tuple[Kefu, Kefu]:
        account = shop_account(wechat_api)
        base = {
            "database": {"url": postgres_url},
            "kb": {"paths": [str(faq_dir)], "watch": False},
            "outbox": {"poll_interval_s": 0.05, "base_delay_s": 0.02, "max_delay_s": 0.1, "max_attempts": 4},
            "admin": {"token": ADMIN_TOKEN},
            "matcher": {"semantic": {"model": "none"}},
            "channels": {"wechat": [account]},
            "handoff": handoff_section(**handoff),
        }
        config = write_config(tmp_path / "gateway.yaml", postgres_url)
        out = []
        for _ in range(2):
            app = create_app(settings_from_mapping(deep_merge(base, sections or {})))
            client = await aiohttp_client(app)
            out.append(
                Kefu(client, app[RUNTIME], WeChatPush(client, "/wechat/shop", TOKEN), wechat_api, config)
            )
        return out[0], out[1]

    return run


async def _sent_rows_reached_wechat_once(kefu: Kefu) -> None:
    """Every outbox row was sent (or answered passively: cancelled), and WeChat accepted each sent row's
    text exactly as often as sent rows carry it: nothing twice, nothing lost."""
    rows = await kefu.runtime.store.list_outbox(limit=1000)
    assert rows and {r.status for r in rows} <= {"sent", "cancelled"}
    received = Counter(m["text"]["content"] for m in kefu.api.messages)
    assert received == Counter(r.text for r in rows if r.status == "sent")


async def test_an_idle_customer_is_reminded_once_and_closed_once(two: Any) -> None:
    # Reminder after 0.3 s of silence, close after 0.9 s; both instances sweep every 0.05 s.
    a, b = await two({"conversation": {"human_idle_minutes": 0.015}}, idle_reminder_minutes=0.005)
    agent = await a.agent("小周", "售后")
    await agent.call("POST", "/me/presence", json={"presence": "online"})
    await b.say("我要投诉")  # arrives at B
    conv = await a.conversation()
    await eventually(lambda: _assigned(a, conv.id))
    assert await a.texts(1) == [notices.agent_joined("小周")]  # assigned at once: no place in the queue
    await agent.call("POST", f"/conversations/{conv.id}/messages", json={"text": "请问还在吗"}, expect=201)

    texts = await a.texts(4)  # joined, the reply, the reminder, the auto-close
    assert texts[2].startswith("您好，请问您还在吗") and texts[3] == notices.auto_closed()
    await eventually(lambda: _no_pending(a))
    texts = a.api.texts_to("oHandoffCustomer0000000000001")
    assert sum(t.startswith("您好，请问您还在吗") for t in texts) == 1
    assert texts.count(notices.auto_closed()) == 1
    assert (await a.conversation()).closed_reason == "idle"
    await _sent_rows_reached_wechat_once(a)


async def test_concurrent_idle_sweeps_of_two_processes_send_one_reminder(two: Any) -> None:
    """The reminder's own claim, without the job lock: both sweeps at the same moment, one reminder."""
    a, b = await two(
        {"conversation": {"human_idle_minutes": 60}}, idle_reminder_minutes=30, job_interval_s=3600
    )
    agent = await a.agent("小吴", "售后")
    await agent.call("POST", "/me/presence", json={"presence": "online"})
    await a.say("我要投诉")
    conv = await a.conversation()
    await a.texts(1)  # joined
    await agent.call("POST", f"/conversations/{conv.id}/messages", json={"text": "请问还在吗"}, expect=201)
    later = utcnow() + timedelta(minutes=31)
    services = [a.runtime.handoff, b.runtime.handoff, a.runtime.handoff, b.runtime.handoff]
    await asyncio.gather(*(idle_sweep(s, now=later) for s in services))
    await a.texts(3)  # joined, the reply, the reminder
    await eventually(lambda: _no_pending(a))
    reminders = [
        t for t in a.api.texts_to("oHandoffCustomer0000000000001") if t.startswith("您好，请问您还在吗")
    ]
    assert len(reminders) == 1
    await _sent_rows_reached_wechat_once(a)


async def test_a_first_response_breach_is_noticed_once_by_two_instances(two: Any) -> None:
    a, b = await two({"sla": {"first_response_s": 0.5}}, assignment="manual")
    agent = await a.agent("小孙", "售前")
    await agent.call("POST", "/me/presence", json={"presence": "online"})
    await b.say("转人工")
    assert await a.texts(2) == [notices.queued(1), BUSY_NOTICE]
    # Both instances' sweeps at a later moment too: the notice is claimed, nobody sends it again.
    sent = await asyncio.gather(
        *(first_response_sweep(k.runtime.handoff, now=utcnow() + timedelta(seconds=5)) for k in (a, b, a, b))
    )
    assert sum(sent) == 0
    await eventually(lambda: _no_pending(a))
    assert a.api.texts_to("oHandoffCustomer0000000000001").count(BUSY_NOTICE) == 1
    events = await a.runtime.handoff.db.events_after(0, 500)
    assert [e.type for e in events].count("sla.first_response_breached") == 1
    await _sent_rows_reached_wechat_once(a)


async def test_the_job_lock_lets_one_process_run_a_round(two: Any) -> None:
    a, b = await two()
    async with (
        job_lock(a.runtime.store, "test-round") as first,
        job_lock(b.runtime.store, "test-round") as second,
    ):
        assert (first, second) == (True, False)
    async with job_lock(b.runtime.store, "test-round") as after:
        assert after  # released with the round


async def _assigned(kefu: Kefu, conversation_id: int) -> bool:
    conv = await kefu.runtime.store.conversation(conversation_id)
    return conv is not None and conv.state.value == "assigned"


async def _no_pending(kefu: Kefu) -> bool:
    counts = await kefu.runtime.store.outbox_counts()
    return not any(counts.get(s) for s in ("held", "pending", "sending"))
