"""The OpenAPI 3 description of the agent API, served at `/api/v1/openapi.json`.

Complete on purpose: every operation's responses with schemas (nullability, bounds, formats, media types,
error bodies, 413), so schemathesis can check the server against it (tests/gateway/test_openapi_conformance.py;
a test also keeps it in sync with the app's routes). Request schemas say exactly what the server accepts.
"""

from __future__ import annotations

from typing import Any

from gateway.http.learn_openapi import learn_paths, learn_schemas
from gateway.http.media_openapi import attachment_path
from gateway.http.supervisor_openapi import supervisor_paths, supervisor_schemas

ID_MAX = 2**31 - 1  # INTEGER keys (bodies.ID_MAX)
MAX_TEXT = 2000  # agent_api.MAX_TEXT
MAX_NOTE = 4000  # agent_api.MAX_NOTE
MAX_FOLLOW_UP_NOTE = 500  # follow_ups.MAX_NOTE
MAX_NAME = 64
MAX_CANNED = 600  # handoff.canned.MAX_CANNED_LENGTH
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Text the server accepts: not only whitespace, no control characters but tab, newline and carriage return
# (PostgreSQL cannot store NUL; the others are never typed).
TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f]*[^\s\u0000-\u001f][^\u0000-\u0008\u000b\u000c\u000e-\u001f]*$"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _text(max_length: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": TEXT_PATTERN}


