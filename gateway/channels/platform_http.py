"""What the WeChat-family REST clients share: reading a JSON answer and naming a transport failure."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from gateway.channels.base import SendError


def describe_network_error(exc: BaseException) -> str:
    """Name a transport failure without echoing the request URL (it carries the secret or the token)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    return type(exc).__name__


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
