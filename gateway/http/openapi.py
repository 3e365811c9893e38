"""The OpenAPI 3 description of the agent API, served at `/api/v1/openapi.json`.

Complete on purpose: every operation's responses with schemas (nullability, bounds, formats, media types,
error bodies, 413), so schemathesis can check the server against it (tests/gateway/test_openapi_conformance.py;
a test also keeps it in sync with the app's routes). Request schemas say exactly what the server accepts.
"""

from __future__ import annotations

from typing import Any

from gateway.http.learn_openapi import learn_paths, learn_schemas
from gateway.http.media_openapi import attachment_path
from gateway.http.openapi_parts import (
    BOOL,
    CONVERSATION,
    DIGITS,
    ID,
    NUM,
    STR,
    TIME,
    XLSX,
    full,
    json_response,
    null,
    obj,
    operation,
    query,
    ref,
    text,
)
from gateway.http.supervisor_openapi import supervisor_paths, supervisor_schemas

MAX_TEXT = 2000  # agent_api.MAX_TEXT
MAX_NOTE = 4000  # agent_api.MAX_NOTE
MAX_FOLLOW_UP_NOTE = 500  # follow_ups.MAX_NOTE
MAX_NAME = 64
MAX_CANNED = 600  # handoff.canned.MAX_CANNED_LENGTH

_AGENT_ID = DIGITS  # agents' ids are strings of digits
# Blank tags are skipped and duplicates merged; unknown ones (handoff.wrap_up_tags) and more than 20 are a 400.
_TAGS = {"type": "array", "items": {"type": "string", "maxLength": 32}}
_STATE = {"type": "string", "enum": ["bot", "queued", "assigned", "closed"]}
_PRIORITY = {"type": "string", "enum": ["normal", "high"]}
_ERRORS = {
    400: "Bad input (the message names the field). A request line or header longer than 8,190 bytes is "
    "refused before the API by the HTTP parser, in plain text",
    401: "Missing, invalid or disabled token",
    403: "Not allowed for this agent (another group, not the assignee, not a supervisor)",
    404: "No such conversation, canned reply or follow-up",
    409: "Conflict: someone was faster, or the state does not allow it",
    413: "Body larger than server.max_body_bytes (an upload: uploads.max_bytes)",
    415: "Upload type not in uploads.allowed_types (decided by the file's first bytes)",
    422: "Refused: the text still has a canned reply's {placeholder} (code unfilled_placeholder, the names in "
    "placeholders), or a 质检 rule with block: true named it (with a suggested wording)",
}


def _op(
    summary: str,
    ok: dict[str, Any] | None,
    *,
    status: int = 200,
    body: dict[str, Any] | None = None,
    body_required: bool = True,
    errors: tuple[int, ...] = (),
    params: list[dict[str, Any]] | None = None,
    auth: bool = True,
) -> dict[str, Any]:
    """One operation: its OK response (a JSON schema, or a full response object), errors, body, params."""
    if ok is None or "content" in ok or "description" in ok:
        ok_response = ok or {"description": "OK"}
    else:
        ok_response = json_response(ok)
    codes = set(errors) | ({401} if auth else set()) | ({400, 413} if body is not None else set())
    op = operation(
        summary,
        ok_response,
        status=status,
        codes=codes,
        body=body,
        body_required=body_required,
        params=params or [],
    )
    if not auth:
        op["security"] = []
    return op


# The console's id of one send (1–200 printable ASCII characters), the same on every retry of it.
_KEY = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x21-\\x7e]+$"}
_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": _KEY}
_CONV_ACTION = (403, 404, 409)


