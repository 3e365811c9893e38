"""load_kb: a maintainer's FAQ files in, a KnowledgeBase or every problem with its file:line out."""

from __future__ import annotations

import gc
import re
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kb.loader import LoadResult, load_kb
from kb.model import DEFAULT_REPLIES, Problem, SourceRef

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kb"
GOOD = FIXTURES / "good"

# A valid entry to pad files with, so a test's own lines carry the one problem it is about.
OK_ENTRY = """\
  - id: ok
    question: 好的问题
    answer: 您好，这是答案。
"""


def write(directory: Path, name: str, text: str) -> str:
    """Write a dedented YAML file and return its path as a string (as a caller would pass it)."""
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def only_problem(result: LoadResult) -> Problem:
    assert result.kb is None
    assert len(result.problems) == 1, "\n".join(map(str, result.problems))
    return result.problems[0]


def assert_problem(
    result: LoadResult, file: str, line: int, text: str, entry_id: str | None = None
) -> Problem:
    """Exactly one problem, at file:line, whose message contains `text`."""
    problem = only_problem(result)
    assert (problem.file, problem.line) == (file, line), str(problem)
    assert text in problem.message, str(problem)
    assert problem.severity == "error"
    if entry_id is not None:
        assert problem.entry_id == entry_id
    return problem


# -- a good knowledge base ---------------------------------------------------------------------------


def test_good_directory_merges_files_in_sorted_order() -> None:
    result = load_kb(str(GOOD))

    assert result.ok, result.problems
    kb = result.kb
    assert kb is not None
    assert [e.id for e in kb.entries] == ["return-how", "refund-when", "support.hours"]
    assert kb.sources == (f"{GOOD}/10-aftersale.yaml", f"{GOOD}/20-service.yaml")
    assert kb.get("return-how").source == SourceRef(f"{GOOD}/10-aftersale.yaml", 3)
    assert kb.get("support.hours").source == SourceRef(f"{GOOD}/20-service.yaml", 2)
    assert kb.synonyms == (("退货", "退换货", "退回"),)
    assert kb.words == ("七天无理由", "价保")
    assert re.fullmatch(r"[0-9a-f]{12}", kb.version)
    assert kb.loaded_at > 0


def test_entry_fields_are_read() -> None:
    kb = load_kb(GOOD).kb
    assert kb is not None
    entry = kb.get("return-how")
    assert entry.question == "怎么退货"
    assert entry.similar == ("退货流程是什么", "我想退货怎么弄", "东西不想要了怎么退")
    assert entry.questions[0] == "怎么退货"
    assert entry.category == "退换货"
    assert entry.keywords == ("退货",)
    assert entry.enabled is True
    assert entry.answer.startswith("您好，收到商品7天内")


def test_per_channel_answers_fall_back_to_default() -> None:
    kb = load_kb(GOOD).kb
    assert kb is not None
    entry = kb.get("refund-when")

    assert entry.answer_for("wechat").startswith("您好，仓库签收后1–2个工作日原路退回微信支付")
    assert entry.answer_for("qqbot") == entry.answer == entry.answer_for(None)
    assert "default" not in entry.answers


def test_intents_and_replies() -> None:
    kb = load_kb(GOOD).kb
    assert kb is not None
    (complaint,) = kb.intents
    assert complaint.name == "complaint"
    assert complaint.action == "handoff"
    assert complaint.priority == "high"
    assert complaint.group == "售后"
    # A number in a list of words is the text as written, not an int.
    assert complaint.keywords == ("投诉", "差评", "12315")
    assert complaint.source == SourceRef(f"{GOOD}/20-service.yaml", 9)
    assert kb.replies.get("greeting") == "您好，欢迎光临小店！请直接输入您的问题。"
    assert kb.replies.get("fallback") == DEFAULT_REPLIES["fallback"]
    assert kb.replies.sources["greeting"] == SourceRef(f"{GOOD}/20-service.yaml", 17)


def test_files_can_be_listed_one_by_one(tmp_path: Path) -> None:
    first = write(tmp_path, "b.yaml", "faqs:\n" + OK_ENTRY)
    second = write(tmp_path, "a.yaml", "replies:\n  greeting: 您好！\n")

    kb = load_kb([first, second]).kb

    assert kb is not None
    assert kb.sources == (first, second)  # the caller's order, not sorted
    assert kb.replies.get("greeting") == "您好！"


