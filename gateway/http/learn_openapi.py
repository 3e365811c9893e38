"""OpenAPI paths and schemas of learning from agents (gateway/http/learn_api.py), merged into the agent API's spec."""

from __future__ import annotations

from typing import Any

__all__ = ["learn_paths", "learn_schemas"]

ID_MAX = 2**31 - 1
# The same text rule as the rest of the spec (gateway/http/openapi.TEXT_PATTERN): not blank, no control characters.
TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f]*[^\s\u0000-\u001f][^\u0000-\u0008\u000b\u000c\u000e-\u001f]*$"
_STR = {"type": "string"}
_ID = {"type": "integer", "format": "int32", "minimum": 1, "maximum": ID_MAX}


def _text(max_length: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": TEXT_PATTERN}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("LearnError")}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_CONV = [{"$ref": "#/components/parameters/ConversationId"}]
_E = {code: {"$ref": f"#/components/responses/E{code}"} for code in (400, 401, 403, 404, 413)}


def learn_paths() -> dict[str, Any]:
    """/conversations/{id}/learn (GET, POST) and /faq/entries."""
    common = {"question": _text(200)}
    similar = {
        "type": "object",
        "required": ["kind", "message_id", "entry_id"],
        "additionalProperties": False,
        "properties": {
            "kind": {"type": "string", "enum": ["similar"]},
            "message_id": _ID,
            "entry_id": _text(64),
            **common,
        },
    }
    entry = {
        "type": "object",
        "required": ["kind", "message_id", "answer"],
        "additionalProperties": False,
        "properties": {
            "kind": {"type": "string", "enum": ["entry"]},
            "message_id": _ID,
            "answer": _text(2000),
            "entry_id": _text(64),
            "category": _text(32),
            **common,
        },
    }
    return {
        "/conversations/{id}/learn": {
            "get": {
                "summary": "The customer's questions in this conversation the bot did not answer, each with the "
                "bot's guesses (top 3 entries now), the agent's replies (newest first) and the FAQ's categories",
                "parameters": _CONV,
                "responses": {
                    "200": _json(_ref("LearnQuestions")),
                    **{str(c): _E[c] for c in (401, 403, 404)},
                },
            },
            "post": {
                "summary": "Teach the FAQ one of the conversation's customer questions: kind similar (这个问题 = FAQ "
                "条目 X: a similar question of entry_id) or kind entry (用这条回复新建 FAQ 条目: a new entry with the "
                "answer; entry_id and category optional). question replaces the customer's wording. Written to the "
                "learned-additions file and reloaded before the answer: 201 added, 200 already there (idempotent)",
                "parameters": _CONV,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"oneOf": [similar, entry]}}},
                },
                "responses": {
                    "201": _json(_ref("Learned"), "Added"),
                    "200": _json(_ref("Learned"), "Already there: nothing changed"),
                    **{str(c): _E[c] for c in (400, 401, 403, 404, 413)},
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
                    {
                        "name": "q",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 200},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 50},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["entries", "categories"],
                            "properties": {
                                "entries": {"type": "array", "maxItems": 50, "items": _ref("FaqEntryBrief")},
                                "categories": {"type": "array", "items": _STR},
                            },
                        }
                    ),
                    **{str(c): _E[c] for c in (400, 401)},
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
            "entry_id": _STR,
            "question": _STR,
            "category": {**_STR, "nullable": True},
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
                            "message_id": _ID,
                            "text": _STR,
                            "decision": _STR,
                            "asked_at": {"type": "string", "format": "date-time"},
                            "guesses": {"type": "array", "maxItems": 3, "items": _ref("FaqEntryBrief")},
                        },
                    },
                },
                "answers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["message_id", "text"],
                        "properties": {"message_id": _ID, "text": _STR},
                    },
                },
                "categories": {"type": "array", "items": _STR},
            },
        },
        "Learned": {
            "type": "object",
            "required": ["kind", "entry_id", "questions", "added", "kb_version"],
            "properties": {
                "kind": {"type": "string", "enum": ["similar", "entry"]},
                "entry_id": _STR,
                "questions": {"type": "array", "minItems": 1, "items": _STR},
                "added": {"type": "boolean"},
                "kb_version": {**_STR, "nullable": True},
            },
        },
        "LearnError": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": _STR, "problems": {"type": "array", "items": _STR}},
        },
    }
