"""WeChat official-account REST API over aiohttp: the access_token refresher and 客服消息 (customer-service) sends.

wechatpy's own client is synchronous (requests) and its token fetch has no timeout, so kefu talks to the
two endpoints it needs directly. Neither the AppSecret nor an access_token is ever logged or put into an
exception message (both travel in query strings, so URLs are never logged either).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

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

DEFAULT_API_BASE = "https://api.weixin.qq.com"
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)
# WeChat rejects a text over ~2048 bytes (45002); 2,000 leaves room for its own counting quirks.
MAX_TEXT_BYTES = 2000
# Refresh this long before WeChat's expires_in runs out; a refresh overlaps the old token by 5 min.
TOKEN_MARGIN_S = 300.0
# errcodes meaning "this access_token is not (or no longer) valid": fetch a new one and try once more.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})

# The platform said no for good: retrying the same send cannot succeed (the outbox marks it undeliverable).
PERMANENT_ERRCODES: Mapping[int, str] = {
    40003: "openid 无效 / invalid openid (40003): the customer is not a follower of this account",
    43004: "用户未关注公众号 / the customer has unfollowed the account (43004)",
    45002: "消息内容超长 / message text too long (45002)",
    45015: "超出48小时回复窗口 / reply window closed (45015): the customer has not written in 48 hours",
    45047: "客服消息下行条数超限 / per-message quota exhausted (45047): at most 5 replies per customer message",
    48001: "公众号无客服消息接口权限 / this account may not use the 客服消息 API (48001)",
}


class WeChatAPIError(Exception):
    """WeChat answered with a non-zero errcode (or an unusable response)."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class AccessTokenManager:
    """One appid's access_token: cached until shortly before expiry, fetched by one caller at a time.

    WeChat invalidates the previous token (after a 5-minute overlap) whenever a new one is fetched, so
    concurrent senders must share a single fetch instead of racing each other into 40001 errors.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        appid: str,
        secret: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        margin_s: float = TOKEN_MARGIN_S,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedTokenStore | None = None,
    ) -> None:
        self._session = session
        self.appid = appid
        self._secret = secret
        self._api_base = api_base.rstrip("/")
        self._timeout = timeout
        self._cache = TokenCache(
            self._fetch, margin_s=margin_s, clock=clock, name=f"wechat:{appid}", shared=shared
        )

    def __repr__(self) -> str:  # the default repr would show nothing secret, but be explicit about it
        return f"AccessTokenManager(appid={self.appid!r})"

    @property
    def fetches(self) -> int:
        """How many times a token was requested from WeChat (for metrics and tests)."""
        return self._cache.fetches

    async def get(self) -> str:
        """A valid access_token, fetching one (single-flight) when the cache is empty or expiring."""
        return await self._cache.get()

    async def refresh(self, stale: str) -> str:
        """A new token after WeChat rejected `stale`; callers holding the same stale token share one fetch."""
        return await self._cache.refresh(stale)

    async def _fetch(self) -> tuple[str, float]:
        params = {"grant_type": "client_credential", "appid": self.appid, "secret": self._secret}
        try:
            async with self._session.get(
                f"{self._api_base}/cgi-bin/token", params=params, timeout=self._timeout
            ) as resp:
                body = await read_json_object(resp, "WeChat")
        except (TimeoutError, aiohttp.ClientError) as exc:
            logger.warning(
                "wechat access_token fetch failed",
                extra={"appid": self.appid, "error": describe_network_error(exc)},
            )
            raise SendError(
                f"access_token fetch failed: {describe_network_error(exc)}", retryable=True
            ) from None
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            errcode = int(body.get("errcode") or -1)
            errmsg = str(body.get("errmsg") or "no access_token in the answer")
            # 40013 appid / 40125 secret / 40164 server IP not whitelisted are config problems the operator
            # must fix; the send stays retryable so it goes out once the config is corrected.
            logger.error(
                "wechat access_token fetch refused: errcode %s %s (check channels.wechat appid/secret and the "
                "IP whitelist)",
                errcode,
                errmsg,
                extra={"appid": self.appid},
            )
            raise SendError(f"access_token fetch refused: errcode {errcode} {errmsg}", retryable=True)
        expires_in = parse_expires_in(body.get("expires_in"))
        logger.info("wechat access_token refreshed", extra={"appid": self.appid, "expires_in": expires_in})
        return token, expires_in


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean_text(text: str) -> str:
    """Drop the characters XML 1.0 (and UTF-8) cannot carry: C0 controls except tab/newline/CR, lone surrogates."""
    return _XML_INVALID.sub("", text)


# Where a long text may be cut, best first: paragraph, line, sentence end, clause, space.
_CUT_PATTERNS = (
    re.compile(r"\n\s*\n"),
    re.compile(r"\n"),
    re.compile(r"(?<=[。！？!?；;…])|(?<=\.)(?=\s)"),
    re.compile(r"(?<=[，,、：:）)」』”])"),
    re.compile(r"(?<=\s)"),
)


def _utf8_prefix_chars(text: str, limit: int) -> int:
    """How many leading characters of `text` fit in `limit` UTF-8 bytes."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return len(text)
    # Back off to a character boundary (continuation bytes are 0b10xxxxxx).
    cut = limit
    while cut > 0 and (encoded[cut] & 0xC0) == 0x80:
        cut -= 1
    return len(encoded[:cut].decode("utf-8"))


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """Cut `text` into pieces of at most `limit` UTF-8 bytes, at paragraph, line or sentence ends when possible."""
    pieces: list[str] = []
    rest = text
    while len(rest.encode("utf-8")) > limit:
        window_len = _utf8_prefix_chars(rest, limit)
        window = rest[:window_len]
        cut = skip = 0
        for pattern in _CUT_PATTERNS:
            matches = [m for m in pattern.finditer(window) if m.start() > 0]
            # A boundary in the first third would make many tiny messages; try a weaker boundary instead.
            if matches and matches[-1].start() >= window_len // 3:
                cut, skip = matches[-1].start(), matches[-1].end() - matches[-1].start()
                break
        if cut == 0:
            cut, skip = window_len, 0  # no boundary at all (one long word or URL): cut at the byte limit
        piece = rest[:cut].rstrip()
        if piece:
            pieces.append(piece)
        rest = rest[cut + skip :].lstrip("\n")
    if rest.strip() or not pieces:
        pieces.append(rest)
    return pieces