def test_block_scalar_answers_lose_the_trailing_newline(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        """\
        faqs:
          - id: a
            question: 问题
            answer: |
              您好，第一行。
              第二行。
        """,
    )
    kb = load_kb(path).kb
    assert kb is not None
    assert kb.entries[0].answer == "您好，第一行。\n第二行。"


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "faq.yaml"
    path.write_bytes("\ufefffaqs:\n".encode() + OK_ENTRY.encode())
    assert load_kb(path).ok


def test_empty_file_adds_nothing(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "faqs:\n" + OK_ENTRY)
    write(tmp_path, "b.yaml", "# nothing here yet\n")
    kb = load_kb(tmp_path).kb
    assert kb is not None
    assert len(kb.entries) == 1


def test_other_files_in_the_directory_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "faqs:\n" + OK_ENTRY)
    write(tmp_path, "notes.txt", "not yaml: [")
    write(tmp_path, ".draft.yaml", "not yaml: [")
    assert load_kb(tmp_path).ok


def test_disabled_entry_may_keep_a_question_its_replacement_owns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        """\
        faqs:
          - id: old
            question: 怎么退货
            answer: 旧答案
            enabled: false
          - id: new
            question: 怎么退货
            answer: 您好，新答案。
        """,
    )
    kb = load_kb(path).kb
    assert kb is not None
    assert [e.id for e in kb.enabled_entries] == ["new"]


# -- version -----------------------------------------------------------------------------------------


def test_version_changes_when_content_changes(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY)
    before = load_kb(path).kb
    assert before is not None
    assert load_kb(path).kb.version == before.version  # stable

    write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY.replace("这是答案", "这是新答案"))

    assert load_kb(path).kb.version != before.version


def test_version_depends_on_file_names_not_directory(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere"
    shutil.copytree(GOOD, copy)
    assert load_kb(copy).kb.version == load_kb(GOOD).kb.version

    (copy / "20-service.yaml").rename(copy / "30-service.yaml")
    assert load_kb(copy).kb.version != load_kb(GOOD).kb.version


# -- one test per error ------------------------------------------------------------------------------


def test_duplicate_id_across_files_names_the_other_place(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "faqs:\n" + OK_ENTRY)
    second = write(
        tmp_path,
        "b.yaml",
        """\
        faqs:
          - id: other
            question: 别的问题
            answer: 别的答案
          - id: ok
            question: 第三个问题
            answer: 第三个答案
        """,
    )
    problem = assert_problem(load_kb(tmp_path), second, 5, "duplicate id 'ok'", "ok")
    assert f"{first}:2" in problem.message


def test_missing_question(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n  - id: a\n    answer: 答案\n")
    assert_problem(load_kb(path), path, 2, "faq entry has no 'question'", "a")


@pytest.mark.parametrize("value", ['""', "'   '", ""])
def test_empty_question(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, "faq.yaml", f"faqs:\n  - id: a\n    question: {value}\n    answer: 答案\n")
    assert_problem(load_kb(path), path, 3, "'question' is empty", "a")


def test_missing_answer(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n  - id: a\n    question: 问题\n")
    assert_problem(load_kb(path), path, 2, "faq entry has no 'answer'", "a")


def test_empty_answer(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n  - id: a\n    question: 问题\n    answer:\n")
    assert_problem(load_kb(path), path, 4, "'answer' is empty", "a")


def test_missing_id(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "  - question: 另一个\n    answer: 答案\n")
    assert_problem(load_kb(path), path, 5, "faq entry has no 'id'")


def test_answer_variants_need_a_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        """\
        faqs:
          - id: a
            question: 问题
            answer:
              wechat: 微信的答案
        """,
    )
    assert_problem(load_kb(path), path, 5, "need a 'default:' answer", "a")


def test_unknown_channel_in_answer_variants(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        """\
        faqs:
          - id: a
            question: 问题
            answer:
              default: 答案
              wechta: 微信的答案
        """,
    )
    assert_problem(
        load_kb(path), path, 6, "unknown key 'wechta' in the answer variants; did you mean 'wechat'?"
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("    question: [问题一, 问题二]", "'question' must be a string, got a list"),
        ("    question: yes", "'question' must be a string, got a boolean ('yes'); put it in quotes"),
        ("    question: {a: b}", "'question' must be a string, got a mapping"),
    ],
)
def test_question_of_the_wrong_type(tmp_path: Path, line: str, expected: str) -> None:
    path = write(tmp_path, "faq.yaml", f"faqs:\n  - id: a\n{line}\n    answer: 答案\n")
    assert_problem(load_kb(path), path, 3, expected, "a")


def test_similar_must_be_a_list(tmp_path: Path) -> None:
    path = write(
        tmp_path, "faq.yaml", "faqs:\n  - id: a\n    question: 问题\n    similar: 问法\n    answer: 答案\n"
    )
    assert_problem(
        load_kb(path),
        path,
        4,
        "'similar' must be a list of strings, got a string ('问法'); write it as a list: [问法]",
    )


def test_enabled_must_be_a_boolean(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "    enabled: maybe\n")
    assert_problem(load_kb(path), path, 5, "'enabled' must be true or false, got a string ('maybe')", "ok")


def test_answer_of_the_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n  - id: a\n    question: 问题\n    answer: [一, 二]\n")
    assert_problem(load_kb(path), path, 4, "'answer' must be a string or a mapping of channel variants")


def test_unknown_entry_key_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "    simlar: [问法]\n")
    assert_problem(
        load_kb(path), path, 5, "unknown key 'simlar' in this faq entry; did you mean 'similar'?", "ok"
    )


def test_unknown_key_without_a_close_match_lists_the_allowed_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "    priority: 1\n")
    assert_problem(
        load_kb(path), path, 5, "allowed: id, question, similar, answer, category, keywords, enabled"
    )


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "synonym:\n  - [退货, 退回]\n")
    assert_problem(load_kb(path), path, 5, "unknown key 'synonym' in the top level; did you mean 'synonyms'?")


