"""Downloading a platform's image (WeChat PicUrl / media/get, OneBot, QQ bot, WeCom), bounded in size."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

CHUNK = 64 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=5)


class FetchError(ValueError):
    """The platform did not hand the file over (status, size, or an error document instead of bytes)."""


async def download(
    session: aiohttp.ClientSession, url: str, max_bytes: int, *, params: Mapping[str, str] | None = None
) -> tuple[bytes, str]:
    """The body and Content-Type of a GET; FetchError past `max_bytes` or on a non-2xx answer."""
    async with session.get(url, params=params, timeout=TIMEOUT) as resp:
        if resp.status >= 300:
            raise FetchError(f"{url.split('?')[0]} answered {resp.status}")
        if resp.content_length is not None and resp.content_length > max_bytes:
            raise FetchError(f"file of {resp.content_length} bytes is over uploads.max_bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError("file is over uploads.max_bytes")
            chunks.append(chunk)
        return b"".join(chunks), resp.content_type
