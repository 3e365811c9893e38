"""The outbox worker draining a backlog: what one send costs kefu when thousands wait to go out.

A backlog builds up whenever sends are due faster than the platform takes them: a WeChat outage that ends,
a rush of 留言 notices, a campaign of agent replies. Each round inserts BACKLOGS[i] due rows into the
database of a running `kefu serve` (one WeChat account, a conversation each, as 留言 notices are, each
conversation with the HISTORY rows before it, already done), then waits until its worker has sent them all
to the fake platform API; it prints sends per second (from the first claim: the worker finds rows written
by another process at its next poll) and kefu's CPU milliseconds per send. A send that costs the same at
every backlog is O(1); before migration 0006 and the SQLite claim's window it grew 2-3× from 300 to 6,000
(docs/benchmarks-history.md, 2026-12-07 night).

Then the same on PostgreSQL, over a delivered history of PG_DELIVERED rows and with ANALYZE after each
insert (as autovacuum does soon after): its planner chooses the claim's plan by those statistics, and
once walked the delivered history on every claim (README, "The outbox draining a backlog").
KEFU_BENCH_OUTBOX_POSTGRES=0 skips that part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.dialects import sqlite

from bench import handoff as ho
from bench import webhook as wh
from gateway.storage.schema.core import UTCDateTime

MAX_BACKLOG = 100_000  # rows one round inserts (and the worker must send within DRAIN_WITHIN_S)


def backlogs(text: str) -> tuple[int, ...]:
    """KEFU_BENCH_OUTBOX_BACKLOGS: counts of 1 to MAX_BACKLOG separated by commas, smallest first."""
    try:
        counts = tuple(int(n) for n in text.split(","))
    except ValueError:
        counts = ()
    if not counts or any(not 0 < n <= MAX_BACKLOG for n in counts):
        raise SystemExit(
            f"KEFU_BENCH_OUTBOX_BACKLOGS={text[:80]!r}: give counts of 1 to {MAX_BACKLOG}, e.g. 300,3000,6000"
        )
    return tuple(sorted(counts))


BACKLOGS = backlogs(os.environ.get("KEFU_BENCH_OUTBOX_BACKLOGS", "300,3000,6000"))
# Each conversation's earlier rows, done: bot replies the passive answer carried, then a notice sent.
HISTORY = ("cancelled", "cancelled", "sent")
_TEXT = "您好，您的留言我们已经收到，客服上线后会第一时间回复您。"
_SQLITE_TEXT = UTCDateTime().bind_processor(sqlite.dialect())  # a datetime as kefu's SQLite columns hold it
DRAIN_WITHIN_S = 120.0
_ACCOUNT = "safe"


def backlog_rows(
    count: int, round_no: int, now: datetime, stamp: Callable[[datetime], Any] = _SQLITE_TEXT
) -> list[tuple[object, ...]]:
    """The HISTORY rows of `count` distinct customers, then a due row of each, as _INSERT's columns
    (`stamp`: a time as the database takes it; SQLite's text by default)."""
    due = stamp(now - timedelta(seconds=1))
    rows: list[tuple[object, ...]] = []
    for status in (*HISTORY, "pending"):
        for i in range(count):
            user = f"oBacklog{round_no:02d}{i:06d}"
            target = json.dumps({"user_id": user, "chat_type": "private", "group_id": None})
            key = f"wechat:{_ACCOUNT}:{user}"
            rows.append(("wechat", _ACCOUNT, key, _TEXT, "system", target, status, due, due))
    return rows


_COLUMNS = (
    "channel, account, conversation_key, text, sender, target, status, attempts, next_attempt_at, created_at"
)
_INSERT = f"INSERT INTO outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
_WAITING = "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')"
_UNCLAIMED = "SELECT count(*) FROM outbox WHERE status = 'pending'"
# PostgreSQL's delivered history, written before the rounds: two rows each of PG_DELIVERED / 2 customers.
PG_DELIVERED = 100_000
_PG_HISTORY = f"""INSERT INTO outbox ({_COLUMNS})
SELECT 'wechat', '{_ACCOUNT}', 'wechat:{_ACCOUNT}:oDelivered' || (n / 2), '{_TEXT}', 'system', '{{}}', 'sent', 1,
       now() - interval '3 days', now() - interval '3 days'
FROM generate_series(1, {PG_DELIVERED}) AS n"""


class Database(Protocol):
    """The bench's own connection to kefu's database (not kefu's code: rows written as another process)."""

    def insert(self, rows: list[tuple[object, ...]]) -> None: ...

    def count(self, sql: str) -> int: ...


class SqliteDatabase:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=30)

    def insert(self, rows: list[tuple[object, ...]]) -> None:
        self.conn.executemany(_INSERT, rows)
        self.conn.commit()

    def count(self, sql: str) -> int:
        return int(self.conn.execute(sql).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


class PostgresDatabase:
    """asyncpg on a loop of its own, called synchronously like sqlite3."""

    def __init__(self, url: str) -> None:
        import asyncpg

        self.loop = asyncio.new_event_loop()
        self.conn = self.loop.run_until_complete(
            asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        )

    def insert(self, rows: list[tuple[object, ...]]) -> None:
        marks = ", ".join(f"${n}" for n in range(1, 8)) + ", 0, $8, $9"
        sql = f"INSERT INTO outbox ({_COLUMNS}) VALUES ({marks})"
        self.loop.run_until_complete(self.conn.executemany(sql, rows))
        self.loop.run_until_complete(self.conn.execute("ANALYZE outbox"))  # as autovacuum would, soon after

    def count(self, sql: str) -> int:
        return int(self.loop.run_until_complete(self.conn.fetchval(sql)))

    def execute(self, sql: str) -> None:
        self.loop.run_until_complete(self.conn.execute(sql))

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def drain(
    db: Database, pid: int, count: int, round_no: int, stamp: Callable[[datetime], Any]
) -> tuple[float, float]:
    """Insert a backlog of `count` due rows, wait until all are sent: (seconds, kefu's CPU seconds)."""
    rows = backlog_rows(count, round_no, datetime.now(UTC), stamp)
    cpu, started = ho.cpu_seconds(pid), time.perf_counter()
    db.insert(rows)
    first_claim: float | None = None
    while True:
        waiting = db.count(_WAITING)
        if first_claim is None and (not waiting or db.count(_UNCLAIMED) < count):
            first_claim = time.perf_counter()
        if not waiting:
            return time.perf_counter() - first_claim, ho.cpu_seconds(pid) - cpu
        if time.perf_counter() - started > DRAIN_WITHIN_S:
            raise RuntimeError(f"the outbox did not drain {count} rows within {DRAIN_WITHIN_S:.0f} s")
        time.sleep(0.005 if first_claim is None else 0.02)


def said(count: int, seconds: float, cpu: float) -> str:
    return (
        f"backlog {count:6d}: {count / seconds:6.0f} sends/s, kefu {cpu / count * 1000:.2f} ms CPU per send, "
        f"{cpu / seconds:.2f} of a core"
    )


def growth(per_send: Sequence[float], backlogs: Sequence[int]) -> str:
    """How CPU per send moved from the smallest backlog to the largest."""
    if len(per_send) < 2 or not per_send[0]:
        return ""
    return (
        f"CPU per send at backlog {backlogs[-1]} / at {backlogs[0]}: {per_send[-1] / per_send[0]:.2f} "
        f"(1.00 = a send costs the same whatever waits behind it)"
    )


def _rounds(db: Database, pid: int, stamp: Callable[[datetime], Any]) -> list[str]:
    """A warm-up drain, then each backlog's: a line per backlog and the growth line."""
    drain(db, pid, 300, 0, stamp)  # warm: the token, the connection pool, the statements
    lines, per_send = [], []
    for round_no, count in enumerate(BACKLOGS, start=1):
        seconds, cpu = drain(db, pid, count, round_no, stamp)
        per_send.append(cpu / count)
        lines.append(said(count, seconds, cpu))
    return [*lines, growth(per_send, BACKLOGS)]


@contextlib.contextmanager
def _kefu(tmp: Path, api_base: str, database_url: str | None = None) -> Iterator[int]:
    """A `kefu serve` on the fake API; its pid."""
    config = wh._write_config(tmp, api_base, database_url=database_url)
    with wh._server("kefu", config) as kefu:
        yield wh.SERVER_PIDS[kefu]


def run() -> list[str]:
    lines = [f"outbox backlog drain: one WeChat account, backlogs {', '.join(map(str, BACKLOGS))}"]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kefu-bench-outbox-")))
        api_base = stack.enter_context(wh._server("api", None))
        with _kefu(tmp / "outbox", api_base) as pid:
            sqlite_db = SqliteDatabase(tmp / "outbox" / "kefu.db")
            try:
                lines += ["SQLite:", *_rounds(sqlite_db, pid, _SQLITE_TEXT)]
            finally:
                sqlite_db.close()
        if os.environ.get("KEFU_BENCH_OUTBOX_POSTGRES") == "0":
            return [*lines, "PostgreSQL: skipped (KEFU_BENCH_OUTBOX_POSTGRES=0)"]
        url = stack.enter_context(ho._postgres_database())
        with _kefu(tmp / "outbox-pg", api_base, url) as pid:
            pg_db = PostgresDatabase(url)
            try:
                pg_db.execute(_PG_HISTORY)
                lines += [f"PostgreSQL, over {PG_DELIVERED:,} rows delivered before:"]
                lines += _rounds(pg_db, pid, lambda at: at)
            finally:
                pg_db.close()
    return lines


if __name__ == "__main__":
    for line in run():
        print(line, flush=True)