def test_unknown_reply_key(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "replies:\n  greting: 您好\n")
    assert_problem(load_kb(path), path, 6, "unknown key 'greting' in replies; did you mean 'greeting'?")


def test_same_question_under_two_ids_after_folding(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        """\
        faqs:
          - id: return-how
            question: 怎么退货？
            answer: 答案一
          - id: return-flow
            question: 退货流程
            similar:
              - 怎么 退货
            answer: 答案二
        """,
    )
    problem = assert_problem(
        load_kb(path), path, 8, "question '怎么 退货' is also a question of entry return-how"
    )
    assert f"{path}:3" in problem.message
    assert problem.entry_id == "return-flow"


def test_same_question_folds_full_width_and_case(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        """\
        faqs:
          - id: a
            question: iPhone 能用吗?
            answer: 答案一
          - id: b
            question: ＩＰＨＯＮＥ能用吗！
            answer: 答案二
        """,
    )
    assert_problem(load_kb(path), path, 6, "is also a question of entry a", "b")


def test_broken_yaml_reports_the_parser_position(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n  - id: a\n    question: [未闭合\n    answer: 答案\n")
    problem = only_problem(load_kb(path))
    assert (problem.file, problem.line) == (path, 4)
    assert problem.column is not None
    assert problem.message.startswith("invalid YAML: ")


def test_tab_indentation_says_to_use_spaces(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n  - id: a\n\tquestion: 问题\n")
    problem = only_problem(load_kb(path))
    assert problem.line == 3
    assert "indent with spaces, not tabs" in problem.message


def test_two_yaml_documents_in_one_file(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "---\nfaqs: []\n")
    problem = only_problem(load_kb(path))
    assert problem.line == 5
    assert "single document" in problem.message


def test_non_utf8_file_reports_the_line_of_the_first_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "faq.yaml"
    path.write_bytes(("faqs:\n" + OK_ENTRY).encode() + "  - id: gbk\n    question: 怎么退货\n".encode("gbk"))
    problem = only_problem(load_kb(str(path)))
    assert (problem.file, problem.line, problem.column) == (str(path), 6, 15)
    assert "not UTF-8" in problem.message
    assert "GBK" in problem.message


@pytest.mark.parametrize(
    ("bad_id", "hint"),
    [
        ("Return How", "did you mean 'return-how'?"),
        ("-leading-dash", "did you mean 'leading-dash'?"),
        ("退货", "starting with a letter or digit"),
    ],
)
def test_bad_id_slug(tmp_path: Path, bad_id: str, hint: str) -> None:
    path = write(tmp_path, "faq.yaml", f"faqs:\n  - id: '{bad_id}'\n    question: 问题\n    answer: 答案\n")
    problem = assert_problem(load_kb(path), path, 2, f"id '{bad_id}' is not a valid slug", bad_id)
    assert hint in problem.message


def test_numeric_id_is_a_valid_slug(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n  - id: 2024\n    question: 问题\n    answer: 答案\n")
    kb = load_kb(path).kb
    assert kb is not None
    assert kb.entries[0].id == "2024"


@pytest.mark.parametrize("item", ['""', "", "'  '"])
def test_empty_similar_question(tmp_path: Path, item: str) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        f"faqs:\n  - id: a\n    question: 问题\n    similar:\n      - 问法一\n      - {item}\n    answer: 答案\n",
    )
    problem = assert_problem(load_kb(path), path, 6, "empty", "a")
    assert "similar" in problem.message


def test_question_of_only_punctuation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        "faqs:\n  - id: a\n    question: 问题\n    similar: ['？？']\n    answer: 答案\n",
    )
    assert_problem(load_kb(path), path, 4, "question '？？' has no letters or digits", "a")


def test_duplicate_yaml_key_in_one_mapping(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        """\
        faqs:
          - id: a
            question: 问题
            answer: 第一个答案
            answer: 第二个答案
        """,
    )
    assert_problem(
        load_kb(path), path, 5, "key 'answer' appears twice in this faq entry (first at line 4)", "a"
    )


def test_zero_entries_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "words: [价保]\n")
    assert_problem(load_kb(path), path, 1, "no faq entries found")


def test_all_entries_disabled_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "    enabled: false\n")
    assert_problem(load_kb(path), path, 2, "all 1 faq entries are disabled")


