"""Every `kefu` command reads the server's settings object: the file, `${VAR}`, `KEFU_*` env, then flags."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from gateway.cli import main

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "config" / "gateway.yaml"
GOOD_KB = REPO / "tests" / "fixtures" / "kb" / "good"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No KEFU_* variables from the machine running the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("KEFU_"):
            monkeypatch.delenv(name)
    return monkeypatch


def _decision_line(out: str) -> str:
    return out.split("决定")[1].split("\n")[0]


def test_kefu_ask_uses_the_servers_thresholds_with_a_kefu_override(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ask", "怎么退货", "--config", str(SHIPPED_CONFIG), "--kb", str(REPO / "config" / "faq")]
    assert main(argv) == 0
    shipped = _decision_line(capsys.readouterr().out)  # the shipped file: thresholds calibrated on the kb
    assert "answer (faq)" in shipped and "[answer ≥ 0.62, suggest ≥ 0.35]" not in shipped

    clean_env.setenv("KEFU_MATCHER__ANSWER_THRESHOLD", "0.99")
    clean_env.setenv("KEFU_MATCHER__SUGGEST_THRESHOLD", "0.9")
    assert main(argv) == 0
    line = _decision_line(capsys.readouterr().out)
    assert "[answer ≥ 0.99, suggest ≥ 0.9]" in line and "answer (" not in line  # as `kefu serve` would

    # A flag is the top layer, as `kefu serve --port` is.
    assert main([*argv, "--answer-threshold", "0.5"]) == 0
    assert "[answer ≥ 0.5, suggest ≥ 0.9]" in _decision_line(capsys.readouterr().out)


def test_kb_paths_come_from_the_settings_and_a_named_path_beats_them(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.chdir(tmp_path)
    shutil.copytree(GOOD_KB, tmp_path / "elsewhere")
    clean_env.setenv("KEFU_KB__PATHS", '["elsewhere"]')
    assert main(["kb", "check"]) == 0  # no config file here: defaults < KEFU_KB__PATHS
    assert capsys.readouterr().out.startswith("elsewhere: 3 entries")
    assert main(["ask", "怎么退货"]) == 0
    assert "候选" in capsys.readouterr().out

    assert main(["kb", "check", str(tmp_path / "missing")]) == 1  # the named path, not kb.paths
    assert "missing" in capsys.readouterr().out


def test_a_bad_override_stops_every_command_with_the_key_named(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.chdir(tmp_path)
    clean_env.setenv("KEFU_MATCHER__ANSWER_TRESHOLD", "0.9")
    for argv in (
        ["ask", "怎么退货"],
        ["kb", "check"],
        ["agent", "list"],
        ["report"],
        ["purge", "--days", "9"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "KEFU_MATCHER__ANSWER_TRESHOLD: unknown setting" in err
        assert "did you mean 'answer_threshold'?" in err


def test_agent_commands_use_the_kefu_database_url(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.chdir(tmp_path)
    clean_env.setenv("KEFU_DATABASE__URL", f"sqlite+aiosqlite:///{tmp_path}/other.db")
    assert main(["agent", "add", "小王"]) == 0
    capsys.readouterr()
    assert (tmp_path / "other.db").exists() and not (tmp_path / "data").exists()
    assert main(["agent", "list"]) == 0
    assert "小王" in capsys.readouterr().out


def test_the_demo_secret_is_not_warned_about_by_commands_that_do_not_send(
    clean_env: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clean_env.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    shutil.copy(SHIPPED_CONFIG, tmp_path / "config" / "gateway.yaml")
    shutil.copytree(GOOD_KB, tmp_path / "config" / "faq")
    clean_env.setenv("KEFU_DATABASE__URL", f"sqlite+aiosqlite:///{tmp_path}/kefu.db")
    for argv in (
        ["ask", "怎么退货"],
        ["kb", "check"],
        ["agent", "list"],
        ["purge", "--days", "9", "--dry-run"],
    ):
        with caplog.at_level(logging.WARNING):
            assert main(argv) == 0, argv
        assert "KEFU_WECHAT_DEMO_SECRET" not in capsys.readouterr().err + caplog.text, argv

    # An unset ${VAR} in a section the command uses is still said.
    (tmp_path / "config" / "gateway.yaml").write_text(
        "database: {url: 'sqlite+aiosqlite:///${KEFU_TEST_DB_DIR}/x.db'}\n", encoding="utf-8"
    )
    main(["agent", "list"])
    assert "KEFU_TEST_DB_DIR is not set" in capsys.readouterr().err


def test_settings_alone_read_only_kefu_section_variables(clean_env: pytest.MonkeyPatch) -> None:
    from gateway.settings import Settings

    clean_env.setenv("KEFU_SERVER__PORT", "9300")
    clean_env.setenv("KEFU_ADMIN", "not-a-section")  # no "__": not a setting, as in load_settings
    settings = Settings(matcher={"answer_threshold": 0.8})  # keyword values beat the environment
    assert settings.server.port == 9300 and settings.admin.token is None
    assert settings.matcher.answer_threshold == 0.8
