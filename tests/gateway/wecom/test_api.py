"""The WeCom API client against the fake over real HTTP: the shared token, errcodes, long texts."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from gateway.channels.base import Outgoing, SendError
from gateway.channels.wecom.api import WeComAPI, classify_errcode
from tests.fakes.wecom_api import CORP_ID, OPEN_KFID, SECRET, FakeWeComAPI
from tests.gateway.wecom.conftest import CUSTOMER


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_concurrent_calls_share_one_token_fetch(wecom_api: FakeWeComAPI, session: Any) -> None:
    wecom_api.token_latency_s = 0.05
    api = WeComAPI(session, CORP_ID, SECRET, api_base=wecom_api.url)
    await asyncio.gather(*(api.service_state(OPEN_KFID, f"wm{i}") for i in range(8)))
    assert wecom_api.token_fetches == 1


async def test_a_refused_gettoken_names_the_errcode_and_never_the_secret(
    wecom_api: FakeWeComAPI, session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api = WeComAPI(session, CORP_ID, "wrong-secret-value", api_base=wecom_api.url)
    with caplog.at_level(logging.INFO), pytest.raises(SendError) as raised:
        await api.service_state(OPEN_KFID, CUSTOMER)
    assert raised.value.retryable and "40001" in raised.value.reason
    assert "wrong-secret-value" not in caplog.text + raised.value.reason
    assert "allow-list" in caplog.text  # the operator is told where to look


def test_errcodes_map_to_undeliverable_or_retry() -> None:
    assert not classify_errcode(95001, "msg count exceed").retryable
    assert not classify_errcode(95002, "").retryable
    assert not classify_errcode(95999, "new code").retryable  # 微信客服's family: refused for good
    assert classify_errcode(-1, "busy").retryable
    assert classify_errcode(45009, "api freq out of limit").retryable


async def test_a_long_text_goes_out_in_pieces_and_a_retry_skips_the_sent_ones(start: Any) -> None:
    kefu = await start()
    kefu.api.customer_text(CUSTOMER, "怎么退货")  # opens the quota for this customer
    adapter = kefu.adapter
    text = "\n\n".join(["退货说明：" + "请保持商品完好。" * 60] * 3)  # ~4.5 KB: three pieces
    outgoing = Outgoing("wecom", "kf", f"wecom:kf:{OPEN_KFID}:{CUSTOMER}", text, outbox_id=41)
    kefu.api.fail_next(-1, times=1)  # fails the first piece once
    with pytest.raises(SendError):
        await adapter.send(outgoing)
    await adapter.send(outgoing)
    sent = kefu.api.sent_to(CUSTOMER)
    assert len(sent) == 3 and "".join(m["text"]["content"] for m in sent).count("退货说明") == 3
    assert [m["msgid"].rsplit("-", 1)[1] for m in sent] == ["0", "1", "2"]
    # The outbox retries the whole row after a failure in the middle: piece 0 is not sent twice.
    second = Outgoing("wecom", "kf", outgoing.conversation_key, text + "。", outbox_id=42)
    kefu.api.customer_text(CUSTOMER, "再问一次")
    kefu.api.fail_next(-1, after=1)  # the first attempt's piece 0 passes, piece 1 fails
    with pytest.raises(SendError):
        await adapter.send(second)
    await adapter.send(second)
    pieces = [m["msgid"] for m in kefu.api.sent_to(CUSTOMER)[3:]]
    assert [p.rsplit("-", 1)[1] for p in pieces] == ["0", "1", "2"]
