"""A fake WeChat official-account API (`/cgi-bin/token`, `/cgi-bin/message/custom/send`, temporary media
`/cgi-bin/media/upload` and `/cgi-bin/media/get`, and a PicUrl host `/pic/{name}`) as a real aiohttp server.

Tests point an account's `api_base` at `fake.url` and then assert on what the fake received. Switches
make it answer like the real one does when things go wrong: expired tokens (42001), the closed 48-hour
window (45015), HTTP 5xx, slowness.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
from aiohttp import web
from wechatpy.crypto import WeChatCrypto

from gateway.coord import Coordination
from tests.fakes import FakeUpstream

APPID = "wx49f0ab532d5d035a"
SECRET = "fake-app-secret-0123456789"


@dataclass
class FakeWeChatAPI(FakeUpstream):
    """State and switches of the fake; `app` serves it."""

    appid: str = APPID
    secret: str = SECRET
    expires_in: int = 7200
    latency_s: float = 0.0  # delay before every custom/send answer
    raw_bodies: list[bytes] = field(default_factory=list)
    closed_windows: set[str] = field(default_factory=set)  # openids whose 48-hour window is closed (45015)
    # Temporary media by media_id: (bytes, content type); uploaded by kefu or put there by a test.
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    pictures: dict[str, bytes] = field(default_factory=dict)  # what /pic/{name} (a PicUrl) serves
    _failures: deque[tuple[str, int]] = field(default_factory=deque)
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    # --- switches --------------------------------------------------------------------------------

    def fail_next(
        self, *, errcode: int | None = None, status: int | None = None, times: int = 1, after: int = 0
    ) -> None:
        """Answer `times` sends (after letting `after` through) with a WeChat errcode or an HTTP status."""
        for _ in range(after):
            self._failures.append(("pass", 0))
        for _ in range(times):
            if status is not None:
                self._failures.append(("status", status))
            else:
                self._failures.append(("errcode", errcode if errcode is not None else -1))

    def texts_to(self, openid: str) -> list[str]:
        """The contents accepted for one customer, in order."""
        return [m["text"]["content"] for m in self.messages if m.get("touser") == openid]

    # --- the server ------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._send)
        app.router.add_post("/cgi-bin/media/upload", self._upload)
        app.router.add_get("/cgi-bin/media/get", self._media_get)
        app.router.add_get("/pic/{name}", self._picture)
        return app

    def images_to(self, openid: str) -> list[bytes]:
        """The pictures accepted for one customer (客服消息 image by media_id), in order."""
        return [
            self.media[m["image"]["media_id"]][0]
            for m in self.messages
            if m.get("touser") == openid and m.get("msgtype") == "image"
        ]

    async def _upload(self, request: web.Request) -> web.Response:
        # 新增临时素材: multipart field "media"; images up to 10 MB of bmp/png/jpeg/jpg/gif.
        if request.query.get("access_token", "") not in self._valid_tokens:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        kind = request.query.get("type", "")
        if kind not in ("image", "voice", "video", "thumb"):
            return web.json_response({"errcode": 40004, "errmsg": "invalid media type"})
        post = await request.post()
        part = post.get("media")
        if not isinstance(part, web.FileField):
            return web.json_response({"errcode": 41005, "errmsg": "media data missing"})
        data = part.file.read()
        if kind == "image":
            if not part.filename or part.filename.rsplit(".", 1)[-1].lower() not in (
                "bmp",
                "png",
                "jpeg",
                "jpg",
                "gif",
            ):
                return web.json_response({"errcode": 40005, "errmsg": "invalid file type"})
            if len(data) > 10 * 1024 * 1024:
                return web.json_response({"errcode": 40009, "errmsg": "invalid image size"})
        media_id = f"MEDIA-{next(self._counter)}"
        self.media[media_id] = (data, part.content_type)
        return web.json_response({"type": kind, "media_id": media_id, "created_at": int(time.time())})

    async def _media_get(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("access_token", "") not in self._valid_tokens:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        found = self.media.get(request.query.get("media_id", ""))
        if found is None:
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        return web.Response(body=found[0], content_type=found[1])

    async def _picture(self, request: web.Request) -> web.Response:
        data = self.pictures.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="image/jpeg")

    async def _token(self, request: web.Request) -> web.Response:
        if self.token_latency_s:
            await asyncio.sleep(self.token_latency_s)
        query = request.query
        if query.get("grant_type") != "client_credential":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        if query.get("appid") != self.appid:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if query.get("secret") != self.secret:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        self.token_fetches += 1
        token = f"TOKEN-{next(self._counter)}"
        self._valid_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": self.expires_in})

    async def _send(self, request: web.Request) -> web.Response:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        raw = await request.read()
        self.raw_bodies.append(raw)
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        self.attempts.append(payload)
        token = request.query.get("access_token", "")
        if not token:
            return web.json_response({"errcode": 41001, "errmsg": "access_token missing"})
        if token not in self._valid_tokens:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        if self._failures:
            kind, value = self._failures.popleft()
            if kind == "pass":
                pass
            elif kind == "status":
                return web.Response(status=value, text="upstream error")
            else:
                return web.json_response({"errcode": value, "errmsg": f"fake error {value}"})
        if payload.get("touser") in self.closed_windows:
            return web.json_response(
                {"errcode": 45015, "errmsg": "response out of time limit or subscription is canceled"}
            )
        if payload.get("msgtype") == "image":
            if (payload.get("image") or {}).get("media_id") not in self.media:
                return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
            self.messages.append(payload)
            self.received.set()
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        content = (payload.get("text") or {}).get("content", "")
        if payload.get("msgtype") != "text" or not isinstance(content, str):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        if len(content.encode("utf-8")) > 2048:
            return web.json_response({"errcode": 45002, "errmsg": "content size out of limit"})
        self.messages.append(payload)
        self.received.set()
        return web.json_response({"errcode": 0, "errmsg": "ok"})


# --- the other direction: WeChat's servers pushing messages to kefu ---------------------------------

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wechat"


def fixture_xml(name: str, **fields: str | int) -> str:
    """A recorded payload from tests/fixtures/wechat with some fields replaced (FromUserName=..., MsgId=...)."""
    xml = (FIXTURES / name).read_text(encoding="utf-8")
    for tag, value in fields.items():
        pattern = re.compile(rf"<{tag}>(<!\[CDATA\[.*?\]\]>|[^<]*)</{tag}>", re.S)
        if not pattern.search(xml):
            raise KeyError(f"{name} has no <{tag}>")
        cdata = pattern.search(xml).group(1).startswith("<![CDATA[")  # type: ignore[union-attr]
        text = f"<![CDATA[{value}]]>" if cdata else str(value)
        xml = pattern.sub(lambda _m, tag=tag, text=text: f"<{tag}>{text}</{tag}>", xml, count=1)
    return xml


def xml_dict(xml: str) -> dict[str, str]:
    """A flat WeChat XML document as a dict (parsed safely: tests feed it kefu's output)."""
    root = SafeET.fromstring(xml, forbid_dtd=True)
    return {child.tag: child.text or "" for child in root}


def sha1_sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


@dataclass
class WeChatPush:
    """Signs (and in safe mode encrypts) payloads the way WeChat's servers do, and reads kefu's replies."""

    client: Any  # pytest-aiohttp TestClient
    path: str
    token: str
    aes_key: str | None = None
    appid: str = APPID

    @property
    def crypto(self) -> WeChatCrypto:
        assert self.aes_key, "safe mode needs an aes_key"
        return WeChatCrypto(self.token, self.aes_key, self.appid)

    def signed_query(self, timestamp: str | None = None, nonce: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(random.randint(10**8, 10**9))
        return {"signature": sha1_sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}

    async def post(
        self, xml: str | bytes, *, mode: str = "plain", query: dict[str, str] | None = None
    ) -> tuple[int, str, dict[str, str]]:
        """POST like WeChat: mode plain, safe (ciphertext only) or compat (plaintext + Encrypt). Returns
        (status, body text, query used)."""
        params = self.signed_query()
        body: str | bytes = xml
        if mode in ("safe", "compat"):
            plain = xml.decode("utf-8") if isinstance(xml, bytes) else xml
            envelope = self.crypto.encrypt_message(plain, params["nonce"], params["timestamp"])
            encrypt = xml_dict(envelope)["Encrypt"]
            params |= {
                "encrypt_type": "aes",
                "msg_signature": sha1_sign(self.token, params["timestamp"], params["nonce"], encrypt),
            }
            if mode == "safe":
                # Not parsed: tests also encrypt hostile payloads (DOCTYPEs) to see kefu refuse them.
                found = re.search(r"<ToUserName><!\[CDATA\[(.*?)\]\]>", plain)
                to_user = found.group(1) if found else "gh_unknown"
                body = f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
            else:
                body = plain.replace("</xml>", f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
        params |= query or {}
        resp = await self.client.post(self.path, params=params, data=body)
        return resp.status, await resp.text(), params

    def open_reply(self, text: str) -> dict[str, str]:
        """A safe-mode reply checked (MsgSignature) and decrypted, as a dict."""
        envelope = xml_dict(text)
        expected = sha1_sign(self.token, envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"])
        assert envelope["MsgSignature"] == expected, "reply MsgSignature does not verify"
        plain = self.crypto.decrypt_message(
            text, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"]
        )
        return xml_dict(plain)


# --- a stand-in for kefu's runtime, to test the adapter alone --------------------------------------


@dataclass
class StubResult:
    """The part of gateway.pipeline.PipelineResult the adapter reads."""

    replies: list[Any]
    duplicate: bool = False
    outbox: tuple[tuple[int, str], ...] = ()  # no outbox rows: the delivery policy answers passively


@dataclass
class StubPipeline:
    """Answers every message with `answer(message)` after `delay_s`; records handled and pushed results."""

    answer: Any = None  # Callable[[Message], list[Reply]]
    delay_s: float = 0.0
    handled: list[Any] = field(default_factory=list)
    pushed: list[StubResult] = field(default_factory=list)
    calls: int = 0

    async def handle(self, message: Any, *, outbox: str | None = None) -> StubResult:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.handled.append(message)
        return StubResult(list(self.answer(message)) if self.answer else [])

    async def push_replies(self, result: StubResult) -> list[int]:
        self.pushed.append(result)
        return list(range(len(result.replies)))


@dataclass
class StubRuntime:
    """Settings, pipeline, HTTP session and spawn: what WeChatAdapter takes from gateway.runtime.Runtime."""

    settings: Any
    pipeline: StubPipeline
    http: Any = None
    spool: Any = None  # no inbound spool: a late store is waited for
    coord: Coordination = field(default_factory=Coordination)  # one process, nothing shared
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Any, *, name: str | None = None, awaited: bool = False) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
