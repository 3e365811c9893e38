"""The webhook bench's mixes keep to their own customers, and it counts the queued ones per mix."""

import sqlite3
from pathlib import Path

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
