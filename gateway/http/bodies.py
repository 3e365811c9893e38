"""Safe request readers shared by the channel adapters and APIs: size limits first, then parsing.

One JSON parser (`loads`/`parse_json`: depth, int64-bounded integers, no lone surrogates) and one integer
parser for path and query parameters (`parse_int`, `path_id`), so malformed input is a 400/404 everywhere
instead of a RecursionError, ValueError, OverflowError or UnicodeEncodeError deep inside.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

DEFAULT_MAX_DEPTH = 32
# Every stored id is a signed 64-bit integer (BIGINT); a larger one would overflow the database driver.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Row ids (conversations, messages, agent events…) are INTEGER keys: 32-bit on PostgreSQL, so a larger id
# or cursor cannot exist and would make the driver raise instead of finding nothing.
ID_MAX = 2**31 - 1
_INT = re.compile(r"[+-]?[0-9]{1,19}")  # ASCII digits only: str.isdigit() also accepts "²"
# A JSON string (to its closing quote, or to the end of an unterminated one) or a bracket. Possessive and
# allowed to end the text: an unterminated string is read once, not again from each quote inside it (the
# old pattern failed at every quote and rescanned: a 64 KB body of \" held the event loop 15 s).
_TOKENS = re.compile(r'"(?:[^"\\]|\\[\s\S]?)*+(?:"|\Z)|[\[\]{}]')


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


def client_gone(request: web.BaseRequest) -> bool:
    """The request's connection is closed or closing: the client hung up (a driver's reset is not this)."""
    transport = request.transport
    return transport is None or transport.is_closing()


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
        try:
            chunk = await request.content.read(65536)
        except RequestPayloadError:  # e.g. Content-Encoding: gzip on a body that is not gzip
            encoding = request.headers.get("Content-Encoding", "")[:40]
            raise http_error(
                web.HTTPBadRequest, f"body cannot be decoded (Content-Encoding: {encoding})"
            ) from None
        except ConnectionResetError:
            # The client hung up mid-body (a cancelled upload): nobody reads an answer; not a server fault.
            raise http_error(web.HTTPBadRequest, "connection closed before the body was complete") from None
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
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest


class BadJson(ValueError):
    """JSON text kefu refuses; the message says why (safe to show the sender)."""


def _bounded_int(digits: str) -> int:
    # Called by json for every integer literal: refuse huge ones before int() (4,300-digit limit, and
    # anything past int64 would overflow a BIGINT column later).
    if not _INT.fullmatch(digits):
        raise BadJson("integer out of range (signed 64-bit)")
    value = int(digits)
    if not INT64_MIN <= value <= INT64_MAX:
        raise BadJson("integer out of range (signed 64-bit)")
    return value


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates ("\\ud800"): valid JSON, but no database can store them as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadJson("string contains a lone surrogate (invalid Unicode)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(text: str, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse JSON text with kefu's limits; BadJson (a ValueError) on anything refused."""
    # json.loads recurses per level: a deep enough body would raise RecursionError inside the parser.
    if json_depth(text) > max_depth:
        raise BadJson(f"JSON nested deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_int=_bounded_int)
    except BadJson:
        raise
    except json.JSONDecodeError as exc:
        raise BadJson(f"body is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError as exc:  # e.g. a float literal Python cannot convert
        raise BadJson(f"body is not valid JSON: {exc}") from None
    _check_strings(value)
    return value


def parse_json(raw: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode a UTF-8 JSON body; 400 for invalid UTF-8, invalid JSON, nesting deeper than max_depth,
    integers outside int64, or lone surrogates."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise http_error(web.HTTPBadRequest, "body is not UTF-8") from None
    try:
        return loads(text, max_depth)
    except BadJson as exc:
        raise http_error(web.HTTPBadRequest, str(exc)) from None


def parse_int(
    raw: str | None,
    name: str,
    *,
    default: int | None = None,
    minimum: int = 0,
    maximum: int = ID_MAX,
) -> int:
    """A query parameter as an integer within [minimum, maximum]; 400 naming it otherwise."""
    if raw is None or raw == "":
        if default is None:
            raise http_error(web.HTTPBadRequest, f"{name} is required")
        return default
    value = int(raw) if _INT.fullmatch(raw) else None
    if value is None or not minimum <= value <= maximum:
        raise http_error(web.HTTPBadRequest, f"{name} must be an integer from {minimum} to {maximum}")
    return value


def path_id(request: web.Request, what: str, name: str = "id") -> int:
    """A row id (1…ID_MAX) from the URL path; 404 "no {what} …" for anything else (no such row can exist)."""
    raw = request.match_info[name]
    if not _INT.fullmatch(raw) or raw[0] in "+-" or not 1 <= int(raw) <= ID_MAX:
        raise http_error(web.HTTPNotFound, f"no {what} {raw[:40]}")
    return int(raw)


async def read_json(request: web.Request, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Read and parse a JSON body with the size (413) and depth (400) limits."""
    return parse_json(await read_body(request, max_bytes), max_depth)


ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


def expect_within(limit: Callable[[web.Request], int]) -> ExpectHandler:
    """An `Expect: 100-continue` handler refusing (413) a declared body over `limit` before it is sent.

    aiohttp's default answers 100 Continue whatever the size: the client sends the whole body, then gets
    the 413. A route takes this as its `expect_handler` (gateway/http/expect.py gives it to every route).
    """

    async def expect(request: web.Request) -> web.StreamResponse | None:
        if request.version < (1, 1):
            return None  # HTTP/1.0 has no 100 Continue, and an expectation there is ignored (RFC 9110)
        if request.headers.get("Expect", "").lower() != "100-continue":
            return _expect_error(request, 417, "only Expect: 100-continue is understood")
        declared, most = request.content_length, limit(request)
        if declared is not None and declared > most:
            # Returned: aiohttp sends it instead of 100 Continue and never runs the handler.
            return _expect_error(
                request, 413, f"body larger than {most} bytes", max_size=most, actual_size=declared
            )
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the 100 is not part of the response's size
        return None

    return expect


def _expect_error(request: web.Request, status: int, message: str, **fields: Any) -> web.Response:
    # A response, not an HTTPException (as http_error's): aiohttp deprecates returning those here.
    response = web.json_response({"error": message, **fields}, status=status)
    # The body the client was told not to send is never read: the connection is closed after the answer,
    # at once (aiohttp would wait up to 10 s for that body to discard it, and a next request on the
    # connection went unanswered meanwhile).
    response.force_close()
    request.content.feed_eof()
    return response
