"""The outbox worker draining a backlog: what one send costs kefu when thousands wait to go out.

A backlog builds up whenever sends are due faster than the platform takes them: a WeChat outage that ends,
a rush of 留言 notices, a campaign of agent replies. Each round inserts BACKLOGS[i] due rows into the
database of a running `kefu serve` (one WeChat account, a conversation each, as 留言 notices are, each
conversation with the HISTORY rows before it, already done), then waits until its worker has sent them all
to the fake platform API; it prints sends per second (from the first claim: the worker finds rows written
by another process at its next poll) and kefu's CPU milliseconds per send. A send that costs the same at
every backlog is O(1); before migration 0006 and the SQLite claim's window it grew 2-3× from 300 to 6,000
(docs/benchmarks-history.md, 2026-12-07 night).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

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


def backlog_rows(count: int, round_no: int, now: datetime) -> list[tuple[object, ...]]:
    """The HISTORY rows of `count` distinct customers, then a due row of each, as _INSERT's columns."""
    due = _SQLITE_TEXT(now - timedelta(seconds=1))
    rows: list[tuple[object, ...]] = []
    for status in (*HISTORY, "pending"):
        for i in range(count):
            user = f"oBacklog{round_no:02d}{i:06d}"
            target = json.dumps({"user_id": user, "chat_type": "private", "group_id": None})
            key = f"wechat:{_ACCOUNT}:{user}"
            rows.append(("wechat", _ACCOUNT, key, _TEXT, "system", target, status, due, due))
    return rows


_INSERT = (
    "INSERT INTO outbox (channel, account, conversation_key, text, sender, target, status, attempts, "
    "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
)
_WAITING = "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')"
_UNCLAIMED = "SELECT count(*) FROM outbox WHERE status = 'pending'"


def drain(database: Path, pid: int, count: int, round_no: int) -> tuple[float, float]:
    """Insert a backlog of `count` due rows, wait until all are sent: (seconds, kefu's CPU seconds)."""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as conn:
        rows = backlog_rows(count, round_no, datetime.now(UTC))
        cpu, started = ho.cpu_seconds(pid), time.perf_counter()
        conn.executemany(_INSERT, rows)
        conn.commit()
        first_claim: float | None = None
        while True:
            waiting = conn.execute(_WAITING).fetchone()[0]
            if first_claim is None and (not waiting or conn.execute(_UNCLAIMED).fetchone()[0] < count):
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


def run() -> list[str]:
    lines = [f"outbox backlog drain: one WeChat account, backlogs {', '.join(map(str, BACKLOGS))}"]
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kefu-bench-outbox-")))
        api_base = stack.enter_context(wh._server("api", None))
        config = wh._write_config(tmp / "outbox", api_base)
        kefu = stack.enter_context(wh._server("kefu", config))
        pid, database = wh.SERVER_PIDS[kefu], tmp / "outbox" / "kefu.db"
        drain(database, pid, 300, 0)  # warm: the token, the connection pool, the statements
        per_send = []
        for round_no, count in enumerate(BACKLOGS, start=1):
            seconds, cpu = drain(database, pid, count, round_no)
            per_send.append(cpu / count)
            lines.append(said(count, seconds, cpu))
        lines.append(growth(per_send, BACKLOGS))
    return lines


if __name__ == "__main__":
    for line in run():
        print(line, flush=True)
