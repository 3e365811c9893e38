"""A small fake shop back office (aiohttp) for the demo: orders, logistics and refunds by order number.

`make run` starts it beside the gateway (config/gateway.yaml `actions.serve_apps`) on 127.0.0.1:8091, and
the demo actions (`gateway.demo.shop_actions`) query it the way a shop's actions query its real systems.
Run alone: `python -m gateway.demo.shop_api [port]`.
"""

from __future__ import annotations

import sys
from typing import Any

from aiohttp import web

DEFAULT_PORT = 8091

ORDERS: dict[str, dict[str, Any]] = {
    "A12345678": {
        "status": "已发货",
        "item": "纯棉短袖T恤（白色 L）",
        "carrier": "顺丰速运",
        "waybill": "SF1402876539",
        "track": [
            {"time": "12-05 09:12", "where": "杭州萧山集散中心", "what": "已揽收"},
            {"time": "12-05 21:47", "where": "上海转运中心", "what": "已到达"},
        ],
        "eta": "预计明天（12-07）送达",
        "refund": None,
    },
    "B87654321": {
        "status": "待发货",
        "item": "保温杯 500ml（雾蓝）",
        "carrier": None,
        "waybill": None,
        "track": [],
        "eta": "现货商品付款后48小时内发货",
        "refund": None,
    },
    "C24681357": {
        "status": "已签收",
        "item": "蓝牙耳机",
        "carrier": "中通快递",
        "waybill": "ZT7730012846",
        "track": [{"time": "12-01 14:05", "where": "北京朝阳区", "what": "已签收"}],
        "eta": None,
        "refund": {
            "amount": "199.00",
            "step": "退款审核已通过，已原路退回，银行处理中",
            "expect": "1–5个工作日到账",
        },
    },
}


async def order(request: web.Request) -> web.Response:
    """GET /api/orders/{order_id}: the order, 404 when there is no such order."""
    found = ORDERS.get(request.match_info["order_id"].upper())
    if found is None:
        return web.json_response({"error": "not_found"}, status=404)
    return web.json_response({"order_id": request.match_info["order_id"].upper(), **found})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app() -> web.Application:
    """The fake shop API."""
    app = web.Application()
    app.router.add_get("/api/orders/{order_id}", order)
    app.router.add_get("/health", health)
    return app


if __name__ == "__main__":  # pragma: no cover - manual demo
    web.run_app(create_app(), host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_PORT)
