"""The `fuzz` scenario: malformed input over every inbound endpoint and the agent API.

Inputs are drawn from a seeded `random.Random` (reproducible): valid templates per endpoint, mutated one
field at a time with hostile values (huge or out-of-range integers, lone surrogates, NUL and control
characters, deep nesting, wrong types, broken encodings), or byte-mangled after encoding. Most requests
carry a valid signature, so the mutation reaches the parser behind it. A request is a finding when the
gateway answers 5xx or takes over 5 s; afterwards the gateway's log is searched for tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from wechatpy.crypto import WeChatCrypto

from chaos.gateway import (
    ADMIN_TOKEN,
    ONEBOT_SECRET,
    QQBOT_SECRET,
    WECHAT_AES_KEY,
    WECHAT_APPID,
    WECHAT_TOKEN,
    Kefu,
    free_port,
)
from chaos.harness import Options, Result, scenario
from gateway.channels.qqbot.crypto import signing_key

HANG_S = 5.0
NASTY: list[Any] = [
    "9" * 5000,  # raw: a 5,000-digit JSON integer
    2**63,
    -(2**63) - 1,
    2**64,
    -1,
    0,
    1e308,
    "",
    " ",
    "\u0000",
    "\x07\x1b[31m",
    "\ud800",
    "\udfff\ud800",
    "😀" * 500,
    "\u202e反转",
    "长" * 3000,
    "<![CDATA[",
    "]]>",
    "&amp;&#0;&#xD800;",
    "<!DOCTYPE x [<!ENTITY a 'b'>]>",
    "%s%n%x",
    "' OR 1=1 --",
    "../../etc/passwd",
    None,
    True,
    [],
    {},
    [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]],
    {"a": {"b": {"c": {"d": "e"}}}},
    "13812345678",
    "9223372036854775808",
    "-0",
    "1e999",
    "NaN",
]
RAW_JSON = ["9" * 5000, "1e999999", "NaN", "-Infinity", '"\\ud800"', "[" * 5000, "{" * 40 + "}" * 40]


@dataclass
class Tally:
    """What the requests got back."""

    inputs: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)

    def record(self, what: str, status: int, seconds: float) -> None:
        self.inputs += 1
        self.statuses[status] += 1
        if status >= 500:
            self.server_errors.append(f"{status} {what[:160]}")
        if seconds > HANG_S:
            self.hangs.append(f"{seconds:.1f}s {what[:160]}")


# --- mutation ----------------------------------------------------------------------------------------


def nasty(rng: random.Random) -> Any:
    return rng.choice(NASTY)


def mutate_mapping(rng: random.Random, template: dict[str, Any]) -> dict[str, Any]:
    """One field replaced, removed or added (nested mappings too)."""
    data = json.loads(json.dumps(template))
    target = data
    while True:
        key = rng.choice(list(target))
        if isinstance(target[key], dict) and target[key] and rng.random() < 0.5:
            target = target[key]
            continue
        break
    roll = rng.random()
    if roll < 0.7:
        target[key] = nasty(rng)
    elif roll < 0.85:
        del target[key]
    else:
        target[rng.choice(["admin", "__proto__", key + "_x", "\ud800"])] = nasty(rng)
    return data


def encode_json(rng: random.Random, data: Any) -> bytes:
    """JSON bytes, sometimes with a raw hostile literal spliced in or the bytes mangled."""
    text = json.dumps(data, ensure_ascii=rng.random() < 0.5)
    roll = rng.random()
    if roll < 0.1 and isinstance(data, dict) and data:
        key = json.dumps(rng.choice(list(data)))
        text = text.replace(key + ": ", key + ": " + rng.choice(RAW_JSON) + ", " + key + "_: ", 1)
    raw = text.encode("utf-8", "surrogatepass")
    if roll > 0.9:
        raw = mangle(rng, raw)
    return raw


def mangle(rng: random.Random, raw: bytes) -> bytes:
    """Truncate, flip bytes or insert invalid UTF-8."""
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if not data:
            break
        i = rng.randrange(len(data))
        if choice < 0.3:
            del data[i:]
        elif choice < 0.6:
            data[i] = rng.randrange(256)
        else:
            data[i:i] = rng.choice([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x00", b"]]>", b"<"])
    return bytes(data)


# --- requests per endpoint -------------------------------------------------------------------------------

Request = tuple[str, str, dict[str, str], bytes | None]  # method, path+query, headers, body
XML_FIELDS = {
    "ToUserName": "gh_chaos",
    "FromUserName": "oChaos",
    "CreateTime": "1764950400",
    "MsgType": "text",
    "Content": "怎么退货",
    "MsgId": "6000000000000000001",
}


def wechat_xml(rng: random.Random) -> str:
    fields = dict(XML_FIELDS, FromUserName=f"oChaos{rng.randrange(50)}", MsgId=str(rng.randrange(10**18)))
    roll = rng.random()
    key = rng.choice(list(fields))
    if roll < 0.6:
        value = nasty(rng)
        fields[key] = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    elif roll < 0.7:
        del fields[key]
    elif roll < 0.8:
        fields[key] = "<a>" * rng.choice([20, 3000]) + "x" + "</a>" * rng.choice([20, 3000])
    parts = []
    for name, value in fields.items():
        value = value.replace("\ud800", "").replace("\udfff", "")  # XML cannot carry them; stay encodable
        if rng.random() < 0.5 and "<a>" not in value:
            parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
        else:
            parts.append(f"<{name}>{value}</{name}>")
    xml = "<xml>" + "".join(parts) + "</xml>"
    if rng.random() < 0.05:
        xml = "<?xml version='1.0'?><!DOCTYPE xml [<!ENTITY b 'bomb'>]>" + xml.replace("怎么", "&b;")
    return xml


def wechat(rng: random.Random) -> Request:
    account = rng.choice(["shop", "secure"])
    timestamp = str(int(time.time()))
    if rng.random() < 0.1:
        timestamp = rng.choice(["978307200", "-1", "", "abc", "9" * 30, str(int(time.time()) + 10_000)])
    nonce = str(rng.randrange(10**9))
    signature = hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode()).hexdigest()
    if rng.random() < 0.05:
        signature = rng.choice(["0" * 40, "签名", ""])
    query = f"signature={signature}&timestamp={timestamp}&nonce={nonce}"
    xml = wechat_xml(rng)
    body = xml.encode("utf-8", "replace")
    if account == "secure" and rng.random() < 0.8:
        crypto = WeChatCrypto(WECHAT_TOKEN, WECHAT_AES_KEY, WECHAT_APPID)
        encrypt = crypto.encrypt_message(xml, nonce, timestamp or "0")
        encrypted = encrypt.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
        msg_signature = hashlib.sha1(
            "".join(sorted([WECHAT_TOKEN, timestamp, nonce, encrypted])).encode()
        ).hexdigest()
        query += f"&encrypt_type=aes&msg_signature={msg_signature}"
        body = f"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    elif rng.random() < 0.2:
        body = mangle(rng, body)
    if rng.random() < 0.05:
        return (
            "GET",
            f"/wechat/{account}?{query}&echostr={rng.choice(['1', '', '%ff', '9' * 5000])}",
            {},
            None,
        )
    return ("POST", f"/wechat/{account}?{query}", {"Content-Type": "text/xml"}, body)


ONEBOT_EVENT = {
    "time": 1764950400,
    "self_id": 10001,
    "post_type": "message",
    "message_type": "private",
    "sub_type": "friend",
    "message_id": 1,
    "user_id": 20002,
    "message": [{"type": "text", "data": {"text": "怎么退货"}}],
    "raw_message": "怎么退货",
    "sender": {"user_id": 20002, "nickname": "顾客"},
}


def onebot(rng: random.Random) -> Request:
    event = dict(ONEBOT_EVENT, message_id=rng.randrange(2**31), user_id=rng.randrange(1, 10**9))
    if rng.random() < 0.3:
        event.update(message_type="group", group_id=rng.randrange(1, 10**9), sub_type="normal")
        event["message"] = [{"type": "at", "data": {"qq": "10001"}}, *event["message"]]
    if rng.random() < 0.2:
        event["message"] = "[CQ:at,qq=10001] " + rng.choice(["怎么退货", "[CQ:face,id=", "&#91;", "\ud800"])
    body = encode_json(rng, mutate_mapping(rng, event) if rng.random() < 0.9 else event)
    headers = {"Content-Type": "application/json", "X-Self-ID": "10001"}
    if rng.random() < 0.95:
        headers["X-Signature"] = "sha1=" + hmac.new(ONEBOT_SECRET.encode(), body, hashlib.sha1).hexdigest()
    return ("POST", "/onebot/qqshop", headers, body)


QQBOT_EVENT = {
    "op": 0,
    "id": "evt-1",
    "t": "C2C_MESSAGE_CREATE",
    "d": {
        "id": "msg-1",
        "content": "怎么退货",
        "timestamp": "2026-12-06T12:00:00+08:00",
        "author": {"user_openid": "U1"},
    },
}
QQBOT_KEY = signing_key(QQBOT_SECRET)


def qqbot(rng: random.Random) -> Request:
    event = json.loads(json.dumps(QQBOT_EVENT))
    event["d"]["id"] = f"msg-{rng.randrange(10**12)}"
    event["d"]["author"]["user_openid"] = f"U{rng.randrange(100)}"
    roll = rng.random()
    if roll < 0.15:
        event = {"op": 13, "d": {"plain_token": nasty(rng), "event_ts": rng.choice(["1", nasty(rng)])}}
    elif roll < 0.3:
        event["t"] = "GROUP_AT_MESSAGE_CREATE"
        event["d"]["group_openid"] = "G1"
        event["d"]["author"] = {"member_openid": "M1"}
    body = encode_json(rng, mutate_mapping(rng, event) if rng.random() < 0.9 else event)
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "X-Signature-Timestamp": timestamp}
    if rng.random() < 0.9:
        headers["X-Signature-Ed25519"] = QQBOT_KEY.sign(timestamp.encode() + body).hex()
    elif rng.random() < 0.5:
        headers["X-Signature-Ed25519"] = rng.choice(["00" * 64, "zz", "签名"])
    return ("POST", "/qqbot/bot", headers, body)


def web_message(rng: random.Random) -> Request:
    template = {
        "user_id": f"visitor-{rng.randrange(200)}",
        "text": "怎么退货",
        "message_id": rng.randrange(10**9),
    }
    data: Any = mutate_mapping(rng, template) if rng.random() < 0.9 else template
    if rng.random() < 0.05:
        data = nasty(rng)
    return ("POST", "/web/messages", {"Content-Type": "application/json"}, encode_json(rng, data))


def web_history(rng: random.Random) -> Request:
    user = rng.choice(["visitor-1", "%ED%A0%80", "%00", "a" * 200, "%F0%9F%98%80", "..%2F..", " "])
    after = rng.choice(["0", "-1", "9223372036854775808", "9" * 5000, "x", "1.5", "²", ""])
    return ("GET", f"/web/conversations/{user}/messages?after={after}", {}, None)


IDS = [
    "1",
    "2",
    "0",
    "-1",
    "9223372036854775807",
    "9223372036854775808",
    "9" * 5000,
    "abc",
    "²",
    "%00",
    "1e3",
]
AGENT_ROUTES = [
    ("GET", "/api/v1/me"),
    ("POST", "/api/v1/me/presence"),
    ("GET", "/api/v1/queue"),
    ("GET", "/api/v1/conversations"),
    ("GET", "/api/v1/conversations/{id}"),
    ("POST", "/api/v1/conversations/{id}/claim"),
    ("POST", "/api/v1/conversations/{id}/messages"),
    ("POST", "/api/v1/conversations/{id}/notes"),
    ("POST", "/api/v1/conversations/{id}/transfer"),
    ("POST", "/api/v1/conversations/{id}/reassign"),
    ("POST", "/api/v1/conversations/{id}/close"),
    ("POST", "/api/v1/conversations/{id}/handback"),
    ("GET", "/api/v1/canned"),
    ("POST", "/api/v1/canned"),
    ("POST", "/api/v1/canned/{id}/render"),
    ("GET", "/api/v1/follow-ups"),
    ("POST", "/api/v1/follow-ups/{id}/close"),
    ("GET", "/api/v1/reports/records"),
    ("GET", "/api/v1/conversations/{id}/suggestions"),
    ("GET", "/agent/api/conversations/{id}/suggestions"),
    ("GET", "/admin/api/outbox"),
    ("GET", "/admin/api/stats"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/shifts"),
    ("POST", "/api/v1/shifts"),
    ("GET", "/api/v1/shifts/coverage"),
    ("POST", "/api/v1/shifts/swaps"),
    ("DELETE", "/api/v1/shifts/{id}"),
    ("GET", "/api/v1/qa"),
    ("GET", "/api/v1/qa/{id}"),
    ("GET", "/api/v1/reports/agents"),
]
AGENT_BODY = {
    "text": "您好",
    "presence": "online",
    "group": "售后",
    "agent_id": 1,
    "tags": ["质量问题"],
    "title": "问候",
    "conversation_id": 1,
    "values": {"name": "张三"},
    "note": "已回访",
    "agent": "chaos",
    "start": "2026-12-08T09:00:00+08:00",
    "end": "2026-12-08T18:00:00+08:00",
    "shift_id": "1",
    "with_agent": "chaos",
}
QUERY_VALUES = [
    "1",
    "0",
    "true",
    "AAA",
    "9" * 5000,
    "2026-11-24",
    "2026-13-45",
    "0001-01-01",  # before year 1 once in UTC (an OverflowError, a 500, before)
    "9999-12-31",
    "0001-01-01T00:00:00+08:00",
    "csv",
    "xlsx",
    "json",
    "x",
    "\ud800",
]


def agent_api(rng: random.Random, token: str) -> Request:
    method, template = rng.choice(AGENT_ROUTES)
    path = template.replace("{id}", rng.choice(IDS))
    params = [
        f"{rng.choice(['mine', 'after', 'from', 'to', 'format', 'limit', 'status', 'all', 'agent'])}="
        f"{rng.choice(QUERY_VALUES).encode('utf-8', 'replace').decode()}"
        for _ in range(rng.randint(0, 3))
    ]
    if params:
        path += "?" + "&".join(params)
    auth = rng.choice([f"Bearer {token}"] * 8 + [f"Bearer {ADMIN_TOKEN}", "Bearer nope", "Basic x", ""])
    headers = {"Authorization": auth} if auth else {}
    body = None
    if method in ("POST", "DELETE"):
        headers["Content-Type"] = "application/json"
        body = encode_json(rng, mutate_mapping(rng, AGENT_BODY) if rng.random() < 0.8 else AGENT_BODY)
    return (method, path, headers, body)


# --- the run -----------------------------------------------------------------------------------------------


async def send(http: aiohttp.ClientSession, kefu: Kefu, request: Request, tally: Tally) -> None:
    method, path, headers, body = request
    started = time.monotonic()
    try:
        async with http.request(
            method, kefu.url + path, headers=headers, data=body, timeout=aiohttp.ClientTimeout(total=30)
        ) as resp:
            await resp.read()
            tally.record(
                f"{method} {path} {body[:120] if body else b''!r}", resp.status, time.monotonic() - started
            )
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        tally.inputs += 1
        tally.transport_errors[type(exc).__name__] += 1
        if isinstance(exc, TimeoutError):
            tally.hangs.append(f"timeout {method} {path[:120]}")


async def web_socket(http: aiohttp.ClientSession, kefu: Kefu, rng: random.Random, tally: Tally) -> None:
    """One /web/ws visit: a few mutated frames, then close; each frame is one input."""
    visitor = rng.choice([f"chaos-visitor-{rng.randrange(100):05d}", "short", "bad id!", "x" * 100])
    frames = []
    for _ in range(rng.randint(1, 5)):
        frame: Any = {"type": "message", "client_id": f"c-{rng.randrange(10**6)}", "text": "怎么退货"}
        if rng.random() < 0.85:
            frame = mutate_mapping(rng, frame)
        raw = encode_json(rng, frame).decode("utf-8", "replace")
        frames.append(rng.choice([raw, raw, raw, "not json", "[" * 5000, '{"type": "ping"}']))
    started = time.monotonic()
    try:
        async with http.ws_connect(
            kefu.url + f"/web/ws?visitor={visitor}&after={rng.choice(['0', '9' * 5000, '-1'])}",
            timeout=aiohttp.ClientWSTimeout(ws_close=5),
        ) as ws:
            for text in frames:
                await ws.send_str(text)
                tally.record(f"ws frame {text[:120]}", 101, 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ws.receive(), 5)
    except aiohttp.WSServerHandshakeError as exc:
        tally.record(f"ws visitor={visitor}", exc.status, time.monotonic() - started)
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.inputs += 1
        tally.transport_errors[type(exc).__name__] += 1


async def raw_http(kefu: Kefu, rng: random.Random, tally: Tally) -> None:
    """A request aiohttp's parser refuses: over-long header line, bad method, broken framing."""
    request = rng.choice(
        [
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
            b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /web/messages HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            b"POST /web/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            # Header bytes that are not UTF-8 (aiohttp reads them as lone surrogates) as a bearer token.
            b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xc3\r\n\r\n",
            # A body that is not what its Content-Encoding says.
            b"POST /web/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nContent-Length: 16\r\n\r\nthis is not gzip",
            # One JSON string that never closes, of escaped quotes (a quadratic scan held the loop 15 s).
            b"POST /web/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 64001\r\n\r\n"' + b'\\"' * 32_000,
        ]
    )
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", kefu.port)
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), HANG_S)
        writer.close()
        status = int(line.split()[1]) if len(line.split()) > 1 else 0
        tally.record(f"raw {request[:60]!r}", status, 0.0)
    except (OSError, TimeoutError, ValueError) as exc:
        tally.inputs += 1
        tally.transport_errors[type(exc).__name__] += 1