def _conversation_action(description: str, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    """A POST that moves one conversation on: it answers the conversation's summary."""
    return _op(
        description, ref("ConversationSummary"), body=body, errors=_CONV_ACTION, params=CONVERSATION, **kw
    )


def spec() -> dict[str, Any]:
    """The spec as a plain dict (JSON-ready)."""
    summary = ref("ConversationSummary")
    canned = obj(("title", "text"), title=text(MAX_NAME), text=text(MAX_CANNED), group=null(text(MAX_NAME)))
    canned_id = [{"$ref": "#/components/parameters/CannedId"}]
    wrap_up: dict[str, Any] = {"body": obj(tags=_TAGS), "body_required": False}  # optional wrap-up tags
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "kefu agent API",
            "version": "1",
            "description": "Human agents work the handoff queue through these endpoints (see docs/api.md). "
            "Every error is a JSON object {error: message}.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": {
            "/openapi.json": {
                "get": _op("This document", {"type": "object", "required": ["openapi", "paths"]}, auth=False)
            },
            "/me": {"get": _op("The agent behind the token, presence and load", ref("Me"))},
            "/me/presence": {
                "post": _op(
                    "Set presence (online also counts as a heartbeat)",
                    ref("Me"),
                    body=obj(
                        ("presence",), presence={"type": "string", "enum": ["online", "away", "offline"]}
                    ),
                )
            },
            "/queue": {
                "get": _op(
                    "A page of the waiting conversations of the agent's groups (all for supervisors), in "
                    "serving order; 留言 tickets first per priority; next_cursor (null on the last page) and total",
                    full(
                        queue={"type": "array", "items": ref("QueueItem")},
                        next_cursor=null(STR),
                        total={"type": "integer", "minimum": 0},
                    ),
                    errors=(400,),
                    params=[
                        query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                        query("cursor", STR),
                    ],
                )
            },
            "/conversations": {
                "get": _op(
                    "Open conversations: the agent's own (mine=1); supervisors without mine get all assigned",
                    full(conversations={"type": "array", "items": summary}),
                    errors=(400,),
                    params=[query("mine", {"type": "string", "enum": ["0", "1", "true", "false"]})],
                )
            },
            "/conversations/{id}": {
                "get": _op(
                    "Full history, customer (channel, name, earlier conversations), handoff reason, notes, "
                    "the bot's last guesses",
                    ref("ConversationDetail"),
                    errors=(403, 404),
                    params=CONVERSATION,
                )
            },
            "/conversations/{id}/claim": {
                "post": _conversation_action(
                    "Take a queued conversation (exactly one racing claim wins; the rest get 409)",
                )
            },
            "/conversations/{id}/messages": {
                "post": _op(
                    "Reply to the customer (stored, delivered through the channel by the outbox). With an "
                    "Idempotency-Key, a retry with the same key (same agent) returns the first message and "
                    "sends nothing again",
                    full(message_id=ID, conversation_id=ID),
                    status=201,
                    body=obj(("text",), text=text(MAX_TEXT)),
                    errors=(*_CONV_ACTION, 422),
                    params=[*CONVERSATION, _IDEMPOTENCY_KEY],
                )
            },
            "/conversations/{id}/attachments": attachment_path(_op, obj, text(MAX_TEXT), CONVERSATION),
            "/conversations/{id}/messages/{message_id}/retry": {
                "post": _op(
                    "Send a failed or undeliverable message again (the assignee; 409 when it needs no resend or "
                    "cannot be resent, e.g. a missing AppSecret)",
                    full(message_id=ID, delivery=ref("Delivery")),
                    errors=_CONV_ACTION,
                    params=[
                        *CONVERSATION,
                        {"name": "message_id", "in": "path", "required": True, "schema": ID},
                    ],
                )
            },
            "/conversations/{id}/notes": {
                "post": _op(
                    "Internal note, never sent to the customer",
                    full(id=ID, agent_name=STR, text=STR, created_at=TIME),
                    status=201,
                    body=obj(("text",), text=text(MAX_NOTE)),
                    errors=(403, 404),
                    params=CONVERSATION,
                )
            },
            "/conversations/{id}/transfer": {
                "post": _conversation_action(
                    "Hand over to another agent or another group's queue (exactly one of agent, group)",
                    body={
                        "oneOf": [
                            obj(("agent",), extra=False, agent=text(MAX_NAME)),
                            obj(("group",), extra=False, group=text(MAX_NAME)),
                        ]
                    },
                )
            },
            "/conversations/{id}/reassign": {
                "post": _conversation_action(
                    "Supervisors: move any open conversation to another agent (by name)",
                    body=obj(("agent",), agent=text(MAX_NAME)),
                )
            },
            "/conversations/{id}/close": {
                "post": _conversation_action(
                    "Close with wrap-up tags; the customer is asked for a rating (CSAT)", **wrap_up
                )
            },
            "/conversations/{id}/handback": {
                "post": _conversation_action("Give the conversation back to the bot", **wrap_up)
            },
            "/conversations/{id}/suggestions": {
                "get": _op(
                    "The FAQ answers the matcher ranks best for the customer's latest question (the console's "
                    "suggestion panel; also served at /agent/api/conversations/{id}/suggestions)",
                    ref("Suggestions"),
                    errors=(403, 404),
                    params=CONVERSATION,
                )
            },
            "/canned": {
                "get": _op(
                    "Canned replies offered to the agent (global and their groups')",
                    full(canned={"type": "array", "items": ref("Canned")}),
                ),
                "post": _op(
                    "Add a canned reply ({customer_name}, {agent_name}, {order_id}, {group}, {shop_name}, {date}, "
                    "{service_hours}); "
                    "400 also for an unknown or unclosed placeholder",
                    ref("Canned"),
                    status=201,
                    body=canned,
                    errors=(403,),
                ),
            },
            "/canned/{id}": {
                "put": _op(
                    "Edit a canned reply (supervisors and admins: any; agents: the ones they added)",
                    ref("Canned"),
                    body=canned,
                    errors=(403, 404),
                    params=canned_id,
                ),
                "delete": _op(
                    "Delete a canned reply (supervisors and admins: any; agents: the ones they added)",
                    full(deleted=ID),
                    errors=(403, 404),
                    params=canned_id,
                ),
            },
            "/canned/{id}/render": {
                "post": _op(
                    "Fill a canned reply's placeholders for a conversation and extra values",
                    full(text=STR, missing={"type": "array", "items": STR}, complete=BOOL),
                    body=obj(
                        conversation_id=ID,
                        values={
                            "type": "object",
                            "additionalProperties": {"type": "string", "maxLength": 200},
                        },
                    ),
                    body_required=False,
                    errors=(403, 404),
                    params=canned_id,
                )
            },
            "/follow-ups": {
                "get": _op(
                    "Open complaint follow-ups (回访) of the agent's groups (all for supervisors), earliest due "
                    "first; all=1 adds closed ones",
                    full(follow_ups={"type": "array", "items": ref("FollowUp")}),
                    errors=(400,),
                    params=[query("all", {"type": "string", "enum": ["0", "1"]})],
                )
            },
            "/follow-ups/{id}/close": {
                "post": _op(
                    "Close a follow-up with a note of what was done",
                    ref("FollowUp"),
                    body=obj(note=null(text(MAX_FOLLOW_UP_NOTE))),
                    body_required=False,
                    errors=(403, 404, 409),
                    params=[{"$ref": "#/components/parameters/FollowUpId"}],
                )
            },
            "/reports/records": {
                "get": _op(
                    "受理记录 export, one row per conversation (supervisors and admins; also admin.token): "
                    "CSV (default), XLSX with a 汇总 sheet, or JSON rows and summary. from/to are dates (to "
                    "inclusive) in the report time zone, default today; from must be before to and the range "
                    "at most 92 days (400 otherwise)",
                    {
                        "description": "The records",
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            XLSX: {"schema": {"type": "string", "format": "binary"}},
                            "application/json": {"schema": ref("Records")},
                        },
                    },
                    errors=(400, 403),
                    params=[
                        query("from", {"type": "string", "format": "date"}, "first day (YYYY-MM-DD)"),
                        query("to", {"type": "string", "format": "date"}, "last day, inclusive"),
                        query("format", {"type": "string", "enum": ["csv", "xlsx", "json"]}),
                    ],
                )
            },
            "/agent/ws": {
                "get": _op(
                    "WebSocket: pushed events {type: event, seq, type, conversation_id, data}; send {type: ping} "
                    "as heartbeat and {type: resume, after: seq} after a reconnect. Token as Authorization header "
                    "or as the subprotocols `kefu.agent, token.<token>` (browsers; the server answers kefu.agent); "
                    "?token= is deprecated (URLs end up in proxy and access logs)",
                    {"description": "Switching Protocols"},
                    status=101,
                    errors=(400,),
                    params=[
                        {
                            "name": "Sec-WebSocket-Protocol",
                            "in": "header",
                            "required": False,
                            "description": "kefu.agent, token.<token>",
                            "schema": STR,
                        },
                        {
                            "name": "token",
                            "in": "query",
                            "required": False,
                            "deprecated": True,
                            "schema": STR,
                        },
                    ],
                )
            },
            **supervisor_paths(),  # 排班, 绩效, 质检
            **learn_paths(),  # 这个问题 = FAQ 条目 X, 用这条回复新建 FAQ 条目
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "token from `kefu agent add`"}
            },
            "parameters": {
                name: {"name": "id", "in": "path", "required": True, "schema": ID}
                for name in ("ConversationId", "CannedId", "FollowUpId")
            },
            "responses": {
                f"E{code}": {
                    "description": text,
                    "content": {"application/json": {"schema": ref("Error")}}
                    | (_PARSER_400 if code == 400 else {}),
                }
                for code, text in _ERRORS.items()
            }
            | {"Error": {"description": "Error", "content": {"application/json": {"schema": ref("Error")}}}},
            "schemas": {**_schemas(), **learn_schemas(), **supervisor_schemas()},
        },
    }


