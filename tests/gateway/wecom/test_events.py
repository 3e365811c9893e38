"""The recorded 微信客服 items as kefu sees them: origin, customer, kind, the menu click, the keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.channels.wecom import events
from tests.fakes.wecom_api import OPEN_KFID, fixture

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CUSTOMER = "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"


def item(name: str) -> events.Item:
    read = events.read_item(fixture(name), lambda: NOW)
    assert read is not None
    return read


def test_a_customer_text_becomes_a_text_message_of_that_conversation() -> None:
    text = item("msg_text.json")
    assert (text.origin, text.external_userid, text.send_time.year) == (3, CUSTOMER, 2021)
    message = events.customer_message("kf", text, lambda _id: False)
    assert (message.kind, message.text, message.channel_msg_id) == ("text", "怎么退货", text.msgid)
    assert message.conversation_key == f"wecom:kf:{OPEN_KFID}:{CUSTOMER}"
    assert events.parse_conversation_key(message.conversation_key) == (OPEN_KFID, CUSTOMER)


@pytest.mark.parametrize(("known", "kind"), [(True, "event"), (False, "text")])
def test_a_menu_click_on_a_known_entry_is_a_click_else_plain_text(known: bool, kind: str) -> None:
    message = events.customer_message("kf", item("msg_menu_click.json"), lambda entry: known)
    assert (message.kind, message.text) == (kind, "退款多久到账")
    if known:
        assert (message.event, message.event_key) == ("click", "refund-time")


def test_events_carry_the_customer_inside_event() -> None:
    enter = item("event_enter_session.json")
    assert (enter.origin, enter.external_userid, enter.open_kfid) == (4, CUSTOMER, OPEN_KFID)
    greeting = events.enter_session_message("kf", enter)
    assert (greeting.kind, greeting.event) == ("event", "subscribe")  # with a welcome_code: greet
    staff = item("event_servicer_status_change.json")
    assert staff.external_userid == "" and staff.event["servicer_userid"] == "zhangsan"


def test_an_image_and_a_staff_message_are_labelled_for_the_history() -> None:
    image = item("msg_image.json")
    assert (events.item_kind(image), events.item_text(image)) == ("image", "[image]")
    staff = item("msg_servicer.json")
    assert staff.origin == 5 and events.item_text(staff).startswith("您好，我是客服小张")


@pytest.mark.parametrize(
    "raw",
    [
        {"origin": 3, "open_kfid": OPEN_KFID},  # no msgid
        {"msgid": "m1", "origin": 3},  # no open_kfid
        {"msgid": "m1", "origin": "x", "open_kfid": OPEN_KFID},
    ],
)
def test_items_that_cannot_be_attributed_are_refused(raw: dict[str, object]) -> None:
    assert events.read_item(raw, lambda: NOW) is None


def test_a_missing_or_absurd_send_time_falls_back_to_now() -> None:
    raw = fixture("msg_text.json") | {"send_time": "garbage"}
    assert events.read_item(raw, lambda: NOW).send_time == NOW  # type: ignore[union-attr]
    assert events.read_item(fixture("msg_text.json") | {"send_time": 0}, lambda: NOW).send_time == NOW  # type: ignore[union-attr]


@pytest.mark.parametrize("key", ["wechat:kf:a:b", "wecom:kf:a", "wecom:kf::b"])
def test_foreign_conversation_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError):
        events.parse_conversation_key(key)


def test_a_nul_character_is_dropped_from_every_field_of_an_item() -> None:
    # From a review: a servicer's message and a stale customer message are stored from the item itself, not
    # through a Message (which drops NUL): on PostgreSQL one NUL stopped the sync cursor behind it for good.
    raw = fixture("msg_text.json")
    raw = raw | {
        "msgid": raw["msgid"] + "\x00",
        "text": {"content": "怎么\x00退货"},
        "servicer_userid": "zhang\x00san",
    }
    read = events.read_item(raw, lambda: NOW)
    assert read is not None and "\x00" not in read.msgid
    assert events.item_text(read) == "怎么退货" and read.raw["servicer_userid"] == "zhangsan"
