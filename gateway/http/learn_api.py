"""Learning from agents (issue 12, item 5): what the bot could not answer becomes FAQ questions.

Agent API (a handed-off conversation, with the same object-level checks as every conversation route):
- `GET  /api/v1/conversations/{id}/learn` — the customer's questions the bot did not answer, each with
  the bot's guesses (the current matcher's top 3), and the agent's replies (answers to build an entry from);
- `POST /api/v1/conversations/{id}/learn` — `{"kind": "similar", "message_id", "entry_id"}` ("这个问题 =
  FAQ 条目 X") or `{"kind": "entry", "message_id", "answer", "entry_id"?, "category"?}` ("用这条回复新建
  FAQ 条目"); `question` may replace the customer's wording (e.g. to drop an order number);
- `GET  /api/v1/faq/entries?q=` — entries for the searchable dropdown (the matcher's ranking, then text).
Admin API (the dashboard's unanswered groups): `GET /admin/api/faq/entries?q=`, `POST /admin/api/learn`
(`questions` instead of `message_id`).

What is accepted goes to the learned-additions file (`kb/learned.py`, never the admin's own files), then
the FAQ is reloaded before the answer, so the next customer asking the same gets the bot's answer.
Accepting twice adds once (`added: false`, 200); a new addition is 201.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC
from typing import Any

from aiohttp import web

from gateway.handoff_events import HandoffError
from gateway.http.auth import require_admin, require_agent
from gateway.http.bodies import http_error, parse_int, path_id, read_json
from gateway.keys import HANDOFF, RUNTIME
from gateway.runtime import Runtime
from handoff.privacy import mask_sensitive
from kb.learned import LearnedFile, LearnError, Taught
from kb.model import KnowledgeBase

__all__ = ["learn_routes"]

MAX_QUESTION = 200
MAX_ANSWER = 2000
MAX_ID = 64
MAX_CATEGORY = 32
MAX_QUESTIONS = 20
GUESSES = 3
MAX_ENTRIES = 50
LOOK_BACK = 200  # messages of a conversation searched for unanswered questions
# Customer texts the bot did not answer: 猜你想问, a handoff for want of an answer, or asked while a
# person had the conversation. Rule intents (转人工, complaints), small talk, ratings are not questions.
_NOT_QUESTIONS = frozenset({"asked_human", "complaint", "rule", "smalltalk", "empty"})
_UNANSWERED = frozenset({"suggest", "handoff", "with_human"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_STATUS = {
    "not_found": web.HTTPNotFound,
    "conflict": web.HTTPConflict,
    "invalid": web.HTTPUnprocessableEntity,
}


def learn_routes(prefix: str) -> list[web.AbstractRouteDef]:
    """The console's routes (under the agent API's `prefix`) and the dashboard's (/admin/api/…)."""
    return [
        web.get(f"{prefix}/conversations/{{id}}/learn", conversation_questions),
        web.post(f"{prefix}/conversations/{{id}}/learn", learn_from_conversation),
        web.get(f"{prefix}/faq/entries", agent_entries),
        web.get("/admin/api/faq/entries", admin_entries),
        web.post("/admin/api/learn", admin_learn),
    ]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


# --- reading ----------------------------------------------------------------------------------------


def _guesses(runtime: Runtime, text: str, k: int = GUESSES) -> list[dict[str, Any]]:
    snapshot = runtime.kb.snapshot()
    if snapshot is None:
        return []
    kb, classifier = snapshot
    out = []
    for candidate in classifier.rank(text, k=k):
        entry = kb.get(candidate.entry_id)
        if entry is not None and entry.enabled:
            out.append(_entry_json(kb, entry.id, round(float(candidate.score), 4)))
    return out


def _entry_json(kb: KnowledgeBase, entry_id: str, score: float | None = None) -> dict[str, Any]:
    entry = kb.get(entry_id)
    assert entry is not None
    return {"entry_id": entry.id, "question": entry.question, "category": entry.category, "score": score}


def _categories(runtime: Runtime) -> list[str]:
    snapshot = runtime.kb.snapshot()
    return sorted({e.category for e in snapshot[0].entries if e.category}) if snapshot else []


def search_entries(runtime: Runtime, query: str, limit: int) -> list[dict[str, Any]]:
    """The dropdown: the matcher's ranking for the text, then entries whose id or questions contain it."""
    snapshot = runtime.kb.snapshot()
    if snapshot is None:
        return []
    kb, _classifier = snapshot
    query = query.strip()
    found: dict[str, dict[str, Any]] = {}
    if query:
        for item in _guesses(runtime, query, k=limit):
            found.setdefault(item["entry_id"], item)
    needle = query.casefold()
    for entry in kb.entries:
        if len(found) >= limit:
            break
        if not entry.enabled or entry.id in found:
            continue
        if (
            not needle
            or needle in entry.id.casefold()
            or any(needle in q.casefold() for q in entry.questions)
        ):
            found[entry.id] = _entry_json(kb, entry.id)
    return list(found.values())[:limit]


