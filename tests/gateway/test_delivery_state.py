"""Issue 17 item 2 over real HTTP on SQLite and PostgreSQL: every outgoing message's delivery state in the
agent API, and a `message.delivery` event on the agent WebSocket when the outbox sent it or gave up."""

from __future__ import annotations

from typing import Any

from gateway.delivery_state import delivery_view
from tests.gateway.test_handoff_flow import OPENID, next_event, start, wechat_api  # noqa: F401 (fixtures)


async def delivery_of(ws: Any, conversation_id: int, message_id: int) -> dict[str, Any]:
    """The next `message.delivery` event of one message (the notices' own events are skipped)."""
    while True:
        event = await next_event(ws, "message.delivery", conversation_id=conversation_id)
        if event["data"]["message_id"] == message_id:
            return event


def test_the_view_of_each_outbox_status() -> None:
    assert delivery_view(None, None) == {
        "state": "sent",
        "status": None,
        "reason": None,
        "reason_text": None,
        "retry": False,
    }
    assert delivery_view("held", None)["state"] == delivery_view("sending", None)["state"] == "queued"
    assert delivery_view("cancelled", None)["state"] == "sent"  # the passive reply carried it
    window = delivery_view("undeliverable", "超出48小时回复窗口 / reply window closed (45015): …")
    assert window["state"] == "undeliverable" and window["retry"]
    assert window["reason_text"].startswith("超出 48 小时回复窗口")
    config = delivery_view("undeliverable", "channels.wechat[demo].secret is not set: 客服消息 …")
    assert config["reason_text"].startswith("未配置公众号 AppSecret") and not config["retry"]
    failed = delivery_view("failed", "WeChat API HTTP 503 (gave up after 1 day)")
    assert failed["state"] == "failed" and failed["retry"] and "多次重试仍未发出" in failed["reason_text"]
    assert delivery_view("undeliverable", "QQ said no")["reason_text"] == "平台拒收：QQ said no"


async def test_the_outbox_result_reaches_the_api_and_the_console_live(start: Any) -> None:  # noqa: F811
    kefu = await start(assignment="manual")
    wang = await kefu.agent("小王", "售前")
    ws = await wang.ws()
    await kefu.say("转人工")
    conv = await kefu.conversation()
    await wang.call("POST", f"/conversations/{conv.id}/claim")
    await kefu.texts(2)
    kefu.api.closed_windows.add(OPENID)

    sent = await wang.call("POST", f"/conversations/{conv.id}/messages", json={"text": "您好"}, expect=201)
    event = await delivery_of(ws, conv.id, sent["message_id"])
    assert event["data"]["delivery"]["state"] == "undeliverable"
    assert "48 小时" in event["data"]["delivery"]["reason_text"]
    detail = await wang.call("GET", f"/conversations/{conv.id}")
    by_sender = {m["sender"]: m["delivery"] for m in detail["messages"]}
    assert by_sender["customer"] is None  # inbound: no delivery
    assert by_sender["bot"]["state"] == "sent" and by_sender["system"]["state"] == "sent"
    assert by_sender["agent"]["state"] == "undeliverable"

    # Resent after the customer wrote again: queued, then sent, each pushed to the console.
    kefu.api.closed_windows.discard(OPENID)
    retry = f"/conversations/{conv.id}/messages/{sent['message_id']}/retry"
    resent = await wang.call("POST", retry)
    assert resent["delivery"]["state"] == "queued"
    event = await delivery_of(ws, conv.id, sent["message_id"])
    assert event["data"]["delivery"]["state"] == "queued"
    event = await delivery_of(ws, conv.id, sent["message_id"])
    assert event["data"]["delivery"]["state"] == "sent"
    assert "您好" in await kefu.texts(3)
    await wang.call("POST", retry, expect=409)  # sent: nothing to resend
    other = await kefu.agent("小李", "售前")
    await other.call("POST", retry, expect=403)
    await ws.close()
