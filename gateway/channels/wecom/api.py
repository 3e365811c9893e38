"""The WeCom 微信客服 REST API over aiohttp: gettoken, kf/sync_msg, kf/send_msg, send_msg_on_event, service_state.

The access token lives in the shared single-flight cache (`gateway.channels.tokens`); 40014/42001 fetch a
new one and retry once. Neither the secret nor a token is ever logged or put into an exception message
(both travel in query strings, so URLs are never logged either).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.channels.base import SendError
from gateway.channels.platform_http import (
    describe_network_error,
    fetch_media,
    media_form,
    media_id_of,
    post_with_token,
    read_errcode,
    read_json_object,
)
from gateway.channels.tokens import SharedTokenStore, TokenCache, parse_expires_in

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)
# WeCom refuses a text over 2048 bytes; 2,000 leaves room.
MAX_TEXT_BYTES = 2000
TOKEN_MARGIN_S = 300.0
# errcodes meaning "this access_token is not (or no longer) valid": fetch a new one, try once more.
TOKEN_ERRCODES = frozenset({40014, 42001})
# sync_msg answers at most this many messages per call.
SYNC_LIMIT = 1000

# The platform said no for good: the same send cannot succeed later (the outbox marks it undeliverable
# and the agent sees why). The 950xx family is 微信客服's own; the ones named here are the ones a send
# meets in practice, every other 950xx is refused with WeCom's own errmsg.
PERMANENT_ERRCODES: Mapping[int, str] = {
    95001: "发送条数已达上限 / quota exhausted (95001): at most 5 messages per customer message, "
    "the customer must write again first",
    95002: "超出48小时回复窗口 / reply window closed (95002): the customer has not written in 48 hours",
    95003: "会话不存在 / no such session (95003)",
    95004: "客服帐号不存在 / open_kfid does not exist (95004)",
    95007: "welcome_code 无效或已过期 / invalid or expired msg code (95007): the 20 s after enter_session have passed",
    95013: "会话已结束 / the session has ended (95013)",
    95018: "当前会话状态不允许发送 / the session state does not allow API sends (95018): "
    "WeCom's reception staff hold it",
    40096: "外部联系人 userid 无效 / invalid external_userid (40096)",
}


class WeComAPIError(Exception):
    """WeCom answered with a non-zero errcode."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


def classify_errcode(errcode: int, errmsg: str) -> SendError:
    """A send's errcode as the outbox understands it (permanent ones are undeliverable, with the reason)."""
    if errcode in PERMANENT_ERRCODES:
        return SendError(f"{PERMANENT_ERRCODES[errcode]} — {errmsg}".rstrip(" —"), retryable=False)
    if 95000 <= errcode < 96000:
        return SendError(f"微信客服 refused the send: errcode {errcode} {errmsg}", retryable=False)
    if errcode == -1:
        return SendError("WeCom system busy (-1), will retry / 系统繁忙，稍后重试", retryable=True)
    return SendError(f"WeCom API errcode {errcode}: {errmsg}", retryable=True)


def _errcode(body: Mapping[str, Any]) -> int:
    return read_errcode(body, "WeCom")


@dataclass(frozen=True, slots=True)
class SyncPage:
    """One kf/sync_msg answer: the messages, the cursor after them, and whether more are waiting."""

    messages: Sequence[Mapping[str, Any]]
    next_cursor: str
    has_more: bool


