"""The WeCom test kit: the fake 微信客服 API, a running gateway with one account `kf`, and WeCom's side."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.app import create_app
from gateway.channels.wecom.adapter import WeComAdapter
from gateway.keys import RUNTIME
from gateway.runtime import Runtime
from tests.fakes.wecom_api import AES_KEY, CORP_ID, OPEN_KFID, SECRET, TOKEN, FakeWeComAPI, WeComPush
from tests.waiting import eventually

CUSTOMER = "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"
RETURN_ANSWER = "您好，在「我的订单」中找到该订单"


def account(api: FakeWeComAPI, **overrides: Any) -> dict[str, Any]:
    """The `channels.wecom[]` entry pointing at the fake."""
    return {
        "name": "kf",
        "corp_id": CORP_ID,
        "secret": SECRET,
        "token": TOKEN,
        "aes_key": AES_KEY,
        "api_base": api.url,
        **overrides,
    }


@dataclass
class WeCom:
    """A running gateway with one WeCom account `kf`, the fake API and WeCom's side of the callback."""

    client: Any
    runtime: Runtime
    push: WeComPush
    api: FakeWeComAPI

    @property
    def adapter(self) -> WeComAdapter:
        return self.runtime.adapters[("wecom", "kf")]  # type: ignore[return-value]

    async def pulled(self) -> None:
        """Wait until the pulls the callbacks asked for are done."""
        await self.adapter.puller.idle()

    async def say(self, text: str, customer: str = CUSTOMER, **kwargs: Any) -> None:
        """The customer writes; WeCom calls back; kefu pulls."""
        self.api.customer_text(customer, text, **kwargs)
        await self.push.notify()
        await self.pulled()

    async def sent(self, count: int, customer: str = CUSTOMER) -> list[dict[str, Any]]:
        async def ready() -> bool:
            return len(self.api.sent_to(customer)) >= count

        await eventually(ready)
        return self.api.sent_to(customer)

    async def messages(self, customer: str = CUSTOMER) -> list[Any]:
        convs = await self.runtime.store.conversations_for_key(f"wecom:kf:{OPEN_KFID}:{customer}")
        out = []
        for conv in convs:
            out.extend(await self.runtime.store.messages(conv.id))
        return out


@pytest.fixture
async def wecom_api(aiohttp_server: Any) -> FakeWeComAPI:
    return await FakeWeComAPI().start(aiohttp_server)


@pytest.fixture
def start(
    aiohttp_client: Any, settings_factory: Any, wecom_api: FakeWeComAPI
) -> Callable[..., Awaitable[WeCom]]:
    async def run(sections: dict[str, Any] | None = None, **overrides: Any) -> WeCom:
        settings = settings_factory(channels={"wecom": [account(wecom_api, **overrides)]}, **(sections or {}))
        app = create_app(settings)
        client = await aiohttp_client(app)
        return WeCom(client, app[RUNTIME], WeComPush(client, "/wecom/kf"), wecom_api)

    return run
