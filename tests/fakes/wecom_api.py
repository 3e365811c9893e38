"""A fake WeCom 微信客服 API (gettoken, kf/sync_msg, kf/send_msg, send_msg_on_event, service_state) over real
HTTP, and a signer that calls kefu back the way WeCom does.

It enforces what WeCom enforces: a valid access_token (42001 when expired), the cursor and `has_more` of
sync_msg, at most 5 messages per customer message (95001), the 48-hour window, msgid idempotency, a
welcome_code used once, and the session states of service_state/trans. Tests queue items with
`customer_text`, `enter_session`, … and then call kefu back with `WeComPush.notify`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from wechatpy.enterprise.crypto import WeChatCrypto

from tests.fakes import FakeUpstream

CORP_ID = "ww7d8fe0c1a2b3c4d5"
SECRET = "fake-kf-secret-0123456789abcdef"
TOKEN = "kefuWeComToken"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
OPEN_KFID = "wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wecom"
QUOTA = 5  # messages per customer message
_msgids = itertools.count(1)


def fixture(name: str) -> Any:
    """A recorded payload from tests/fixtures/wecom (JSON parsed, XML as text)."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else text


@dataclass
class FakeWeComAPI(FakeUpstream):
    """State and switches of the fake; `app` serves it."""

    corp_id: str = CORP_ID
    secret: str = SECRET
    expires_in: int = 7200
    page_size: int = 1000  # answer at most this many items per sync_msg (smaller: exercises has_more)
    items: list[dict[str, Any]] = field(default_factory=list)  # the message stream sync_msg pages through
    sync_calls: list[dict[str, Any]] = field(default_factory=list)
    states: dict[tuple[str, str], tuple[int, str | None]] = field(default_factory=dict)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    closed_windows: set[str] = field(default_factory=set)  # external_userids whose 48-hour window is closed
    sync_failures: int = 0  # answer this many sync_msg calls with errcode -1
    sync_latency_s: float = 0.0  # delay before every sync_msg answer (widens races between pullers)
    sync_in_flight: int = 0
    max_sync_in_flight: int = 0  # the most sync_msg calls ever answered at the same time
    _quota: dict[tuple[str, str], int] = field(default_factory=dict)
    _msgids_seen: set[str] = field(default_factory=set)
    _welcome_codes: dict[str, str] = field(default_factory=dict)  # code → external_userid
    _failures: deque[int | None] = field(default_factory=deque)  # None lets a send through
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # temporary media by media_id

    # --- the message stream -----------------------------------------------------------------------------

    def add(self, item: dict[str, Any]) -> dict[str, Any]:
        """Append one sync_msg item; a customer message resets that customer's send quota."""
        self.items.append(item)
        if item.get("origin") == 3:
            self._quota[(item["open_kfid"], item["external_userid"])] = QUOTA
        return item

    def customer_text(
        self, external_userid: str, content: str, *, menu_id: str | None = None, age_s: int = 0
    ) -> dict[str, Any]:
        item = fixture("msg_text.json")
        item |= {
            "msgid": f"cust{next(_msgids)}",
            "external_userid": external_userid,
            "send_time": int(time.time()) - age_s,
        }
        item["text"] = {"content": content} | ({"menu_id": menu_id} if menu_id else {})
        return self.add(item)

    def enter_session(self, external_userid: str) -> str:
        """The customer opens the chat; returns the welcome_code WeCom hands out for it."""
        item = fixture("event_enter_session.json")
        code = f"WELCOME{next(self._counter)}"
        self._welcome_codes[code] = external_userid
        item["msgid"] = f"evt{next(_msgids)}"
        item["send_time"] = int(time.time())
        item["event"] |= {"external_userid": external_userid, "welcome_code": code}
        self.add(item)
        return code

    def servicer_text(self, external_userid: str, content: str, servicer: str = "zhangsan") -> dict[str, Any]:
        item = fixture("msg_servicer.json")
        item |= {
            "msgid": f"srv{next(_msgids)}",
            "external_userid": external_userid,
            "servicer_userid": servicer,
            "send_time": int(time.time()),
        }
        item["text"] = {"content": content}
        return self.add(item)

    def event(self, name: str, **changes: Any) -> dict[str, Any]:
        item = fixture(name)
        item["msgid"] = f"evt{next(_msgids)}"
        item["send_time"] = int(time.time())
        item["event"] |= changes
        return self.add(item)

    # --- switches and reads ---------------------------------------------------------------------------

    def fail_next(self, errcode: int, times: int = 1, after: int = 0) -> None:
        """Answer `times` sends (after letting `after` through) with `errcode`."""
        self._failures.extend([None] * after + [errcode] * times)

    def sent_to(self, external_userid: str) -> list[dict[str, Any]]:
        """The accepted sends to one customer, in order."""
        return [m for m in self.messages if m.get("touser") == external_userid]

    def texts_to(self, external_userid: str) -> list[str]:
        out = []
        for m in self.sent_to(external_userid):
            if m["msgtype"] == "text":
                out.append(m["text"]["content"])
            elif m["msgtype"] == "msgmenu":
                out.append(m["msgmenu"]["head_content"])
        return out

    # --- the server -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cgi-bin/gettoken", self._gettoken)
        app.router.add_post("/cgi-bin/kf/sync_msg", self._sync_msg)
        app.router.add_post("/cgi-bin/kf/send_msg", self._send_msg)
        app.router.add_post("/cgi-bin/kf/send_msg_on_event", self._send_on_event)
        app.router.add_post("/cgi-bin/kf/service_state/get", self._state_get)
        app.router.add_post("/cgi-bin/kf/service_state/trans", self._state_trans)
        app.router.add_post("/cgi-bin/media/upload", self._media_upload)
        app.router.add_get("/cgi-bin/media/get", self._media_get)
        return app

    async def _media_upload(self, request: web.Request) -> web.Response:
        # 上传临时素材: multipart field "media"; type image (≤10 MB jpg/png) or file (≤20 MB).
        if request.query.get("access_token", "") not in self._valid_tokens:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        kind = request.query.get("type", "")
        if kind not in ("image", "voice", "video", "file"):
            return web.json_response({"errcode": 40004, "errmsg": "invalid media type"})
        part = (await request.post()).get("media")
        if not isinstance(part, web.FileField):
            return web.json_response({"errcode": 41005, "errmsg": "media data missing"})
        media_id = f"WECOM-MEDIA-{next(self._counter)}"
        self.media[media_id] = (part.file.read(), part.content_type)
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id, "created_at": "1"}
        )

    async def _media_get(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("access_token", "") not in self._valid_tokens:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        found = self.media.get(request.query.get("media_id", ""))
        if found is None:
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        return web.Response(body=found[0], content_type=found[1])

    async def _gettoken(self, request: web.Request) -> web.Response:
        if self.token_latency_s:
            await asyncio.sleep(self.token_latency_s)
        if request.query.get("corpid") != self.corp_id:
            return web.json_response({"errcode": 40013, "errmsg": "invalid corpid"})
        if request.query.get("corpsecret") != self.secret:
            return web.json_response({"errcode": 40001, "errmsg": "invalid credential"})
        self.token_fetches += 1
        token = f"WECOM-TOKEN-{next(self._counter)}"
        self._valid_tokens.add(token)
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": self.expires_in}
        )

    async def _body(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        token = request.query.get("access_token", "")
        if not token:
            return None, web.json_response({"errcode": 41001, "errmsg": "access_token missing"})
        if token not in self._valid_tokens:
            return None, web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        try:
            payload = json.loads((await request.read()).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None, web.json_response({"errcode": 47001, "errmsg": "data format error"})
        if not isinstance(payload, dict):
            return None, web.json_response({"errcode": 47001, "errmsg": "data format error"})
        return payload, None

    async def _sync_msg(self, request: web.Request) -> web.Response:
        payload, refused = await self._body(request)
        if refused is not None:
            return refused
        assert payload is not None
        self.sync_calls.append(payload)
        self.sync_in_flight += 1
        self.max_sync_in_flight = max(self.max_sync_in_flight, self.sync_in_flight)
        try:
            if self.sync_latency_s:
                await asyncio.sleep(self.sync_latency_s)
            return self._sync_page(payload)
        finally:
            self.sync_in_flight -= 1

    def _sync_page(self, payload: dict[str, Any]) -> web.Response:
        if self.sync_failures:
            self.sync_failures -= 1
            return web.json_response({"errcode": -1, "errmsg": "system busy"})
        cursor = str(payload.get("cursor") or "")
        if cursor and not re.fullmatch(r"C\d+", cursor):
            return web.json_response({"errcode": 95012, "errmsg": "invalid cursor"})
        start = int(cursor[1:]) if cursor else 0
        limit = min(int(payload.get("limit") or 1000), 1000, self.page_size)
        kfid = payload.get("open_kfid")
        stream = [i for i in self.items if not kfid or _kfid(i) == kfid]
        page = stream[start : start + limit]
        end = start + len(page)
        return web.json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "next_cursor": f"C{end}",
                "has_more": 1 if end < len(stream) else 0,
                "msg_list": page,
            }
        )

    def _take_quota(self, payload: dict[str, Any]) -> web.Response | None:
        msgid = payload.get("msgid")
        if msgid is not None and not re.fullmatch(r"[0-9A-Za-z_-]{1,32}", str(msgid)):
            return web.json_response({"errcode": 40058, "errmsg": "invalid msgid"})
        if self._failures:
            code = self._failures.popleft()
            if code is not None:
                return web.json_response({"errcode": code, "errmsg": f"fake error {code}"})
        return None

    def _accept(self, payload: dict[str, Any]) -> web.Response:
        msgtype = payload.get("msgtype")
        body = payload.get(str(msgtype))
        if msgtype not in ("text", "msgmenu", "image", "file") or not isinstance(body, dict):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        if msgtype in ("image", "file") and body.get("media_id") not in self.media:
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        if msgtype == "text" and len(str(body.get("content", "")).encode("utf-8")) > 2048:
            return web.json_response({"errcode": 45002, "errmsg": "content size out of limit"})
        if msgtype == "msgmenu" and not (1 <= len(body.get("list") or []) <= 10):
            return web.json_response({"errcode": 95008, "errmsg": "menu items out of limit"})
        if payload.get("msgid") in self._msgids_seen:
            return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": payload["msgid"]})  # idempotent
        if payload.get("msgid"):
            self._msgids_seen.add(payload["msgid"])
        self.messages.append(payload)
        self.received.set()
        return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": payload.get("msgid") or "auto"})

    async def _send_msg(self, request: web.Request) -> web.Response:
        payload, refused = await self._body(request)
        if refused is not None:
            return refused
        assert payload is not None
        self.attempts.append(payload)
        failed = self._take_quota(payload)
        if failed is not None:
            return failed
        key = (str(payload.get("open_kfid")), str(payload.get("touser")))
        if payload.get("msgid") in self._msgids_seen:
            return self._accept(payload)
        if payload.get("touser") in self.closed_windows:
            return web.json_response({"errcode": 95002, "errmsg": "the customer has not written in 48 hours"})
        if self._quota.get(key, 0) <= 0:
            return web.json_response({"errcode": 95001, "errmsg": "msg count exceed limit"})
        state, _servicer = self.states.get(key, (1, None))
        if state == 3:
            return web.json_response({"errcode": 95018, "errmsg": "session state does not allow api send"})
        answer = self._accept(payload)
        if json.loads(answer.text or "{}").get("errcode") == 0:
            self._quota[key] -= 1
        return answer

    async def _send_on_event(self, request: web.Request) -> web.Response:
        payload, refused = await self._body(request)
        if refused is not None:
            return refused
        assert payload is not None
        self.attempts.append(payload)
        failed = self._take_quota(payload)
        if failed is not None:
            return failed
        code = payload.get("code")
        if code not in self._welcome_codes:
            return web.json_response({"errcode": 95007, "errmsg": "invalid msg code"})
        external = self._welcome_codes.pop(code)  # a code is good for one message
        return self._accept({**payload, "touser": external, "welcome_code": code})

    async def _state_get(self, request: web.Request) -> web.Response:
        payload, refused = await self._body(request)
        if refused is not None:
            return refused
        assert payload is not None
        state, servicer = self.states.get(
            (str(payload.get("open_kfid")), str(payload.get("external_userid"))), (1, None)
        )
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "service_state": state, "servicer_userid": servicer or ""}
        )

    async def _state_trans(self, request: web.Request) -> web.Response:
        payload, refused = await self._body(request)
        if refused is not None:
            return refused
        assert payload is not None
        key = (str(payload.get("open_kfid")), str(payload.get("external_userid")))
        target = payload.get("service_state")
        current, _ = self.states.get(key, (1, None))
        if target not in (1, 2, 3, 4) or (target == 3 and not payload.get("servicer_userid")):
            return web.json_response(
                {"errcode": 40001 if target is None else 95016, "errmsg": "invalid state"}
            )
        allowed = {0: {1, 2, 3, 4}, 1: {1, 2, 3, 4}, 2: {2, 3, 4}, 3: {3, 4}, 4: set()}[current]
        if target not in allowed or (current == target and target != 3):
            return web.json_response({"errcode": 95016, "errmsg": "state transition not allowed"})
        self.states[key] = (int(target), payload.get("servicer_userid"))
        self.transfers.append(payload)
        return web.json_response({"errcode": 0, "errmsg": "ok", "msg_code": "MSG_CODE_1"})


