"""lint_kb: replies that work but read badly to a customer come back as warnings with file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kb.lint import MAX_ANSWER_CHARS, lint_kb
from kb.loader import load_kb
from kb.model import FaqEntry, KnowledgeBase, Problem

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kb"
SIMILAR = "    similar: [问法一, 问法二, 问法三]\n"


def lint_text(tmp_path: Path, text: str) -> tuple[str, list[Problem]]:
    path = tmp_path / "faq.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    result = load_kb(str(path))
    assert result.kb is not None, result.problems
    return str(path), lint_kb(result.kb)


def entry_with_answer(answer: str) -> str:
    return f"faqs:\n  - id: a\n    question: 问题\n{SIMILAR}    answer: '{answer}'\n"


def messages(problems: list[Problem]) -> list[str]:
    return [p.message for p in problems]


def test_the_good_fixture_is_clean() -> None:
    kb = load_kb(FIXTURES / "good").kb
    assert kb is not None
    assert lint_kb(kb) == []


def test_lint_fixture_warns_with_file_and_line() -> None:
    directory = FIXTURES / "lint"
    kb = load_kb(str(directory)).kb
    assert kb is not None

    warnings = lint_kb(kb)

    file = f"{directory}/faq.yaml"
    assert [(p.file, p.line, p.entry_id) for p in warnings] == [
        (file, 2, "vague"),
        (file, 6, "bare"),
        (file, 10, "few-similar"),
        (file, 19, None),
    ]
    assert all(p.severity == "warning" for p in warnings)


@pytest.mark.parametrize(
    "answer", ["我不知道", "抱歉，这个我们也不清楚。", "我不太清楚呢，您再问问别人", "这个不晓得哦亲"]
)
def test_vague_reply(tmp_path: Path, answer: str) -> None:
    path, warnings = lint_text(tmp_path, entry_with_answer(answer))
    (warning,) = warnings
    assert (warning.file, warning.line, warning.entry_id) == (path, 2, "a")
    assert "never answer with 不知道/不清楚" in warning.message


@pytest.mark.parametrize(
    "answer",
    [
        "您好，如果您不清楚订单号，可以在「我的订单」中查看。",
        "您好，若不知道快递单号，请在订单详情页查看物流信息。",
    ],
)
def test_customer_not_knowing_is_not_vague(tmp_path: Path, answer: str) -> None:
    assert lint_text(tmp_path, entry_with_answer(answer))[1] == []


@pytest.mark.parametrize("answer", ["好的", "嗯", "OK。"])
def test_bare_reply(tmp_path: Path, answer: str) -> None:
    _, warnings = lint_text(tmp_path, entry_with_answer(answer))
    assert messages(warnings) == [f"answer '{answer}' is a bare reply; say what the customer can do next"]


def test_answer_longer_than_one_chat_bubble(tmp_path: Path) -> None:
    just_fits = "您" * MAX_ANSWER_CHARS
    assert lint_text(tmp_path, entry_with_answer(just_fits))[1] == []

    _, warnings = lint_text(tmp_path, entry_with_answer(just_fits + "好"))
    assert messages(warnings) == [
        f"answer is {MAX_ANSWER_CHARS + 1} characters, more than one chat bubble ({MAX_ANSWER_CHARS}); "
        "shorten it or split it into entries"
    ]


def test_channel_variants_are_linted_by_name(tmp_path: Path) -> None:
    _, warnings = lint_text(
        tmp_path,
        """\
        faqs:
          - id: a
            question: 问题
            similar: [问法一, 问法二, 问法三]
            answer:
              default: 您好，请在订单页申请售后。
              wechat: 好的
        """,
    )
    assert messages(warnings) == ["answer.wechat '好的' is a bare reply; say what the customer can do next"]


def test_fewer_than_three_similar_questions(tmp_path: Path) -> None:
    _, warnings = lint_text(
        tmp_path, "faqs:\n  - id: a\n    question: 问题\n    similar: [问法]\n    answer: 您好，答案在此。\n"
    )
    (warning,) = warnings
    assert warning.message.startswith("only 1 similar question(s); add at least 3")


def test_question_repeated_in_one_entry(tmp_path: Path) -> None:
    _, warnings = lint_text(
        tmp_path,
        "faqs:\n  - id: a\n    question: 问题\n    similar: [问法一, 问法二, 问题？]\n    answer: 您好，答案。\n",
    )
    assert messages(warnings) == ["question '问题？' is listed twice in this entry"]


def test_greeting_without_nin(tmp_path: Path) -> None:
    path, warnings = lint_text(
        tmp_path, entry_with_answer("您好，答案。") + "replies:\n  greeting: 欢迎光临，有什么可以帮你？\n"
    )
    (warning,) = warnings
    assert (warning.file, warning.line) == (path, 7)
    assert "greeting" in warning.message and "您好" in warning.message


def test_intent_replies_are_linted(tmp_path: Path) -> None:
    _, warnings = lint_text(
        tmp_path,
        entry_with_answer("您好，答案。")
        + "intents:\n  - name: hi\n    action: answer\n    keywords: [你好]\n    reply: 嗯\n",
    )
    assert messages(warnings) == ["intent hi: reply '嗯' is a bare reply; say what the customer can do next"]


def test_default_replies_are_not_linted(tmp_path: Path) -> None:
    # The built-in phrases are not the kb author's to fix; only overrides get warnings.
    assert lint_text(tmp_path, entry_with_answer("您好，答案。"))[1] == []


def test_entries_without_a_source_still_lint() -> None:
    kb = KnowledgeBase(entries=(FaqEntry(id="a", question="问题", answer="好的"),), version="x")
    assert [p.entry_id for p in lint_kb(kb)] == ["a", "a"]
