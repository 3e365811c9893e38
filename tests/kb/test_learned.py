"""The learned-additions file: its `similar:` section in the loader, and the writer (lock, validate, rename)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kb.holder import KnowledgeBaseHolder
from kb.learned import LearnedFile, LearnError, learned_paths, new_entry_id
from kb.loader import load_kb

ADMIN = """\
# the admin's own file
faqs:
  - id: return-how
    question: 怎么退货
    similar: [退货流程]
    answer: 您好，在订单页点「申请售后」即可退货。
    category: 售后
  - id: invoice-how
    question: 怎么开发票
    answer: 您好，在订单详情页申请电子发票。
"""


@pytest.fixture
def faq(tmp_path: Path) -> Path:
    folder = tmp_path / "faq"
    folder.mkdir()
    (folder / "admin.yaml").write_text(ADMIN, encoding="utf-8")
    return folder


def learned_file(faq: Path, name: str = "learned.yaml") -> LearnedFile:
    return LearnedFile(faq / name, [faq])


# --- the `similar:` section, as the loader reads it ----------------------------------------------------


@pytest.mark.parametrize("name", ["aa-learned.yaml", "zz-learned.yaml"])  # before and after the entry's file
def test_similar_adds_questions_to_an_entry_of_another_file(faq: Path, name: str) -> None:
    (faq / name).write_text("similar:\n  return-how:\n    - 退货咋弄啊\n", encoding="utf-8")
    result = load_kb(faq)
    assert result.ok, result.problems
    assert result.kb is not None
    assert result.kb.get("return-how").questions == ("怎么退货", "退货流程", "退货咋弄啊")  # type: ignore[union-attr]


def test_a_broken_learned_file_is_reported_with_file_line_and_entry(faq: Path) -> None:
    learned = faq / "learned.yaml"
    learned.write_text(
        "similar:\n  return-how:\n    - 退货咋弄啊\n  no-such-entry:\n    - 发票抬头能改吗\n"
        "  invoice-how:\n    - 退货流程\n",
        encoding="utf-8",
    )
    result = load_kb(faq)
    assert result.kb is None
    shown = [str(p) for p in result.problems]
    assert any(
        s.startswith(f"{learned}:5: entry no-such-entry:") and "no faq entry 'no-such-entry'" in s
        for s in shown
    ), shown
    # The same question under two entries: reported at the learned line, naming the other entry.
    assert any(
        s.startswith(f"{learned}:7: entry invoice-how:") and "also a question of entry return-how" in s
        for s in shown
    ), shown


def test_the_holder_keeps_serving_the_last_good_kb_when_the_learned_file_breaks(faq: Path) -> None:
    holder: KnowledgeBaseHolder[None] = KnowledgeBaseHolder([faq])
    assert holder.reload().ok
    good = holder.current
    (faq / "learned.yaml").write_text("similar:\n  return-how: 退货咋弄啊\n", encoding="utf-8")
    result = holder.reload()
    assert result.kb is None and holder.current is good and not holder.healthy
    assert "must be a list of strings" in str(holder.last_errors[0])
    assert str(holder.last_errors[0]).startswith(f"{faq / 'learned.yaml'}:2: entry return-how:")


def test_learned_paths_add_the_file_once_it_exists(tmp_path: Path, faq: Path) -> None:
    elsewhere = tmp_path / "taught" / "learned.yaml"
    assert learned_paths([faq], elsewhere) == [str(faq)]
    elsewhere.parent.mkdir()
    elsewhere.write_text("similar:\n  return-how: [退货咋弄啊]\n", encoding="utf-8")
    assert learned_paths([faq], elsewhere) == [str(faq), str(elsewhere)]
    (faq / "learned.yaml").write_text("similar: {}\n", encoding="utf-8")
    assert learned_paths([faq], faq / "learned.yaml") == [str(faq)]  # the directory holds it
    result = load_kb(learned_paths([faq], elsewhere))
    assert result.kb is not None and "退货咋弄啊" in result.kb.get("return-how").questions  # type: ignore[union-attr]


# --- the writer ----------------------------------------------------------------------------------------


def test_this_question_is_entry_x_is_written_to_the_learned_file_only(faq: Path) -> None:
    admin_before = (faq / "admin.yaml").read_bytes()
    learned = learned_file(faq)
    taught = learned.add_similar("return-how", ["退货咋弄啊？"], note="小美 2026-12-06 07:12 UTC 会话 42")
    assert taught.added and taught.entry_id == "return-how"
    assert (faq / "admin.yaml").read_bytes() == admin_before  # never the admin's own file
    text = (faq / "learned.yaml").read_text(encoding="utf-8")
    assert "  return-how:\n    - 退货咋弄啊？  # 小美 2026-12-06 07:12 UTC 会话 42\n" in text
    kb = load_kb(learned.paths()).kb
    assert kb is not None and kb.get("return-how").similar[-1] == "退货咋弄啊？"  # type: ignore[union-attr]


def test_accepting_twice_adds_once(faq: Path) -> None:
    learned = learned_file(faq)
    assert learned.add_similar("return-how", ["退货咋弄啊"]).added
    before = (faq / "learned.yaml").read_bytes()
    again = learned.add_similar("return-how", ["退货 咋弄啊!", "退货流程"])  # folded: the same questions
    assert not again.added and (faq / "learned.yaml").read_bytes() == before
    entry = learned.add_entry(["发票抬头能改吗"], "您好，开票后7天内可修改抬头。", category="发票")
    assert entry.added and entry.entry_id == new_entry_id("发票抬头能改吗")
    before = (faq / "learned.yaml").read_bytes()
    assert not learned.add_entry(["发票抬头能改吗"], "您好，开票后7天内可修改抬头。", category="发票").added
    assert (faq / "learned.yaml").read_bytes() == before


def test_new_entry_from_an_answer(faq: Path) -> None:
    learned = learned_file(faq)
    taught = learned.add_entry(
        ["发票抬头能改吗", "开错抬头了怎么办"],
        "您好，开票后7天内\n可在订单页修改抬头。",
        entry_id="invoice-title",
        category="发票",
    )
    assert taught.added
    kb = load_kb(learned.paths()).kb
    assert kb is not None
    entry = kb.get("invoice-title")
    assert entry is not None and entry.questions == ("发票抬头能改吗", "开错抬头了怎么办")
    assert entry.answer == "您好，开票后7天内\n可在订单页修改抬头。" and entry.category == "发票"


def test_refusals_name_what_is_wrong(faq: Path) -> None:
    learned = learned_file(faq)
    with pytest.raises(LearnError) as missing:
        learned.add_similar("no-such-entry", ["发票抬头能改吗"])
    assert missing.value.reason == "not_found"
    with pytest.raises(LearnError) as taken:
        learned.add_similar("invoice-how", ["退货流程"])  # another entry's question
    assert taken.value.reason == "conflict" and "return-how" in taken.value.message
    with pytest.raises(LearnError) as clash:
        learned.add_entry(["怎么开个发票"], "您好。", entry_id="return-how")
    assert clash.value.reason == "conflict"
    for bad in (["？！"], []):
        with pytest.raises(LearnError) as empty:
            learned.add_similar("return-how", bad)
        assert empty.value.reason == "invalid"
    with pytest.raises(LearnError) as slug:
        learned.add_entry(["发票抬头能改吗"], "您好。", entry_id="发票 抬头")
    assert slug.value.reason == "invalid"
    assert not (faq / "learned.yaml").exists()


def test_texts_yaml_would_read_as_other_types_stay_text(faq: Path) -> None:
    learned = learned_file(faq)
    learned.add_similar("return-how", ["yes", "007", "1:20"])
    learned.add_similar("return-how", ["退货咋弄啊"])  # a rewrite keeps the quotes
    kb = load_kb(learned.paths()).kb
    assert kb is not None and kb.get("return-how").similar[-4:] == ("yes", "007", "1:20", "退货咋弄啊")  # type: ignore[union-attr]


def test_a_reviewers_comments_and_edits_survive_the_next_write(faq: Path) -> None:
    learned = learned_file(faq)
    learned.add_similar("return-how", ["退货咋弄啊"])
    path = faq / "learned.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "# 审核过 2026-12-06 小王\n", encoding="utf-8")
    learned.add_similar("invoice-how", ["发票怎么弄"])
    text = path.read_text(encoding="utf-8")
    assert "# 审核过 2026-12-06 小王" in text and "发票怎么弄" in text and "退货咋弄啊" in text


def test_a_hand_written_flow_list_becomes_one_question_per_line(faq: Path) -> None:
    (faq / "learned.yaml").write_text(
        "similar:\n  return-how: [退货咋弄啊, 退货怎么搞]  # 手写\n", encoding="utf-8"
    )
    learned_file(faq).add_similar("return-how", ["退货要多久"], note="小美")
    text = (faq / "learned.yaml").read_text(encoding="utf-8")
    assert "    - 退货怎么搞\n    - 退货要多久  # 小美\n" in text and "# 手写" in text


def test_an_addition_that_would_break_the_faq_is_refused_and_nothing_is_written(faq: Path) -> None:
    learned = learned_file(faq)
    learned.add_similar("return-how", ["退货咋弄啊"])
    before = (faq / "learned.yaml").read_bytes()
    # The admin's file now holds an error: a write would be validated against it and refused.
    (faq / "admin.yaml").write_text(ADMIN + "  - id: broken\n", encoding="utf-8")
    with pytest.raises(LearnError) as refused:
        learned.add_similar("invoice-how", ["发票怎么弄"])
    assert refused.value.reason == "invalid" and refused.value.problems
    assert (faq / "learned.yaml").read_bytes() == before
    assert [p.name for p in faq.iterdir() if p.name.endswith(".tmp")] == []


def test_concurrent_writers_lose_nothing_and_never_corrupt_the_file(faq: Path) -> None:
    questions = [f"第{i}号仓库的退货地址在哪" for i in range(12)]
    errors: list[BaseException] = []

    def teach(text: str) -> None:
        try:  # each thread its own LearnedFile, as separate processes would have
            learned_file(faq).add_similar("return-how", [text], note="并发")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=teach, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    kb = load_kb(learned_file(faq).paths()).kb
    assert kb is not None
    assert set(questions) <= set(kb.get("return-how").similar)  # type: ignore[union-attr]


def test_a_folder_kefu_may_not_write_is_a_refusal_not_a_crash(faq: Path, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("", encoding="utf-8")  # (tests run as root: permissions would not stop them)
    learned = LearnedFile(not_a_folder / "learned.yaml", [faq])
    with pytest.raises(LearnError) as refused:
        learned.add_similar("return-how", ["退货咋弄啊"])
    assert refused.value.reason == "invalid" and "kb.learned_path" in refused.value.message


def _teach_in_a_process(folder: str, texts: list[str]) -> None:
    for text in texts:
        LearnedFile(Path(folder) / "learned.yaml", [folder]).add_similar("return-how", [text], note="进程")


def test_concurrent_processes_queue_on_the_lock(faq: Path) -> None:
    """Several gateway processes accepting at once (the flock is what keeps them apart, not a thread lock)."""
    import multiprocessing

    batches = [[f"{p}号客户的退货地址是哪里{i}" for i in range(3)] for p in range(4)]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_teach_in_a_process, args=(str(faq), batch)) for batch in batches]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    kb = load_kb(learned_file(faq).paths()).kb
    assert kb is not None
    assert {t for batch in batches for t in batch} <= set(kb.get("return-how").similar)  # type: ignore[union-attr]
