"""The `api-outage` scenario: WeChat's 客服消息 API fails for 10 minutes of *simulated* time.

A real gateway app (its own SQLite file, the WeChat adapter, the outbox with the default retry settings:
`outbox.max_attempts` 8, backoff 1 s … 300 s, `outbox.failed_retry_s` 600 s, `outbox.give_up_after` 24 h)
sends to a fake 客服消息 API over real HTTP. The outbox runs on a simulated clock: each step advances it
`STEP_S` and lets the worker send whatever is due. Rows are enqueued for `CUSTOMERS` customers, one each
per simulated minute during the outage; for `OUTAGE_S` the API answers in turn HTTP 500, hangs past the
client's timeout, errcode -1 (system busy) and 45009 (rate limited); then it recovers. The run goes on
until every row is sent (or two simulated hours pass).

Counted: lost (a row never accepted by the API), doubled (a text accepted twice), never_answered
(customers missing a text), and, as extras, sends out of their conversation's order and the attempts.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from chaos.gateway import ROOT, free_port
from chaos.harness import Options, Result, scenario
from gateway.app import create_app
from gateway.channels.base import Outgoing
from gateway.channels.wechat.api import AccessTokenManager, CustomerServiceSender
from gateway.jobs.outbox import Outbox
from gateway.keys import RUNTIME
from gateway.message import utcnow
from gateway.settings import settings_from_mapping
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatAPI

OUTAGE_S = 600.0
STEP_S = 5.0
LIMIT_S = 7200.0
CUSTOMERS = 20
CLIENT_TIMEOUT_S = 0.3  # a "hang" is an answer slower than this (real time: the sends are real HTTP)
HANG_S = 0.6
FAILURES = ("status", "hang", "busy", "rate")


@dataclass
class SimClock:
    """The outbox's clock: starts now, moves only when the scenario says."""

    now_at: datetime = field(default_factory=utcnow)
    elapsed_s: float = 0.0

    def __call__(self) -> datetime:
        return self.now_at + timedelta(seconds=self.elapsed_s)

    def advance(self, seconds: float) -> None:
        self.elapsed_s += seconds


@dataclass
class FlakyWeChatAPI(FakeWeChatAPI):
    """The fake 客服消息 API, failing every send in turn (500, hang, -1, 45009) while the outage lasts."""

    clock: SimClock = field(default_factory=SimClock)
    outage_s: float = OUTAGE_S
    failures: Counter[str] = field(default_factory=Counter)
    _turn: int = 0

    async def _send(self, request: web.Request) -> web.Response:
        if self.clock.elapsed_s < self.outage_s:
            kind = FAILURES[self._turn % len(FAILURES)]
            self._turn += 1
            self.failures[kind] += 1
            await request.read()
            if kind == "status":
                return web.Response(status=500, text="upstream error")
            if kind == "hang":
                await asyncio.sleep(HANG_S)
                return web.Response(status=504, text="too late")
            errcode = -1 if kind == "busy" else 45009
            return web.json_response({"errcode": errcode, "errmsg": f"fake outage {errcode}"})
        return await super()._send(request)


