"""Reading one file from a `multipart/form-data` request (what a browser's FormData sends), bounded."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from gateway.media.service import Media, MediaError

# Room for the multipart framing and a short caption around the file itself.
FRAMING_BYTES = 16 * 1024
MAX_FIELD = 4000
CHUNK = 64 * 1024


@dataclass
class UploadBody:
    """The file's bytes and name, and the short text fields sent with it."""

    data: bytes
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)


def upload_body_limit(max_bytes: int) -> int:
    """The largest declared body an upload of at most `max_bytes` may have (its multipart framing too)."""
    return max_bytes + FRAMING_BYTES


async def read_upload(request: web.Request, media: Media) -> UploadBody:
    """The `file` part and other small fields; MediaError 413 past `uploads.max_bytes`, 400 for a bad body."""
    limit = media.settings.max_bytes
    declared = request.content_length
    if declared is not None and declared > upload_body_limit(limit):
        raise media.too_big(declared)  # refused before reading a byte of it
    if not request.content_type.startswith("multipart/form-data"):
        raise MediaError(400, "请以 multipart/form-data 上传，文件放在 file 字段。")
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise MediaError(400, f"上传内容格式不正确：{exc}") from None
    data: bytes | None = None
    filename: str | None = None
    fields: dict[str, str] = {}
    try:
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                raise MediaError(400, "上传内容格式不正确：不支持嵌套的 multipart。")
            if part.name == "file" and data is None:
                filename = part.filename
                data = await _read_part(part, limit, media)
            elif part.name and len(fields) < 8:
                raw = await _read_part(part, MAX_FIELD, media, small=True)
                fields[part.name] = raw.decode("utf-8", "replace")
            else:
                await part.release()
    except MediaError:
        raise
    except (ValueError, HttpProcessingError, RequestPayloadError) as exc:
        # Broken framing or part headers (aiohttp's parser), or a body it cannot decode (Content-Encoding).
        raise MediaError(400, f"上传内容格式不正确：{type(exc).__name__}") from None
    except ConnectionResetError:  # the client hung up mid-upload: nobody reads the answer
        raise MediaError(400, "上传中断：连接已关闭。") from None
    if data is None or not data:
        raise MediaError(400, "没有收到文件：请把文件放在 file 字段。")
    return UploadBody(data, filename, fields)


async def _read_part(part: BodyPartReader, limit: int, media: Media, *, small: bool = False) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        if size > limit:
            if small:
                raise MediaError(400, f"字段 {part.name} 太长（最多 {limit} 字节）。")
            raise media.too_big(size)
        chunks.append(chunk)
    return b"".join(chunks)
