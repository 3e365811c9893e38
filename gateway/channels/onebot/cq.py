"""OneBot v11 CQ codes: escaping, parsing a CQ string into segments, and rendering segments back.

A OneBot message is either a CQ string (`你好[CQ:at,qq=10001] &#91;x&#93;`) or an array of segments
(`[{"type": "text", "data": {"text": "你好"}}, {"type": "at", "data": {"qq": "10001"}}]`). kefu works on
segments internally; this module converts between the two so both `message_format`s behave the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Segment = dict[str, Any]  # {"type": str, "data": {str: str}}

_CQ = re.compile(r"\[CQ:([A-Za-z0-9_.-]+)((?:,[^\[\]]*)?)\]")


def escape(text: str, *, in_param: bool = False) -> str:
    """Escape text for a CQ string: `&` first (so it is not escaped twice), then brackets, and commas in params."""
    out = text.replace("&", "&amp;").replace("[", "&#91;").replace("]", "&#93;")
    if in_param:
        out = out.replace(",", "&#44;")
    return out


def unescape(text: str) -> str:
    """Undo `escape` (`&amp;` last, so `&amp;#91;` becomes the literal `&#91;`)."""
    return text.replace("&#44;", ",").replace("&#91;", "[").replace("&#93;", "]").replace("&amp;", "&")


def parse(message: str) -> list[Segment]:
    """Split a CQ string into segments; text between codes becomes `text` segments (unescaped)."""
    segments: list[Segment] = []
    position = 0
    for match in _CQ.finditer(message):
        if match.start() > position:
            segments.append(text_segment(unescape(message[position : match.start()])))
        data: dict[str, str] = {}
        params = match.group(2)
        if params:
            for pair in params[1:].split(","):
                key, sep, value = pair.partition("=")
                if sep and key:
                    data[key] = unescape(value)
        segments.append({"type": match.group(1), "data": data})
        position = match.end()
    if position < len(message):
        segments.append(text_segment(unescape(message[position:])))
    return segments


def render(segments: Iterable[Mapping[str, Any]]) -> str:
    """Segments as a CQ string (text escaped, params escaped including commas)."""
    parts: list[str] = []
    for segment in segments:
        kind = str(segment.get("type", ""))
        data = segment.get("data") or {}
        if kind == "text":
            parts.append(escape(str(data.get("text", ""))))
            continue
        params = "".join(f",{key}={escape(str(value), in_param=True)}" for key, value in data.items())
        parts.append(f"[CQ:{kind}{params}]")
    return "".join(parts)


def text_segment(text: str) -> Segment:
    """A plain-text segment."""
    return {"type": "text", "data": {"text": text}}


def at_segment(qq: str | int) -> Segment:
    """An @-mention segment (`qq` may be "all")."""
    return {"type": "at", "data": {"qq": str(qq)}}


def normalise(message: Any) -> list[Segment]:
    """A OneBot `message` field in either format (CQ string, segment array, single segment) as segments.

    Raises ValueError for anything else, so the webhook can answer 400 instead of guessing.
    """
    if isinstance(message, str):
        return parse(message)
    if isinstance(message, Mapping):
        message = [message]
    if not isinstance(message, Sequence):
        raise ValueError("message must be a string or an array of segments")
    segments: list[Segment] = []
    for item in message:
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise ValueError("every message segment needs a string `type`")
        data = item.get("data") or {}
        if not isinstance(data, Mapping):
            raise ValueError("a message segment's `data` must be an object")
        # Implementations disagree on number vs string ids (qq, id); kefu compares strings.
        segments.append({"type": item["type"], "data": {str(k): _plain(v) for k, v in data.items()}})
    return segments


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def plain_text(segments: Iterable[Mapping[str, Any]]) -> str:
    """The text a customer typed: text segments joined, everything else dropped."""
    return "".join(str((s.get("data") or {}).get("text", "")) for s in segments if s.get("type") == "text")


def mentions(segments: Iterable[Mapping[str, Any]], qq: str) -> bool:
    """True when the segments @ the given QQ number."""
    return any(s.get("type") == "at" and str((s.get("data") or {}).get("qq", "")) == qq for s in segments)


def without_mention(segments: Iterable[Mapping[str, Any]], qq: str) -> list[Segment]:
    """The segments with every @ of `qq` removed (the text around it is kept)."""
    return [
        dict(s)
        for s in segments
        if not (s.get("type") == "at" and str((s.get("data") or {}).get("qq", "")) == qq)
    ]