async def run_outage(options: Options, *, customers: int = CUSTOMERS, outage_s: float = OUTAGE_S) -> Result:
    """The scenario; `customers` and `outage_s` shrink it for the short form in tests/chaos."""
    result = Result()
    clock = SimClock()
    api = FlakyWeChatAPI(clock=clock, outage_s=outage_s)
    api_runner = web.AppRunner(api.app(), access_log=None)
    await api_runner.setup()
    port = free_port()
    await web.TCPSite(api_runner, "127.0.0.1", port).start()
    api.url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="kefu-chaos-outage-") as tmp:
        workdir = Path(options.workdir or tmp) / "api-outage"
        workdir.mkdir(parents=True, exist_ok=True)
        settings = settings_from_mapping(
            {
                "database": {"url": f"sqlite+aiosqlite:///{workdir / 'kefu.db'}"},
                "kb": {"paths": [str(ROOT / "config" / "faq")], "watch": False},
                "matcher": {"semantic": {"model": "none"}},
                "channels": {
                    "web": {"enabled": False},
                    "wechat": [
                        {"name": "shop", "token": "t", "appid": APPID, "secret": SECRET, "api_base": api.url}
                    ],
                },
            }
        )
        # The gateway logs (each failed try is a warning) go to the scenario's log, not the table's output.
        log = logging.FileHandler(workdir / "kefu.log", encoding="utf-8")
        logging.getLogger("gateway").addHandler(log)
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()  # startup: database, HTTP session, adapters, workers
        runtime = app[RUNTIME]
        try:
            await runtime.outbox.stop()  # the real-time worker; this scenario drives one on simulated time
            adapter: Any = runtime.adapters[("wechat", "shop")]
            timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
            tokens = AccessTokenManager(runtime.http, APPID, SECRET, api_base=api.url, timeout=timeout)
            adapter._sender = CustomerServiceSender(runtime.http, tokens, api_base=api.url, timeout=timeout)
            outbox = Outbox(runtime.store, settings.outbox, runtime.adapters, clock=clock)
            await _simulate(outbox, clock, customers, outage_s, result)
            await _score(runtime, api, customers, outage_s, result)
        finally:
            await runner.cleanup()
            await api_runner.cleanup()
            logging.getLogger("gateway").removeHandler(log)
            log.close()
    return result


def _openid(customer: int) -> str:
    return f"oOutage{customer:03d}"


async def _simulate(outbox: Outbox, clock: SimClock, customers: int, outage_s: float, result: Result) -> None:
    minute = 0
    while clock.elapsed_s < LIMIT_S:
        if minute * 60 <= clock.elapsed_s and minute * 60 < outage_s:
            for c in range(customers):
                openid = _openid(c)
                outgoing = Outgoing(
                    "wechat",
                    "shop",
                    f"wechat:shop:{openid}",
                    f"第{minute}分钟的答复",
                    target={"user_id": openid},
                )
                await outbox.enqueue(outgoing)
            minute += 1
        while await outbox.run_once():
            pass
        if clock.elapsed_s >= outage_s and not await _unsent(outbox):
            break
        clock.advance(STEP_S)
    result.counts["simulated_minutes"] = round(clock.elapsed_s / 60, 1)


async def _unsent(outbox: Outbox) -> int:
    rows = await outbox.store.list_outbox(limit=100_000)
    return sum(r.status != "sent" for r in rows)


async def _score(runtime: Any, api: FlakyWeChatAPI, customers: int, outage_s: float, result: Result) -> None:
    rows = await runtime.store.list_outbox(limit=100_000)
    accepted = Counter((m["touser"], m["text"]["content"]) for m in api.messages)
    by_customer: dict[str, list[str]] = {}
    for m in api.messages:
        by_customer.setdefault(m["touser"], []).append(m["text"]["content"])
    expected = {
        _openid(c): [f"第{minute}分钟的答复" for minute in range(int((outage_s + 59) // 60))]
        for c in range(customers)
    }
    out_of_order = sum(got != sorted(got, key=expected[o].index) for o, got in by_customer.items())
    never = sum(set(expected[o]) - set(by_customer.get(o, [])) != set() for o in expected)
    lost = sum(r.status != "sent" for r in rows)
    for r in rows:
        if r.status != "sent":
            result.examples.append(f"row {r.id} ({r.conversation_key}) is {r.status}: {r.last_error}")
    result.counts.update(
        inputs=len(rows),
        lost=lost,
        doubled=sum(n - 1 for n in accepted.values() if n > 1),
        never_answered=never,
        out_of_order_customers=out_of_order,
        attempts=len(api.attempts) + sum(api.failures.values()),
        **{f"api_{k}": v for k, v in api.failures.items()},
    )


@scenario("api-outage", "WeChat 客服消息 API: 500s, hangs, errcodes -1/45009 for 10 simulated minutes")
async def api_outage(options: Options) -> Result:
    return await run_outage(options)
