"""Issue 17 item 2 in the agent console (Debian chromium) and the API: an agent's WeChat reply that the
platform refused (45015, the 48-hour window) is shown as not delivered with the reason in Chinese and a
重发 button that works once the customer wrote again; without an AppSecret it is marked undeliverable and
offers no resend. The API's message JSON carries `delivery`, and the console updates live."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatAPI, WeChatPush, fixture_xml
from tests.waiting import eventually
from tests.web.conftest import Gateway, Guard, running, screenshot, sign_in, watch

TOKEN = "kefu-delivery-token"
_ids = itertools.count(8_300_000_000_000_000_000)


@pytest.fixture
async def wechat_gateway(
    web_settings: Callable[..., Any], aiohttp_server: Any
) -> AsyncIterator[tuple[Gateway, FakeWeChatAPI]]:
    fake = await FakeWeChatAPI().start(aiohttp_server)
    accounts = [
        {"name": "shop", "token": TOKEN, "appid": APPID, "secret": SECRET, "api_base": fake.url},
        {"name": "bare", "token": TOKEN, "appid": APPID, "api_base": fake.url},  # no AppSecret
    ]
    async with running(web_settings(channels={"web": {"enabled": True}, "wechat": accounts})) as gateway:
        yield gateway, fake


async def wechat_says(gateway: Gateway, account: str, openid: str, text: str) -> None:
    async with aiohttp.ClientSession(gateway.url) as http:
        push = WeChatPush(http, f"/wechat/{account}", TOKEN)
        xml = fixture_xml("text.xml", FromUserName=openid, Content=text, MsgId=next(_ids))
        status, body, _ = await push.post(xml)
        assert status == 200, body


async def api(gateway: Gateway, token: str, method: str, path: str) -> Any:
    async with aiohttp.ClientSession(gateway.url) as http:
        resp = await http.request(method, "/api/v1" + path, headers={"Authorization": f"Bearer {token}"})
        return resp.status, await resp.json()


async def test_a_refused_wechat_reply_is_marked_with_the_reason_and_can_be_resent(
    wechat_gateway: tuple[Gateway, FakeWeChatAPI], new_context: Any, guard: Guard, expect: Any
) -> None:
    gateway, fake = wechat_gateway
    token = await gateway.add_agent("小王")
    page = watch(await (await new_context()).new_page(), guard)
    await sign_in(page, gateway, token)
    await expect(page.locator("#conn")).to_have_text("已连接")

    await wechat_says(gateway, "shop", "oWindowClosed", "转人工")
    await page.locator("#queue li").get_by_role("button").first.click()
    await expect(page.locator("#conv-title")).to_contain_text("访客")
    await eventually(lambda: _has(fake, "oWindowClosed", 2))  # queued, agent joined: delivered
    fake.closed_windows.add("oWindowClosed")  # then 48 hours pass without a word from the customer

    reply = page.get_by_label("回复内容")
    await reply.fill("您好，您的退款已经处理好了")
    await reply.press("Enter")
    failed = page.locator(".m.agent.not-delivered")
    await expect(failed).to_have_count(1)  # live: the outbox's result arrives as an event
    await expect(failed.locator(".delivery")).to_contain_text("未送达：超出 48 小时回复窗口")
    await screenshot(page, "agent-delivery-failed")
    status, detail = await api(
        gateway, token, "GET", f"/conversations/{await _cid(gateway, 'oWindowClosed')}"
    )
    assert status == 200
    (sent,) = [m for m in detail["messages"] if m["sender"] == "agent"]
    assert sent["delivery"]["state"] == "undeliverable" and "45015" in sent["delivery"]["reason"]
    assert sent["delivery"]["retry"] is True

    # The customer writes again (the window reopens): 重发 delivers it.
    fake.closed_windows.discard("oWindowClosed")
    await wechat_says(gateway, "shop", "oWindowClosed", "在吗")
    await failed.get_by_role("button", name="重发这条消息").click()
    await expect(page.locator(".m.agent.not-delivered")).to_have_count(0)
    await expect(page.locator(".m.agent .delivery.sent")).to_have_text("已送达")
    assert "您好，您的退款已经处理好了" in fake.texts_to("oWindowClosed")
    guard.check()


async def test_without_an_appsecret_the_reply_is_undeliverable_and_not_resendable(
    wechat_gateway: tuple[Gateway, FakeWeChatAPI], new_context: Any, guard: Guard, expect: Any
) -> None:
    gateway, _fake = wechat_gateway
    token = await gateway.add_agent("小李")
    page = watch(await (await new_context()).new_page(), guard)
    await sign_in(page, gateway, token)
    await wechat_says(gateway, "bare", "oNoSecret", "转人工")
    await page.locator("#queue li").get_by_role("button").first.click()
    reply = page.get_by_label("回复内容")
    await reply.fill("您好，请问有什么可以帮您")
    await reply.press("Enter")
    failed = page.locator(".m.agent.not-delivered")
    await expect(failed.locator(".delivery")).to_contain_text("未送达：未配置公众号 AppSecret")
    await expect(failed.get_by_role("button", name="重发这条消息")).to_have_count(0)
    cid = await _cid(gateway, "oNoSecret", account="bare")
    status, detail = await api(gateway, token, "GET", f"/conversations/{cid}")
    (sent,) = [m for m in detail["messages"] if m["sender"] == "agent"]
    assert sent["delivery"]["state"] == "undeliverable" and sent["delivery"]["retry"] is False
    assert "secret is not set" in sent["delivery"]["reason"]
    (message_id,) = [m["id"] for m in detail["messages"] if m["sender"] == "agent"]
    status, body = await api(gateway, token, "POST", f"/conversations/{cid}/messages/{message_id}/retry")
    assert status == 409 and "无需或无法重发" in body["error"]
    guard.check()


async def _has(fake: FakeWeChatAPI, openid: str, count: int) -> bool:
    return len(fake.texts_to(openid)) >= count


async def _cid(gateway: Gateway, openid: str, account: str = "shop") -> int:
    rows = await gateway.runtime.store.conversations_for_key(f"wechat:{account}:{openid}")
    return rows[-1].id