def _obj(required: tuple[str, ...] = (), *, extra: bool = True, **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if not extra:
        out["additionalProperties"] = False
    return out


def _all(**props: Any) -> dict[str, Any]:
    """An object whose every property is always present."""
    return _obj(tuple(props), **props)


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_STR = {"type": "string"}
_ID = {"type": "integer", "format": "int32", "minimum": 1, "maximum": ID_MAX}
_AGENT_ID = {"type": "string", "pattern": "^[0-9]+$"}  # agents' ids are strings of digits
_TIME = {"type": "string", "format": "date-time"}
_BOOL = {"type": "boolean"}
_NUM = {"type": "number"}
# Blank tags are skipped and duplicates merged; unknown ones (handoff.wrap_up_tags) and more than 20 are a 400.
_TAGS = {"type": "array", "items": {"type": "string", "maxLength": 32}}
_STATE = {"type": "string", "enum": ["bot", "queued", "assigned", "closed"]}
_PRIORITY = {"type": "string", "enum": ["normal", "high"]}
_ERRORS = {
    400: "Bad input (the message names the field)",
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
        ok_response = {"description": "OK", "content": {"application/json": {"schema": ok}}}
    codes = set(errors) | ({401} if auth else set()) | ({400, 413} if body is not None else set())
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(status): ok_response,
            **{str(code): {"$ref": f"#/components/responses/E{code}"} for code in sorted(codes)},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    if not auth:
        op["security"] = []
    return op


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    out = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        out["description"] = description
    return out


_CONV = [{"$ref": "#/components/parameters/ConversationId"}]
# The console's id of one send (1–200 printable ASCII characters), the same on every retry of it.
_KEY = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x21-\\x7e]+$"}
_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": _KEY}
_CONV_ACTION = (403, 404, 409)


def spec() -> dict[str, Any]:
    """The spec as a plain dict (JSON-ready)."""
    summary = _ref("ConversationSummary")
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
            "/me": {"get": _op("The agent behind the token, presence and load", _ref("Me"))},
            "/me/presence": {
                "post": _op(
                    "Set presence (online also counts as a heartbeat)",
                    _ref("Me"),
                    body=_obj(
                        ("presence",), presence={"type": "string", "enum": ["online", "away", "offline"]}
                    ),
                )
            },
            "/queue": {
                "get": _op(
                    "A page of the waiting conversations of the agent's groups (all for supervisors), in "
                    "serving order; 留言 tickets first per priority; next_cursor (null on the last page) and total",
                    _all(
                        queue={"type": "array", "items": _ref("QueueItem")},
                        next_cursor=_null(_STR),
                        total={"type": "integer", "minimum": 0},
                    ),
                    errors=(400,),
                    params=[
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                        },
                        {"name": "cursor", "in": "query", "required": False, "schema": _STR},
                    ],
                )
            },
            "/conversations": {
                "get": _op(
                    "Open conversations: the agent's own (mine=1); supervisors without mine get all assigned",
                    _all(conversations={"type": "array", "items": summary}),
                    errors=(400,),
                    params=[_query("mine", {"type": "string", "enum": ["0", "1", "true", "false"]})],
                )
            },
            "/conversations/{id}": {
                "get": _op(
                    "Full history, customer (channel, name, earlier conversations), handoff reason, notes, "
                    "the bot's last guesses",
                    _ref("ConversationDetail"),
                    errors=(403, 404),
                    params=_CONV,
                )
            },
            "/conversations/{id}/claim": {
                "post": _op(
                    "Take a queued conversation (exactly one racing claim wins; the rest get 409)",
                    summary,
                    errors=_CONV_ACTION,
                    params=_CONV,
                )
            },
            "/conversations/{id}/messages": {
                "post": _op(
                    "Reply to the customer (stored, delivered through the channel by the outbox). With an "
                    "Idempotency-Key, a retry with the same key (same agent) returns the first message and "
                    "sends nothing again",
                    _all(message_id=_ID, conversation_id=_ID),
                    status=201,
                    body=_obj(("text",), text=_text(MAX_TEXT)),
                    errors=(*_CONV_ACTION, 422),
                    params=[*_CONV, _IDEMPOTENCY_KEY],
                )
            },
            "/conversations/{id}/attachments": attachment_path(_op, _obj, _text(MAX_TEXT), _CONV),
            "/conversations/{id}/messages/{message_id}/retry": {
                "post": _op(
                    "Send a failed or undeliverable message again (the assignee; 409 when it needs no resend or "
                    "cannot be resent, e.g. a missing AppSecret)",
                    _all(message_id=_ID, delivery=_ref("Delivery")),
                    errors=_CONV_ACTION,
                    params=[
                        *_CONV,
                        {"name": "message_id", "in": "path", "required": True, "schema": _ID},
                    ],
                )
            },
            "/conversations/{id}/notes": {
                "post": _op(
                    "Internal note, never sent to the customer",
                    _all(id=_ID, agent_name=_STR, text=_STR, created_at=_TIME),
                    status=201,
                    body=_obj(("text",), text=_text(MAX_NOTE)),
                    errors=(403, 404),
                    params=_CONV,
                )
            },
            "/conversations/{id}/transfer": {
                "post": _op(
                    "Hand over to another agent or another group's queue (exactly one of agent, group)",
                    summary,
                    body={
                        "oneOf": [
                            _obj(("agent",), extra=False, agent=_text(MAX_NAME)),
                            _obj(("group",), extra=False, group=_text(MAX_NAME)),
                        ]
                    },
                    errors=_CONV_ACTION,
                    params=_CONV,
                )
            },
            "/conversations/{id}/reassign": {
                "post": _op(
                    "Supervisors: move any open conversation to another agent (by name)",
                    summary,
                    body=_obj(("agent",), agent=_text(MAX_NAME)),
                    errors=_CONV_ACTION,
                    params=_CONV,
                )
            },
            "/conversations/{id}/close": {
                "post": _op(
                    "Close with wrap-up tags; the customer is asked for a rating (CSAT)",
                    summary,
                    body=_obj(tags=_TAGS),
                    body_required=False,
                    errors=_CONV_ACTION,
                    params=_CONV,
                )
            },
            "/conversations/{id}/handback": {
                "post": _op(
                    "Give the conversation back to the bot",
                    summary,
                    body=_obj(tags=_TAGS),
                    body_required=False,
                    errors=_CONV_ACTION,
                    params=_CONV,
                )
            },
            "/conversations/{id}/suggestions": {
                "get": _op(
                    "The FAQ answers the matcher ranks best for the customer's latest question (the console's "
                    "suggestion panel; also served at /agent/api/conversations/{id}/suggestions)",
                    _ref("Suggestions"),
                    errors=(403, 404),
                    params=_CONV,
                )
            },
            "/canned": {
                "get": _op(
                    "Canned replies offered to the agent (global and their groups')",
                    _all(canned={"type": "array", "items": _ref("Canned")}),
                ),
                "post": _op(
                    "Add a canned reply ({customer_name}, {agent_name}, {order_id}, {group}, {shop_name}, {date}, "
                    "{service_hours}); "
                    "400 also for an unknown or unclosed placeholder",
                    _ref("Canned"),
                    status=201,
                    body=_obj(
                        ("title", "text"),
                        title=_text(MAX_NAME),
                        text=_text(MAX_CANNED),
                        group=_null(_text(MAX_NAME)),
                    ),
                    errors=(403,),
                ),
            },
            "/canned/{id}": {
                "put": _op(
                    "Edit a canned reply (supervisors and admins: any; agents: the ones they added)",
                    _ref("Canned"),
                    body=_obj(
                        ("title", "text"),
                        title=_text(MAX_NAME),
                        text=_text(MAX_CANNED),
                        group=_null(_text(MAX_NAME)),
                    ),
                    errors=(403, 404),
                    params=[{"$ref": "#/components/parameters/CannedId"}],
                ),
                "delete": _op(
                    "Delete a canned reply (supervisors and admins: any; agents: the ones they added)",
                    _all(deleted=_ID),
                    errors=(403, 404),
                    params=[{"$ref": "#/components/parameters/CannedId"}],
                ),
            },
            "/canned/{id}/render": {
                "post": _op(
                    "Fill a canned reply's placeholders for a conversation and extra values",
                    _all(text=_STR, missing={"type": "array", "items": _STR}, complete=_BOOL),
                    body=_obj(
                        conversation_id=_ID,
                        values={
                            "type": "object",
                            "additionalProperties": {"type": "string", "maxLength": 200},
                        },
                    ),
                    body_required=False,
                    errors=(403, 404),
                    params=[{"$ref": "#/components/parameters/CannedId"}],
                )
            },
            "/follow-ups": {
                "get": _op(
                    "Open complaint follow-ups (回访) of the agent's groups (all for supervisors), earliest due "
                    "first; all=1 adds closed ones",
                    _all(follow_ups={"type": "array", "items": _ref("FollowUp")}),
                    errors=(400,),
                    params=[_query("all", {"type": "string", "enum": ["0", "1"]})],
                )
            },
            "/follow-ups/{id}/close": {
                "post": _op(
                    "Close a follow-up with a note of what was done",
                    _ref("FollowUp"),
                    body=_obj(note=_null(_text(MAX_FOLLOW_UP_NOTE))),
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
                            "application/json": {"schema": _ref("Records")},
                        },
                    },
                    errors=(400, 403),
                    params=[
                        _query("from", {"type": "string", "format": "date"}, "first day (YYYY-MM-DD)"),
                        _query("to", {"type": "string", "format": "date"}, "last day, inclusive"),
                        _query("format", {"type": "string", "enum": ["csv", "xlsx", "json"]}),
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
                            "schema": _STR,
                        },
                        {
                            "name": "token",
                            "in": "query",
                            "required": False,
                            "deprecated": True,
                            "schema": _STR,
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
                name: {"name": "id", "in": "path", "required": True, "schema": _ID}
                for name in ("ConversationId", "CannedId", "FollowUpId")
            },
            "responses": {
                f"E{code}": {
                    "description": text,
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
                for code, text in _ERRORS.items()
            }
            | {"Error": {"description": "Error", "content": {"application/json": {"schema": _ref("Error")}}}},
            "schemas": {**_schemas(), **learn_schemas(), **supervisor_schemas()},
        },
    }