def classify_errcode(errcode: int, errmsg: str) -> SendError:
    """Turn a 客服消息 errcode into a SendError the outbox understands (permanent ones are undeliverable)."""
    if errcode in PERMANENT_ERRCODES:
        return SendError(PERMANENT_ERRCODES[errcode], retryable=False)
    if errcode == -1:
        return SendError("WeChat system busy (-1), will retry / 系统繁忙，稍后重试", retryable=True)
    return SendError(f"WeChat API errcode {errcode}: {errmsg}", retryable=True)


class SplitProgress(Protocol):
    """Counters shared by the processes (gateway/coord/counters.py): pieces of a long text already sent."""

    async def get(self, name: str) -> int: ...

    async def raise_to(self, name: str, value: int, ttl_s: float) -> int: ...


# As long as the outbox may retry a row (outbox.give_up_after's default, 24 h).
SPLIT_PROGRESS_TTL_S = 24 * 3600.0


class CustomerServiceSender:
    """Sends texts through the 客服消息 API (`/cgi-bin/message/custom/send`) for one account."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: AccessTokenManager,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_TEXT_BYTES,
        progress: SplitProgress | None = None,
    ) -> None:
        self._session = session
        self.tokens = tokens
        self._api_base = api_base.rstrip("/")
        self._timeout = timeout
        self._max_bytes = max_bytes
        # A long text goes out as several messages; if piece 2 of 3 fails, the outbox retries the whole text.
        # Remember how many pieces already went out so the customer does not get piece 1 twice; with
        # several processes (`progress`: Redis counters) the retry may run on another one.
        self._progress: OrderedDict[str, int] = OrderedDict()
        self._shared = progress

    async def send_text(self, openid: str, text: str, *, row: int | None = None) -> None:
        """Deliver `text` to `openid`, split into several messages when it exceeds the size limit.

        `row`: the outbox row being delivered. Progress through a split text is kept per row: a later row
        with the same text (the customer asks again after a row gave up half-way) starts from piece 1."""
        cleaned = clean_text(text)
        if not cleaned.strip():
            return  # WeChat refuses empty content (44004); there is nothing to deliver
        pieces = split_text(cleaned, self._max_bytes)
        said = f"{openid}\x00{text}" if row is None else f"row {row}\x00{openid}\x00{text}"
        key = hashlib.sha1(said.encode("utf-8", "surrogatepass")).hexdigest()
        shared = self._shared if len(pieces) > 1 else None
        name = f"wechat:split:{key}"
        done = await shared.get(name) if shared is not None else self._progress.get(key, 0)
        for index in range(done, len(pieces)):
            await self._post({"touser": openid, "msgtype": "text", "text": {"content": pieces[index]}})
            if shared is not None:
                await shared.raise_to(name, index + 1, SPLIT_PROGRESS_TTL_S)
            elif len(pieces) > 1:
                self._remember(key, index + 1)
        self._progress.pop(key, None)

    async def send_image(self, openid: str, data: bytes, filename: str, mime: str) -> None:
        """Upload the picture as temporary media (3 days), then send it as a 客服消息 image."""
        media_id = await self.upload_media("image", data, filename, mime)
        await self._post({"touser": openid, "msgtype": "image", "image": {"media_id": media_id}})

    async def upload_media(self, kind: str, data: bytes, filename: str, mime: str) -> str:
        """`POST /cgi-bin/media/upload?type=…` (multipart field `media`) → the temporary media_id."""
        body = await post_with_token(
            self._session,
            f"{self._api_base}/cgi-bin/media/upload",
            self.tokens,
            platform="WeChat",
            what="media/upload",
            delivers=False,
            accepted=lambda body: bool(media_id_of(body)),
            token_errcodes=TOKEN_ERRCODES,
            client_timeout=self._timeout,
            params={"type": kind},
            data=media_form(data, filename, mime),
        )
        if media_id := media_id_of(body):
            return media_id
        raise classify_errcode(_errcode(body), str(body.get("errmsg") or "media/upload gave no media_id"))

    async def get_media(self, media_id: str, max_bytes: int) -> bytes:
        """`GET /cgi-bin/media/get` (a customer's picture by MediaId); FetchError when WeChat says no."""
        return await fetch_media(self._session, self._api_base, self.tokens, media_id, max_bytes, "WeChat")

    def _remember(self, key: str, sent: int) -> None:
        self._progress[key] = sent
        self._progress.move_to_end(key)
        while len(self._progress) > 1024:
            self._progress.popitem(last=False)

    async def _post(self, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        body = await post_with_token(
            self._session,
            f"{self._api_base}/cgi-bin/message/custom/send",
            self.tokens,
            platform="WeChat",
            what="API",
            accepted=lambda body: _errcode(body) == 0,
            token_errcodes=TOKEN_ERRCODES,
            client_timeout=self._timeout,
            data=data,
            headers={"Content-Type": "application/json; charset=utf-8"},
            refresh_log=logger,
        )
        if (errcode := _errcode(body)) != 0:
            raise classify_errcode(errcode, str(body.get("errmsg") or ""))


def _errcode(body: Mapping[str, Any]) -> int:
    return read_errcode(body, "WeChat")