def generators(token: str) -> list[tuple[float, Callable[[random.Random], Request]]]:
    return [
        (0.22, wechat),
        (0.14, onebot),
        (0.14, qqbot),
        (0.16, web_message),
        (0.04, web_history),
        (0.22, lambda rng: agent_api(rng, token)),
    ]


def choose(
    weighted: list[tuple[float, Callable[[random.Random], Request]]], rng: random.Random
) -> Callable[[random.Random], Request]:
    pick = rng.random() * sum(weight for weight, _ in weighted)
    for weight, make in weighted:
        pick -= weight
        if pick <= 0:
            return make
    return weighted[-1][1]


async def fuzz(kefu: Kefu, count: int, seed: int, concurrency: int) -> Tally:
    """Send `count` malformed inputs (HTTP requests, WebSocket frames, raw requests) to the gateway."""
    rng = random.Random(seed)
    tally = Tally()
    weighted = generators(kefu.agent_token)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker(worker_rng: random.Random) -> None:
        async with aiohttp.ClientSession() as http:
            while tally.inputs < count:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                roll = worker_rng.random()
                if roll < 0.04:
                    await web_socket(http, kefu, worker_rng, tally)
                elif roll < 0.05:
                    await raw_http(kefu, worker_rng, tally)
                else:
                    await send(http, kefu, choose(weighted, worker_rng)(worker_rng), tally)

    await asyncio.gather(*(worker(random.Random(rng.random())) for _ in range(concurrency)))
    return tally