def test_missing_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    assert_problem(load_kb(missing), missing, 1, "no such file or directory")


def test_empty_directory(tmp_path: Path) -> None:
    assert_problem(load_kb(tmp_path), str(tmp_path), 1, "no FAQ files (*.yaml) in this directory")


def test_top_level_list_hints_at_the_missing_faqs_key(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", OK_ENTRY)
    assert_problem(load_kb(path), path, 1, "did you forget the 'faqs:' line")


def test_faqs_must_be_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n  id: a\n  question: 问题\n")
    problem = only_problem(load_kb(path))
    assert (problem.line, problem.message) == (
        2,
        "'faqs' must be a list of entries ('- id: ...'), got a mapping",
    )


def test_unknown_intent_action_suggests_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        "faqs:\n" + OK_ENTRY + "intents:\n  - name: human\n    action: handof\n    keywords: [转人工]\n",
    )
    assert_problem(
        load_kb(path),
        path,
        7,
        "intent human: 'action' must be one of handoff, smalltalk, answer, got 'handof'; did you mean 'handoff'?",
    )


def test_intent_that_can_never_match(tmp_path: Path) -> None:
    path = write(
        tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "intents:\n  - name: human\n    action: handoff\n"
    )
    assert_problem(load_kb(path), path, 6, "intent human: intent has neither 'keywords' nor 'examples'")


def test_answer_intent_needs_a_reply(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "faq.yaml",
        "faqs:\n" + OK_ENTRY + "intents:\n  - name: hi\n    action: answer\n    keywords: [你好]\n",
    )
    assert_problem(load_kb(path), path, 6, "action 'answer' but no 'reply'")


def test_duplicate_intent_name_across_files(tmp_path: Path) -> None:
    intent = "intents:\n  - name: human\n    action: handoff\n    keywords: [转人工]\n"
    first = write(tmp_path, "a.yaml", "faqs:\n" + OK_ENTRY + intent)
    second = write(tmp_path, "b.yaml", intent)
    problem = assert_problem(load_kb(tmp_path), second, 2, "duplicate intent name 'human'")
    assert f"{first}:6" in problem.message


def test_synonym_group_needs_two_words(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "synonyms:\n  - [退货]\n")
    assert_problem(load_kb(path), path, 6, "a synonym group needs at least two words")


def test_synonym_in_two_groups(tmp_path: Path) -> None:
    path = write(
        tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "synonyms:\n  - [退货, 退回]\n  - [退款, 退回]\n"
    )
    problem = assert_problem(load_kb(path), path, 7, "synonym '退回' is already in the group at")
    assert f"{path}:6" in problem.message


def test_dictionary_word_with_a_space(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.yaml", "faqs:\n" + OK_ENTRY + "words:\n  - 七天 无理由\n")
    assert_problem(load_kb(path), path, 6, "dictionary word '七天 无理由' contains a space")


def test_reply_defined_in_two_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "faqs:\n" + OK_ENTRY + "replies:\n  greeting: 您好\n")
    second = write(tmp_path, "b.yaml", "replies:\n  greeting: 您好呀\n")
    problem = assert_problem(load_kb(tmp_path), second, 2, "reply 'greeting' is already defined at")
    assert f"{first}:6" in problem.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("faqs: " + "[" * 50_000 + "]" * 50_000 + "\n", 1),  # would crash libyaml, not raise
        ("faqs:\n" + "- " * 50_000 + "x\n", 2),
    ],
)
def test_absurd_nesting_is_refused_before_parsing(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, "faq.yaml", text)
    assert_problem(load_kb(path), path, line, "nesting too deep")


