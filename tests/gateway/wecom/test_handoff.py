"""The WeCom 微信客服 customer from callback to human, end to end over real HTTP on SQLite and PostgreSQL:
the bot answers through kf/send_msg, 转人工 queues the conversation, an agent added with the CLI claims it
and replies through the agent API, and the reply arrives at the fake kf/send_msg. With `handoff_mode:
wecom` the session goes to WeCom's own reception staff instead (service_state/trans)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.keys import RUNTIME
from handoff import notices
from handoff.state import ConversationState
from tests.fakes.wecom_api import OPEN_KFID, FakeWeComAPI, WeComPush
from tests.gateway.test_handoff_flow import Console, cli_add_agent, handoff_section, write_config
from tests.gateway.wecom.conftest import CUSTOMER, RETURN_ANSWER, WeCom, account
from tests.waiting import eventually

KEY = f"wecom:kf:{OPEN_KFID}:{CUSTOMER}"


async def _start(aiohttp_client: Any, settings_factory: Any, api: FakeWeComAPI, **overrides: Any) -> WeCom:
    settings = settings_factory(
        channels={"wecom": [account(api, **overrides)]}, handoff=handoff_section(assignment="manual")
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    return WeCom(client, app[RUNTIME], WeComPush(client, "/wecom/kf"), api)


async def test_bot_answer_then_a_kefu_agent_replies_through_send_msg(
    aiohttp_client: Any, settings_factory: Any, wecom_api: FakeWeComAPI, db_url: str, tmp_path: Path
) -> None:
    kefu = await _start(aiohttp_client, settings_factory, wecom_api)
    config = write_config(tmp_path / "gateway.yaml", db_url)
    wang = Console(kefu.client, await cli_add_agent(config, "小王", "售前,售后"), "小王")
    await wang.call("POST", "/me/presence", json={"presence": "online"})

    await kefu.say("怎么退货")
    assert (await kefu.sent(1))[0]["text"]["content"].startswith(RETURN_ANSWER)

    await kefu.say("转人工")
    [conv] = await kefu.runtime.store.conversations_for_key(KEY)
    assert conv.state is ConversationState.QUEUED
    texts = [m["text"]["content"] for m in await kefu.sent(3)]
    assert texts[2] == notices.queued(1)  # after the bot's honest handoff message

    claimed = await wang.call("POST", f"/conversations/{conv.id}/claim")
    assert claimed["state"] == "assigned"
    await wang.call("POST", f"/conversations/{conv.id}/messages", json={"text": "您好，我是小王"}, expect=201)
    sent = await kefu.sent(5)
    assert [m["text"]["content"] for m in sent[3:]] == [notices.agent_joined("小王"), "您好，我是小王"]
    assert len({m["msgid"] for m in sent}) == 5  # one idempotency key per outbox row
    assert wecom_api.transfers == []  # kefu mode: the session stays with the API (智能助手)

    await kefu.say("订单号 20261124001")  # a human has it: the bot stays quiet, the agent sees it
    detail = await wang.call("GET", f"/conversations/{conv.id}")
    customer_lines = [m["text"] for m in detail["messages"] if m["sender"] == "customer"]
    assert customer_lines[-1] == "订单号 20261124001"
    assert detail["customer"]["channel"] == "wecom"


async def test_handoff_mode_wecom_transfers_the_session_to_reception_staff(
    aiohttp_client: Any, settings_factory: Any, wecom_api: FakeWeComAPI
) -> None:
    kefu = await _start(
        aiohttp_client, settings_factory, wecom_api, handoff_mode="wecom", servicer_userid="zhangsan"
    )
    await kefu.say("转人工")

    async def transferred() -> bool:
        return bool(wecom_api.transfers)

    await eventually(transferred)
    (handoff_text,) = [m["text"]["content"] for m in await kefu.sent(1)]
    assert handoff_text  # the bot's handoff message went out before the transfer
    assert wecom_api.transfers[0] == {
        "open_kfid": OPEN_KFID,
        "external_userid": CUSTOMER,
        "service_state": 3,
        "servicer_userid": "zhangsan",
    }

    # kefu's own queue notice is not sent (WeCom's staff serve the customer) and says why.
    async def notice_refused() -> bool:
        return any(
            "handoff_mode is wecom" in (r.last_error or "") for r in await kefu.runtime.store.list_outbox()
        )

    await eventually(notice_refused)

    # While WeCom's staff have the customer, kefu's bot neither answers nor acknowledges (issue 17 item 1).
    before = len(await kefu.runtime.store.list_outbox())
    await kefu.say("怎么开发票")
    # (the pull awaits the pipeline and its observers: an answer or acknowledgement would be stored by now)
    assert [m.sender for m in await kefu.messages()][-1] == "customer"
    assert len(await kefu.runtime.store.list_outbox()) == before

    # The staff member answers inside WeCom; kefu keeps the history whole.
    wecom_api.servicer_text(CUSTOMER, "您好，我是小张，请讲")
    wecom_api.event("event_session_status_change.json", external_userid=CUSTOMER)  # 小张 ends the session
    await kefu.push.notify()
    await kefu.pulled()
    rows = await kefu.messages()
    assert ("agent", "您好，我是小张，请讲") in [(m.sender, m.text) for m in rows]
    [conv] = await kefu.runtime.store.conversations_for_key(KEY)
    assert conv.state is ConversationState.BOT  # the human part ended with WeCom's session


async def test_handoff_mode_wecom_without_a_servicer_queues_in_the_pool(
    aiohttp_client: Any, settings_factory: Any, wecom_api: FakeWeComAPI
) -> None:
    kefu = await _start(aiohttp_client, settings_factory, wecom_api, handoff_mode="wecom")
    await kefu.say("我要投诉，东西坏了")

    async def transferred() -> bool:
        return bool(wecom_api.transfers)

    await eventually(transferred)
    assert wecom_api.transfers[0]["service_state"] == 2 and "servicer_userid" not in wecom_api.transfers[0]


async def test_a_session_already_in_the_pool_is_not_transferred_again(
    aiohttp_client: Any, settings_factory: Any, wecom_api: FakeWeComAPI
) -> None:
    kefu = await _start(aiohttp_client, settings_factory, wecom_api, handoff_mode="wecom")
    wecom_api.states[(OPEN_KFID, CUSTOMER)] = (2, None)  # WeCom's own routing queued it already
    await kefu.say("转人工")
    await kefu.sent(1)  # the handoff message

    async def settled() -> bool:  # the handoff message and kefu's refused queue notice are both done
        rows = await kefu.runtime.store.list_outbox()
        return len(rows) >= 2 and all(r.status in ("sent", "undeliverable") for r in rows)

    await eventually(settled)
    assert wecom_api.transfers == []
    assert all(r.status != "failed" for r in await kefu.runtime.store.list_outbox())


async def test_an_agent_reply_past_the_quota_shows_the_agent_why(
    aiohttp_client: Any, settings_factory: Any, wecom_api: FakeWeComAPI, db_url: str, tmp_path: Path
) -> None:
    kefu = await _start(aiohttp_client, settings_factory, wecom_api)
    config = write_config(tmp_path / "gateway.yaml", db_url)
    wang = Console(kefu.client, await cli_add_agent(config, "小王", "售前,售后"), "小王")
    await wang.call("POST", "/me/presence", json={"presence": "online"})
    await kefu.say("转人工")
    [conv] = await kefu.runtime.store.conversations_for_key(KEY)
    await wang.call("POST", f"/conversations/{conv.id}/claim")
    await kefu.sent(3)  # handoff message, queue position, agent joined
    for text in ("第一条", "第二条", "第三条"):  # the 5-per-message quota allows two of these
        await wang.call("POST", f"/conversations/{conv.id}/messages", json={"text": text}, expect=201)

    async def refused() -> bool:
        return bool(await kefu.runtime.store.list_outbox("undeliverable"))

    await eventually(refused)
    detail = await wang.call("GET", f"/conversations/{conv.id}")
    agent_lines = {m["text"]: m["delivery"] for m in detail["messages"] if m["sender"] == "agent"}
    assert agent_lines["第一条"]["state"] == "sent"
    assert agent_lines["第三条"]["state"] == "undeliverable" and "95001" in agent_lines["第三条"]["reason"]
    assert agent_lines["第三条"]["reason_text"].startswith("回复条数已达上限")
    assert [m["text"]["content"] for m in kefu.api.sent_to(CUSTOMER)][-2:] == ["第一条", "第二条"]


async def test_a_pooled_session_moves_on_to_the_named_servicer(
    aiohttp_client: Any, settings_factory: Any, wecom_api: FakeWeComAPI
) -> None:
    kefu = await _start(
        aiohttp_client, settings_factory, wecom_api, handoff_mode="wecom", servicer_userid="lisi"
    )
    wecom_api.states[(OPEN_KFID, CUSTOMER)] = (2, None)  # 2 → 3 is allowed

    async def transferred() -> bool:
        return bool(wecom_api.transfers)

    await kefu.say("转人工")
    await eventually(transferred)
    assert wecom_api.states[(OPEN_KFID, CUSTOMER)] == (3, "lisi")