async def run_fuzz(options: Options) -> tuple[Result, Tally]:
    """Start a gateway, fuzz it, stop it; the counts and the tally."""
    with tempfile.TemporaryDirectory(prefix="kefu-chaos-") as tmp:
        workdir = Path(options.workdir or tmp)
        kefu = Kefu(workdir=workdir, port=free_port(), log_path=workdir / "kefu.log")
        await kefu.start()
        try:
            rss_before = kefu.rss_mb()
            tally = await fuzz(kefu, options.count, options.seed, options.concurrency)
            await asyncio.sleep(1.0)  # let deferred handling and outbox attempts log what they log
            rss_after = kefu.rss_mb()
        finally:
            await kefu.stop()
        tracebacks = kefu.log_tracebacks()
    result = Result(
        counts={
            "inputs": tally.inputs,
            "5xx": len(tally.server_errors),
            "tracebacks": len(tracebacks),
            "hangs>5s": len(tally.hangs),
            "rss_before_mb": rss_before,
            "rss_after_mb": rss_after,
        },
        examples=[*tally.server_errors[:5], *tally.hangs[:5], *tracebacks[:5]],
    )
    return result, tally


@scenario("fuzz", "malformed input over every inbound endpoint and the agent API")
async def fuzz_scenario(options: Options) -> Result:
    result, tally = await run_fuzz(options)
    statuses = ", ".join(f"{status}×{n}" for status, n in sorted(tally.statuses.items()))
    result.examples.append(f"statuses: {statuses}; transport errors: {dict(tally.transport_errors)}")
    return result
