"""`channels.wecom` in the settings: the named fields, and errors that say what to fix."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.settings import SettingsError, settings_from_mapping

GOOD = {
    "name": "kf",
    "corp_id": "ww0123456789abcdef",
    "secret": "s",
    "token": "t",
    "aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
}


def load(*accounts: dict[str, Any]) -> Any:
    return settings_from_mapping({"channels": {"wecom": list(accounts)}})


def test_the_documented_keys_load_with_their_defaults() -> None:
    (wecom,) = load(GOOD | {"api_base": "http://127.0.0.1:9/"}).channels.wecom
    assert (wecom.name, wecom.corp_id, wecom.api_base, wecom.handoff_mode) == (
        "kf",
        "ww0123456789abcdef",
        "http://127.0.0.1:9",
        "kefu",
    )
    assert load(GOOD).channels.wecom[0].api_base == "https://qyapi.weixin.qq.com"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"aes_key": "short"}, "43 characters"),
        ({"handoff_mode": "both"}, "handoff_mode"),
        ({"corp_id": ""}, "corp_id"),
        ({"agentid": 1}, "agentid"),
    ],
)
def test_mistakes_name_the_key(change: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load(GOOD | change)
    assert named in str(raised.value)


def test_account_names_are_unique() -> None:
    with pytest.raises(SettingsError, match="duplicate WeCom account name 'kf'"):
        load(GOOD, GOOD)
