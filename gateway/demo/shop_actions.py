"""The demo shop's custom actions: plain rasa-sdk code, as a shop would write them for Rasa.

They query the fake shop API (gateway.demo.shop_api) at `KEFU_DEMO_SHOP_URL` (default
http://127.0.0.1:8091). Served in-process by kefu (`actions.modules: [gateway.demo.shop_actions]`) or by
`python -m rasa_sdk --actions gateway.demo.shop_actions` unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

TIMEOUT = aiohttp.ClientTimeout(total=2)


def shop_url() -> str:
    return os.environ.get("KEFU_DEMO_SHOP_URL", "http://127.0.0.1:8091").rstrip("/")


async def fetch_order(order_id: str) -> dict[str, Any] | None:
    """The order from the shop API; None when it does not exist (other errors raise: kefu apologises)."""
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(f"{shop_url()}/api/orders/{order_id}") as response,
    ):
        if response.status == 404:
            return None
        response.raise_for_status()
        return await response.json()


def not_found(dispatcher: CollectingDispatcher, order_id: str) -> list[dict[str, Any]]:
    dispatcher.utter_message(text=f"抱歉，没有查到订单{order_id}，请核对订单号后再发给我，或回复“转人工”。")
    return [SlotSet("order_id", None)]


class ActionLogistics(Action):
    """Where the parcel is now."""

    def name(self) -> str:
        return "action_logistics"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        order_id = tracker.get_slot("order_id")
        order = await fetch_order(order_id)
        if order is None:
            return not_found(dispatcher, order_id)
        if not order["track"]:
            dispatcher.utter_message(
                text=f"您好，订单{order_id}（{order['item']}）还未发货，{order['eta']}。"
            )
            return []
        last = order["track"][-1]
        eta = f"，{order['eta']}" if order["eta"] else ""
        dispatcher.utter_message(
            text=(
                f"您的订单{last['what']}【{last['where']}】（{last['time']}），"
                f"{order['carrier']}运单号{order['waybill']}{eta}。"
            ),
            buttons=[{"title": "催件", "payload": "催件"}, {"title": "转人工", "payload": "转人工"}],
        )
        return [SlotSet("waybill", order["waybill"])]


class ActionOrderStatus(Action):
    """The order's state in one line."""

    def name(self) -> str:
        return "action_order_status"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        order_id = tracker.get_slot("order_id")
        if not order_id:  # the console's 查询订单信息 before the customer gave an order number
            dispatcher.utter_message(text="还没有订单号：请客户提供订单号（一个字母加8位数字）后再查询。")
            return []
        order = await fetch_order(order_id)
        if order is None:
            return not_found(dispatcher, order_id)
        dispatcher.utter_message(text=f"您好，订单{order_id}（{order['item']}）当前状态：{order['status']}。")
        return []


class ActionRefundProgress(Action):
    """Where a refund stands."""

    def name(self) -> str:
        return "action_refund_progress"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list:
        order_id = tracker.get_slot("order_id")
        order = await fetch_order(order_id)
        if order is None:
            return not_found(dispatcher, order_id)
        refund = order["refund"]
        if refund is None:
            dispatcher.utter_message(
                text=f"您好，订单{order_id}暂时没有退款申请。如需退款，请在「我的订单」→「申请售后」中提交。"
            )
            return []
        dispatcher.utter_message(
            text=f"您好，订单{order_id}的退款（¥{refund['amount']}）：{refund['step']}，预计{refund['expect']}。"
        )
        return []


class ValidateOrderForm(FormValidationAction):
    """Checks an order number with the shop before an action runs on it."""

    def name(self) -> str:
        return "validate_order_form"

    async def validate_order_id(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> dict[str, Any]:
        order_id = str(value).upper()
        if await fetch_order(order_id) is None:
            dispatcher.utter_message(text=f"抱歉，没有查到订单{order_id}，请核对后重新发送。")
            return {"order_id": None}
        return {"order_id": order_id}
