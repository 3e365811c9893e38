"""The OpenAPI 3 description of the agent API, served at `/api/v1/openapi.json` (a test keeps it in sync
with the app's routes)."""

from __future__ import annotations

from typing import Any

from gateway.http.supervisor_openapi import supervisor_paths

_ERROR = {"$ref": "#/components/responses/Error"}


def _op(
    summary: str,
    *,
    body: dict[str, Any] | None = None,
    ok: int = 200,
    errors: tuple[int, ...] = (401,),
    params: tuple[str, ...] = (),
    auth: bool = True,
    schema: str | None = None,
) -> dict[str, Any]:
    ok_response: dict[str, Any] = {"description": "OK"}
    if schema:
        ok_response["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {str(ok): ok_response, **{str(e): _ERROR for e in errors}},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in params]
    if not auth:
        op["security"] = []
    return op


def _obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


_STR = {"type": "string"}
_CONV = ("ConversationId",)
_ACTION_ERRORS = (400, 401, 403, 404, 409)


def spec() -> dict[str, Any]:
    """The spec as a plain dict (JSON-ready)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "kefu agent API",
            "version": "1",
            "description": "Human agents work the handoff queue through these endpoints (see docs/api.md).",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": {
            "/openapi.json": {"get": _op("This document", auth=False, errors=())},
            "/me": {"get": _op("The agent behind the token, presence and load", schema="Me")},
            "/me/presence": {
                "post": _op(
                    "Set presence (online also counts as a heartbeat)",
                    body=_obj(
                        ("presence",), presence={"type": "string", "enum": ["online", "away", "offline"]}
                    ),
                    errors=(400, 401),
                    schema="Me",
                )
            },
            "/queue": {
                "get": _op(
                    "Waiting conversations of the agent's groups (all for supervisors), in serving order; 留言 tickets first per priority"
                )
            },
            "/conversations": {
                "get": {
                    **_op(
                        "Open conversations: the agent's own (mine=1); supervisors without mine get all assigned"
                    ),
                    "parameters": [
                        {"name": "mine", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}}
                    ],
                }
            },
            "/conversations/{id}": {
                "get": _op(
                    "Full history, customer (channel, name, earlier conversations), handoff reason, notes, the bot's last guesses",
                    params=_CONV,
                    errors=(401, 403, 404),
                    schema="ConversationDetail",
                )
            },
            "/conversations/{id}/claim": {
                "post": _op(
                    "Take a queued conversation (exactly one racing claim wins; the rest get 409)",
                    params=_CONV,
                    errors=_ACTION_ERRORS,
                )
            },
            "/conversations/{id}/messages": {
                "post": _op(
                    "Reply to the customer (stored, delivered through the channel by the outbox); "
                    "422 when the text hits a 质检 rule with block: true",
                    body=_obj(("text",), text=_STR),
                    ok=201,
                    params=_CONV,
                    errors=(*_ACTION_ERRORS, 422),
                )
            },
            "/conversations/{id}/notes": {
                "post": _op(
                    "Internal note, never sent to the customer",
                    body=_obj(("text",), text=_STR),
                    ok=201,
                    params=_CONV,
                    errors=(400, 401, 403, 404),
                )
            },
            "/conversations/{id}/transfer": {
                "post": _op(
                    "Hand over to another agent or another group's queue (exactly one of agent, group)",
                    body=_obj(agent=_STR, group=_STR),
                    params=_CONV,
                    errors=_ACTION_ERRORS,
                )
            },
            "/conversations/{id}/reassign": {
                "post": _op(
                    "Supervisors: move any open conversation to another agent",
                    body=_obj(("agent",), agent=_STR),
                    params=_CONV,
                    errors=_ACTION_ERRORS,
                )
            },
            "/conversations/{id}/close": {
                "post": _op(
                    "Close with wrap-up tags; the customer is asked for a rating (CSAT)",
                    body=_obj(tags={"type": "array", "items": _STR}),
                    params=_CONV,
                    errors=_ACTION_ERRORS,
                )
            },
            "/conversations/{id}/handback": {
                "post": _op(
                    "Give the conversation back to the bot",
                    body=_obj(tags={"type": "array", "items": _STR}),
                    params=_CONV,
                    errors=_ACTION_ERRORS,
                )
            },
            "/canned": {
                "get": _op("Canned replies offered to the agent (global and their groups')"),
                "post": _op(
                    "Add a canned reply ({customer_name}, {agent_name}, {order_id}, {group}, {shop_name}, {date})",
                    body=_obj(("title", "text"), title=_STR, text=_STR, group=_STR),
                    ok=201,
                    errors=(400, 401, 403),
                ),
            },
            "/canned/{id}/render": {
                "post": _op(
                    "Fill a canned reply's placeholders for a conversation",
                    body=_obj(
                        conversation_id={"type": "integer"},
                        values={"type": "object", "additionalProperties": _STR},
                    ),
                    params=("CannedId",),
                    errors=(400, 401, 403, 404),
                )
            },
            "/follow-ups": {
                "get": {
                    **_op(
                        "Open complaint follow-ups (回访) of the agent's groups (all for supervisors); overdue = red"
                    ),
                    "parameters": [{"name": "all", "in": "query", "required": False, "schema": _STR}],
                }
            },
            "/follow-ups/{id}/close": {
                "post": {
                    **_op(
                        "Close a follow-up with a note of what was done",
                        body=_obj(note=_STR),
                        errors=(400, 401, 403, 404, 409),
                    ),
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                    ],
                }
            },
            "/reports/records": {
                "get": {
                    **_op(
                        "受理记录 export, one row per conversation (supervisors and admins; also admin.token): "
                        "CSV (default), XLSX with a 汇总 sheet, or JSON rows and summary",
                        errors=(400, 401, 403),
                    ),
                    "parameters": [
                        {"name": "from", "in": "query", "required": False, "schema": _STR},
                        {"name": "to", "in": "query", "required": False, "schema": _STR},
                        {
                            "name": "format",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["csv", "xlsx", "json"]},
                        },
                    ],
                }
            },
            **supervisor_paths(),  # 排班, 绩效, 质检
            "/agent/ws": {
                "get": {
                    **_op(
                        "WebSocket: pushed events {type: event, seq, type, conversation_id, data}; send {type: ping} "
                        "as heartbeat and {type: resume, after: seq} after a reconnect. Token as Authorization header "
                        "or as the subprotocols `kefu.agent, token.<token>` (browsers; the server answers kefu.agent); "
                        "?token= is deprecated (URLs end up in proxy and access logs)",
                        ok=101,
                        errors=(400, 401),
                    ),
                    "parameters": [
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
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "token from `kefu agent add`"}
            },
            "parameters": {
                "ConversationId": {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer"},
                },
                "CannedId": {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
            },
            "responses": {
                "Error": {
                    "description": "401 bad token, 403 not allowed, 404 unknown, 409 conflict (someone was faster), 400 bad input",
                    "content": {"application/json": {"schema": _obj(("error",), error=_STR)}},
                }
            },
            "schemas": {
                "Me": _obj(
                    id=_STR,
                    name=_STR,
                    role={"type": "string", "enum": ["agent", "supervisor", "admin"]},
                    groups={"type": "array", "items": _STR},
                    max_chats={"type": "integer"},
                    presence=_STR,
                    declared_presence=_STR,
                    load={"type": "integer"},
                ),
                "ConversationDetail": _obj(
                    id={"type": "integer"},
                    state=_STR,
                    group=_STR,
                    priority=_STR,
                    handoff_reason=_STR,
                    customer={"type": "object"},
                    messages={"type": "array", "items": {"type": "object"}},
                    notes={"type": "array", "items": {"type": "object"}},
                    bot_guesses={"type": "array", "items": {"type": "object"}},
                    csat={"type": "object", "nullable": True},
                ),
            },
        },
    }
