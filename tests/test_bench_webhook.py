"""The webhook bench's mixes keep to their own customers, it counts the queued ones per mix, and it splits a
server's CPU between its event loop and its other threads."""

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import webhook
from bench.paced import PACED_MIXES
from bench.webhook import Payloads, _queued, _write_config


def _openid(request) -> str:
    return request.params["openid"]


def test_each_mix_has_its_own_customers(tmp_path: Path) -> None:
    a = {_openid(r) for r in Payloads("plain", False, customers="p").make(1000)}
    b = {_openid(r) for r in Payloads("plain", False, distinct=True, customers="n").make(1000)}
    assert len(a) == len(b) == 500 and not a & b


def test_queued_customers_are_counted_per_mix(tmp_path: Path) -> None:
    database = tmp_path / "kefu.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE conversations (conversation_key TEXT, state TEXT)")
        rows = [
            ("wechat:plain:oBenchn00001", "queued"),
            ("wechat:plain:oBenchn00002", "queued"),
            ("wechat:plain:oBenchn00003", "bot"),
            ("wechat:plain:oBenchp00001", "queued"),
            ("wechat:plain:oBenchnn00001", "queued"),  # another prefix that starts alike
        ]
        conn.executemany("INSERT INTO conversations VALUES (?, ?)", rows)
    assert _queued(database, "n") == 2
    assert _queued(database, "p") == 1
    assert _queued(database) == 4


def test_the_every_text_new_target_runs_without_the_semantic_stage(tmp_path: Path) -> None:
    lexical = _write_config(tmp_path / "l", "http://127.0.0.1:1", semantic=False).read_text()
    semantic = _write_config(tmp_path / "s", "http://127.0.0.1:1").read_text()
    assert "model: none" in lexical and "model:" not in semantic
    assert [m[0] for m in PACED_MIXES if m[3] and not m[4]] == ["every text new, lexical"]


def test_a_phase_records_how_busy_the_event_loop_and_the_other_threads_were() -> None:
    import os

    from bench import handoff

    def burn() -> int:  # CPU on a thread that is not the main one, as SQLite's writer is in kefu
        total = 0
        for i in range(3_000_000):
            total += i * i
        return total

    # A thread that outlives the phase, as a server's do (one that ended is no longer in /proc).
    worker = ThreadPoolExecutor(max_workers=1)

    async def phase() -> webhook.Result:
        await asyncio.get_running_loop().run_in_executor(worker, burn)
        return webhook.Result(latencies=[0.01] * 10, seconds=1.0, errors=0)

    base = "http://bench.test"
    webhook.SERVER_PIDS[base] = os.getpid()
    try:
        result, ms = handoff.measured(base, phase(), drain=lambda _: 0.0)
    finally:
        del webhook.SERVER_PIDS[base]
        worker.shutdown()
    said = handoff.threads_said(base)
    main, others = handoff.THREADS.pop(base)
    assert len(result.latencies) == 10 and ms > 0
    # The burning thread's CPU is counted apart from the event loop's.
    assert others > 0 and main >= 0 and others > main
    assert said == f", event loop {main:.2f} + other threads {others:.2f} of a core"
    assert handoff.threads_said(base) == ""


def test_a_round_waits_for_kefus_handoff_steps_and_counts_the_wait() -> None:
    import http.server
    import threading

    from bench import handoff

    behind = ["3"]

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = f"# TYPE kefu_handoff_steps_behind gauge\nkefu_handoff_steps_behind {behind[0]}.0\n"
            if behind[0] != "0":
                behind[0] = str(int(behind[0]) - 1)  # one step done per scrape
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert handoff.steps_drained(base) > 0  # waited for three scrapes that still showed steps
        assert behind == ["0"]
        assert handoff.steps_drained(base + "/bare") == 0.0  # no /metrics: the bare echo waits for nothing
    finally:
        server.shutdown()