async def _entries(request: web.Request) -> web.Response:
    query = request.query.get("q", "")
    if len(query) > MAX_QUESTION:
        raise http_error(web.HTTPBadRequest, f"q is longer than {MAX_QUESTION} characters")
    limit = parse_int(request.query.get("limit"), "limit", default=20, minimum=1, maximum=MAX_ENTRIES)
    runtime = request.app[RUNTIME]
    # Ranking embeds the text (semantic stage): a worker thread, as the pipeline does.
    entries = await asyncio.to_thread(search_entries, runtime, query, limit)
    return _json({"entries": entries, "categories": _categories(runtime)})


async def agent_entries(request: web.Request) -> web.Response:
    """GET /api/v1/faq/entries?q=&limit= — FAQ entries for the console's dropdown (any agent)."""
    await require_agent(request)
    return await _entries(request)


async def admin_entries(request: web.Request) -> web.Response:
    """GET /admin/api/faq/entries?q=&limit= — the same for the dashboard (admin token or admin agent)."""
    await require_admin(request)
    return await _entries(request)


async def _visible_conversation(request: web.Request) -> tuple[Any, int]:
    agent = await require_agent(request)
    cid = path_id(request, "conversation")
    try:
        await request.app[HANDOFF].conversation_for(agent, str(cid))
    except HandoffError as exc:
        cls = web.HTTPForbidden if exc.status == 403 else web.HTTPNotFound
        raise http_error(cls, exc.message) from None
    return agent, cid


def _is_unanswered(message: Any) -> bool:
    return (
        message.direction == "in"
        and message.kind == "text"
        and message.decision in _UNANSWERED
        and message.reason not in _NOT_QUESTIONS
        and bool(message.text.strip())
    )


def _questions_and_guesses(runtime: Runtime, messages: list[Any]) -> list[tuple[Any, list[dict[str, Any]]]]:
    """The messages that are questions, with the bot's guesses: texts sent while a person had the
    conversation were never classified, so 转人工, complaints and small talk are told apart here."""
    snapshot = runtime.kb.snapshot()
    out = []
    for message in messages:
        if snapshot is not None and snapshot[1].classify(message.text).intent is not None:
            continue
        out.append((message, _guesses(runtime, message.text)))
    return out


async def conversation_questions(request: web.Request) -> web.Response:
    """GET …/conversations/{id}/learn — unanswered customer questions with the bot's guesses; the agent's replies."""
    _agent, cid = await _visible_conversation(request)
    runtime = request.app[RUNTIME]
    messages = (await runtime.store.messages(cid))[-LOOK_BACK:]
    candidates = [m for m in messages if _is_unanswered(m)]
    asked_guesses = await asyncio.to_thread(_questions_and_guesses, runtime, candidates)
    asked = [m for m, _ in asked_guesses]
    guesses = [g for _, g in asked_guesses]
    questions = [
        {
            "message_id": m.id,
            "text": m.text,
            "decision": m.decision,
            "asked_at": m.created_at.isoformat(),
            "guesses": g,
        }
        for m, g in zip(asked, guesses, strict=True)
    ]
    answers = [
        {"message_id": m.id, "text": m.text}
        for m in reversed(messages)
        if m.direction == "out" and m.sender == "agent" and m.kind == "text"
    ]
    return _json({"questions": questions, "answers": answers, "categories": _categories(runtime)})


# --- writing ----------------------------------------------------------------------------------------


async def _body(request: web.Request) -> dict[str, Any]:
    data = await read_json(request, request.app[RUNTIME].settings.server.max_body_bytes)
    if not isinstance(data, dict):
        raise http_error(web.HTTPBadRequest, "body must be a JSON object")
    return data


