"""Logging setup: one format, and a filter that keeps phone numbers and secrets out of every line."""

from __future__ import annotations

import logging
import re
import sys

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from handoff.privacy import mask_sensitive

# Credentials and signatures as query parameters (WeChat callbacks put them in the URL) or JSON fields.
_NAMES = (
    r"signature|msg_signature|access_token|token|secret|appsecret|echostr|encoding_aes_key|aes_key"
    r"|password|client_secret|clientsecret"
)
_SECRET_PARAM = re.compile(rf"(?i)\b({_NAMES})=([^&\s\"',;}}]+)")
_SECRET_FIELD = re.compile(rf'(?i)"({_NAMES})"(\s*:\s*)"[^"]*"')
# QQ's header is `Authorization: QQBot <token>`, as spelt: a lower-case "qqbot push" is a word, not a token.
_BEARER = re.compile(r"\b((?i:bearer)|QQBot)\s+[A-Za-z0-9._~+/=-]+")
# The agent console's WebSocket subprotocol `token.<token>` (gateway.http.agent_ws), should a header be logged;
# 16+ characters, so file names such as token.py stay readable.
_TOKEN_PROTOCOL = re.compile(r"(?i)\btoken\.[A-Za-z0-9_~-]{16,}")

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def mask(text: str) -> str:
    """Mask phone, ID-card and bank-card numbers (handoff.privacy) and secret values (token=***) in one line."""
    text = mask_sensitive(text)
    text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=***", text)
    text = _SECRET_FIELD.sub(lambda m: f'"{m.group(1)}"{m.group(2)}"***"', text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    return _TOKEN_PROTOCOL.sub("token.***", text)


class MaskingFilter(logging.Filter):
    """Rewrites each record's message (and exception text) through `mask` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place; never drops it."""
        # Arguments with characters %r would escape (\x80, \u2028, a newline) are masked on their own first:
        # an escape's last hex digit would sit against a number and keep the patterns below from seeing it
        # as one. Others are masked in the formatted line, where the words before a number count ("订单",
        # "MsgId": an order number or a message id is left whole).
        if isinstance(record.args, tuple):
            record.args = tuple(_masked_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _masked_arg(v) for k, v in record.args.items()}
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        masked = mask(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask(record.exc_text)
        return True


def _masked_arg(value: object) -> object:
    return mask(value) if isinstance(value, str) and not value.isprintable() else value


class BadRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse (over-long header line, bad method, broken framing) at ERROR
    with a traceback, though aiohttp already answered the client 400: turn that into one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite parse errors in place; other records pass unchanged."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError | RequestPayloadError):
            # RequestPayloadError: a body aiohttp could not decode (a broken Content-Encoding) while draining
            # what a handler that answered early (401, 403) left unread.
            detail = exc.message if isinstance(exc, HttpProcessingError) else exc
            record.msg = "bad HTTP request (%s): %s"
            record.args = (type(exc).__name__, str(detail)[:200])
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_bad_requests() -> None:
    """Install BadRequestFilter on aiohttp's server logger (once)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequestFilter) for f in server.filters):
        server.addFilter(BadRequestFilter())


def setup_logging(level: str = "INFO", *, stream: object = None) -> None:
    """Configure the root logger once for `kefu serve` (handlers carry the filter, so child loggers get it)."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(MaskingFilter())
    handler._kefu = True  # type: ignore[attr-defined]  # ours to replace on a second call
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_kefu", False):
            root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    """The level of kefu's logs and of aiohttp's access log (which would otherwise stay at the first one)."""
    logging.getLogger().setLevel(level)
    # aiohttp's access log prints the request line with its query string: the filter masks it.
    logging.getLogger("aiohttp.access").setLevel(level)