# What aiohttp's HTTP parser answers itself (a request line or header over its 8,190-byte limit), before any
# handler or middleware could answer in JSON.
_PARSER_400 = {"text/plain": {"schema": {"type": "string"}}}


def _schemas() -> dict[str, Any]:
    customer_brief = null(full(name=null(STR), user_id=STR))
    return {
        "Error": obj(("error",), error=STR),
        "Me": full(
            id=_AGENT_ID,
            name=STR,
            role={"type": "string", "enum": ["agent", "supervisor", "admin"]},
            groups={"type": "array", "items": STR},
            max_chats={"type": "integer", "minimum": 1},
            presence={"type": "string", "enum": ["online", "away", "offline"]},
            declared_presence={"type": "string", "enum": ["online", "away", "offline"]},
            load={"type": "integer", "minimum": 0},
        ),
        "QueueItem": full(
            conversation_id=ID,
            group=STR,
            priority=_PRIORITY,
            ticket=BOOL,
            position={"type": "integer", "minimum": 1},
            queued_at=TIME,
            waiting_s=NUM,
            handoff_reason=null(STR),
            channel=STR,
            customer=full(name=null(STR), user_id=null(STR)),
            last_message=null(STR),
        ),
        "ConversationSummary": full(
            id=ID,
            state=_STATE,
            group=null(STR),
            priority=_PRIORITY,
            channel=STR,
            assigned_agent_id=null(_AGENT_ID),
            customer=customer_brief,
            last_message=null(full(sender=STR, text=STR, at=TIME)),
        ),
        "ConversationDetail": full(
            id=ID,
            state=_STATE,
            group=null(STR),
            priority=_PRIORITY,
            handoff_reason=null(STR),
            queued_at=null(TIME),
            opened_at=TIME,
            closed_at=null(TIME),
            closed_reason=null(STR),
            channel=STR,
            account=STR,
            customer=obj(
                ("earlier_conversations",),
                id=ID,
                channel=STR,
                account=STR,
                user_id=STR,
                name=null(STR),
                first_seen_at=TIME,
                earlier_conversations={
                    "type": "array",
                    "items": full(
                        id=ID,
                        state=_STATE,
                        opened_at=TIME,
                        closed_reason=null(STR),
                        handoff_reason=null(STR),
                    ),
                },
            ),
            assignment=full(
                agent_id=null(_AGENT_ID),
                agent_name=null(STR),
                assigned_at=null(TIME),
                first_response_at=null(TIME),
                tags=null({"type": "array", "items": STR}),
            ),
            messages={
                "type": "array",
                "items": full(
                    id=ID,
                    direction={"type": "string", "enum": ["in", "out"]},
                    sender=STR,
                    sender_name=null(STR),
                    text=STR,
                    kind=STR,
                    created_at=TIME,
                    delivery=null(ref("Delivery")),
                ),
            },
            notes={
                "type": "array",
                "items": full(id=ID, agent_id=STR, agent_name=null(STR), text=STR, created_at=TIME),
            },
            bot_guesses={
                "type": "array",
                "maxItems": 3,
                "items": full(
                    message_id=ID,
                    text=STR,
                    decision=STR,
                    reason=null(STR),
                    entry_id=null(STR),
                    confidence=null(NUM),
                    alternatives={"type": "array", "items": STR},
                ),
            },
            csat=null(
                obj(
                    ("asked_at", "rating", "raw_text", "answered_at"),
                    asked_at=TIME,
                    rating=null({"type": "integer", "minimum": 1, "maximum": 5}),
                    raw_text=null(STR),
                    skipped=BOOL,
                    answered_at=null(TIME),
                )
            ),
        ),
        "Delivery": full(
            state={"type": "string", "enum": ["queued", "sent", "failed", "undeliverable"]},
            status=null(
                {
                    "type": "string",
                    "enum": ["held", "pending", "sending", "sent", "failed", "undeliverable", "cancelled"],
                }
            ),
            reason=null(STR),
            reason_text=null(STR),
            retry=BOOL,
        ),
        "Suggestions": full(
            message=null(STR),
            suggestions={
                "type": "array",
                "items": full(entry_id=STR, question=STR, answer=STR, score=NUM),
            },
        ),
        "Canned": full(
            id=ID,
            title=STR,
            text=STR,
            group=null(STR),
            placeholders={"type": "array", "items": STR},
            editable=BOOL,
        ),
        "FollowUp": full(
            id=ID,
            conversation_id=ID,
            group=null(STR),
            created_at=TIME,
            due_at=TIME,
            closed_at=null(TIME),
            closed_by=null(_AGENT_ID),
            note=null(STR),
            overdue=BOOL,
            overdue_s={"type": "integer", "minimum": 0},
        ),
        "Records": full(
            **{"from": TIME, "to": TIME},
            columns={"type": "array", "items": STR},
            rows={"type": "array", "items": {"type": "array"}},
            summary={"type": "array", "items": {"type": "array", "minItems": 3, "maxItems": 3}},
            first_response_breaches={"type": "array", "items": ID},
            satisfaction={"type": "object"},
            truncated=BOOL,
        ),
    }
