"""Pictures both ways in real chromium: a customer sends a photo from the chat, the agent sees it in the
console and sends one back, the customer sees it; and typing shows on both sides."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.wechat_api import APPID, FakeWeChatAPI, WeChatPush, fixture_xml
from tests.fakes.wechat_api import SECRET as WECHAT_SECRET
from tests.gateway.test_media import png
from tests.gateway.test_wechat import TOKEN, new_msg_id
from tests.web.conftest import Gateway, Guard, running, screenshot, sign_in, watch


@pytest.fixture
async def gateway(web_settings: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Gateway]:
    """The browser tests' gateway with its uploads in tmp."""
    async with running(web_settings(uploads={"dir": str(tmp_path / "uploads")})) as gateway:
        yield gateway


async def picture_loaded(locator: Any) -> bool:
    """True once the picture has loaded (waits for it; a broken one never does)."""
    handle = await locator.element_handle()
    await locator.page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=handle)
    return True


async def test_a_photo_goes_from_the_widget_to_the_console_and_one_comes_back(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    token = await gateway.add_agent("小李")
    customer_context = await new_context(viewport={"width": 420, "height": 760})
    customer = watch(await customer_context.new_page(), guard)
    await customer.goto(gateway.url + "/chat")
    box = customer.get_by_label("输入消息")
    await box.fill("我要投诉，收到的杯子是坏的")
    await box.press("Enter")
    await expect(customer.locator("#status")).to_have_attribute("data-state", "queued")

    photo = png(48, 32, (220, 60, 60))
    await customer.locator("#file").set_input_files(
        {"name": "破损.png", "mimeType": "image/png", "buffer": photo}
    )
    sent = customer.locator(".msg.in img")
    await expect(sent).to_have_count(1)
    await expect(customer.locator(".msg.in.pending")).to_have_count(0)
    assert await picture_loaded(sent)

    agent_context = await new_context()
    agent = watch(await agent_context.new_page(), guard)
    await sign_in(agent, gateway, token)
    await agent.locator("#queue li").first.get_by_role("button", name="接入").click()
    seen = agent.locator("#messages .m.customer img")
    await expect(seen).to_have_count(1)
    await expect(seen).to_have_attribute("alt", "图片：破损.png")
    assert await picture_loaded(seen)

    # Typing both ways: the customer types → the console says so; the agent types → the chat says so.
    relay = gateway.runtime.typing
    relay.clock = lambda: 1e9  # an injected clock far past any earlier notice's throttle window
    await box.type("还有")
    await expect(agent.locator("#customer-typing")).to_be_visible()
    await agent.get_by_label("回复内容").type("您好")
    await expect(customer.locator("#typing")).to_be_visible()
    await agent.get_by_label("回复内容").fill("")

    answer = png(40, 40, (40, 160, 90))
    await agent.locator("#attach-file").set_input_files(
        {"name": "正确包装.png", "mimeType": "image/png", "buffer": answer}
    )
    mine = agent.locator("#messages .m.agent img")
    await expect(mine).to_have_count(1)
    back = customer.locator(".msg.agent img")
    await expect(back).to_have_count(1)
    await expect(customer.locator("#typing")).to_be_hidden()  # the reply ends the typing line
    assert await picture_loaded(back)
    await screenshot(agent, "console-image")
    await screenshot(customer, "chat-image")

    # A file the rules refuse (an SVG can carry script): the customer is told why, nothing is stored.
    await customer.locator("#file").set_input_files(
        {"name": "x.svg", "mimeType": "image/svg+xml", "buffer": b"<svg xmlns='http://www.w3.org/2000/svg'/>"}
    )
    await expect(customer.locator(".msg.in.failed .meta")).to_contain_text("不支持这种文件类型")
    guard.errors = [e for e in guard.errors if "415" not in e and "Unsupported Media Type" not in e]
    await customer_context.close()
    await agent_context.close()
    guard.check()


async def test_a_wechat_customers_photo_and_events_show_in_the_console(
    web_settings: Callable[..., Any],
    tmp_path: Path,
    aiohttp_server: Any,
    new_context: Any,
    guard: Guard,
    expect: Any,
) -> None:
    wechat = await FakeWeChatAPI().start(aiohttp_server)
    account = {
        "name": "shop",
        "token": TOKEN,
        "appid": APPID,
        "secret": WECHAT_SECRET,
        "api_base": wechat.url,
    }
    settings = web_settings(
        uploads={"dir": str(tmp_path / "uploads")},
        channels={"web": {"enabled": True}, "wechat": [account]},
    )
    async with running(settings) as gateway:
        async with aiohttp.ClientSession(gateway.url) as http:
            push = WeChatPush(http, "/wechat/shop", TOKEN)
            photo = png(60, 40, (230, 120, 20))
            wechat.pictures["p1"] = photo
            now = int(time.time())
            for xml in (
                fixture_xml("subscribe.xml", CreateTime=now),
                fixture_xml("text.xml", Content="我要投诉，快递把箱子压坏了", MsgId=new_msg_id()),
                fixture_xml("image.xml", PicUrl=f"{wechat.url}/pic/p1", MsgId=new_msg_id()),
            ):
                status, text, _ = await push.post(xml)
                assert status == 200, text

        token = await gateway.add_agent("小李")
        context = await new_context()
        agent = watch(await context.new_page(), guard)
        await sign_in(agent, gateway, token)
        await agent.locator("#queue li").first.get_by_role("button", name="接入").click()
        seen = agent.locator("#messages .m.customer img")
        await expect(seen).to_have_count(1)
        assert await picture_loaded(seen)
        # The subscribe event is a line in words, and no customer bubble is empty.
        await expect(agent.locator("#messages .m.system .bubble").first).to_have_text("客户关注了公众号")
        for bubble in await agent.locator("#messages .m.customer .bubble").all():
            assert (await bubble.inner_text()).strip() or await bubble.locator("img").count() == 1
        await screenshot(agent, "console-wechat-image")
        await context.close()
    guard.check()


async def test_a_picture_pasted_or_dropped_into_the_chat_is_sent(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    context = await new_context(viewport={"width": 420, "height": 760})
    page = watch(await context.new_page(), guard)
    await page.goto(gateway.url + "/chat")
    await expect(page.locator("#status")).to_contain_text("智能客服在线")
    # A real PNG made in the page, handed over the way a browser does on paste and on drop.
    make_file = """async (name) => {
        const canvas = document.createElement("canvas"); canvas.width = 30; canvas.height = 20;
        const ctx = canvas.getContext("2d"); ctx.fillStyle = "#e11d48"; ctx.fillRect(0, 0, 30, 20);
        const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
        const data = new DataTransfer(); data.items.add(new File([blob], name, { type: "image/png" }));
        return data;
    }"""
    await page.evaluate(
        f"""async () => {{
        const data = await ({make_file})("pasted.png");
        document.getElementById("input").dispatchEvent(new ClipboardEvent("paste", {{ clipboardData: data, bubbles: true, cancelable: true }}));
    }}"""
    )
    await expect(page.locator(".msg.in img")).to_have_count(1)
    await page.evaluate(
        f"""async () => {{
        const data = await ({make_file})("dropped.png");
        const chat = document.querySelector(".chat");
        chat.dispatchEvent(new DragEvent("dragover", {{ dataTransfer: data, bubbles: true, cancelable: true }}));
        chat.dispatchEvent(new DragEvent("drop", {{ dataTransfer: data, bubbles: true, cancelable: true }}));
    }}"""
    )
    await expect(page.locator(".msg.in img")).to_have_count(2)
    await expect(page.locator(".msg.in.pending")).to_have_count(0)
    await expect(page.locator("#drop")).to_be_hidden()
    visitor = await page.evaluate("localStorage.getItem('kefu.visitor')")
    stored = await gateway.runtime.store.messages_for_key(f"web:default:{visitor}", direction="in")
    assert [(m.kind, (m.attachment or {}).get("name")) for m in stored] == [
        ("image", "pasted.png"),
        ("image", "dropped.png"),
    ]
    await context.close()
    guard.check()
