"""WeCom 微信客服 over real HTTP, on SQLite and PostgreSQL: WeCom calls kefu back (encrypted), kefu pulls with
kf/sync_msg from the fake API and answers through kf/send_msg."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from gateway.app import create_app
from gateway.keys import RUNTIME
from gateway.serve import urls as serve_urls
from gateway.storage.cursor_store import load_cursor
from tests.fakes.wechat_api import sha1_sign
from tests.fakes.wecom_api import (
    FIXTURES,
    OPEN_KFID,
    TOKEN,
    FakeWeComAPI,
    WeComPush,
    fixture,
)
from tests.gateway.wecom.conftest import CUSTOMER, RETURN_ANSWER, account
from tests.waiting import eventually

# --- verification and the callback's crypto ---------------------------------------------------------


async def test_url_verification_answers_the_decrypted_echostr(start: Any) -> None:
    kefu = await start()
    assert await kefu.push.verify("8237529318749827345") == (200, "8237529318749827345")


async def test_the_docs_verification_vector(aiohttp_client: Any, settings_factory: Any) -> None:
    vector = json.loads((FIXTURES / "verify_vector.json").read_text(encoding="utf-8"))
    acc = vector["account"]
    wecom = {
        "name": "docs",
        "corp_id": acc["corp_id"],
        "secret": "s",
        "token": acc["token"],
        "aes_key": acc["aes_key"],
    }
    client = await aiohttp_client(create_app(settings_factory(channels={"wecom": [wecom]})))
    # Signed in 2014: inside the replay window of that time.
    signed_at = float(vector["query"]["timestamp"])
    client.app[RUNTIME].adapters[("wecom", "docs")].epoch = lambda: signed_at
    resp = await client.get("/wecom/docs", params=vector["query"])
    assert (resp.status, await resp.text()) == (200, vector["decrypted"])
    forged = dict(vector["query"], msg_signature="0" * 40)
    assert (await client.get("/wecom/docs", params=forged)).status == 403
    missing = {k: v for k, v in vector["query"].items() if k != "echostr"}
    assert (await client.get("/wecom/docs", params=missing)).status == 400


NOW = 1_800_000_000.0  # the adapter's injected clock for the replay window


@pytest.mark.parametrize("offset", [331, -331, -(10**6)])
async def test_validly_signed_callbacks_outside_the_replay_window_are_403(start: Any, offset: int) -> None:
    kefu = await start()
    kefu.adapter.epoch = lambda: NOW
    timestamp = str(int(NOW) + offset)
    params, body = kefu.push.envelope(fixture("kf_msg_or_event.xml"), timestamp=timestamp)
    resp = await kefu.client.post("/wecom/kf", params=params, data=body)
    assert (resp.status, await resp.text()) == (403, "timestamp outside the replay window")
    assert (await kefu.push.verify("42", timestamp=timestamp)) == (403, "timestamp outside the replay window")
    await kefu.pulled()
    assert kefu.api.sync_calls == []  # a replay asks for no pull
    assert not (await load_cursor(kefu.runtime.store, "wecom", "kf", OPEN_KFID)).owed


async def test_callbacks_within_the_window_are_taken_and_the_window_is_configurable(start: Any) -> None:
    kefu = await start(max_clock_skew_s=30)
    kefu.adapter.epoch = lambda: NOW
    for offset, expected in ((29, 200), (-29, 200), (31, 403), (-31, 403)):
        assert (await kefu.push.verify("42", timestamp=str(int(NOW) + offset)))[0] == expected, offset
    params, body = kefu.push.envelope(fixture("kf_msg_or_event.xml"), timestamp=str(int(NOW) - 29))
    resp = await kefu.client.post("/wecom/kf", params=params, data=body)
    assert (resp.status, await resp.text()) == (200, "success")
    await kefu.pulled()
    assert len(kefu.api.sync_calls) == 1


async def test_forged_or_foreign_callbacks_are_refused(start: Any) -> None:
    kefu = await start()
    params, body = kefu.push.envelope(fixture("kf_msg_or_event.xml"))
    resp = await kefu.client.post("/wecom/kf", params=params | {"msg_signature": "f" * 40}, data=body)
    assert resp.status == 403
    # Encrypted for another corp (right token and key, so the signature matches): refused too.
    foreign = WeComPush(kefu.client, "/wecom/kf", corp_id="wwSomeOtherCorp00000")
    assert (await foreign.post(fixture("kf_msg_or_event.xml")))[0] == 403
    assert (await kefu.push.verify("x", msg_signature="0" * 40))[0] == 403
    assert kefu.api.sync_calls == []  # nothing was pulled for any of them


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<xml><ToUserName>x</ToUserName></xml>",  # no <Encrypt>
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x "boom">]><xml><Encrypt>&x;</Encrypt></xml>',
        b'<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>',
        "<xml><Encrypt>\udcff</Encrypt></xml>".encode("utf-8", "surrogateescape"),
    ],
)
async def test_hostile_or_broken_bodies_get_a_clear_4xx(start: Any, body: bytes) -> None:
    kefu = await start()
    params, _ = kefu.push.envelope("<xml/>")
    resp = await kefu.client.post("/wecom/kf", params=params, data=body)
    assert resp.status == 400, await resp.text()


async def test_an_encrypted_doctype_is_refused_after_decryption(start: Any) -> None:
    kefu = await start()
    hostile = '<!DOCTYPE xml [<!ENTITY x "y">]><xml><MsgType>event</MsgType><Event>&x;</Event></xml>'
    assert (await kefu.push.post(hostile))[0] == 400


# --- pulling ------------------------------------------------------------------------------------


async def test_a_callback_pulls_and_the_answer_goes_out_through_send_msg(start: Any) -> None:
    kefu = await start()
    await kefu.say("怎么退货")
    (sent,) = await kefu.sent(1)
    assert sent["msgtype"] == "text" and sent["text"]["content"].startswith(RETURN_ANSWER)
    assert sent["open_kfid"] == OPEN_KFID and sent["msgid"].startswith("kf")
    call = kefu.api.sync_calls[0]
    assert (
        call["token"] == "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR" and call["open_kfid"] == OPEN_KFID
    )
    state = await load_cursor(kefu.runtime.store, "wecom", "kf", OPEN_KFID)
    assert state.cursor == "C1" and not state.owed
    rows = await kefu.messages()
    assert [(m.direction, m.sender, m.text[:4]) for m in rows] == [
        ("in", "customer", "怎么退货"),
        ("out", "bot", "您好，在"),
    ]


async def test_repeated_and_racing_callbacks_answer_each_message_once(start: Any) -> None:
    kefu = await start()
    kefu.api.customer_text(CUSTOMER, "怎么退货")
    kefu.api.customer_text(CUSTOMER, "怎么开发票")
    # WeCom repeats callbacks, and two can race: five at once.
    await asyncio.gather(*(kefu.push.notify() for _ in range(5)))
    await kefu.pulled()
    await kefu.push.notify()  # and one more after everything was pulled
    await kefu.pulled()
    sent = await kefu.sent(2)
    await asyncio.sleep(0.2)  # let a wrongly doubled send show up
    assert len(kefu.api.sent_to(CUSTOMER)) == 2 == len(sent)
    inbound = [m for m in await kefu.messages() if m.direction == "in"]
    assert [m.text for m in inbound] == ["怎么退货", "怎么开发票"]


async def test_has_more_pages_are_followed_and_the_cursor_is_kept(start: Any) -> None:
    kefu = await start()
    kefu.api.page_size = 2
    for text in ("怎么退货", "怎么开发票", "什么时候发货", "支持哪些支付方式", "怎么修改收货地址"):
        kefu.api.customer_text(CUSTOMER, text)
    await kefu.push.notify()
    await kefu.pulled()
    assert [c.get("cursor") for c in kefu.api.sync_calls] == [None, "C2", "C4"]
    await kefu.sent(5)
    await kefu.say("退款多久到账")  # the next pull starts at the stored cursor
    assert kefu.api.sync_calls[-1]["cursor"] == "C5"


async def test_a_failed_store_leaves_the_cursor_so_the_next_pull_reads_again(start: Any) -> None:
    kefu = await start()
    kefu.api.customer_text(CUSTOMER, "怎么退货")
    adapter = kefu.adapter
    real_take = adapter.take
    calls = 0

    async def crash_once(item: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("the database went away")
        await real_take(item)

    adapter.take = crash_once  # type: ignore[method-assign]
    adapter.puller._retry_s = 0.01
    await kefu.push.notify()
    await kefu.pulled()
    assert [c.get("cursor") for c in kefu.api.sync_calls] == [None, None]  # read again from the start
    await kefu.sent(1)
    assert not (await load_cursor(kefu.runtime.store, "wecom", "kf", OPEN_KFID)).owed


async def test_an_item_that_cannot_be_handled_is_skipped_not_blocking_the_rest(start: Any) -> None:
    kefu = await start()
    kefu.api.customer_text(CUSTOMER, "怎么退货")
    kefu.api.customer_text(CUSTOMER, "怎么开发票")
    adapter = kefu.adapter
    real_take = adapter.take

    async def bug_on_first(item: Any) -> None:
        if "退货" in str(item.raw.get("text")):
            raise ValueError("a bug")
        await real_take(item)

    adapter.take = bug_on_first  # type: ignore[method-assign]
    await kefu.push.notify()
    await kefu.pulled()
    (sent,) = await kefu.sent(1)
    assert "发票" in sent["text"]["content"]
    assert not (await load_cursor(kefu.runtime.store, "wecom", "kf", OPEN_KFID)).owed


async def test_an_owed_pull_is_resumed_at_startup(
    aiohttp_client: Any, settings_factory: Any, wecom_api: FakeWeComAPI
) -> None:
    settings = settings_factory(channels={"wecom": [account(wecom_api)]})
    first = create_app(settings)
    client = await aiohttp_client(first)
    wecom_api.sync_failures = 10  # WeCom is down: the callback is acknowledged, the pull keeps failing
    first[RUNTIME].adapters[("wecom", "kf")].puller._retry_s = 0.01  # type: ignore[attr-defined]
    wecom_api.customer_text(CUSTOMER, "怎么退货")
    await WeComPush(client, "/wecom/kf").notify()
    await first[RUNTIME].adapters[("wecom", "kf")].puller.idle()  # type: ignore[attr-defined]
    assert (await load_cursor(first[RUNTIME].store, "wecom", "kf", OPEN_KFID)).owed
    await client.close()

    wecom_api.sync_failures = 0
    second = create_app(settings)  # a restart: no new callback arrives
    await aiohttp_client(second)
    await second[RUNTIME].adapters[("wecom", "kf")].puller.idle()  # type: ignore[attr-defined]
    await wecom_api.wait_for_messages(1)
    assert not (await load_cursor(second[RUNTIME].store, "wecom", "kf", OPEN_KFID)).owed


async def test_two_gateway_processes_never_pull_the_same_account_at_once(
    aiohttp_client: Any, settings_factory: Any, wecom_api: FakeWeComAPI
) -> None:
    settings = settings_factory(channels={"wecom": [account(wecom_api)]})
    apps = [create_app(settings), create_app(settings)]  # two processes on one database
    pushes = [WeComPush(await aiohttp_client(app), "/wecom/kf") for app in apps]
    wecom_api.sync_latency_s = 0.05  # each pull takes a while: the callbacks overlap them
    texts = ["怎么退货", "怎么开发票", "什么时候发货", "支持哪些支付方式"]
    for text in texts:
        wecom_api.customer_text(CUSTOMER, text)
        await asyncio.gather(*(push.notify() for push in pushes for _ in range(2)))
    for app in apps:
        await app[RUNTIME].adapters[("wecom", "kf")].puller.idle()  # type: ignore[attr-defined]
    assert wecom_api.max_sync_in_flight == 1
    await wecom_api.wait_for_messages(len(texts))
    await asyncio.sleep(0.2)  # let a wrongly doubled answer show up
    assert len(wecom_api.sent_to(CUSTOMER)) == len(texts)
    store = apps[0][RUNTIME].store
    assert not (await load_cursor(store, "wecom", "kf", OPEN_KFID)).owed


async def test_an_old_backlog_is_recorded_but_not_answered(start: Any) -> None:
    kefu = await start()
    old_visit = kefu.api.event("event_enter_session.json", external_userid=CUSTOMER)
    old_visit["send_time"] -= 3 * 3600  # no greeting for a visit hours ago
    kefu.api.customer_text(CUSTOMER, "怎么退货", age_s=3 * 3600)
    await kefu.say("怎么开发票")
    (sent,) = await kefu.sent(1)
    assert "发票" in sent["text"]["content"]
    inbound = [(m.text, m.decision) for m in await kefu.messages() if m.direction == "in"]
    assert inbound[0] == ("怎么退货", "stale")
    assert len(await kefu.runtime.store.list_outbox()) == 1  # neither the old visit nor the old question


async def test_a_callback_for_another_kf_account_is_acknowledged_and_ignored(start: Any) -> None:
    kefu = await start(open_kfid=OPEN_KFID)
    await kefu.push.notify(open_kfid="wkSomeOtherAccount000000000000")
    await kefu.pulled()
    assert kefu.api.sync_calls == []


# --- origins 4 and 5 -----------------------------------------------------------------------------


async def test_enter_session_greets_once_through_send_msg_on_event(start: Any) -> None:
    kefu = await start()
    code = kefu.api.enter_session(CUSTOMER)
    await kefu.push.notify()
    await kefu.pulled()
    await kefu.push.notify()  # a repeated callback must not greet again
    await kefu.pulled()
    (greeting,) = await kefu.sent(1)
    assert greeting["welcome_code"] == code and greeting["text"]["content"].startswith("欢迎光临")
    await asyncio.sleep(0.1)
    assert len(kefu.api.sent_to(CUSTOMER)) == 1


async def test_reception_staff_messages_are_stored_as_agent_messages(start: Any) -> None:
    kefu = await start()
    kefu.api.customer_text(CUSTOMER, "怎么退货")
    kefu.api.servicer_text(CUSTOMER, "您好，我是小张", servicer="zhangsan")
    await kefu.push.notify()
    await kefu.pulled()
    rows = await kefu.messages()
    staff = [m for m in rows if m.sender == "agent"]
    assert [(m.text, m.sender_name, m.direction) for m in staff] == [("您好，我是小张", "zhangsan", "out")]
    await kefu.sent(1)  # only the bot's own answer was sent; the staff message went out through WeCom


async def test_msg_send_fail_makes_the_outbox_row_undeliverable(start: Any) -> None:
    kefu = await start()
    await kefu.say("怎么退货")
    (sent,) = await kefu.sent(1)
    kefu.api.event("event_msg_send_fail.json", fail_msgid=sent["msgid"], external_userid=CUSTOMER)
    kefu.api.event("event_servicer_status_change.json")  # nothing to do, must not break the pull
    await kefu.push.notify()
    await kefu.pulled()
    (row,) = await kefu.runtime.store.list_outbox("undeliverable")
    assert row.last_error and "fail_type 4" in row.last_error


# --- sending: menus, limits, tokens ------------------------------------------------------------------


async def test_suggestions_are_a_msgmenu_and_a_click_answers_that_entry(start: Any) -> None:
    # Thresholds that make a near miss land on 您是不是想问 + suggestions.
    kefu = await start({"matcher": {"answer_threshold": 0.95, "suggest_threshold": 0.5}})
    await kefu.say("退货退款")
    (menu,) = await kefu.sent(1)
    assert menu["msgtype"] == "msgmenu"
    entries = [e["click"] for e in menu["msgmenu"]["list"]]
    assert entries and all(e["id"] and e["content"] for e in entries)
    assert not any(line.startswith("1. ") for line in menu["msgmenu"]["head_content"].splitlines())
    chosen = entries[0]
    await kefu.say(chosen["content"], menu_id=chosen["id"])
    answer = (await kefu.sent(2))[1]
    assert answer["msgtype"] == "text"
    clicked = [m for m in await kefu.messages() if m.direction == "in"][-1]
    assert (clicked.kind, clicked.decision, clicked.entry_id) == ("event", "answer", chosen["id"])


async def test_the_quota_errcode_makes_a_send_undeliverable_with_the_reason(start: Any) -> None:
    kefu = await start()
    kefu.api.fail_next(95001)
    await kefu.say("怎么退货")

    async def undeliverable() -> bool:
        return bool(await kefu.runtime.store.list_outbox("undeliverable"))

    await eventually(undeliverable)
    (row,) = await kefu.runtime.store.list_outbox("undeliverable")
    assert "95001" in (row.last_error or "") and "5" in (row.last_error or "")
    assert kefu.api.messages == []


async def test_an_expired_token_is_refreshed_and_the_send_retried(start: Any) -> None:
    kefu = await start()
    await kefu.say("怎么退货")
    await kefu.sent(1)
    kefu.api.expire_tokens()
    await kefu.say("怎么开发票")
    await kefu.sent(2)
    assert kefu.api.token_fetches == 2
    assert (await kefu.runtime.store.list_outbox("sent"))[0].attempts == 1


async def test_an_unescaped_plus_in_echostr_still_verifies(start: Any) -> None:
    kefu = await start()
    for attempt in range(40):  # find an echostr whose ciphertext has a "+" (base64 makes one likely)
        params, body = kefu.push.envelope(f"echo{attempt}")
        encrypt = body.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
        if "+" in encrypt:
            break
    else:
        pytest.skip("no ciphertext with a '+' in 40 tries")
    signature = sha1_sign(TOKEN, params["timestamp"], params["nonce"], encrypt)
    raw = (
        f"msg_signature={signature}&timestamp={params['timestamp']}&nonce={params['nonce']}&echostr={encrypt}"
    )
    resp = await kefu.client.get(f"/wecom/kf?{raw}")
    assert (resp.status, await resp.text()) == (200, f"echo{attempt}")


async def test_kefu_serve_prints_the_callback_url(start: Any) -> None:
    kefu = await start()
    urls = dict(serve_urls(kefu.runtime.settings, kefu.client.app))
    assert urls["wecom kf (GET/POST)"] == "http://127.0.0.1:8080/wecom/kf"


async def test_an_expired_welcome_code_leaves_the_greeting_undeliverable_with_the_reason(start: Any) -> None:
    kefu = await start()
    kefu.api.event("event_enter_session.json", external_userid=CUSTOMER)  # a code WeCom no longer honours
    await kefu.push.notify()
    await kefu.pulled()

    async def refused() -> bool:
        return bool(await kefu.runtime.store.list_outbox("undeliverable"))

    await eventually(refused)
    (row,) = await kefu.runtime.store.list_outbox("undeliverable")
    assert "95007" in (row.last_error or "")


async def test_an_image_offers_a_human_and_the_menu_click_hands_off(start: Any) -> None:
    kefu = await start()
    item = fixture("msg_image.json") | {
        "msgid": "img-1",
        "external_userid": CUSTOMER,
        "send_time": int(time.time()),
    }
    kefu.api.add(item)
    await kefu.push.notify()
    await kefu.pulled()
    (menu,) = await kefu.sent(1)
    assert menu["msgtype"] == "msgmenu"
    assert menu["msgmenu"]["list"] == [{"type": "click", "click": {"id": "human", "content": "转人工"}}]
    await kefu.say("转人工", menu_id="human")
    [conv] = await kefu.runtime.store.conversations_for_key(f"wecom:kf:{OPEN_KFID}:{CUSTOMER}")
    assert conv.state.value == "queued" and conv.handoff_reason == "asked_human"
