"""The OpenAPI operation of an agent's attachment send (gateway/http/media_api.py), for gateway.openapi.spec()."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.http.openapi_parts import ID, STR

__all__ = ["attachment_path"]


def attachment_path(
    op: Callable[..., dict[str, Any]],
    obj: Callable[..., dict[str, Any]],
    text: dict[str, Any],
    conversation: list[dict[str, Any]],
) -> dict[str, Any]:
    """`POST /conversations/{id}/attachments` built with the spec's own helpers (`_op`, `_obj`, a text schema)."""
    kinds = {"type": "string", "enum": ["image", "file"]}
    attachment = obj(
        ("kind", "name", "size", "mime", "url"), kind=kinds, name=STR, size=ID, mime=STR, url=STR
    )
    sent = obj(
        ("message_id", "conversation_id", "attachment"),
        message_id=ID,
        conversation_id=ID,
        attachment=attachment,
    )
    operation = op(
        "Send an image or file (multipart `file`, optional `text`); limits uploads.max_bytes (413) and "
        "uploads.allowed_types by content (415)",
        sent,
        status=201,
        errors=(400, 403, 404, 409, 413, 415),
        params=conversation,
    )
    form = obj(("file",), file={"type": "string", "format": "binary"}, text=text)
    operation["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": form}}}
    return {"post": operation}
