"""`Media`: accept an upload (size, sniffed type), store it, and sign the URLs that serve it.

A signed URL is `/media/{ref}?exp=<unix seconds>&sig=<hex hmac_sha256(secret, "{ref}:{exp}")>`; `ref` is a
stored file's key, or `m{message_id}` for a platform's image not fetched yet (fetched on first view).
A changed ref or exp, or a URL past its exp, is refused (403).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from gateway.media.settings import UploadsSettings
from gateway.media.sniff import EXTENSIONS, HEAD_BYTES, IMAGE_TYPES, is_image, sniff
from gateway.media.store import LocalMediaStore, MediaStore, StoredFile, keep_secret, read_secret
from gateway.message import Attachment
from gateway.signing import signature_matches

MEDIA_PATH = "/media/"
MAX_NAME = 120
TYPE_NAMES = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WebP",
    "application/pdf": "PDF",
    "application/zip": "ZIP",
}


class MediaError(Exception):
    """An upload refused: `status` 413 (too big) or 415 (type not allowed); the message is for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Upload:
    """A stored upload and the attachment that refers to it."""

    stored: StoredFile
    attachment: Attachment


def clean_name(name: str | None, mime: str) -> str:
    """A display file name: no path, no control characters, bounded; the extension follows the real type."""
    # Some clients (aiohttp, curl --form-string) percent-encode a non-ASCII name; browsers send UTF-8.
    base = unquote(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip(" .")[:MAX_NAME]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return f"{stem or 'file'}.{EXTENSIONS.get(mime, 'bin')}"


class Media:
    """Uploads and signed URLs for one gateway (store and key fixed at start-up)."""

    def __init__(
        self,
        settings: UploadsSettings,
        store: MediaStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store: MediaStore = store or LocalMediaStore(Path(settings.dir))
        self.clock = clock  # injectable: tests move time past a URL's exp without sleeping
        self._secret: bytes | None = settings.secret.encode() if settings.secret else None
        self._unsaved = False  # a made-up key not yet in `{dir}/.url-key`

    async def start(self) -> None:
        """Load the kept signing key when none is configured; else make one, kept with the first upload."""
        if self._secret is None:
            self._secret = await asyncio.to_thread(read_secret, Path(self.settings.dir))
        if self._secret is None:
            self._secret = secrets.token_bytes(32)
            self._unsaved = True

    async def _keep_secret(self) -> None:
        if self._unsaved:
            self._unsaved = False
            self._secret = await asyncio.to_thread(keep_secret, Path(self.settings.dir), self._secret)

    # --- uploads -----------------------------------------------------------------------------------

    def too_big(self, size: int) -> MediaError:
        """The 413 for a body over `uploads.max_bytes`."""
        limit = self.settings.max_bytes / (1024 * 1024)
        return MediaError(413, f"文件太大：最大 {limit:g} MB，请压缩后再发送。")

    def refused_type(self) -> MediaError:
        """The 415 for a type outside `uploads.allowed_types`."""
        names = "、".join(dict.fromkeys(TYPE_NAMES.get(t, t) for t in self.settings.allowed_types))
        return MediaError(415, f"不支持这种文件类型，目前可以发送：{names}。")

    async def accept(self, data: bytes, *, name: str | None, owner: str, images_only: bool = False) -> Upload:
        """Check and store an upload; the type comes from the bytes (MediaError 413 / 415)."""
        if len(data) > self.settings.max_bytes:
            raise self.too_big(len(data))
        mime = sniff(data[:HEAD_BYTES])
        allowed = IMAGE_TYPES if images_only else self.settings.allowed_types
        if mime is None or mime not in allowed:
            raise self.refused_type()
        await self._keep_secret()
        stored = await self.store.put(data, mime=mime, name=clean_name(name, mime), owner=owner)
        return Upload(stored, attachment_of(stored))

    # --- signed URLs -------------------------------------------------------------------------------

    def _signature(self, ref: str, exp: int) -> str:
        if self._secret is None:
            raise RuntimeError("Media.start() was not awaited")
        return hmac.new(self._secret, f"{ref}:{exp}".encode(), hashlib.sha256).hexdigest()

    def signed_path(self, ref: str, ttl_s: int | None = None) -> str:
        """`/media/{ref}?exp=…&sig=…`, valid for `ttl_s` (default `uploads.url_ttl_s`)."""
        exp = int(self.clock()) + (ttl_s or self.settings.url_ttl_s)
        return f"{MEDIA_PATH}{quote(ref, safe='')}?exp={exp}&sig={self._signature(ref, exp)}"

    def verify(self, ref: str, exp: str, sig: str) -> bool:
        """A URL this server signed, not expired."""
        if not exp.isascii() or not exp.isdigit() or len(exp) > 12 or self._secret is None:
            return False
        if int(exp) < self.clock():
            return False
        return signature_matches(self._signature(ref, int(exp)), sig)

    def message_json(self, message_id: int, stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A message's attachment for the APIs and pages: kind, name, size, mime and a signed `url`."""
        attachment = Attachment.from_json(stored)
        if attachment is None:
            return None
        ref = attachment.key or f"m{message_id}"
        return {
            "kind": attachment.kind,
            "name": attachment.name,
            "size": attachment.size,
            "mime": attachment.mime,
            "url": self.signed_path(ref),
        }


def attachment_of(stored: StoredFile) -> Attachment:
    """The attachment of a stored file."""
    kind = "image" if is_image(stored.mime) else "file"
    return Attachment(kind=kind, mime=stored.mime, name=stored.name, size=stored.size, key=stored.key)


def content_disposition(stored: StoredFile) -> str:
    """Inline for pictures, a download for everything else; the name RFC 5987-encoded."""
    how = "inline" if is_image(stored.mime) else "attachment"
    ascii_name = stored.name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"{how}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(stored.name, safe='')}"
