"""Images and files over HTTP: `GET /media/{ref}` (signed URLs) and an agent's attachment send.

- `GET /media/{ref}?exp=…&sig=…` serves a stored file (see gateway.media.service for the signature);
  403 for a forged or expired URL. A platform's image (ref `m{message_id}`) is fetched through its
  channel adapter on first view and kept. Pictures are served inline with their sniffed type, anything
  else as a download; always `X-Content-Type-Options: nosniff` and a sandboxing CSP.
- `POST /api/v1/conversations/{id}/attachments` (bearer token; multipart: `file`, optional `text`): the
  assigned agent sends an image or file; stored, then delivered by the outbox like a text reply.
  413 over `uploads.max_bytes`, 415 for a type outside `uploads.allowed_types`.
"""

from __future__ import annotations

import json
import logging
import re

import aiohttp
from aiohttp import web

from gateway.channels.base import SendError
from gateway.handoff_events import HandoffError
from gateway.http.auth import require_agent
from gateway.http.bodies import http_error, path_id
from gateway.http.expect import upload_route
from gateway.keys import HANDOFF, RUNTIME
from gateway.media import Media, MediaError
from gateway.media.fetch import FetchError
from gateway.media.service import content_disposition
from gateway.media.store import StoredFile
from gateway.media.upload_body import read_upload
from gateway.message import Attachment
from gateway.runtime import Runtime

logger = logging.getLogger(__name__)

MESSAGE_REF = re.compile(r"^m([1-9][0-9]{0,17})$")
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")
_STATUS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType,
    502: web.HTTPBadGateway,
}


def media_routes() -> list[web.AbstractRouteDef]:
    """The signed file URLs and the agents' attachment upload."""
    return [
        web.get("/media/{ref}", serve_media),
        upload_route("POST", "/api/v1/conversations/{id}/attachments", send_attachment),
    ]


def media_error(exc: MediaError, limit: int) -> web.HTTPException:
    """The HTTP answer of a refused upload (JSON `{"error"}`; 413 with the limit)."""
    if exc.status == 413:
        return http_error(
            web.HTTPRequestEntityTooLarge,
            exc.message,
            fields={"max_bytes": limit},
            max_size=limit,
            actual_size=limit + 1,
        )
    return http_error(_STATUS.get(exc.status, web.HTTPBadRequest), exc.message)


def media_of(runtime: Runtime) -> Media:
    """The app's Media (always set by create_app)."""
    if runtime.media is None:
        raise http_error(web.HTTPNotFound, "uploads are not configured")
    return runtime.media


async def serve_media(request: web.Request) -> web.StreamResponse:
    """One stored file, if the URL's signature and expiry hold."""
    runtime = request.app[RUNTIME]
    media = media_of(runtime)
    ref = request.match_info["ref"]
    if not media.verify(ref, request.query.get("exp", ""), request.query.get("sig", "")):
        raise http_error(web.HTTPForbidden, "链接无效或已过期，请刷新页面后再打开。")
    match = MESSAGE_REF.match(ref)
    stored = (
        await _message_file(runtime, media, int(match.group(1))) if match else await media.store.info(ref)
    )
    data = await media.store.read(stored.key) if stored is not None else None
    if stored is None or data is None:
        raise http_error(web.HTTPNotFound, "文件不存在或已被清理。")
    return web.Response(
        body=data,
        content_type=stored.mime,
        headers={
            "Content-Disposition": content_disposition(stored),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=300",
            "Referrer-Policy": "no-referrer",
        },
    )


async def _message_file(runtime: Runtime, media: Media, message_id: int) -> StoredFile | None:
    """A message's stored file; a platform's image is fetched through its adapter first (once kept)."""
    row = await runtime.store.message(message_id)
    attachment = Attachment.from_json(row.attachment) if row is not None else None
    if row is None or attachment is None:
        return None
    if attachment.key is not None:
        return await media.store.info(attachment.key)
    fetch = getattr(runtime.adapters.get((row.channel, row.account)), "fetch_media", None)
    if fetch is None:
        return None
    try:
        data = await fetch(attachment, media.settings.max_bytes)
        upload = await media.accept(
            data, name=attachment.name or None, owner=row.conversation_key, images_only=True
        )
    except (aiohttp.ClientError, TimeoutError, MediaError, ValueError, SendError) as exc:
        # The exception's type only for network errors: their text may carry a URL with an access token.
        why = str(exc) if isinstance(exc, MediaError | FetchError) else type(exc).__name__
        logger.warning("media: fetching message %s's %s from %s failed: %s", message_id, attachment.kind,
                       row.channel, why)  # fmt: skip
        raise http_error(web.HTTPBadGateway, "暂时无法从平台获取这张图片，请稍后再试。") from None
    kept = {**attachment.as_json(), **upload.attachment.as_json()}
    async with runtime.store.transaction() as tx:
        await tx.set_attachment(message_id, kept)
    return upload.stored


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
MAX_CAPTION = 2000


def _caption(text: str | None) -> str:
    """The optional `text` field: absent, or a real line of at most MAX_CAPTION characters (else 400)."""
    if text is None:
        return ""
    if not text.strip() or len(text) > MAX_CAPTION or _CONTROL.search(text):
        raise MediaError(400, f"text 须为 1–{MAX_CAPTION} 个字符的文字，不能含控制字符。")
    return text


async def send_attachment(request: web.Request) -> web.Response:
    """The assigned agent sends an image or file (multipart `file`, optional `text` caption)."""
    agent = await require_agent(request)
    service = request.app[HANDOFF]
    runtime = request.app[RUNTIME]
    media = media_of(runtime)
    cid = str(path_id(request, "conversation"))
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise http_error(web.HTTPBadRequest, "Idempotency-Key must be 1–200 printable ASCII characters")
    try:
        await service.conversation_for(agent, cid)  # before reading the file: no upload kept for nothing
        body = await read_upload(request, media)
        caption = _caption(body.fields.get("text"))  # before the file is kept
        upload = await media.accept(body.data, name=body.filename, owner=f"agent:{agent.id}")
        message_id = await service.reply(
            agent,
            cid,
            caption or upload.attachment.placeholder(),
            idempotency_key=key,
            attachment=upload.attachment,
        )
    except MediaError as exc:
        raise media_error(exc, media.settings.max_bytes) from None
    except HandoffError as exc:
        raise http_error(_STATUS.get(exc.status, web.HTTPBadRequest), exc.message) from None
    return web.json_response(
        {
            "message_id": message_id,
            "conversation_id": int(cid),
            "attachment": media.message_json(message_id, upload.attachment.as_json()),
        },
        status=201,
        dumps=lambda v: json.dumps(v, ensure_ascii=False),
    )
