"""What the WeChat-family REST clients share: reading a JSON answer and its errcode, naming a transport
failure, and a POST that carries the access_token and fetches a new one once when the platform rejects it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import aiohttp

from gateway.channels.base import SendError
from gateway.media.fetch import FetchError, download


def describe_network_error(exc: BaseException) -> str:
    """Name a transport failure without echoing the request URL (it carries the secret or the token)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    return type(exc).__name__


def maybe_delivered(exc: BaseException) -> bool:
    """Whether a request that failed with `exc` may still have reached the platform: it timed out or lost
    its connection after being sent, not while connecting (then nothing was sent)."""
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return False
    return isinstance(
        exc,
        TimeoutError | aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientOSError,
    )


async def read_json_object(resp: aiohttp.ClientResponse, platform: str) -> dict[str, Any]:
    """The platform's JSON object (sometimes served as text/plain); anything else is a retryable SendError.

    The platforms answer their own errors with 200 + errcode, so another status means a proxy or an outage
    in between.
    """
    if resp.status != 200:
        raise SendError(f"{platform} API HTTP {resp.status}", retryable=True)
    try:
        body = await resp.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        raise SendError(f"{platform} API returned a body that is not JSON", retryable=True) from None
    if not isinstance(body, dict):
        raise SendError(f"{platform} API returned JSON that is not an object", retryable=True)
    return body


class TokenSource(Protocol):
    """A platform's access_token: the cached one, or a new one after the platform rejected `stale`."""

    async def get(self) -> str: ...

    async def refresh(self, stale: str) -> str: ...


def read_errcode(body: Mapping[str, Any], platform: str) -> int:
    """The answer's errcode (absent means 0); a non-numeric one is a retryable SendError."""
    try:
        return int(body.get("errcode") or 0)
    except (TypeError, ValueError):
        raise SendError(f"{platform} API returned a non-numeric errcode", retryable=True) from None


async def post_with_token(
    session: aiohttp.ClientSession,
    url: str,
    tokens: TokenSource,
    *,
    platform: str,
    what: str,
    accepted: Callable[[dict[str, Any]], bool],
    token_errcodes: frozenset[int],
    client_timeout: aiohttp.ClientTimeout,
    params: Mapping[str, str] | None = None,
    data: bytes | Callable[[], aiohttp.FormData],
    headers: Mapping[str, str] | None = None,
    refresh_log: logging.Logger | None = None,
    delivers: bool = True,
) -> dict[str, Any]:
    """POST with the access_token in the query string; a token-errcode answer fetches a new token, once.

    Returns the answer when `accepted` says so, otherwise the refused answer for the caller to turn into its
    own error. `data` is the body, or a factory for a multipart form (a FormData cannot be posted twice).
    `refresh_log`, when given, notes each refresh (in the platform's own logger). A transport failure is a
    retryable SendError naming `platform` and `what`, never the URL (it has the token); `delivers`: the
    request carries a message to a customer (a timeout may then have delivered it: see
    SendError.maybe_delivered), not an upload.
    """
    token = await tokens.get()
    for attempt in range(2):
        try:
            async with session.post(
                url,
                params={"access_token": token, **(params or {})},
                data=data if isinstance(data, bytes) else data(),
                headers=headers,
                timeout=client_timeout,
            ) as resp:
                body = await read_json_object(resp, platform)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise SendError(
                f"{platform} {what} unreachable: {describe_network_error(exc)}",
                retryable=True,
                maybe_delivered=delivers and maybe_delivered(exc),  # an upload is not a message
            ) from None
        if accepted(body):
            return body
        errcode = read_errcode(body, platform)
        if errcode in token_errcodes and attempt == 0:
            if refresh_log is not None:
                refresh_log.info(
                    "%s access_token rejected, fetching a new one",
                    platform.lower(),
                    extra={"errcode": errcode},
                )
            token = await tokens.refresh(token)
            continue
        return body
    raise SendError(f"{platform} rejected a freshly fetched access_token", retryable=True)  # pragma: no cover


def media_form(data: bytes, filename: str, mime: str) -> Callable[[], aiohttp.FormData]:
    """media/upload's multipart body (field `media`), made anew for each attempt."""

    def form() -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("media", data, filename=filename, content_type=mime)
        return form

    return form


def media_id_of(body: Mapping[str, Any]) -> str | None:
    """media/upload's media_id, or None when the answer has none."""
    media_id = body.get("media_id")
    return media_id if isinstance(media_id, str) and media_id else None


async def fetch_media(
    session: aiohttp.ClientSession,
    api_base: str,
    tokens: TokenSource,
    media_id: str,
    max_bytes: int,
    platform: str,
) -> bytes:
    """`GET /cgi-bin/media/get` (a customer's picture by media_id); FetchError when the platform says no."""
    token = await tokens.get()
    data, content_type = await download(
        session,
        f"{api_base}/cgi-bin/media/get",
        max_bytes,
        params={"access_token": token, "media_id": media_id},
    )
    if content_type in ("application/json", "text/plain"):  # an error document, not the file
        raise FetchError(f"{platform} media/get refused: {data[:200].decode('utf-8', 'replace')}")
    return data
