"""Pictures from and to the platforms over real HTTP, against our fake WeChat and OneBot servers (SQLite and
PostgreSQL): a customer's WeChat or QQ picture opens in the console (fetched from the platform on first
view, then kept), subscribe/CLICK events are lines rather than empty bubbles, and an agent's picture reaches
WeChat (temporary media + 客服消息 image) and QQ (CQ:image); a file WeChat cannot carry is undeliverable
with the reason."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chaos.gateway import free_port
from gateway.app import create_app
from gateway.keys import RUNTIME
from gateway.runtime import Runtime
from tests.fakes.onebot import ACCESS_TOKEN, CUSTOMER_QQ, SECRET, FakeOneBotHTTP, load_event, post_event
from tests.fakes.qqbot_api import APPID as QQ_APPID
from tests.fakes.qqbot_api import SECRET as QQ_SECRET
from tests.fakes.qqbot_api import FakeQQBotAPI, QQPush, load_payload
from tests.fakes.wechat_api import APPID, FakeWeChatAPI, WeChatPush, fixture_xml
from tests.fakes.wechat_api import SECRET as WECHAT_SECRET
from tests.gateway.test_agent_api import make_agent
from tests.gateway.test_handoff_flow import Console, handoff_section
from tests.gateway.test_media import PDF, form, png
from tests.gateway.test_wechat import OPENID, TOKEN, new_msg_id
from tests.waiting import eventually

WECHAT_KEY = f"wechat:shop:{OPENID}"
QQ_KEY = f"qq:qqshop:private:{CUSTOMER_QQ}"


@dataclass
class Kefu:
    client: Any
    runtime: Runtime
    wechat: FakeWeChatAPI
    onebot: FakeOneBotHTTP
    push: WeChatPush


@pytest.fixture
async def kefu(aiohttp_client: Any, aiohttp_server: Any, settings_factory: Any, tmp_path: Path) -> Kefu:
    wechat = await FakeWeChatAPI().start(aiohttp_server)
    onebot = await FakeOneBotHTTP().start(aiohttp_server)
    settings = settings_factory(
        handoff=handoff_section(assignment="manual"),
        uploads={"dir": str(tmp_path / "uploads")},
        channels={
            "web": {"enabled": True},
            "wechat": [
                {
                    "name": "shop",
                    "token": TOKEN,
                    "appid": APPID,
                    "secret": WECHAT_SECRET,
                    "api_base": wechat.url,
                }
            ],
            "onebot": [
                {"name": "qqshop", "secret": SECRET, "access_token": ACCESS_TOKEN, "api_url": onebot.url}
            ],
        },
    )
    app = create_app(settings)
    client = await aiohttp_client(app)
    return Kefu(client, app[RUNTIME], wechat, onebot, WeChatPush(client, "/wechat/shop", TOKEN))


async def wechat_says(kefu: Kefu, xml: str) -> None:
    status, text, _ = await kefu.push.post(xml)
    assert status == 200, text


async def claimed(kefu: Kefu, key: str) -> tuple[Console, int]:
    """An agent claims the conversation of `key` (queued by a complaint)."""
    agent = await make_agent(kefu.client, "小李")
    [conversation] = await kefu.runtime.store.conversations_for_key(key)
    await agent.call("POST", f"/conversations/{conversation.id}/claim")
    return agent, conversation.id


async def console_messages(agent: Console, cid: int) -> list[dict[str, Any]]:
    return (await agent.call("GET", f"/conversations/{cid}"))["messages"]


async def test_a_wechat_picture_shows_in_the_console_and_is_kept_after_the_first_view(kefu: Kefu) -> None:
    picture = png(rgb=(200, 30, 30))
    kefu.wechat.pictures["p1"] = picture
    await wechat_says(kefu, fixture_xml("text.xml", Content="我要投诉，收到的东西坏了", MsgId=new_msg_id()))
    xml = fixture_xml("image.xml", PicUrl=f"{kefu.wechat.url}/pic/p1", MsgId=new_msg_id())
    await wechat_says(kefu, xml)
    agent, cid = await claimed(kefu, WECHAT_KEY)

    [image] = [m for m in await console_messages(agent, cid) if m["kind"] == "image"]
    assert image["text"] == "[图片]" and image["attachment"]["kind"] == "image"
    first = await kefu.client.get(image["attachment"]["url"])
    assert first.status == 200 and await first.read() == picture
    assert first.headers["Content-Type"] == "image/png"  # what the bytes are, not what WeChat claimed

    # PicUrl expires after a while: the kept copy is served from then on.
    kefu.wechat.pictures.clear()
    [image] = [m for m in await console_messages(agent, cid) if m["kind"] == "image"]
    assert await (await kefu.client.get(image["attachment"]["url"])).read() == picture


async def test_without_a_working_pic_url_the_picture_comes_from_media_get(kefu: Kefu) -> None:
    picture = png(rgb=(10, 10, 10))
    kefu.wechat.media["MEDIA-CUSTOMER-1"] = (picture, "image/jpeg")
    await wechat_says(kefu, fixture_xml("text.xml", Content="我要投诉", MsgId=new_msg_id()))
    xml = fixture_xml(
        "image.xml", PicUrl=f"{kefu.wechat.url}/pic/gone", MediaId="MEDIA-CUSTOMER-1", MsgId=new_msg_id()
    )
    await wechat_says(kefu, xml)
    agent, cid = await claimed(kefu, WECHAT_KEY)
    [image] = [m for m in await console_messages(agent, cid) if m["kind"] == "image"]
    assert await (await kefu.client.get(image["attachment"]["url"])).read() == picture

    # A picture the platform no longer has: 502 with a Chinese explanation, never a 5xx crash page.
    await wechat_says(
        kefu, fixture_xml("image.xml", PicUrl=f"{kefu.wechat.url}/pic/x", MediaId="nope", MsgId=new_msg_id())
    )
    lost = [m for m in await console_messages(agent, cid) if m["kind"] == "image"][-1]
    resp = await kefu.client.get(lost["attachment"]["url"])
    assert resp.status == 502 and "暂时无法" in (await resp.json())["error"]


async def test_subscribe_and_menu_clicks_are_events_with_words_not_empty_bubbles(kefu: Kefu) -> None:
    await wechat_says(kefu, fixture_xml("subscribe.xml", CreateTime=int(time.time())))
    await wechat_says(kefu, fixture_xml("click.xml", CreateTime=int(time.time()) + 1))
    inbound = await kefu.runtime.store.messages_for_key(WECHAT_KEY, direction="in")
    assert [(m.kind, m.text.split("：")[0]) for m in inbound] == [
        ("event", "关注了公众号"),
        ("event", "点击了菜单"),
    ]
    replies = await kefu.runtime.store.messages_for_key(WECHAT_KEY, direction="out")
    assert replies[0].text.startswith("欢迎光临")  # subscribe → the welcome


async def test_an_agent_sends_a_picture_to_wechat_as_temporary_media(kefu: Kefu) -> None:
    await wechat_says(kefu, fixture_xml("text.xml", Content="我要投诉", MsgId=new_msg_id()))
    agent, cid = await claimed(kefu, WECHAT_KEY)
    picture = png(rgb=(0, 128, 0))
    sent = await kefu.client.post(
        f"/api/v1/conversations/{cid}/attachments", data=form(picture, "示意图.png"), headers=agent.headers
    )
    assert sent.status == 201, await sent.text()

    async def delivered() -> bool:
        return kefu.wechat.images_to(OPENID) == [picture]

    await eventually(delivered)
    [image] = [m for m in await console_messages(agent, cid) if m["kind"] == "image"]
    assert image["delivery"]["status"] == "sent"

    # WeChat's 客服消息 cannot carry a PDF: undeliverable, and the console says why.
    sent = await kefu.client.post(
        f"/api/v1/conversations/{cid}/attachments",
        data=form(PDF, "发票.pdf", content_type="application/pdf"),
        headers=agent.headers,
    )
    assert sent.status == 201

    async def refused() -> bool:
        [doc] = [m for m in await console_messages(agent, cid) if m["kind"] == "file"]
        return doc["delivery"] is not None and doc["delivery"]["status"] == "undeliverable"

    await eventually(refused)
    [doc] = [m for m in await console_messages(agent, cid) if m["kind"] == "file"]
    assert "不能发送文件" in doc["delivery"]["reason"]


async def test_a_qq_picture_shows_in_the_console_and_an_agent_answers_with_cq_image(kefu: Kefu) -> None:
    picture = png(rgb=(1, 2, 3))
    kefu.onebot.pictures["abc.png"] = picture
    complaint = load_event("private.json", message=[{"type": "text", "data": {"text": "我要投诉"}}])
    assert (await post_event(kefu.client, "/onebot/qqshop", complaint)).status in (200, 204)
    url = f"{kefu.onebot.url}/images/abc.png"
    image = load_event("private.json", message=[{"type": "image", "data": {"file": "abc.png", "url": url}}])
    assert (await post_event(kefu.client, "/onebot/qqshop", image)).status in (200, 204)
    agent, cid = await claimed(kefu, QQ_KEY)
    [shown] = [m for m in await console_messages(agent, cid) if m["kind"] == "image"]
    assert await (await kefu.client.get(shown["attachment"]["url"])).read() == picture

    reply = png(rgb=(9, 9, 9))
    resp = await kefu.client.post(
        f"/api/v1/conversations/{cid}/attachments", data=form(reply, "a.png"), headers=agent.headers
    )
    assert resp.status == 201

    async def sent_picture() -> bool:
        return any(
            "[CQ:image,file=base64://" in m["message"] for m in kefu.onebot.messages("send_private_msg")
        )

    await eventually(sent_picture)


async def test_an_agent_without_the_conversation_cannot_attach(kefu: Kefu) -> None:
    await wechat_says(kefu, fixture_xml("text.xml", Content="我要投诉", MsgId=new_msg_id()))
    _agent, cid = await claimed(kefu, WECHAT_KEY)
    other = await make_agent(kefu.client, "小赵")
    resp = await kefu.client.post(
        f"/api/v1/conversations/{cid}/attachments", data=form(png(), "a.png"), headers=other.headers
    )
    assert resp.status == 403
    assert (
        await kefu.client.post(f"/api/v1/conversations/{cid}/attachments", data=aiohttp.FormData())
    ).status == 401


async def _qq_bot_kefu(
    aiohttp_client: Any, aiohttp_server: Any, settings_factory: Any, tmp_path: Path, *, public: bool
) -> tuple[FakeQQBotAPI, Any, Any, Any]:
    """kefu with a QQ bot account; its customer sent a complaint and a picture, an agent claimed them.
    (the fake QQ API, the test client, the agent, the conversation)"""
    qq = await FakeQQBotAPI().start(aiohttp_server)
    account = {
        "name": "qqbot",
        "appid": QQ_APPID,
        "secret": QQ_SECRET,
        "api_base": qq.url,
        "token_url": qq.token_url,
    }
    port = free_port()
    settings = settings_factory(
        server={"public_url": f"http://127.0.0.1:{port}" if public else None},
        handoff=handoff_section(assignment="manual"),
        uploads={"dir": str(tmp_path / "uploads")},
        channels={"web": {"enabled": True}, "qqbot": [account]},
    )
    app = create_app(settings)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    push = QQPush(client, "/qqbot/qqbot")
    qq.pictures["p.png"] = png(rgb=(120, 0, 120))
    attachment = {"content_type": "image/png", "filename": "p.png", "url": f"{qq.url}/qqmedia/p.png"}
    for d in ({"content": "我要投诉"}, {"content": " ", "attachments": [attachment]}):
        resp = await push.post(load_payload("c2c_message.json", **d))
        assert resp.status == 200, await resp.text()
    key = "qq:qqbot:private:E4F4AEA33253A2797FB897C50B81D7ED"
    agent = await make_agent(client, "小钱")
    [conversation] = await app[RUNTIME].store.conversations_for_key(key)
    await agent.call("POST", f"/conversations/{conversation.id}/claim")
    return qq, client, agent, conversation


async def _agent_sends_picture(client: Any, agent: Any, conversation: Any, picture: bytes) -> dict[str, Any]:
    """The agent's picture reply, once its delivery settled (sent or undeliverable)."""
    resp = await client.post(
        f"/api/v1/conversations/{conversation.id}/attachments",
        data=form(picture, "a.png"),
        headers=agent.headers,
    )
    assert resp.status == 201

    async def settled() -> bool:
        mine = [m for m in await console_messages(agent, conversation.id) if m["sender"] == "agent"]
        return bool(mine) and (mine[-1]["delivery"] or {}).get("status") in ("sent", "undeliverable")

    await eventually(settled)
    return [m for m in await console_messages(agent, conversation.id) if m["sender"] == "agent"][-1]


