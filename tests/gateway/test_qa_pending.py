"""质检's scoring job reads the conversations a close left to it (qa_pending), not every conversation ever
closed: that look-up grew with the history, every round. SQLite and PostgreSQL, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.app import create_app
from gateway.jobs.qa_scoring import score_pending
from gateway.keys import QA, RUNTIME
from gateway.storage import Store
from gateway.storage.qa_store import _unscored, pend_missed, unscored_conversations
from tests.gateway import test_qa_api as qa_api
from tests.gateway.test_agent_api import complaint, make_agent
from tests.gateway.test_handoff_flow import handoff_section
from tests.gateway.test_migrations import _QA_ROWS, _insert_rows
from tests.gateway.test_qa_api import served_and_closed
from tests.waiting import eventually

gateway = qa_api.gateway  # the fixture: 质检 rules loaded, the job left to the test


async def _ids(gateway: Any, table: str) -> list[int]:
    store = gateway.server.app[RUNTIME].store
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.text(f"SELECT conversation_id FROM {table} ORDER BY conversation_id"))
        return list(rows.scalars())


async def test_a_close_leaves_the_conversation_to_qa_once_and_its_score_takes_it_away(gateway: Any) -> None:
    app = gateway.server.app
    wang = await make_agent(gateway, "小王")
    closed = await served_and_closed(
        gateway, wang, "p1", ["您好，正在为您查询，请您稍等。", "已处理，再见！"]
    )
    queued = await complaint(gateway, "p2")  # never served: nothing for 质检
    handed_back = await complaint(gateway, "p3")
    await wang.call("POST", f"/conversations/{handed_back}/claim")
    await wang.call(
        "POST", f"/conversations/{handed_back}/messages", json={"text": "您好，已为您处理。"}, expect=201
    )
    await wang.call("POST", f"/conversations/{handed_back}/handback", json={})
    assert await _ids(gateway, "qa_pending") == [closed, handed_back]

    assert await score_pending(app[RUNTIME].store, app[QA]) == 2
    assert await _ids(gateway, "qa_results") == [closed, handed_back]
    assert await _ids(gateway, "qa_pending") == []

    # The handed-back customer asks for a human again, in the same conversation; served and closed
    # again, it is not pending again (one score per conversation, as before).
    assert await complaint(gateway, "p3") == handed_back
    await wang.call("POST", f"/conversations/{handed_back}/claim")
    await wang.call("POST", f"/conversations/{handed_back}/close", json={"tags": []})
    assert await _ids(gateway, "qa_pending") == []
    assert await score_pending(app[RUNTIME].store, app[QA]) == 0
    assert queued not in await _ids(gateway, "qa_results")


async def test_the_scoring_look_up_starts_from_the_pending_rows(tmp_path: Path) -> None:
    # Before: a scan of every closed conversation (state index), each joined with its assignment and
    # checked for a score; 67-107 ms a round at 200,000 scored conversations.
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}")
    try:
        await store.create_all()
        compiled = _unscored([3, 5, 8]).compile(
            dialect=store.engine.dialect, compile_kwargs={"literal_binds": True}
        )
        async with store.engine.connect() as conn:
            plan = [str(row[-1]) for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")]
    finally:
        await store.dispose()
    # The pending ids looked up by their key, and their assignments and scores; no table scanned.
    assert not [step for step in plan if step.startswith("SCAN")], plan
    searches = [step for step in plan if step.startswith("SEARCH")]
    assert searches and all("USING INTEGER PRIMARY KEY" in step for step in searches), plan


@pytest.fixture
async def finished(db_url: str) -> AsyncIterator[Store]:
    """A database holding _QA_ROWS: conversations 1 and 2 closed (2 scored), 3 handed back, 4 still with
    its agent; nothing pending."""
    store = Store.from_url(db_url)
    await store.create_all()
    await _insert_rows(store, _QA_ROWS)
    yield store
    await store.dispose()


async def _pend(store: Store, *ids: int) -> None:
    async with store.engine.begin() as conn:
        for conversation_id in ids:
            await conn.execute(
                sa.text("INSERT INTO qa_pending (conversation_id) VALUES (:id)"), {"id": conversation_id}
            )


async def test_pending_conversations_are_looked_up_in_chunks_and_only_the_finished_unscored_ones_come_back(
    finished: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _pend(finished, 1, 2, 3, 4)
    monkeypatch.setattr("gateway.storage.qa_store.PENDING_CHUNK", 1)
    assert [item.conversation_id for item in await unscored_conversations(finished)] == [1, 3]
    assert [item.conversation_id for item in await unscored_conversations(finished, limit=1)] == [1]


async def test_a_conversation_no_close_left_to_qa_is_found_by_the_sweep(finished: Store) -> None:
    # 1 closed by a process of the release before migration 0007 (a rolling deploy): no row. 3 pending;
    # 2 pending although scored (a close that raced its scoring).
    await _pend(finished, 2, 3)
    assert [item.conversation_id for item in await unscored_conversations(finished)] == [3]
    assert await pend_missed(finished) == 1
    assert [item.conversation_id for item in await unscored_conversations(finished)] == [1, 3]
    async with finished.engine.connect() as conn:
        pending = await conn.execute(sa.text("SELECT conversation_id FROM qa_pending ORDER BY 1"))
        assert list(pending.scalars()) == [1, 3]
    assert await pend_missed(finished) == 0


async def test_the_scoring_job_sweeps_at_its_first_round(aiohttp_client: Any, settings_factory: Any) -> None:
    settings = settings_factory(
        handoff=handoff_section(assignment="manual"),
        qa={"path": str(qa_api.REPO / "config" / "qa.yaml"), "job_interval_s": 0.05},
    )
    client = await aiohttp_client(create_app(settings))
    await _insert_rows(client.server.app[RUNTIME].store, _QA_ROWS)  # no qa_pending row: an older close

    async def scored() -> bool:
        return await _ids(client, "qa_results") == [1, 2, 3]

    await eventually(scored)
