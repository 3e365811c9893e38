"""`kefu kb check` / `kefu kb lint`, run the way a maintainer (or CI) runs them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from gateway.cli import main
from kb.loader import load_kb

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kb"
GOOD = str(FIXTURES / "good")
BROKEN = str(FIXTURES / "broken")
LINT = str(FIXTURES / "lint")


def test_check_a_good_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "check", GOOD]) == 0

    version = load_kb(GOOD).kb.version
    assert capsys.readouterr().out == f"{GOOD}: 3 entries, 12 questions, 1 intent, version {version} — OK\n"


def test_check_a_broken_directory_prints_every_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "check", BROKEN]) == 1

    lines = capsys.readouterr().out.splitlines()
    broken = f"{BROKEN}/20-broken.yaml"
    assert lines == [
        f"{broken}:2: entry return-how: duplicate id 'return-how': already used at {BROKEN}/10-ok.yaml:2",
        f"{broken}:5: entry shipping: faq entry has no 'question'; add the canonical question customers ask",
        f"{broken}:6: entry shipping: unknown key 'questoin' in this faq entry; did you mean 'question'?",
        f"{broken}:7: entry shipping: 'answer' is empty; fill it in",
        f"{BROKEN}: 4 errors — FAILED",
    ]


def test_check_defaults_to_config_faq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    shutil.copytree(GOOD, tmp_path / "config" / "faq")
    monkeypatch.chdir(tmp_path)

    assert main(["kb", "check", "--config", "config/gateway.yaml"]) == 0

    assert capsys.readouterr().out.startswith("config/faq: 3 entries, 12 questions")


def test_check_by_default_includes_the_learned_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    shutil.copytree(GOOD, tmp_path / "config" / "faq")
    monkeypatch.chdir(tmp_path)
    taught = tmp_path / "taught.yaml"
    taught.write_text("similar:\n  return-how: [退货咋弄]\n  no-such-entry: [发票咋开]\n", encoding="utf-8")
    config = tmp_path / "config" / "gateway.yaml"
    config.write_text("kb:\n  learned_path: taught.yaml\n", encoding="utf-8")

    assert main(["kb", "check", "--config", "config/gateway.yaml"]) == 1
    out = capsys.readouterr().out
    assert "taught.yaml:3: entry no-such-entry: similar: there is no faq entry 'no-such-entry'" in out
    taught.write_text("similar:\n  return-how: [退货咋弄]\n", encoding="utf-8")
    assert main(["kb", "check", "--config", "config/gateway.yaml"]) == 0
    assert "3 entries, 13 questions" in capsys.readouterr().out


def test_check_several_files(capsys: pytest.CaptureFixture[str]) -> None:
    first, second = f"{GOOD}/10-aftersale.yaml", f"{GOOD}/20-service.yaml"
    assert main(["kb", "check", first, second]) == 0
    assert capsys.readouterr().out.startswith(f"{first} {second}: 3 entries")


def test_check_a_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope")
    assert main(["kb", "check", missing]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{missing}:1: no such file or directory",
        f"{missing}: 1 error — FAILED",
    ]


def test_lint_prints_warnings_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "lint", LINT]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{LINT}/faq.yaml:2: entry vague: warning: answer says '不清楚'")
    assert lines[1].startswith(f"{LINT}/faq.yaml:6: entry bare: warning: answer '在的' is a bare reply")
    assert (
        lines[3]
        == f"{LINT}/faq.yaml:19: warning: reply 'greeting' does not address the customer as 您; start with 您好"
    )
    assert re.fullmatch(
        rf"{LINT}: 4 entries, 14 questions, version [0-9a-f]{{12}} — OK, 4 warnings", lines[-1]
    )


def test_lint_strict_fails_on_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "lint", "--strict", LINT]) == 1
    assert "— FAILED (--strict), 4 warnings" in capsys.readouterr().out.splitlines()[-1]


def test_lint_strict_passes_a_clean_kb(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "lint", "--strict", GOOD]) == 0
    assert capsys.readouterr().out.endswith("— OK\n")


def test_lint_a_broken_directory_fails_with_the_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "lint", BROKEN]) == 1
    out = capsys.readouterr().out
    assert "duplicate id 'return-how'" in out
    assert out.endswith(f"{BROKEN}: 4 errors — FAILED\n")


def test_kb_without_a_subcommand_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb"]) == 2
    out = capsys.readouterr().out
    assert "check" in out and "lint" in out
