"""A fake QQ bot OpenAPI (token endpoint + group/C2C message endpoints) and a signer that pushes like QQ does.

The token endpoint answers `expires_in` as a STRING, as the real one does. The message endpoints
enforce what the platform enforces: a valid `QQBot` token, `msg_id` present (no unsolicited messages),
unique msg_id + msg_seq, at most 5 replies per msg_id.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.fakes import FakeUpstream

APPID = "102030405"
SECRET = "qqbotTestSecret0123"  # 19 chars: the seed repeats it (exercises the repeat rule)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "qqbot"
_ids = itertools.count(1)


def qq_key(secret: str) -> Ed25519PrivateKey:
    """QQ's side of the key derivation (written independently of gateway.channels.qqbot.adapter)."""
    raw = secret.encode()
    seed = raw
    while len(seed) < 32:
        seed += seed
    return Ed25519PrivateKey.from_private_bytes(seed[:32])


def load_payload(name: str, *, fresh: bool = True, **d_changes: Any) -> dict[str, Any]:
    """A recorded push with a new d.id (a new message) and changes to `d`."""
    payload = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    d = payload.get("d", {})
    if fresh and "id" in d:
        d["id"] = f"ROBOT1.0_test{next(_ids):08d}"
    d.update(d_changes)
    return payload


@dataclass
class QQPush:
    """Posts payloads to kefu signed the way QQ signs them."""

    client: Any
    path: str
    secret: str = SECRET

    async def post(
        self,
        payload: dict[str, Any] | bytes,
        *,
        signed: bool = True,
        timestamp: str | None = None,
        signature: str | None = None,
    ) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "QQBot-Callback", "X-Bot-Appid": APPID}
        if signed:
            ts = timestamp or str(int(time.time()))
            headers["X-Signature-Timestamp"] = ts
            headers["X-Signature-Ed25519"] = (
                signature if signature is not None else qq_key(self.secret).sign(ts.encode() + body).hex()
            )
        return await self.client.post(self.path, data=body, headers=headers)


@dataclass
class FakeQQBotAPI(FakeUpstream):
    """State and switches of the fake OpenAPI; `url` is both api_base and the token URL's base."""

    appid: str = APPID
    secret: str = SECRET
    latency_s: float = 0.0
    lose_answers: int = 0  # accept the next sends but answer 504, as if the answer got lost on the way
    drop_uploads: int = 0  # take the next /files uploads, then drop the connection before answering
    _seen: set[tuple[str, int]] = field(default_factory=set)
    _replies: dict[str, int] = field(default_factory=dict)
    _failures: deque[tuple[int, int | None]] = field(default_factory=deque)
    pictures: dict[str, bytes] = field(default_factory=dict)  # QQ's multimedia host: GET /qqmedia/{name}
    uploads: dict[str, bytes] = field(default_factory=dict)  # rich media by file_info (downloaded by /files)

    @property
    def token_url(self) -> str:
        return f"{self.url}/app/getAppAccessToken"

    def fail_next(self, status: int = 500, code: int | None = None, times: int = 1) -> None:
        """Answer the next `times` sends with an HTTP status and platform code."""
        self._failures.extend([(status, code)] * times)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/app/getAppAccessToken", self._token)
        app.router.add_post("/v2/groups/{openid}/messages", self._send)
        app.router.add_post("/v2/users/{openid}/messages", self._send)
        app.router.add_get("/qqmedia/{name}", self._picture)
        app.router.add_post("/v2/groups/{openid}/files", self._files)
        app.router.add_post("/v2/users/{openid}/files", self._files)
        return app

    async def _files(self, request: web.Request) -> web.Response:
        # 富媒体上传: {"file_type": 1 image, "url": an online URL QQ downloads, "srv_send_msg": false}.
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("QQBot ") or auth[len("QQBot ") :] not in self._valid_tokens:
            return web.json_response({"code": 11244, "message": "token not exist or expire"}, status=401)
        body = await request.json()
        if body.get("file_type") not in (1, 2, 3, 4) or not str(body.get("url", "")).startswith("http"):
            return web.json_response({"code": 40034001, "message": "bad file_type/url"}, status=400)
        async with ClientSession() as http, http.get(body["url"]) as resp:  # QQ downloads it, like here
            if resp.status != 200:
                return web.json_response({"code": 850027, "message": "download failed"}, status=400)
            data = await resp.read()
        file_info = f"FILEINFO-{len(self.uploads) + 1}"
        self.uploads[file_info] = data
        if self.drop_uploads:
            self.drop_uploads -= 1
            assert request.transport is not None
            request.transport.abort()  # the client sees the connection close with no answer
        return web.json_response({"file_uuid": file_info.lower(), "file_info": file_info, "ttl": 3600})

    async def _picture(self, request: web.Request) -> web.Response:
        data = self.pictures.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="image/png")

    async def _token(self, request: web.Request) -> web.Response:
        if self.token_latency_s:
            await asyncio.sleep(self.token_latency_s)
        body = await request.json()
        if body.get("appId") != self.appid or body.get("clientSecret") != self.secret:
            return web.json_response({"code": 100016, "message": "invalid appid or secret"}, status=400)
        self.token_fetches += 1
        token = f"QQTOKEN-{self.token_fetches}"
        self._valid_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": "7200"})

    async def _send(self, request: web.Request) -> web.Response:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        payload = await request.json()
        self.attempts.append(payload)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("QQBot ") or auth[len("QQBot ") :] not in self._valid_tokens:
            return web.json_response({"code": 11244, "message": "token not exist or expire"}, status=401)
        if self._failures:
            status, code = self._failures.popleft()
            return web.json_response({"code": code, "message": "fake failure"}, status=status)
        msg_id, seq = payload.get("msg_id"), payload.get("msg_seq")
        media = payload.get("media") if isinstance(payload.get("media"), dict) else {}
        rich = payload.get("msg_type") == 7 and media.get("file_info") in self.uploads
        if not rich and (payload.get("msg_type") != 0 or not isinstance(payload.get("content"), str)):
            return web.json_response({"code": 40034003, "message": "bad msg_type/content"}, status=400)
        if not msg_id:
            return web.json_response({"code": 40034102, "message": "主动消息不再提供"}, status=400)
        if (msg_id, seq) in self._seen:
            return web.json_response(
                {"code": 40054005, "message": "消息被去重，请检查请求msgseq"}, status=400
            )
        if self._replies.get(msg_id, 0) >= 5:
            return web.json_response({"code": 40034128, "message": "被动回复次数超限"}, status=400)
        self._seen.add((msg_id, seq))
        self._replies[msg_id] = self._replies.get(msg_id, 0) + 1
        self.messages.append({"path": request.path, **payload})
        self.received.set()
        if self.lose_answers:
            self.lose_answers -= 1
            return web.Response(status=504, text="gateway timeout")
        return web.json_response({"id": f"sent-{len(self.messages)}", "timestamp": int(time.time())})
