"""`kefu kb check` with custom actions: slots and regexes in the FAQ, action names against the action set."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.cli import main
from tests.fakes.action_servers import TEST_ACTIONS, rasa_action_server
from tests.gateway.test_actions_flow import ACTIONS_FAQ


def write_config(tmp_path: Path, actions: str) -> str:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"actions:\n{actions}\n", encoding="utf-8")
    return str(config)


def faq_copy(tmp_path: Path) -> Path:
    target = tmp_path / "faq"
    shutil.copytree(ACTIONS_FAQ, target)
    return target


def test_actions_are_checked_against_the_modules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    faq = faq_copy(tmp_path)
    config = write_config(tmp_path, f"  modules: [{TEST_ACTIONS}]")
    assert main(["kb", "check", str(faq), "--config", config]) == 0
    assert capsys.readouterr().out.endswith("— OK\n")

    path = faq / "actions.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("action_picture", "action_photo"), encoding="utf-8"
    )
    assert main(["kb", "check", str(faq), "--config", config]) == 1
    out = capsys.readouterr().out
    assert f"{path}:40: entry product-photo: action 'action_photo' is not served by {TEST_ACTIONS}" in out
    assert out.endswith("1 action error — FAILED\n")


def test_actions_are_checked_against_a_running_action_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faq = faq_copy(tmp_path)
    with rasa_action_server() as url:
        assert main(["kb", "check", str(faq), "--config", write_config(tmp_path, f"  url: {url}")]) == 0
    out = capsys.readouterr().out
    assert "error" not in out and out.endswith("— OK\n")


def test_without_an_action_set_it_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    faq = faq_copy(tmp_path)
    assert main(["kb", "check", str(faq), "--config", write_config(tmp_path, "  on_error: offer")]) == 0
    assert (
        "warning: 7 entries name an action, but the gateway config has no actions.url"
        in capsys.readouterr().out
    )


def test_slot_problems_are_reported_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faq = tmp_path / "faq"
    faq.mkdir()
    (faq / "shop.yaml").write_text(
        """slots:
  order_id:
    regex: "([A-Z]+[0-9]+)+$"
    ask: 请告诉我订单号。
  phone:
    ask: 请告诉我手机号。
faqs:
  - id: track
    question: 我的快递到哪了
    action: action_order_status
    required_slots: [order_id, coupon]
""",
        encoding="utf-8",
    )
    assert main(["kb", "check", str(faq), "--config", write_config(tmp_path, "  on_error: offer")]) == 1
    lines = capsys.readouterr().out.splitlines()
    shop = faq / "shop.yaml"
    assert lines[0].startswith(f"{shop}:3: slot 'order_id': regex nests an unbounded repeat")
    assert lines[1] == f"{shop}:5: slot 'phone' has neither 'regex' nor 'values': kefu could never fill it"
    assert lines[2].startswith(
        f"{shop}:8: entry track: required slot 'coupon' is not declared under 'slots:'"
    )


def test_a_regex_that_is_slow_on_10kb_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faq = tmp_path / "faq"
    faq.mkdir()
    (faq / "shop.yaml").write_text(
        """slots:
  amount:
    regex: "\\\\d+\\\\d+\\\\d+\\\\d+元"
faqs:
  - id: price
    question: 差价怎么退
    action: action_refund
    required_slots: [amount]
""",
        encoding="utf-8",
    )
    assert main(["kb", "check", str(faq), "--config", write_config(tmp_path, "  on_error: offer")]) == 1
    out = capsys.readouterr().out
    assert f"{faq / 'shop.yaml'}:2: slot 'amount': regex takes longer than 2 s on a 10 kB message" in out
