"""The SQLite bind fast paths write exactly what SQLAlchemy's own processors write."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import JSON, Column, DateTime, MetaData, Table
from sqlalchemy.dialects import sqlite

from gateway.storage.schema.core import UTCDateTime
from gateway.storage.unit import bound_values, compile_statement

DIALECT = sqlite.dialect()


def test_a_timestamp_is_the_text_sqlalchemys_datetime_writes() -> None:
    ours = UTCDateTime().dialect_impl(DIALECT).bind_processor(DIALECT)
    theirs = DateTime(timezone=True).dialect_impl(DIALECT).bind_processor(DIALECT)
    rng = random.Random(14)
    values = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2026, 12, 6, 23, 59, 59, 0, tzinfo=UTC),
        datetime(2026, 12, 7, 7, 59, 59, 999999, tzinfo=timezone(timedelta(hours=8))),
    ]
    for _ in range(2000):
        values.append(
            datetime(
                rng.randint(2, 9998),
                rng.randint(1, 12),
                rng.randint(1, 28),
                rng.randint(0, 23),
                rng.randint(0, 59),
                rng.randint(0, 59),
                rng.choice((0, rng.randint(0, 999_999))),
                tzinfo=rng.choice((UTC, timezone(timedelta(hours=rng.randint(-12, 14))))),
            )
        )
    for value in values:
        assert ours(value) == theirs(value.astimezone(UTC)), value
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive"):
        ours(datetime(2026, 12, 6))


def test_json_values_bind_as_sqlalchemy_serialises_them() -> None:
    table = Table("t", MetaData(), Column("doc", JSON))
    compiled = compile_statement(table.insert(), DIALECT, frozenset({"doc"}))
    processor = JSON().dialect_impl(DIALECT).bind_processor(DIALECT)
    for value in (None, {}, [], {"a": [1, "二"]}, "text", 0):
        assert bound_values(compiled, {"doc": value}) == [processor(value)]