def test_garbage_collection_is_back_on_after_loading() -> None:
    assert gc.isenabled()
    load_kb(GOOD)
    assert gc.isenabled()


# -- every problem, in order -------------------------------------------------------------------------


def test_every_problem_is_reported_in_file_order(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "faqs:\n  - id: a\n    question: 问题\n")
    write(tmp_path, "b.yaml", "faqs: [\n")
    write(
        tmp_path,
        "c.yaml",
        """\
        faqs:
          - id: Bad Id
            question: ''
            answer: 答案
            colour: red
        """,
    )

    result = load_kb(tmp_path)

    assert result.kb is None
    assert not result.ok
    where = [(Path(p.file).name, p.line) for p in result.problems]
    assert where == [("a.yaml", 2), ("b.yaml", 2), ("c.yaml", 2), ("c.yaml", 3), ("c.yaml", 5)]
    assert (
        str(result.problems[0])
        == f"{tmp_path}/a.yaml:2: entry a: faq entry has no 'answer'; add the reply the bot should send"
    )


def test_relative_paths_stay_relative_in_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "faq").mkdir()
    write(tmp_path / "faq", "a.yaml", "faqs:\n  - id: a\n    question: 问题\n")
    monkeypatch.chdir(tmp_path)
    assert str(only_problem(load_kb("faq"))).startswith("faq/a.yaml:2: entry a: ")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                "faqs:",
                "  - id: a",
                "    question: 问",
                "    answer: 答",
                "    similar: [",
                "  -",
                ": x",
                "\t",
                "'",
                "&a",
                "*a",
                "!!binary x",
                "synonyms:",
                "  - [a]",
                "replies:",
                "  greeting:",
                "intents:",
                "    action: x",
                "---",
            ]
        ),
        max_size=12,
    )
    | st.text(max_size=200).map(lambda s: s.splitlines())
)
def test_never_raises_on_any_input(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "faq.yaml"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        result = load_kb(path)
    assert result.ok or result.problems


def test_the_example_in_the_schema_docs_is_valid(tmp_path: Path) -> None:
    docs = Path(__file__).parents[2] / "docs" / "faq-schema.md"
    example = re.search(r"## Example\n\n```yaml\n(.*?)```", docs.read_text(encoding="utf-8"), re.S)
    assert example is not None
    path = write(tmp_path, "faq.yaml", example.group(1))
    result = load_kb(path)
    assert result.ok, result.problems
    assert [e.id for e in result.kb.entries] == ["return-how", "refund-when"]


def test_lenient_load_keeps_entries_with_soft_problems(tmp_path):
    """`strict=False` (used by `kefu eval`) builds the kb despite non-slug ids and shared questions."""
    faq = tmp_path / "faq.yaml"
    faq.write_text(
        "faqs:\n"
        "  - id: Contacts - comment:email\n"
        "    question: 邮箱是多少\n"
        "    similar: [你们的网站]\n"
        "    answer: 您好，邮箱是 service@example.com。\n"
        "  - id: website\n"
        "    question: 官网地址\n"
        "    similar: [你们的网站]\n"
        "    answer: 您好，官网是 example.com。\n",
        encoding="utf-8",
    )
    strict = load_kb([str(faq)])
    assert strict.kb is None
    assert len(strict.problems) == 2 and len(strict.soft) == 2

    lenient = load_kb([str(faq)], strict=False)
    assert lenient.kb is not None
    assert [e.id for e in lenient.kb.entries] == ["Contacts - comment:email", "website"]
    assert not lenient.ok  # the problems are still reported
    assert "not a valid slug" in str(lenient.problems[0])
    assert f"{faq}:8: entry website: question '你们的网站' is also a question" in str(lenient.problems[1])


def test_lenient_load_still_refuses_hard_errors(tmp_path):
    faq = tmp_path / "faq.yaml"
    faq.write_text("faqs:\n  - id: Bad Id\n    question: 邮箱\n", encoding="utf-8")
    result = load_kb([str(faq)], strict=False)
    assert result.kb is None
    assert any("answer" in str(p) for p in result.problems)
