"""What the agent sees about an outgoing message: its delivery state and, when it did not arrive, why.

One view of an outbox row (gateway/jobs/outbox.py keeps the rows): `queued` (waiting, being sent or
retried), `sent`, `failed` (the retries ran out; the slow schedule keeps trying) or `undeliverable` (the
platform said no, e.g. WeChat's 48-hour window), with the reason as the platform gave it and in Chinese
for the console, and whether the agent may send it again. A message without a row was delivered in the
webhook's own answer (or the channel answers inline): sent.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DELIVERY_STATES", "delivery_view", "reason_text"]

DELIVERY_STATES = ("queued", "sent", "failed", "undeliverable")
_STATE = {
    "held": "queued",
    "pending": "queued",
    "sending": "queued",
    "sent": "sent",
    "cancelled": "sent",  # a held row cancelled because the passive reply carried the text
    "failed": "failed",
    "undeliverable": "undeliverable",
}
# Reasons no resend can fix: the deployment must change something first.
_CONFIG_PROBLEMS = re.compile(r"secret is not set|no adapter for|invalid openid|40003|43004|48001|95004")
_CJK = re.compile(r"[\u4e00-\u9fff]")
# Known reasons, as an agent should read them.
_KNOWN: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"secret is not set"),
        "未配置公众号 AppSecret，无法通过客服消息接口发送（请管理员配置 channels.wechat 的 secret）",
    ),
    (re.compile(r"no adapter for"), "该渠道未配置或已停用，无法发送"),
    (
        re.compile(r"45015|95002"),
        "超出 48 小时回复窗口：客户 48 小时内没有发过消息，平台不允许主动发送；客户再次发消息后可重试",
    ),
    (
        re.compile(r"45047|95001"),
        "回复条数已达上限：客户每发一条消息，最多可回复 5 条；客户再次发消息后可重试",
    ),
    (re.compile(r"HTTP 5\d\d|TimeoutError|ClientConnectorError|system busy"), "平台暂时无法访问"),
)


def reason_text(reason: str | None) -> str | None:
    """The reason in Chinese for the console: a known one explained, else the platform's own Chinese part."""
    if not reason:
        return None
    for pattern, text in _KNOWN:
        if pattern.search(reason):
            return text
    head = reason.split(" / ", 1)[0].strip()
    return head if _CJK.search(head) else f"平台拒收：{reason}"


def delivery_view(status: str | None, error: str | None) -> dict[str, Any]:
    """The `delivery` of a message in the agent API and its WebSocket events (status None: no outbox row)."""
    state = _STATE.get(status or "sent", "queued")
    reason = error if state != "sent" else None
    text = reason_text(reason)
    if state == "failed" and text is not None:
        text = f"多次重试仍未发出（{text}），系统会继续重试"
    return {
        "state": state,
        "status": status,
        "reason": reason,
        "reason_text": text,
        "retry": state in ("failed", "undeliverable") and not _CONFIG_PROBLEMS.search(error or ""),
    }
