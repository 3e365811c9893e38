"""Slots and forms as pure functions: extraction, the backtracking guard, form progress and leaving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from intents import forms
from kb.model import FaqEntry, SlotSpec
from kb.slots import slot_problem

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
ORDER = SlotSpec("order_id", regex="[A-Z][0-9]{8}", ask="您好，请告诉我您的订单号。", ttl_minutes=30)
PHONE = SlotSpec("phone", regex=r"1[3-9]\d{9}", ask="请告诉我下单手机号。")
SPECS = {"order_id": ORDER, "phone": PHONE}
TRACK = FaqEntry("track", "我的快递到哪了", "", action="action_order_status", required_slots=("order_id",))
REFUND = FaqEntry(
    "refund",
    "退款到哪一步了",
    "",
    action="action_refund",
    required_slots=("order_id", "phone"),
    form="refund_form",
)
HOURS = FaqEntry("hours", "几点上班", "您好，客服时间每天9:00–21:00。")


def test_extract_takes_the_regex_match_or_a_listed_value() -> None:
    assert forms.extract("订单号是A12345678，谢谢", ORDER) == "A12345678"
    assert forms.extract("我不记得了", ORDER) is None
    carrier = SlotSpec("carrier", values=("顺丰", "圆通"))
    assert forms.extract("发的圆通吗", carrier) == "圆通"


def test_nested_quantifiers_are_refused_and_a_10kb_message_is_handled() -> None:
    assert slot_problem("[A-Z][0-9]{8}") is None
    assert "nests an unbounded repeat" in (slot_problem("(a+)+$") or "")
    assert "nests an unbounded repeat" in (slot_problem(r"(\w+\s?)*#") or "")
    assert "does not compile" in (slot_problem("([A-Z]") or "")
    # A refused pattern never runs; an accepted one only sees the head of a long message.
    assert forms.extract("a" * 10_000 + "!", SlotSpec("x", regex="(a+)+$")) is None
    assert forms.extract("A" * 10_000 + "A12345678", ORDER) is None  # beyond the scanned head
    assert forms.extract("A12345678" + "x" * 10_000, ORDER) == "A12345678"


def test_ttl_forgets_old_slots() -> None:
    slots = {
        "order_id": forms.SlotValue("A12345678", NOW - timedelta(minutes=31)),
        "phone": forms.SlotValue("13800000000", NOW - timedelta(days=3)),
    }
    assert set(forms.live_slots(slots, SPECS, NOW)) == {"phone"}


def test_a_question_with_its_slot_runs_at_once() -> None:
    step = forms.step(None, forms.Turn("A12345678 到哪了", TRACK), SPECS, {}, NOW)
    assert (step.kind, step.action, dict(step.filled)) == (
        "run",
        "action_order_status",
        {"order_id": "A12345678"},
    )


def test_a_form_asks_each_missing_slot_then_runs() -> None:
    first = forms.step(None, forms.Turn("退款到哪一步了", REFUND), SPECS, {}, NOW)
    assert (first.kind, first.asked, first.text) == ("ask", "order_id", ORDER.ask)
    assert first.form is not None and first.form.form == "refund_form"
    second = forms.step(first.form, forms.Turn("A12345678"), SPECS, first.slots, NOW)
    assert (second.kind, second.asked, second.text) == ("ask", "phone", PHONE.ask)
    third = forms.step(second.form, forms.Turn("13912345678"), SPECS, second.slots, NOW)
    assert third.kind == "run" and third.form is None
    assert {k: v.value for k, v in third.slots.items()} == {"order_id": "A12345678", "phone": "13912345678"}


def test_a_known_slot_is_not_asked_again() -> None:
    known = {"order_id": forms.SlotValue("A12345678", NOW)}
    assert forms.step(None, forms.Turn("我的快递到哪了", TRACK), SPECS, known, NOW).kind == "run"


def test_leaving_a_form() -> None:
    asked = forms.step(None, forms.Turn("我的快递到哪了", TRACK), SPECS, {}, NOW)
    cancelled = forms.step(asked.form, forms.Turn("取消"), SPECS, {}, NOW)
    assert (cancelled.kind, cancelled.form, cancelled.form_changed) == ("cancelled", None, True)
    human = forms.step(asked.form, forms.Turn("转人工", wants_human=True), SPECS, {}, NOW)
    assert (human.kind, human.form, human.form_changed) == ("pass", None, True)
    other = forms.step(asked.form, forms.Turn("几点上班", HOURS), SPECS, {}, NOW)
    assert (other.kind, other.form_changed) == ("pass", True)
    switch = forms.step(asked.form, forms.Turn("退款到哪一步了", REFUND), SPECS, {}, NOW)
    assert (switch.kind, switch.entry_id, switch.asked) == ("ask", "refund", "order_id")


def test_a_wrong_answer_is_asked_again_then_given_up() -> None:
    asked = forms.step(None, forms.Turn("我的快递到哪了", TRACK), SPECS, {}, NOW)
    again = forms.step(asked.form, forms.Turn("我忘了"), SPECS, {}, NOW)
    assert again.kind == "ask" and again.text == forms.FORM_REPLIES["form_retry"] + ORDER.ask
    assert again.form is not None and again.form.retries == 1
    twice = forms.step(again.form, forms.Turn("真的忘了"), SPECS, {}, NOW)
    assert twice.kind == "ask"
    gave_up = forms.step(twice.form, forms.Turn("不知道啊"), SPECS, {}, NOW)
    assert gave_up.kind == "gave_up" and "转人工" in (gave_up.text or "")
