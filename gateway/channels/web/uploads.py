"""`POST /web/uploads?visitor=<id>`: a web visitor's image or file, before the message that carries it.

The page uploads the file (multipart `file`), gets `{"key", "kind", "name", "size", "mime", "url"}` back,
then sends `{"type": "message", "client_id", "attachment": key}` over /web/ws. The key is only good for
the visitor who uploaded it. Limits: `uploads.max_bytes` (413) and `uploads.allowed_types`, decided by
the file's first bytes (415); uploads spend from the visitor's message rate limit (429).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.channels.web.adapter import RATE_LIMITED, RATE_LIMITED_TEXT, conversation_key
from gateway.http.bodies import http_error
from gateway.media import Media, MediaError
from gateway.media.upload_body import read_upload
from gateway.rate_limit import retry_after_header

if TYPE_CHECKING:
    from gateway.channels.web.ws import WebChatSockets

UPLOAD_PATH = "/web/uploads"
_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    415: web.HTTPUnsupportedMediaType,
}


def refusal(exc: MediaError, media: Media) -> web.HTTPException:
    """The JSON error of a refused upload (the page shows `error` to the visitor)."""
    if exc.status == 413:
        limit = media.settings.max_bytes
        return http_error(
            web.HTTPRequestEntityTooLarge,
            exc.message,
            fields={"max_bytes": limit},
            max_size=limit,
            actual_size=limit + 1,
        )
    return http_error(_STATUS.get(exc.status, web.HTTPBadRequest), exc.message)


async def visitor_upload(hub: WebChatSockets, visitor: str, request: web.Request) -> web.Response:
    """Store one upload of a visitor (already checked to be a valid visitor id)."""
    media = hub.runtime.media
    if media is None:
        raise http_error(web.HTTPNotFound, "uploads are not configured")
    key = conversation_key(hub.account, visitor)
    wait = hub.rate_limit.take(key) if hub.rate_limit is not None else 0.0
    if wait > 0:
        retry_after = retry_after_header(wait)
        raise http_error(
            web.HTTPTooManyRequests,
            RATE_LIMITED_TEXT,
            fields={"code": RATE_LIMITED, "retry_after": int(retry_after)},
            headers={"Retry-After": retry_after},
        )
    try:
        body = await read_upload(request, media)
        upload = await media.accept(body.data, name=body.filename, owner=key)
    except MediaError as exc:
        raise refusal(exc, media) from None
    attachment = upload.attachment
    return web.json_response(
        {
            "key": upload.stored.key,
            "kind": attachment.kind,
            "name": attachment.name,
            "size": attachment.size,
            "mime": attachment.mime,
            "url": media.signed_path(upload.stored.key),
        },
        status=201,
        dumps=lambda v: json.dumps(v, ensure_ascii=False),
    )
