"""kb/editing.py: one entry changed in a maintainer's YAML, every comment, key order and style kept;
the candidate kb loaded with `kefu kb check`'s rules; problems in Chinese relative to the FAQ folder."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from kb import editing
from kb.loader import load_kb
from kb.problems_zh import problem_zh, translate

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "faq"

FILE = """\
# 售后 FAQ — 维护人：小李
faqs:
  # 退货是最常问的
  - id: return-how
    question: 怎么退货   # 标准问法
    similar:
      - 我想退货
      - 退货流程   # 旧说法
    answer: >-
      您好，在「我的订单」中申请售后即可。
    keywords: [退货, 退换]

  - id: refund-time
    question: 退款多久到账
    answer: 您好，1–3个工作日到账。
"""


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_every_demo_file_round_trips_byte_for_byte() -> None:
    for path in sorted(DEMO.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        entry = editing.list_entries(text)[0]
        assert editing.update_entry(text, entry["id"], {}) == text, path.name


def test_an_answer_edit_touches_only_the_answer_and_keeps_its_folded_style() -> None:
    after = editing.update_entry(FILE, "return-how", {"answer": "您好，请在 App 里申请退货。"})
    assert changed_lines(FILE, after) == [
        "-      您好，在「我的订单」中申请售后即可。",
        "+      您好，请在 App 里申请退货。",
    ]


def test_list_edits_keep_comments_on_kept_items_and_flow_style() -> None:
    after = editing.update_entry(
        FILE, "return-how", {"similar": ["我想退货", "退货流程", "能退吗"], "keywords": ["退货"]}
    )
    assert changed_lines(FILE, after) == [
        "+      - 能退吗",
        "-    keywords: [退货, 退换]",
        "+    keywords: [退货]",
    ]
    assert "# 旧说法" in after and "# 标准问法" in after and "# 退货是最常问的" in after


def test_new_optional_fields_disable_and_emptying() -> None:
    after = editing.update_entry(FILE, "refund-time", {"category": "售后", "enabled": False})
    entry = editing.read_entry(after, "refund-time")
    assert entry == {
        "id": "refund-time",
        "question": "退款多久到账",
        "answer": "您好，1–3个工作日到账。",
        "category": "售后",
        "enabled": False,
    }
    back = editing.update_entry(after, "refund-time", {"category": "", "enabled": True})
    assert back == FILE


def test_add_entry_appends_and_refuses_a_taken_id() -> None:
    after = editing.add_entry(
        FILE, "invoice-how", {"question": "怎么开发票", "answer": "您好，在订单详情里申请。"}
    )
    assert after.startswith(FILE.rstrip("\n"))
    assert editing.read_entry(after, "invoice-how")["question"] == "怎么开发票"
    with pytest.raises(editing.EditError):
        editing.add_entry(FILE, "return-how", {"question": "x", "answer": "y"})


def test_bad_edits_are_edit_errors() -> None:
    for entry_id, changes in (
        ("nope", {"answer": "x"}),
        ("return-how", {"id": "other"}),
        ("return-how", {"similar": "不是列表"}),
        ("return-how", {"enabled": "yes"}),
        ("return-how", {"answer": 3}),
    ):
        with pytest.raises(editing.EditError):
            editing.update_entry(FILE, entry_id, changes)
    with pytest.raises(editing.EditError):
        editing.update_entry("faqs: [\n", "x", {})


def test_the_candidate_kb_is_checked_like_kb_check_without_touching_the_files(tmp_path: Path) -> None:
    folder = tmp_path / "faq"
    shutil.copytree(DEMO, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    text = (folder / "orders.yaml").read_text(encoding="utf-8")
    first = editing.list_entries(text)[0]["id"]
    broken = editing.update_entry(text, first, {"question": ""})
    result = editing.candidate_kb([str(folder)], str(folder), {"orders.yaml": broken})
    assert result.kb is None
    [problem] = result.problems
    assert problem.file == "orders.yaml" and str(tmp_path) not in problem.message
    assert problem_zh(problem).startswith("orders.yaml 第 ") and "标准问题 question 为空" in problem_zh(
        problem
    )
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    fine = editing.update_entry(text, first, {"answer": "您好，新答案。"})
    ok = editing.candidate_kb([str(folder)], str(folder), {"orders.yaml": fine})
    assert ok.kb is not None and ok.kb.get(first).answer == "您好，新答案。"  # type: ignore[union-attr]
    # The version is the one the real files will have once saved.
    (folder / "orders.yaml").write_text(fine, encoding="utf-8")
    assert load_kb([str(folder)]).kb.version == ok.kb.version  # type: ignore[union-attr]


def test_a_loaded_file_outside_the_faq_folder_is_copied_inside_the_temporary_directory(
    tmp_path: Path,
) -> None:
    folder, elsewhere = tmp_path / "faq", tmp_path / "learned"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "a.yaml").write_text(FILE, encoding="utf-8")
    (elsewhere / "learned.yaml").write_text(
        "faqs:\n  - id: learned-1\n    question: 怎么退货\n    answer: 学到的答案\n", encoding="utf-8"
    )
    result = editing.candidate_kb([str(folder), str(elsewhere / "learned.yaml")], str(folder), {})
    # The duplicate question across the two files is found, and named without server paths.
    assert any(p.file == "learned.yaml" and "a.yaml:5" in p.message for p in result.problems), result.problems
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faq", "learned"]  # nothing written beside them


@pytest.mark.parametrize(
    ("yaml_text", "chinese"),
    [
        ("faqs:\n  - id: a\n    question: 问\n", "缺少答案 answer"),
        ("faqs:\n  - id: A B\n    question: 问\n    answer: 答\n", "编号 “A B” 不合规"),
        ("faqs:\n  - id: a\n    question: 问\n    answer: 答\n    simlar: [x]\n", "是不是想写 “similar”"),
        (
            "faqs:\n  - id: a\n    question: 问\n    answer: 答\n    keywords: 退货\n",
            "关键词 keywords 必须是文本列表",
        ),
        ("faqs:\n  - id: a\n    question: 问\n    answer: 答\n    enabled: maybe\n", "只能是 true 或 false"),
        (
            "faqs:\n  - id: a\n    question: 问\n    answer: 答\n  - id: a\n    question: 问2\n    answer: 答\n",
            "编号 “a” 重复",
        ),
        ("faqs:\n\t- id: a\n", "YAML 格式错误"),
        ("- id: a\n", "漏写了 faqs:"),
    ],
)
def test_loader_problems_read_in_chinese(tmp_path: Path, yaml_text: str, chinese: str) -> None:
    (tmp_path / "a.yaml").write_text(yaml_text, encoding="utf-8")
    problems = load_kb([str(tmp_path)]).problems
    texts = [problem_zh(editing.relative_problem(p, str(tmp_path))) for p in problems]
    assert any(chinese in t for t in texts), texts
    assert all(t.startswith("a.yaml 第 ") and "内容有误" not in t for t in texts), texts


def test_an_unknown_message_keeps_its_detail() -> None:
    assert translate("something new went wrong") == "内容有误：something new went wrong"