class WeComAPI:
    """One corp's 微信客服 API client (the secret of the 微信客服 app)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        corp_id: str,
        secret: str,
        *,
        api_base: str,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        margin_s: float = TOKEN_MARGIN_S,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedTokenStore | None = None,
    ) -> None:
        self._session = session
        self.corp_id = corp_id
        self._secret = secret
        self._api_base = api_base.rstrip("/")
        self._timeout = timeout
        self.tokens = TokenCache(
            self._fetch_token, margin_s=margin_s, clock=clock, name=f"wecom:{corp_id}", shared=shared
        )

    def __repr__(self) -> str:
        return f"WeComAPI(corp_id={self.corp_id!r})"

    async def _fetch_token(self) -> tuple[str, float]:
        params = {"corpid": self.corp_id, "corpsecret": self._secret}
        try:
            async with self._session.get(
                f"{self._api_base}/cgi-bin/gettoken", params=params, timeout=self._timeout
            ) as resp:
                body = await read_json_object(resp, "WeCom")
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = describe_network_error(exc)
            logger.warning(
                "wecom access_token fetch failed", extra={"corp_id": self.corp_id, "error": reason}
            )
            raise SendError(f"access_token fetch failed: {reason}", retryable=True) from None
        token = body.get("access_token")
        if _errcode(body) != 0 or not isinstance(token, str) or not token:
            errcode = _errcode(body) or -1
            errmsg = str(body.get("errmsg") or "no access_token in the answer")
            # 40013 corp id / 40001 secret / 60020 server IP not in the allow-list: the operator must fix
            # the config; sends stay retryable so they go out once it is fixed.
            logger.error(
                "wecom access_token fetch refused: errcode %s %s (check channels.wecom corp_id/secret and the "
                "企业可信IP allow-list)",
                errcode,
                errmsg,
                extra={"corp_id": self.corp_id},
            )
            raise SendError(f"access_token fetch refused: errcode {errcode} {errmsg}", retryable=True)
        expires_in = parse_expires_in(body.get("expires_in"))
        logger.info("wecom access_token refreshed", extra={"corp_id": self.corp_id, "expires_in": expires_in})
        return token, expires_in

    async def call(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST one JSON API call; a rejected token is refreshed once. Raises WeComAPIError or SendError."""
        body = await post_with_token(
            self._session,
            f"{self._api_base}{path}",
            self.tokens,
            platform="WeCom",
            what="API",
            accepted=lambda body: _errcode(body) == 0,
            token_errcodes=TOKEN_ERRCODES,
            client_timeout=self._timeout,
            data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8"},
            refresh_log=logger,
        )
        if (errcode := _errcode(body)) != 0:
            raise WeComAPIError(errcode, str(body.get("errmsg") or ""))
        return body

    async def upload_media(self, kind: str, data: bytes, filename: str, mime: str) -> str:
        """`POST /cgi-bin/media/upload?type=image|file` (multipart `media`) → a temporary media_id (3 days)."""
        body = await post_with_token(
            self._session,
            f"{self._api_base}/cgi-bin/media/upload",
            self.tokens,
            platform="WeCom",
            what="media/upload",
            delivers=False,
            accepted=lambda body: _errcode(body) == 0 and bool(media_id_of(body)),
            token_errcodes=TOKEN_ERRCODES,
            client_timeout=self._timeout,
            params={"type": kind},
            data=media_form(data, filename, mime),
        )
        if _errcode(body) == 0 and (media_id := media_id_of(body)):
            return media_id
        raise classify_errcode(
            _errcode(body) or -1, str(body.get("errmsg") or "media/upload gave no media_id")
        )

    async def get_media(self, media_id: str, max_bytes: int) -> bytes:
        """`GET /cgi-bin/media/get` (a customer's image by media_id); FetchError when WeCom says no."""
        return await fetch_media(self._session, self._api_base, self.tokens, media_id, max_bytes, "WeCom")

    # --- 微信客服 calls --------------------------------------------------------------------------

    async def sync_msg(
        self, *, cursor: str | None, token: str | None, open_kfid: str | None, limit: int = SYNC_LIMIT
    ) -> SyncPage:
        """One page of new messages after `cursor` (the callback's `token` lifts the rate limit)."""
        payload: dict[str, Any] = {"limit": limit, "voice_format": 0}
        if cursor:
            payload["cursor"] = cursor
        if token:
            payload["token"] = token
        if open_kfid:
            payload["open_kfid"] = open_kfid
        body = await self.call("/cgi-bin/kf/sync_msg", payload)
        items = body.get("msg_list") or []
        if not isinstance(items, list):
            raise SendError("kf/sync_msg: msg_list is not a list", retryable=True)
        return SyncPage(
            messages=[m for m in items if isinstance(m, dict)],
            next_cursor=str(body.get("next_cursor") or cursor or ""),
            has_more=bool(body.get("has_more")),
        )

    async def send(self, path: str, payload: Mapping[str, Any]) -> None:
        """kf/send_msg or kf/send_msg_on_event; errcodes become SendErrors the outbox understands."""
        try:
            await self.call(path, payload)
        except WeComAPIError as exc:
            raise classify_errcode(exc.errcode, exc.errmsg) from None

    async def service_state(self, open_kfid: str, external_userid: str) -> tuple[int, str | None]:
        """The session's state (0 未处理 … 4 已结束) and its servicer, if any."""
        body = await self.call(
            "/cgi-bin/kf/service_state/get", {"open_kfid": open_kfid, "external_userid": external_userid}
        )
        try:
            state = int(body.get("service_state") or 0)
        except (TypeError, ValueError):
            raise SendError("kf/service_state/get: service_state is not a number", retryable=True) from None
        # The docs name it servicer_userid; some answers were seen with service_userid.
        return state, body.get("servicer_userid") or body.get("service_userid") or None

    async def transfer(
        self, open_kfid: str, external_userid: str, state: int, servicer_userid: str | None = None
    ) -> None:
        """Move the session to another state (2 待接入池, 3 a named 接待人员, …); raises SendError."""
        payload: dict[str, Any] = {
            "open_kfid": open_kfid,
            "external_userid": external_userid,
            "service_state": state,
        }
        if servicer_userid:
            payload["servicer_userid"] = servicer_userid
        await self.send("/cgi-bin/kf/service_state/trans", payload)
