"""The one internal message type keeps nothing a database refuses (every channel builds one)."""

from __future__ import annotations

from gateway.message import Attachment, Message


def test_a_nul_character_is_dropped_from_every_text_of_a_message() -> None:
    message = Message(
        channel="qqbot",
        account="bot",
        conversation_key="qqbot:bot:c2c:u\x001",
        user_id="u\x001",
        text="我的\x00订单",
        channel_msg_id="m\x00",
        user_name="小\x00王",
        group_id="g\x00",
        event="e\x00",
        event_key="k\x00",
        attachment=Attachment(kind="file", name="发票\x00.pdf"),
    )
    assert (message.text, message.user_name, message.user_id, message.conversation_key) == (
        "我的订单",
        "小王",
        "u1",
        "qqbot:bot:c2c:u1",
    )
    assert (message.channel_msg_id, message.group_id, message.event, message.event_key) == (
        "m",
        "g",
        "e",
        "k",
    )
    assert message.attachment is not None and message.attachment.name == "发票.pdf"
    plain = Message(channel="web", account="web", conversation_key="web:web:u", user_id="u", text="你好")
    assert plain.text == "你好" and plain.user_name is None