def _kfid(item: dict[str, Any]) -> str | None:
    return item.get("open_kfid") or (item.get("event") or {}).get("open_kfid")


# --- the other direction: WeCom's servers calling kefu back -------------------------------------------


@dataclass
class WeComPush:
    """Signs and encrypts callbacks the way WeCom does (wechatpy's enterprise crypto, the corp id inside)."""

    client: Any  # pytest-aiohttp TestClient
    path: str
    token: str = TOKEN
    aes_key: str = AES_KEY
    corp_id: str = CORP_ID

    @property
    def crypto(self) -> WeChatCrypto:
        return WeChatCrypto(self.token, self.aes_key, self.corp_id)

    def envelope(
        self, plain: str, timestamp: str | None = None, nonce: str | None = None
    ) -> tuple[dict[str, str], str]:
        """(query, body) of one encrypted callback carrying `plain`."""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(random.randint(10**8, 10**9))
        encrypted = self.crypto.encrypt_message(plain, nonce, timestamp)
        encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]></Encrypt>", encrypted).group(1)  # type: ignore[union-attr]
        signature = re.search(r"<MsgSignature><!\[CDATA\[(.*?)\]\]>", encrypted).group(1)  # type: ignore[union-attr]
        body = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>"
        )
        return {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}, body

    async def post(self, plain: str, **query: str) -> tuple[int, str]:
        params, body = self.envelope(plain)
        resp = await self.client.post(self.path, params=params | query, data=body)
        return resp.status, await resp.text()

    async def notify(
        self, open_kfid: str = OPEN_KFID, sync_token: str = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR"
    ) -> None:
        """The kf_msg_or_event callback: "there is something new for this 客服帐号"."""
        plain = (
            fixture("kf_msg_or_event.xml").replace("{TOKEN}", sync_token).replace("{OPEN_KFID}", open_kfid)
        )
        status, text = await self.post(plain)
        assert (status, text) == (200, "success"), (status, text)

    async def verify(self, echo: str, *, timestamp: str | None = None, **override: str) -> tuple[int, str]:
        """The URL verification GET with an encrypted echostr (signed at `timestamp`, default now)."""
        params, body = self.envelope(echo, timestamp)
        encrypt = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]>", body).group(1)  # type: ignore[union-attr]
        from hashlib import sha1

        signature = sha1(
            "".join(sorted([self.token, params["timestamp"], params["nonce"], encrypt])).encode()
        ).hexdigest()
        query = {
            "msg_signature": signature,
            "timestamp": params["timestamp"],
            "nonce": params["nonce"],
            "echostr": encrypt,
        }
        resp = await self.client.get(self.path, params=query | override)
        return resp.status, await resp.text()
