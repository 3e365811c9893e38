"""KnowledgeBaseHolder: a broken FAQ edit keeps the bot on the last good kb and index."""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from kb.holder import KnowledgeBaseHolder, Snapshot
from kb.model import FaqEntry, KnowledgeBase

GOOD = Path(__file__).parent.parent / "fixtures" / "kb" / "good"


@dataclass(frozen=True)
class Index:
    """Stands in for the classifier index: remembers which kb it was built from."""

    version: str
    questions: int


def build_index(kb: KnowledgeBase) -> Index:
    return Index(kb.version, sum(len(e.questions) for e in kb.entries))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def faq_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "faq"
    shutil.copytree(GOOD, directory)
    return directory


def break_faq(directory: Path) -> None:
    (directory / "20-service.yaml").write_text("faqs:\n  - id: x\n    question: [\n", encoding="utf-8")


def edit_faq(directory: Path) -> None:
    path = directory / "10-aftersale.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("7天内", "15天内"), encoding="utf-8")


def test_nothing_is_current_before_the_first_load() -> None:
    holder: KnowledgeBaseHolder[Index] = KnowledgeBaseHolder(build=build_index)
    assert holder.current is None
    assert not holder.healthy


def test_reload_builds_the_derived_object_with_the_kb(faq_dir: Path) -> None:
    holder = KnowledgeBaseHolder(faq_dir, build=build_index, clock=Clock())

    result = holder.reload()

    assert result.ok
    snapshot = holder.current
    assert isinstance(snapshot, Snapshot)
    assert snapshot.kb is result.kb
    assert snapshot.version == snapshot.kb.version == snapshot.derived.version
    assert snapshot.derived.questions == 12
    assert holder.healthy
    assert holder.last_success_at == holder.last_attempt_at == 1001.0


def test_broken_reload_keeps_the_last_good_snapshot(faq_dir: Path) -> None:
    holder = KnowledgeBaseHolder(faq_dir, build=build_index, clock=Clock())
    holder.reload()
    good = holder.current

    break_faq(faq_dir)
    result = holder.reload()

    assert not result.ok
    assert holder.current is good
    assert not holder.healthy
    assert holder.last_errors == tuple(result.problems)
    assert holder.last_errors[0].file == f"{faq_dir}/20-service.yaml"
    assert holder.last_attempt_at == 1002.0
    assert holder.last_success_at == 1001.0


def test_fixing_the_files_swaps_kb_and_derived_together(faq_dir: Path) -> None:
    holder = KnowledgeBaseHolder(faq_dir, build=build_index)
    holder.reload()
    old = holder.current
    assert old is not None

    edit_faq(faq_dir)
    assert holder.reload().ok

    new = holder.current
    assert new is not None and new is not old
    assert new.version != old.version
    assert new.derived.version == new.kb.version
    # A reader that took the old snapshot mid-message still sees a consistent old pair.
    assert old.derived.version == old.kb.version
    assert "15天内" in new.kb.get("return-how").answer
    assert holder.healthy


def test_a_failing_build_is_a_failed_reload(faq_dir: Path) -> None:
    calls = []

    def flaky_build(kb: KnowledgeBase) -> Index:
        calls.append(kb.version)
        if len(calls) > 1:
            raise RuntimeError("jieba dictionary missing")
        return build_index(kb)

    holder = KnowledgeBaseHolder(faq_dir, build=flaky_build)
    holder.reload()
    good = holder.current

    edit_faq(faq_dir)
    result = holder.reload()

    assert not result.ok and result.kb is None
    assert holder.current is good
    (problem,) = holder.last_errors
    assert "RuntimeError: jieba dictionary missing" in problem.message


def test_unchanged_files_do_not_rebuild_unless_forced(faq_dir: Path) -> None:
    builds = []
    holder = KnowledgeBaseHolder(faq_dir, build=lambda kb: builds.append(kb.version) or len(builds))
    holder.reload()
    first = holder.current

    assert holder.reload().ok
    assert holder.current is first
    assert len(builds) == 1

    holder.reload(force=True)
    assert holder.current is not first
    assert len(builds) == 2


def test_reload_remembers_new_paths(faq_dir: Path, tmp_path: Path) -> None:
    holder: KnowledgeBaseHolder[None] = KnowledgeBaseHolder()
    with pytest.raises(ValueError, match="needs FAQ paths"):
        holder.reload()

    assert holder.reload(str(faq_dir / "10-aftersale.yaml")).ok
    assert len(holder.current.kb.entries) == 2
    assert holder.current.derived is None
    assert holder.reload().ok  # same single file again


def test_install_an_in_memory_kb() -> None:
    holder = KnowledgeBaseHolder(build=build_index)
    kb = KnowledgeBase(entries=(FaqEntry(id="a", question="问题", answer="您好"),), version="abc")
    snapshot = holder.install(kb)
    assert holder.current is snapshot
    assert snapshot.derived == Index("abc", 1)


def test_readers_never_see_a_mixed_snapshot(faq_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(faq_dir, other)
    edit_faq(other)
    holder = KnowledgeBaseHolder(faq_dir, build=build_index)
    holder.reload()
    stop = threading.Event()
    mixed: list[Snapshot[Index]] = []

    def reader() -> None:
        while not stop.is_set():
            snapshot = holder.current
            if snapshot is None or snapshot.derived.version != snapshot.kb.version:
                mixed.append(snapshot)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for i in range(20):
            holder.reload(other if i % 2 == 0 else faq_dir)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert mixed == []