def _text(data: dict[str, Any], name: str, limit: int, *, required: bool = True) -> str | None:
    # Absent is fine; an explicit null is not a string (the spec says so).
    if name not in data and not required:
        return None
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise http_error(web.HTTPBadRequest, f"{name} must be a non-empty string")
    if len(value) > limit:
        raise http_error(web.HTTPBadRequest, f"{name} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise http_error(web.HTTPBadRequest, f"{name} contains control characters")
    return value.strip()


def _kind(data: dict[str, Any], allowed: set[str]) -> str:
    kind = data.get("kind")
    if kind not in ("similar", "entry"):
        raise http_error(
            web.HTTPBadRequest, "kind must be similar (这个问题 = FAQ 条目) or entry (新建 FAQ 条目)"
        )
    unknown = sorted(
        set(data) - allowed - ({"entry_id"} if kind == "similar" else {"answer", "entry_id", "category"})
    )
    if unknown:
        raise http_error(web.HTTPBadRequest, f"unknown field {unknown[0]} for kind {kind}")
    return str(kind)


def _no_personal_numbers(questions: list[str]) -> None:
    # The file is reviewed in git and read by everyone who edits the FAQ: no customer's phone or ID number.
    for text in questions:
        if mask_sensitive(text).count("*") > text.count("*"):
            raise http_error(
                web.HTTPBadRequest,
                f"question {text[:30]!r} contains a phone, ID-card or bank-card number; "
                "send an edited question without it",
            )


async def _teach(
    request: web.Request, data: dict[str, Any], questions: list[str], who: str, note: str
) -> web.Response:
    runtime = request.app[RUNTIME]
    learned: LearnedFile | None = runtime.kb.learned
    if learned is None:
        raise http_error(web.HTTPConflict, "no learned-additions file is configured (kb.learned_path)")
    _no_personal_numbers(questions)
    if data["kind"] == "similar":
        entry_id = _text(data, "entry_id", MAX_ID)
        assert entry_id is not None
        call = lambda: learned.add_similar(entry_id, questions, note=note)  # noqa: E731
    else:
        answer = _text(data, "answer", MAX_ANSWER)
        new_id = _text(data, "entry_id", MAX_ID, required=False)
        category = _text(data, "category", MAX_CATEGORY, required=False)
        assert answer is not None
        call = lambda: learned.add_entry(questions, answer, entry_id=new_id, category=category, note=note)  # noqa: E731
    try:
        taught: Taught = await asyncio.to_thread(call)
    except LearnError as exc:
        problems = [str(p) for p in exc.problems[:20]]
        raise http_error(
            _STATUS[exc.reason], exc.message, fields={"problems": problems} if problems else None
        ) from None
    if taught.added:
        await runtime.kb.reload(reason=f"learned ({who})")  # before answering: the next customer gets it
        details = {"kind": taught.kind, "entry_id": taught.entry_id, "questions": list(taught.questions)}
        await runtime.store.audit("kb.learned", who, details)
    body = {
        "kind": taught.kind,
        "entry_id": taught.entry_id,
        "questions": list(taught.questions),
        "added": taught.added,
        "kb_version": runtime.kb.version,
    }
    return _json(body, status=201 if taught.added else 200)


def _note(request: web.Request, who: str, conversation_id: int | None = None) -> str:
    """Who taught it and when (the handoff service's clock), for the reviewer of learned.yaml."""
    when = request.app[HANDOFF].clock.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{who} {when}" + (f" 会话 {conversation_id}" if conversation_id is not None else "")


async def learn_from_conversation(request: web.Request) -> web.Response:
    """POST …/conversations/{id}/learn — one of the conversation's customer questions taught to the FAQ."""
    agent, cid = await _visible_conversation(request)
    data = await _body(request)
    _kind(data, {"kind", "message_id", "question"})
    message_id = data.get("message_id")
    if not isinstance(message_id, int) or isinstance(message_id, bool) or message_id < 1:
        raise http_error(web.HTTPBadRequest, "message_id must be the id of the customer's message")
    messages = await request.app[RUNTIME].store.messages(cid)
    message = next((m for m in messages if m.id == message_id), None)
    if message is None or message.direction != "in" or message.kind != "text":
        raise http_error(web.HTTPNotFound, f"no customer text {message_id} in conversation {cid}")
    question = _text(data, "question", MAX_QUESTION, required=False) or message.text.strip()
    if len(question) > MAX_QUESTION:
        raise http_error(
            web.HTTPBadRequest, f"the question is longer than {MAX_QUESTION} characters; shorten it"
        )
    return await _teach(request, data, [question], f"agent:{agent.name}", _note(request, agent.name, cid))


async def admin_learn(request: web.Request) -> web.Response:
    """POST /admin/api/learn — an unanswered group's wordings taught to the FAQ (admin token or admin agent)."""
    caller = await require_admin(request)
    data = await _body(request)
    _kind(data, {"kind", "questions"})
    raw = data.get("questions")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_QUESTIONS:
        raise http_error(web.HTTPBadRequest, f"questions must be a list of 1 to {MAX_QUESTIONS} texts")
    questions = [_text({"questions item": q}, "questions item", MAX_QUESTION) or "" for q in raw]
    who = caller.agent.name if caller.agent is not None else "admin"
    return await _teach(request, data, questions, caller.who, _note(request, who))
