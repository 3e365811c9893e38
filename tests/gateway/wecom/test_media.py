"""WeCom 微信客服 pictures over real HTTP against the fake API (SQLite and PostgreSQL): a customer's image item
opens in the console (media/get on the first view), and an agent's picture or PDF goes out as temporary
media + kf/send_msg image / file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.fakes.wecom_api import OPEN_KFID, fixture
from tests.gateway.test_agent_api import make_agent
from tests.gateway.test_handoff_flow import handoff_section
from tests.gateway.test_media import PDF, form, png
from tests.gateway.wecom.conftest import CUSTOMER
from tests.waiting import eventually

KEY = f"wecom:kf:{OPEN_KFID}:{CUSTOMER}"


async def test_pictures_both_ways_through_wecom(start: Any, tmp_path: Path) -> None:
    wecom = await start(
        {"handoff": handoff_section(assignment="manual"), "uploads": {"dir": str(tmp_path / "uploads")}}
    )
    await wecom.say("我要投诉")
    # The apology and the 留言 notice reach the customer before they send the picture: WeCom counts at most
    # 5 messages after a customer's latest one, and these two arriving late would count against the picture's.
    await wecom.sent(2)
    picture = png(rgb=(5, 80, 200))
    wecom.api.media["CUSTOMER-MEDIA"] = (picture, "image/jpeg")
    item = fixture("msg_text.json") | {
        "msgid": "img-1",
        "external_userid": CUSTOMER,
        "send_time": int(time.time()),
        "msgtype": "image",
        "image": {"media_id": "CUSTOMER-MEDIA"},
    }
    item.pop("text", None)
    wecom.api.add(item)
    await wecom.push.notify()
    await wecom.pulled()

    agent = await make_agent(wecom.client, "小周")
    [conversation] = await wecom.runtime.store.conversations_for_key(KEY)
    await agent.call("POST", f"/conversations/{conversation.id}/claim")
    detail = await agent.call("GET", f"/conversations/{conversation.id}")
    [image] = [m for m in detail["messages"] if m["kind"] == "image"]
    assert image["text"] == "[图片]"
    assert await (await wecom.client.get(image["attachment"]["url"])).read() == picture

    answer = png(rgb=(250, 250, 0))
    for data, name, mime in ((answer, "a.png", "image/png"), (PDF, "说明.pdf", "application/pdf")):
        resp = await wecom.client.post(
            f"/api/v1/conversations/{conversation.id}/attachments",
            data=form(data, name, content_type=mime),
            headers=agent.headers,
        )
        assert resp.status == 201, await resp.text()

    async def both_sent() -> bool:
        return len([m for m in wecom.api.sent_to(CUSTOMER) if m["msgtype"] in ("image", "file")]) == 2

    await eventually(both_sent)
    sent = [m for m in wecom.api.sent_to(CUSTOMER) if m["msgtype"] in ("image", "file")]
    assert [m["msgtype"] for m in sent] == ["image", "file"]
    assert wecom.api.media[sent[0]["image"]["media_id"]][0] == answer
    assert wecom.api.media[sent[1]["file"]["media_id"]][0] == PDF