@pytest.mark.parametrize("public", [True, False])
async def test_a_qq_bot_customers_picture_shows_and_a_reply_picture_goes_by_rich_media(
    aiohttp_client: Any, aiohttp_server: Any, settings_factory: Any, tmp_path: Path, public: bool
) -> None:
    qq, client, agent, conversation = await _qq_bot_kefu(
        aiohttp_client, aiohttp_server, settings_factory, tmp_path, public=public
    )
    [image] = [m for m in await console_messages(agent, conversation.id) if m["kind"] == "image"]
    assert image["attachment"]["name"] == "p.png"
    assert await (await client.get(image["attachment"]["url"])).read() == qq.pictures["p.png"]

    reply = png(rgb=(1, 99, 1))
    mine = await _agent_sends_picture(client, agent, conversation, reply)
    if public:  # QQ downloaded our signed URL and the message went as msg_type 7
        assert mine["delivery"]["status"] == "sent"
        [sent] = [m for m in qq.messages if m.get("msg_type") == 7]
        assert qq.uploads[sent["media"]["file_info"]] == reply
    else:
        assert mine["delivery"]["status"] == "undeliverable"
        assert "server.public_url" in mine["delivery"]["reason"]


async def test_a_qq_bot_upload_whose_answer_was_lost_is_retried_and_not_counted_as_a_possible_double(
    aiohttp_client: Any, aiohttp_server: Any, settings_factory: Any, tmp_path: Path
) -> None:
    # /files with srv_send_msg false shows the customer nothing: uploading twice cannot show the picture
    # twice, so only the message send (msg_type 7) counts as a possible double.
    qq, client, agent, conversation = await _qq_bot_kefu(
        aiohttp_client, aiohttp_server, settings_factory, tmp_path, public=True
    )
    qq.drop_uploads = 1
    reply = png(rgb=(5, 6, 7))
    mine = await _agent_sends_picture(client, agent, conversation, reply)
    assert mine["delivery"]["status"] == "sent"
    assert len(qq.uploads) == 2  # the dropped upload, then the retry's
    assert [m["media"]["file_info"] for m in qq.messages if m.get("msg_type") == 7] == ["FILEINFO-2"]
    metrics = await (await client.get("/metrics")).text()
    assert "kefu_outbox_possible_doubles_total{" not in metrics
