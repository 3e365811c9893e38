"""config/qa.yaml: the shipped rules load; every mistake is reported with its file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb.qa_rules import load_qa_rules, parse_qa_rules

REPO = Path(__file__).resolve().parents[2]


def test_shipped_rules_load_and_cover_the_norms_of_the_issue() -> None:
    result = load_qa_rules(REPO / "config" / "qa.yaml")
    assert result.ok, [str(p) for p in result.problems]
    rules = result.rules
    assert rules is not None and rules.version
    assert {r.type for r in rules.rules} == {
        "required",
        "forbidden",
        "vague",
        "response_gap",
        "width_mix",
        "placeholder",
    }
    ids = {r.id for r in rules.rules}
    assert {"greeting", "closing", "rude", "bare-unknown", "dismissive", "placeholder"} <= ids
    bare = next(r for r in rules.rules if r.id == "bare-unknown")
    assert {"不知道", "不清楚", "没办法"} <= set(bare.words) and bare.flag
    assert bare.source is not None and bare.source.file.endswith("qa.yaml") and bare.source.line > 1


GOOD = """\
max_score: 100
flag_below: 80
rules:
  - id: rude
    type: forbidden
    words: [妈的]
    weight: 40
    block: true
"""


def test_a_minimal_file_loads_with_defaults() -> None:
    result = parse_qa_rules(GOOD, "qa.yaml")
    assert result.ok
    (rule,) = result.rules.rules  # type: ignore[union-attr]
    assert (rule.id, rule.name, rule.weight, rule.block, rule.flag) == ("rude", "rude", 40, True, False)
    assert dict(rule.words) == {"妈的": ""}


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("rules:\n  - id: a\n    type: forbiden\n    words: [x]\n", 3, "did you mean 'forbidden'"),
        ("rules:\n  - id: a\n    type: forbidden\n    wrods: [x]\n", 4, "unknown key 'wrods'"),
        ("rules:\n  - id: a\n    type: forbidden\n", 2, "give 'words' or 'patterns'"),
        (
            "rules:\n  - id: a\n    type: forbidden\n    patterns: ['(不']\n",
            4,
            "not a valid regular expression",
        ),
        ("rules:\n  - id: a\n    type: forbidden\n    patterns: ['x*']\n", 4, "matches the empty text"),
        ("rules:\n  - id: a\n    type: forbidden\n    words: [x]\n    weight: 300\n", 5, "0 to 100"),
        ("rules:\n  - id: a\n    type: forbidden\n    words: [x]\n    block: maybe\n", 5, "true or false"),
        ("rules:\n  - id: a\n    type: required\n    phrases: [您好]\n    in: middle\n", 5, "first_reply"),
        ("rules:\n  - id: a\n    type: width_mix\n    words: [x]\n", 4, "does not apply to type width_mix"),
        ("rules:\n  - id: Bad Id\n    type: placeholder\n", 2, "lowercase"),
        ("rules:\n  - type: placeholder\n", 2, "'id' is required"),
        (
            "rules:\n  - id: a\n    type: placeholder\n  - id: a\n    type: width_mix\n",
            4,
            "already used at line 2",
        ),
        ("rules: []\n", 1, "rules: required"),
        ("- id: a\n", 1, "top level must be a mapping"),
        ("rules:\n  - id: a\n    type: [x\n", 4, "invalid YAML"),
        ("", 1, "empty file"),
        ("max_score: 50\nflag_below: 60\nrules:\n  - id: a\n    type: placeholder\n", 2, "0 to 50"),
    ],
)
def test_mistakes_are_reported_with_file_and_line(text: str, line: int, needle: str) -> None:
    result = parse_qa_rules(text, "config/qa.yaml")
    assert result.rules is None
    assert any(p.line == line and needle in p.message for p in result.problems), [
        str(p) for p in result.problems
    ]
    assert all(str(p).startswith("config/qa.yaml:") for p in result.problems)


def test_a_missing_file_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    result = load_qa_rules(tmp_path / "nope.yaml")
    assert result.rules is None and "cannot read" in result.problems[0].message
    bad = tmp_path / "gbk.yaml"
    bad.write_bytes("rules:\n  - id: 中".encode("gbk"))
    assert "not UTF-8" in load_qa_rules(bad).problems[0].message
