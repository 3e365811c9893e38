"""What a file really is, from its first bytes (the browser's or platform's claimed type is ignored)."""

from __future__ import annotations

# Raster images only: SVG is script-capable and is never served as an image.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
KNOWN_TYPES = (*IMAGE_TYPES, "application/pdf", "application/zip")
EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "application/pdf": "pdf",
    "application/zip": "zip",
}
HEAD_BYTES = 16  # enough for every signature below


def sniff(head: bytes) -> str | None:
    """The content type of a file starting with `head`, or None when it is none of KNOWN_TYPES."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    return None


def is_image(mime: str) -> bool:
    """A type we show inline as a picture."""
    return mime in IMAGE_TYPES