def _schemas() -> dict[str, Any]:
    customer_brief = _null(_all(name=_null(_STR), user_id=_STR))
    return {
        "Error": _obj(("error",), error=_STR),
        "Me": _all(
            id=_AGENT_ID,
            name=_STR,
            role={"type": "string", "enum": ["agent", "supervisor", "admin"]},
            groups={"type": "array", "items": _STR},
            max_chats={"type": "integer", "minimum": 1},
            presence={"type": "string", "enum": ["online", "away", "offline"]},
            declared_presence={"type": "string", "enum": ["online", "away", "offline"]},
            load={"type": "integer", "minimum": 0},
        ),
        "QueueItem": _all(
            conversation_id=_ID,
            group=_STR,
            priority=_PRIORITY,
            ticket=_BOOL,
            position={"type": "integer", "minimum": 1},
            queued_at=_TIME,
            waiting_s=_NUM,
            handoff_reason=_null(_STR),
            channel=_STR,
            customer=_all(name=_null(_STR), user_id=_null(_STR)),
            last_message=_null(_STR),
        ),
        "ConversationSummary": _all(
            id=_ID,
            state=_STATE,
            group=_null(_STR),
            priority=_PRIORITY,
            channel=_STR,
            assigned_agent_id=_null(_AGENT_ID),
            customer=customer_brief,
            last_message=_null(_all(sender=_STR, text=_STR, at=_TIME)),
        ),
        "ConversationDetail": _all(
            id=_ID,
            state=_STATE,
            group=_null(_STR),
            priority=_PRIORITY,
            handoff_reason=_null(_STR),
            queued_at=_null(_TIME),
            opened_at=_TIME,
            closed_at=_null(_TIME),
            closed_reason=_null(_STR),
            channel=_STR,
            account=_STR,
            customer=_obj(
                ("earlier_conversations",),
                id=_ID,
                channel=_STR,
                account=_STR,
                user_id=_STR,
                name=_null(_STR),
                first_seen_at=_TIME,
                earlier_conversations={
                    "type": "array",
                    "items": _all(
                        id=_ID,
                        state=_STATE,
                        opened_at=_TIME,
                        closed_reason=_null(_STR),
                        handoff_reason=_null(_STR),
                    ),
                },
            ),
            assignment=_all(
                agent_id=_null(_AGENT_ID),
                agent_name=_null(_STR),
                assigned_at=_null(_TIME),
                first_response_at=_null(_TIME),
                tags=_null({"type": "array", "items": _STR}),
            ),
            messages={
                "type": "array",
                "items": _all(
                    id=_ID,
                    direction={"type": "string", "enum": ["in", "out"]},
                    sender=_STR,
                    sender_name=_null(_STR),
                    text=_STR,
                    kind=_STR,
                    created_at=_TIME,
                    delivery=_null(_ref("Delivery")),
                ),
            },
            notes={
                "type": "array",
                "items": _all(id=_ID, agent_id=_STR, agent_name=_null(_STR), text=_STR, created_at=_TIME),
            },
            bot_guesses={
                "type": "array",
                "maxItems": 3,
                "items": _all(
                    message_id=_ID,
                    text=_STR,
                    decision=_STR,
                    reason=_null(_STR),
                    entry_id=_null(_STR),
                    confidence=_null(_NUM),
                    alternatives={"type": "array", "items": _STR},
                ),
            },
            csat=_null(
                _obj(
                    ("asked_at", "rating", "raw_text", "answered_at"),
                    asked_at=_TIME,
                    rating=_null({"type": "integer", "minimum": 1, "maximum": 5}),
                    raw_text=_null(_STR),
                    skipped=_BOOL,
                    answered_at=_null(_TIME),
                )
            ),
        ),
        "Delivery": _all(
            state={"type": "string", "enum": ["queued", "sent", "failed", "undeliverable"]},
            status=_null(
                {
                    "type": "string",
                    "enum": ["held", "pending", "sending", "sent", "failed", "undeliverable", "cancelled"],
                }
            ),
            reason=_null(_STR),
            reason_text=_null(_STR),
            retry=_BOOL,
        ),
        "Suggestions": _all(
            message=_null(_STR),
            suggestions={
                "type": "array",
                "items": _all(entry_id=_STR, question=_STR, answer=_STR, score=_NUM),
            },
        ),
        "Canned": _all(
            id=_ID,
            title=_STR,
            text=_STR,
            group=_null(_STR),
            placeholders={"type": "array", "items": _STR},
            editable=_BOOL,
        ),
        "FollowUp": _all(
            id=_ID,
            conversation_id=_ID,
            group=_null(_STR),
            created_at=_TIME,
            due_at=_TIME,
            closed_at=_null(_TIME),
            closed_by=_null(_AGENT_ID),
            note=_null(_STR),
            overdue=_BOOL,
            overdue_s={"type": "integer", "minimum": 0},
        ),
        "Records": _all(
            **{"from": _TIME, "to": _TIME},
            columns={"type": "array", "items": _STR},
            rows={"type": "array", "items": {"type": "array"}},
            summary={"type": "array", "items": {"type": "array", "minItems": 3, "maxItems": 3}},
            first_response_breaches={"type": "array", "items": _ID},
            satisfaction={"type": "object"},
            truncated=_BOOL,
        ),
    }
