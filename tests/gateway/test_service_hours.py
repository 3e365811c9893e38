"""Issue 17 item 6: one source of truth for service hours. `business_hours` in config is the only place
hours are written; FAQ answers say `{service_hours}`, filled at answer time; no demo text contradicts
another, and 转人工 says "请稍候" only when someone can pick up."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import yaml

from gateway.app import create_app
from gateway.keys import RUNTIME
from handoff import notices, sla, waiting
from handoff.agents import Role, new_token
from kb.lint import lint_kb
from kb.loader import load_kb
from kb.model import DEFAULT_REPLIES
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = yaml.safe_load((REPO / "config" / "gateway.yaml").read_text(encoding="utf-8"))
DEMO_FAQ = REPO / "config" / "faq"
# Opening hours written as text: "9:00–22:00", "9点至21点", "08:30-12:00".
_TIME = r"(?:[01]?\d|2[0-4])(?:[:：][0-5]\d|点(?:半|[0-5]?\d分?)?)"
HOURS_LITERAL = re.compile(rf"(?<![\d.]){_TIME}\s*(?:-|–|—|~|～|至|到)\s*(?:次日)?{_TIME}")
# Phrases that presume closed hours or someone about to answer: said only by the code that knows.
PRESUMING = ("非工作时间请留言", "非工作时间留言")


def demo_texts() -> dict[str, str]:
    """Every customer-facing text of the demo: FAQ answers (all channel variants), intent replies, the
    kb's service phrases, the built-in phrases and the handoff notices (sample arguments)."""
    kb = load_kb([str(DEMO_FAQ)]).kb
    assert kb is not None
    texts: dict[str, str] = {}
    for entry in kb.entries:
        texts[f"faq {entry.id}"] = entry.answer
        texts.update({f"faq {entry.id} ({ch})": text for ch, text in entry.answers.items()})
    texts.update({f"intent {i.name}": i.reply for i in kb.intents if i.reply})
    texts.update({f"reply {k}": v for k, v in kb.replies.texts.items()})
    texts.update({f"default reply {k}": v for k, v in DEFAULT_REPLIES.items()})
    for module in (notices, waiting):
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or name.startswith("_") or name == "format_resume_time":
                continue
            for args in ((), (1,), (2,), (True,), (False,), (2, 1)):
                try:
                    texts[f"{module.__name__}.{name}{args}"] = fn(*args)
                except (TypeError, ValueError, AttributeError):
                    continue
    texts["sla.BUSY_NOTICE"] = sla.BUSY_NOTICE
    return {k: v for k, v in texts.items() if isinstance(v, str)}


def test_no_demo_text_writes_hours_or_presumes_them() -> None:
    texts = demo_texts()
    assert len(texts) > 100, "the scan found the demo's texts"
    literal = {k: m.group(0) for k, v in texts.items() if (m := HOURS_LITERAL.search(v))}
    assert literal == {}, f"hours written as text; use {{service_hours}} (business_hours): {literal}"
    presuming = {k for k, v in texts.items() for p in PRESUMING if p in v}
    assert presuming == set(), f"these texts presume the hours; let the handoff notices say it: {presuming}"
    # The texts that speak of the hours take them from the config.
    assert "{service_hours}" in texts["faq service-hours"]
    assert "{service_hours}" in texts["faq contact-phone"]
    # The demo config has exactly one source: business_hours, and no second wording of it.
    assert "business_hours" in DEMO_CONFIG and "service_hours" not in DEMO_CONFIG["handoff"]
    assert not HOURS_LITERAL.search(yaml.safe_dump(DEMO_CONFIG["handoff"], allow_unicode=True))


def test_kb_lint_flags_hours_written_into_an_answer(tmp_path: Path) -> None:
    faq = tmp_path / "faq.yaml"
    faq.write_text(
        "faqs:\n  - id: hours\n    question: 几点上班\n    similar: [上班时间, 几点下班, 客服时间]\n"
        "    answer: 您好，人工客服每天9:00–22:00在线，{opening}见。\n",
        encoding="utf-8",
    )
    kb = load_kb([str(faq)]).kb
    assert kb is not None
    messages = [p.message for p in lint_kb(kb)]
    assert any("9:00–22:00" in m and "{service_hours}" in m for m in messages), messages
    assert any("{opening}" in m for m in messages), messages


async def _web(client: Any, user: str, text: str) -> dict[str, Any]:
    resp = await client.post("/web/messages", json={"user_id": user, "text": text})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_the_faq_answer_is_templated_from_business_hours(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    hours = {"timezone": "Asia/Shanghai", "weekly": {"mon-fri": ["09:00-18:00"]}}
    app = create_app(settings_factory(kb={"paths": [str(DEMO_FAQ)], "watch": False}, business_hours=hours))
    client = await aiohttp_client(app)
    body = await _web(client, "hours-1", "客服几点上班")
    (reply,) = body["replies"]
    assert "周一至周五 09:00-18:00" in reply["text"] and "{" not in reply["text"]
    # The demo's own config (24×7) says so, in the same words everywhere.
    app24 = create_app(
        settings_factory(
            kb={"paths": [str(DEMO_FAQ)], "watch": False}, business_hours=DEMO_CONFIG["business_hours"]
        )
    )
    client24 = await aiohttp_client(app24)
    (reply,) = (await _web(client24, "hours-2", "客服电话是多少"))["replies"]
    assert "每天 24 小时" in reply["text"]


async def test_handoff_says_please_wait_only_when_someone_can_pick_up(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    app = create_app(
        settings_factory(
            kb={"paths": [str(DEMO_FAQ)], "watch": False},
            business_hours=DEMO_CONFIG["business_hours"],
            handoff={
                "assignment": "manual",
                "job_interval_s": 0.05,
                "groups": DEMO_CONFIG["handoff"]["groups"],
                "default_group": DEMO_CONFIG["handoff"]["default_group"],
            },
        )
    )
    client = await aiohttp_client(app)
    runtime = app[RUNTIME]

    async def told(user: str, count: int) -> list[str]:
        async def enough() -> bool:
            resp = await client.get(f"/web/conversations/{user}/messages")
            msgs = (await resp.json())["messages"]
            return len([m for m in msgs if m["sender"] != "customer"]) >= count

        await eventually(enough)
        resp = await client.get(f"/web/conversations/{user}/messages")
        return [m["text"] for m in (await resp.json())["messages"] if m["sender"] != "customer"]

    # Nobody online: the customer is never told to wait for someone who is not there.
    await _web(client, "nobody", "转人工")
    alone = await told("nobody", 2)
    assert not any("请稍候" in t for t in alone), alone
    assert any("没有人工客服在线" in t for t in alone)

    # Someone online: being asked to wait (请稍候 / 耐心等待, with the place in the queue) is true now.
    plain, hashed = new_token()
    await runtime.handoff.db.add_agent(
        "小王", role=Role.AGENT, groups=["售前"], max_chats=5, token_hash=hashed
    )
    resp = await client.post(
        "/api/v1/me/presence", json={"presence": "online"}, headers={"Authorization": f"Bearer {plain}"}
    )
    assert resp.status == 200
    await _web(client, "someone", "转人工")
    waiting_texts = await told("someone", 2)
    assert not any("没有人工客服在线" in t for t in waiting_texts), waiting_texts
    assert any("排队第" in t and ("请稍候" in t or "耐心等待" in t) for t in waiting_texts), waiting_texts
