"""OpenAPI paths and schemas of learning from agents (gateway/http/learn_api.py), merged into the agent API's spec."""

from __future__ import annotations

from typing import Any

from gateway.http.openapi_parts import CONVERSATION, ID, STR, error, json_response, obj, query, ref, text

__all__ = ["learn_paths", "learn_schemas"]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref("LearnError")}}}


def learn_paths() -> dict[str, Any]:
    """/conversations/{id}/learn (GET, POST) and /faq/entries."""
    common = {"question": text(200)}
    similar = obj(
        ("kind", "message_id", "entry_id"),
        extra=False,
        kind={"type": "string", "enum": ["similar"]},
        message_id=ID,
        entry_id=text(64),
        **common,
    )
    entry = obj(
        ("kind", "message_id", "answer"),
        extra=False,
        kind={"type": "string", "enum": ["entry"]},
        message_id=ID,
        answer=text(2000),
        entry_id=text(64),
        category=text(32),
        **common,
    )
    return {
        "/conversations/{id}/learn": {
            "get": {
                "summary": "The customer's questions in this conversation the bot did not answer, each with the "
                "bot's guesses (top 3 entries now), the agent's replies (newest first) and the FAQ's categories",
                "parameters": CONVERSATION,
                "responses": {
                    "200": json_response(ref("LearnQuestions")),
                    **{str(c): error(c) for c in (401, 403, 404)},
                },
            },
            "post": {
                "summary": "Teach the FAQ one of the conversation's customer questions: kind similar (这个问题 = FAQ "
                "条目 X: a similar question of entry_id) or kind entry (用这条回复新建 FAQ 条目: a new entry with the "
                "answer; entry_id and category optional). question replaces the customer's wording. Written to the "
                "learned-additions file and reloaded before the answer: 201 added, 200 already there (idempotent)",
                "parameters": CONVERSATION,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"oneOf": [similar, entry]}}},
                },
                "responses": {
                    "201": json_response(ref("Learned"), "Added"),
                    "200": json_response(ref("Learned"), "Already there: nothing changed"),
                    **{str(c): error(c) for c in (400, 401, 403, 404, 413)},
                    "409": _error("The question belongs to another entry, or the new entry's id is taken"),
                    "422": _error(
                        "The FAQ files have errors, or the addition would make them invalid (problems)"
                    ),
                },
            },
        },
        "/faq/entries": {
            "get": {
                "summary": "FAQ entries for the console's searchable dropdown: the matcher's ranking of q, then "
                "entries whose id or questions contain it (all, in file order, without q)",
                "parameters": [
                    query("q", {"type": "string", "maxLength": 200}),
                    query("limit", {"type": "integer", "minimum": 1, "maximum": 50}),
                ],
                "responses": {
                    "200": json_response(
                        {
                            "type": "object",
                            "required": ["entries", "categories"],
                            "properties": {
                                "entries": {"type": "array", "maxItems": 50, "items": ref("FaqEntryBrief")},
                                "categories": {"type": "array", "items": STR},
                            },
                        }
                    ),
                    **{str(c): error(c) for c in (400, 401)},
                },
            }
        },
    }


def learn_schemas() -> dict[str, Any]:
    """LearnQuestions, Learned, FaqEntryBrief, LearnError."""
    brief = {
        "type": "object",
        "required": ["entry_id", "question", "category", "score"],
        "properties": {
            "entry_id": STR,
            "question": STR,
            "category": {**STR, "nullable": True},
            "score": {"type": "number", "nullable": True},
        },
    }
    return {
        "FaqEntryBrief": brief,
        "LearnQuestions": {
            "type": "object",
            "required": ["questions", "answers", "categories"],
            "properties": {
                "questions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["message_id", "text", "decision", "asked_at", "guesses"],
                        "properties": {
                            "message_id": ID,
                            "text": STR,
                            "decision": STR,
                            "asked_at": {"type": "string", "format": "date-time"},
                            "guesses": {"type": "array", "maxItems": 3, "items": ref("FaqEntryBrief")},
                        },
                    },
                },
                "answers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["message_id", "text"],
                        "properties": {"message_id": ID, "text": STR},
                    },
                },
                "categories": {"type": "array", "items": STR},
            },
        },
        "Learned": {
            "type": "object",
            "required": ["kind", "entry_id", "questions", "added", "kb_version"],
            "properties": {
                "kind": {"type": "string", "enum": ["similar", "entry"]},
                "entry_id": STR,
                "questions": {"type": "array", "minItems": 1, "items": STR},
                "added": {"type": "boolean"},
                "kb_version": {**STR, "nullable": True},
            },
        },
        "LearnError": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": STR, "problems": {"type": "array", "items": STR}},
        },
    }
