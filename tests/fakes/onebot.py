"""A fake OneBot v11 implementation (what NapCat / Lagrange / go-cqhttp look like from kefu's side).

- `FakeOneBotHTTP`: the HTTP API as a real aiohttp server, recording `send_group_msg` / `send_private_msg`;
- `FakeOneBotWS`: a real aiohttp WebSocket client that connects to kefu's `/onebot/{name}/ws` the way a
  reverse-WebSocket OneBot client does, pushes events and answers kefu's API frames;
- `post_event`: an HTTP POST event, signed like OneBot signs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes import wait_for_count

BOT_QQ = 3000000001
CUSTOMER_QQ = 123456789
GROUP_ID = 987654321
ACCESS_TOKEN = "onebot-test-access-token"
SECRET = "onebot-test-secret"

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "onebot"
_message_ids = itertools.count(1_000_000)


def load_event(name: str, **changes: Any) -> dict[str, Any]:
    """A recorded event from tests/fixtures/onebot with a fresh message_id (a new event) and top-level changes."""
    event = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    if "message_id" in event:
        event["message_id"] = next(_message_ids)
    event.update(changes)
    return event


def signature(secret: str, body: bytes) -> str:
    """`X-Signature` as OneBot computes it."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


async def post_event(
    client: Any,
    path: str,
    event: dict[str, Any] | bytes,
    *,
    secret: str | None = SECRET,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST one event like OneBot's HTTP POST (signed when `secret` is given); returns the response."""
    body = event if isinstance(event, bytes) else json.dumps(event, ensure_ascii=False).encode()
    sent = {"Content-Type": "application/json", "X-Self-ID": str(BOT_QQ)}
    if secret is not None:
        sent["X-Signature"] = signature(secret, body)
    sent.update(headers or {})
    return await client.post(path, data=body, headers=sent)


@dataclass
class FakeOneBotHTTP:
    """The OneBot HTTP API; `fail_next` makes it answer `status: failed` or an HTTP error."""

    access_token: str | None = ACCESS_TOKEN
    url: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # accepted calls
    attempts: int = 0
    _failures: deque[str | int] = field(default_factory=deque)
    received: asyncio.Event = field(default_factory=asyncio.Event)
    pictures: dict[str, bytes] = field(default_factory=dict)  # QQ's image server: GET /images/{name}

    def fail_next(self, how: str | int = "failed", times: int = 1) -> None:
        """Answer the next `times` calls with `status: failed` ("failed"), or with an HTTP status (int)."""
        self._failures.extend([how] * times)

    def messages(self, action: str = "send_group_msg") -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == action]

    async def wait_for_calls(self, count: int, within: float = 15.0) -> list[tuple[str, dict[str, Any]]]:

        await wait_for_count(self.calls, self.received, count, within)
        return self.calls

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{action}", self._call)
        app.router.add_get("/images/{name}", self._picture)
        return app

    async def _picture(self, request: web.Request) -> web.Response:
        data = self.pictures.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="image/png")

    async def start(self, aiohttp_server: Any) -> FakeOneBotHTTP:
        server = await aiohttp_server(self.app())
        self.url = str(server.make_url("")).rstrip("/")
        return self

    async def _call(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if self.access_token:
            auth = request.headers.get("Authorization")
            if not auth:
                return web.Response(status=401)
            if auth != f"Bearer {self.access_token}":
                return web.Response(status=403)
        params = await request.json()
        if self._failures:
            how = self._failures.popleft()
            if isinstance(how, int):
                return web.Response(status=how, text="upstream error")
            return web.json_response(
                {"status": "failed", "retcode": 100, "data": None, "wording": "fake failure"}
            )
        action = request.match_info["action"]
        if action not in ("send_group_msg", "send_private_msg", "send_msg"):
            return web.Response(status=404)
        self.calls.append((action, params))
        self.received.set()
        return web.json_response({"status": "ok", "retcode": 0, "data": {"message_id": len(self.calls)}})


@dataclass
class FakeOneBotWS:
    """A reverse-WebSocket OneBot client connected to kefu; `mode` decides how it answers API frames."""

    client: Any  # pytest-aiohttp TestClient of the kefu app
    path: str
    token: str | None = ACCESS_TOKEN
    role: str = "Universal"
    mode: str = "ok"  # "ok" | "failed" | "silent" (never answers: kefu's call times out)
    calls: list[dict[str, Any]] = field(default_factory=list)  # API frames received
    ws: Any = None
    received: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    async def connect(self, *, query_token: bool = False) -> FakeOneBotWS:
        headers = {"X-Self-ID": str(BOT_QQ), "X-Client-Role": self.role}
        params = {}
        if self.token and query_token:
            params["access_token"] = self.token
        elif self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.ws = await self.client.ws_connect(self.path, headers=headers, params=params)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                self.calls.append(frame)
                self.received.set()
                if self.mode == "silent":
                    continue
                if self.mode == "failed":
                    answer = {"status": "failed", "retcode": 100, "data": None, "echo": frame.get("echo")}
                else:
                    answer = {
                        "status": "ok",
                        "retcode": 0,
                        "data": {"message_id": len(self.calls)},
                        "echo": frame.get("echo"),
                    }
                await self.ws.send_json(answer)
        finally:
            self.closed.set()

    async def send_event(self, event: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(event, ensure_ascii=False))

    def messages(self, action: str = "send_group_msg") -> list[dict[str, Any]]:
        return [c["params"] for c in self.calls if c.get("action") == action]

    async def wait_for_calls(self, count: int, within: float = 15.0) -> list[dict[str, Any]]:

        await wait_for_count(self.calls, self.received, count, within)
        return self.calls

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
