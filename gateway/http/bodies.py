"""Safe request-body readers shared by the channel adapters: size limits first, then parsing."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

DEFAULT_MAX_DEPTH = 32
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def http_error(
    cls: type[web.HTTPException],
    message: str,
    *,
    fields: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> web.HTTPException:
    """An HTTP error with a JSON body `{"error": message, **fields}` (no traceback, no internals)."""
    body = {"error": message, **(fields or {})}
    return cls(text=json.dumps(body, ensure_ascii=False), content_type="application/json", **kwargs)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The raw body, or 413 when it is larger than max_bytes (checked before reading when declared)."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise http_error(
            web.HTTPRequestEntityTooLarge,
            f"body larger than {max_bytes} bytes",
            max_size=max_bytes,
            actual_size=declared,
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise http_error(
                web.HTTPRequestEntityTooLarge,
                f"body larger than {max_bytes} bytes",
                max_size=max_bytes,
                actual_size=size,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def json_depth(text: str) -> int:
    """Deepest nesting of arrays/objects in JSON text, counted without recursion or parsing."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(raw: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode a UTF-8 JSON body; 400 for invalid UTF-8, invalid JSON, or nesting deeper than max_depth."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise http_error(web.HTTPBadRequest, "body is not UTF-8") from None
    # json.loads recurses per level: a deep enough body would raise RecursionError inside the parser.
    if json_depth(text) > max_depth:
        raise http_error(web.HTTPBadRequest, f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise http_error(
            web.HTTPBadRequest, f"body is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None


async def read_json(request: web.Request, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Read and parse a JSON body with the size (413) and depth (400) limits."""
    return parse_json(await read_body(request, max_bytes), max_depth)
