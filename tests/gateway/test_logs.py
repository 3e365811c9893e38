"""Log lines never carry full phone numbers, tokens or signatures."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import pytest

from gateway.logs import MaskingFilter, mask, setup_logging


def test_phone_numbers_are_masked_but_other_numbers_are_not() -> None:
    assert mask("客户 13812345678 来电") == "客户 138****5678 来电"
    assert mask("tel:+8615912345678") == "tel:+86159****5678"
    # Order numbers and WeChat MsgIds are longer digit runs: left alone.
    assert mask("订单 2026112413812345678") == "订单 2026112413812345678"
    assert mask("MsgId 4363689963896700987") == "MsgId 4363689963896700987"


def test_secrets_in_urls_and_headers_are_masked() -> None:
    line = "POST /wechat/demo?signature=abc123&timestamp=1&nonce=2&msg_signature=def456 token=tok9"
    masked = mask(line)
    assert "abc123" not in masked and "def456" not in masked and "tok9" not in masked
    assert "timestamp=1&nonce=2" in masked and "signature=***" in masked
    assert mask("GET /cgi-bin/token?grant_type=client_credential&appid=wx1&secret=hunter2").endswith(
        "secret=***"
    )
    assert mask("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert (
        mask('{"access_token": "ACCESS", "expires_in": 7200}')
        == '{"access_token": "***", "expires_in": 7200}'
    )
    # The agent console's token in a WebSocket URL (deprecated) or its subprotocol header.
    assert (
        mask("GET /api/v1/agent/ws?token=kefu_abc123 HTTP/1.1") == "GET /api/v1/agent/ws?token=*** HTTP/1.1"
    )
    assert (
        mask("Sec-WebSocket-Protocol: kefu.agent, token.kefu_Xy9-abcdefghijklmnop")
        == "Sec-WebSocket-Protocol: kefu.agent, token.***"
    )
    assert mask('File "gateway/token.py", line 3') == 'File "gateway/token.py", line 3'
    # Prose that merely mentions a secret is left readable.
    assert mask("web channel has no secret: anyone can post") == "web channel has no secret: anyone can post"


@contextlib.contextmanager
def masked_log(name: str) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose lines go through MaskingFilter into the yielded stream (what a handler would write)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_the_filter_rewrites_records_and_tracebacks() -> None:
    with masked_log("kefu.test.masking") as (logger, stream):
        logger.warning("user %s wrote %s", "13900001111", "hi")
        try:
            raise ValueError("token=leaked")
        except ValueError:
            logger.exception("failed")
    out = stream.getvalue()
    assert "139****1111" in out and "13900001111" not in out
    assert "token=***" in out and "leaked" not in out


def test_setup_logging_is_idempotent_and_keeps_foreign_handlers() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        setup_logging("DEBUG", stream=io.StringIO())
        setup_logging("INFO", stream=io.StringIO())
        ours = [h for h in root.handlers if getattr(h, "_kefu", False)]
        assert len(ours) == 1 and all(h in root.handlers for h in before)
        assert root.level == logging.INFO
    finally:
        root.handlers[:] = before
        root.setLevel(level)


async def test_database_echo_goes_through_the_masking_filter(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sqlalchemy import text

    from gateway.storage import Store

    out = io.StringIO()
    setup_logging("WARNING", stream=out)
    engine_logger = logging.getLogger("sqlalchemy.engine.Engine")
    store = Store.from_url(db_url, echo=True)
    try:
        await store.create_all()  # (also makes the SQLite file's directory)
        async with store.engine.connect() as conn:
            await conn.execute(text("SELECT :phone"), {"phone": "客户手机13812345678"})
    finally:
        await store.dispose()
        engine_logger.setLevel(logging.NOTSET)
        for handler in list(logging.getLogger().handlers):
            if getattr(handler, "_kefu", False):
                logging.getLogger().removeHandler(handler)
        for handler in list(engine_logger.handlers):  # SQLAlchemy's own echo handler, if any
            engine_logger.removeHandler(handler)
    logged = out.getvalue()
    assert "SELECT" in logged and "138****5678" in logged and "13812345678" not in logged
    printed = capsys.readouterr()  # SQLAlchemy's own echo handler writes to stdout, unmasked
    assert "13812345678" not in printed.out + printed.err


def test_numbers_in_an_argument_logged_with_repr_are_masked() -> None:
    # %r escapes a customer's odd characters (\x80, \u2028); the escape's last hex digit then stood against
    # the number and the patterns, which refuse a number glued to digits, let it through whole.
    with masked_log("kefu.test.masking.repr") as (logger, stream):
        key = "\x8013812345678 \x80110105199001011234 \u20286222021234567890123"
        logger.warning("menu click with unknown key %r on %s", key, "wechat/plain")
        logger.warning("fields %(key)r", {"key": "\x8013900001111"})
    out = stream.getvalue()
    for number in ("13812345678", "110105199001011234", "6222021234567890123", "13900001111"):
        assert number not in out, out
    assert "138****5678" in out and "wechat/plain" in out


def test_qq_tokens_are_masked_as_spelt_and_the_word_qqbot_is_left_alone() -> None:
    assert mask("Authorization: QQBot abcDEF123") == "Authorization: QQBot ***"
    assert mask("qqbot push with a bad signature refused") == "qqbot push with a bad signature refused"
    assert mask("authorization: bearer abc") == "authorization: bearer ***"


def test_a_message_id_logged_as_an_argument_is_left_whole() -> None:
    with masked_log("kefu.test.masking.msgid") as (logger, stream):
        logger.warning("wechat MsgId %s duplicate", "2437400000000000008")
    assert "MsgId 2437400000000000008 duplicate" in stream.getvalue()
