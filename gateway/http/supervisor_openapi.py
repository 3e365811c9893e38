"""OpenAPI paths of the supervisor APIs (排班, 绩效, 质检), merged into gateway.openapi.spec().

Described to the agent API's standard (every response with its schema, nullability, bounds, media types
and error bodies), so schemathesis checks them too (tests/gateway/test_openapi_conformance.py). The error
responses and the `Error` schema are the agent API's components.
"""

from __future__ import annotations

from typing import Any

__all__ = ["supervisor_paths", "supervisor_schemas"]

ID_MAX = 2**31 - 1  # INTEGER keys, as gateway.http.openapi.ID_MAX
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_STR = {"type": "string"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 64}
_INT = {"type": "integer"}
_ID = {"type": "integer", "format": "int32", "minimum": 1, "maximum": ID_MAX}
_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}  # ids serialised as strings
_TIME = {"type": "string", "format": "date-time"}
_BOOL = {"type": "boolean"}
_NUM = {"type": "number"}
_ANY: dict[str, Any] = {}  # the server reads only `true` here and ignores anything else


def _anycase(*words: str) -> dict[str, Any]:
    """A string the server compares case-insensitively (`.lower()`) with one of `words`."""
    alternatives = "|".join(
        "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in w) for w in words
    )
    return {"type": "string", "pattern": f"^(?:{alternatives})$"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


def _all(**props: Any) -> dict[str, Any]:
    """An object whose every property is always present."""
    return _obj(tuple(props), **props)


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _op(
    summary: str,
    ok: dict[str, Any] | None,
    *,
    status: int = 200,
    errors: tuple[int, ...] = (),
    body: dict[str, Any] | None = None,
    body_required: bool = True,
    query: dict[str, dict[str, Any]] | None = None,
    path_id: bool = False,
) -> dict[str, Any]:
    """One operation: its OK response (a JSON schema, or a full response object), errors, body, params."""
    if ok is None or "content" in ok:
        ok_response = ok or {"description": "Done (no body)"}
        ok_response.setdefault("description", "OK")
    else:
        ok_response = {"description": "OK", "content": {"application/json": {"schema": ok}}}
    codes = {401, *errors} | ({400, 413} if body is not None else set())
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(status): ok_response,
            **{str(code): {"$ref": f"#/components/responses/E{code}"} for code in sorted(codes)},
        },
    }
    params: list[dict[str, Any]] = []
    if path_id:
        params.append({"name": "id", "in": "path", "required": True, "schema": _ID})
    for name, schema in (query or {}).items():
        params.append({"name": name, "in": "query", "required": False, "schema": schema})
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
    return op


# from/to: a date (YYYY-MM-DD; `to` is the whole day) or an ISO-8601 time; from before to, at most 92 days.
_RANGE = {
    "from": {**_STR, "description": "first day or time (default: see the operation)"},
    "to": {**_STR, "description": "last day (inclusive) or end time"},
}


def supervisor_paths() -> dict[str, Any]:
    """The /shifts, /reports/agents and /qa paths."""
    swap_decision = _all(id=_ID, status={"type": "string", "enum": ["approved", "rejected"]})
    return {
        "/shifts": {
            "get": _op(
                "排班: shifts overlapping from/to (default this week from Monday), any agent; 400 for an "
                "unknown agent or a bad range",
                _all(**{"from": _TIME, "to": _TIME}, shifts=_array(_ref("Shift"))),
                errors=(400,),
                query={**_RANGE, "group": _STR, "agent": _STR},
            ),
            "post": _op(
                "Add a shift (supervisors); ISO-8601 start/end, naive = business-hours time zone → {id}; 400 "
                "for an unknown agent or group or an agent outside the group, 409 when it overlaps another",
                _all(id=_ID),
                status=201,
                errors=(403, 409),
                body=_obj(
                    ("agent", "group", "start", "end"),
                    agent=_NAME,
                    group=_NAME,
                    start=_STR,
                    end=_STR,
                    breaks=_array({"type": "array", "items": _STR, "minItems": 2, "maxItems": 2}),
                ),
            ),
        },
        "/shifts/{id}": {
            "delete": _op("Remove a shift (supervisors)", None, status=204, errors=(403, 404), path_id=True)
        },
        "/shifts/coverage": {
            "get": _op(
                "Business hours with nobody of a group on shift: 周六 21:00–22:00 售后组无人值班 (400 for an "
                "unknown group)",
                _all(**{"from": _TIME, "to": _TIME}, gaps=_array(_ref("CoverageGap"))),
                errors=(400,),
                query={**_RANGE, "group": _STR},
            )
        },
        "/shifts/swaps": {
            "get": _op(
                "Swap requests (supervisors: all; agents: their own)",
                _all(swaps=_array(_ref("Swap"))),
                errors=(400,),
                query={"status": {"type": "string", "enum": ["", "pending", "approved", "rejected"]}},
            ),
            "post": _op(
                "Ask a colleague to take one of your shifts → 201 pending; 403 for someone else's shift, 422 "
                "with the rule broken (shifts.swap_notice_days, shifts.max_swaps_per_month, a busy colleague)",
                _all(id=_ID, status={"type": "string", "enum": ["pending"]}),
                status=201,
                errors=(403, 404, 422),
                body=_obj(
                    ("shift_id", "with_agent"),
                    shift_id={"oneOf": [{**_ID, "minimum": 0}, _DIGITS]},
                    with_agent=_NAME,
                ),
            ),
        },
        "/shifts/swaps/{id}/approve": {
            "post": _op(
                "Approve a pending swap (supervisors): the shift moves to the colleague",
                swap_decision,
                errors=(403, 404, 409),
                body=_obj(note=_ANY),
                body_required=False,
                path_id=True,
            )
        },
        "/shifts/swaps/{id}/reject": {
            "post": _op(
                "Reject a pending swap (supervisors)",
                swap_decision,
                errors=(403, 404, 409),
                body=_obj(note=_ANY),
                body_required=False,
                path_id=True,
            )
        },
        "/reports/agents": {
            "get": _op(
                "绩效: one row per agent (JSON also per group) for conversations started from/to (default "
                "yesterday): conversations, first response p50/p90, handling, messages, transfers, 留言, SLA "
                "breaches, CSAT, attendance, 质检 (supervisors)",
                {
                    "description": "The report",
                    "content": {
                        "application/json": {"schema": _ref("AgentsReport")},
                        "text/csv": {"schema": _STR},
                        XLSX: {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                errors=(400, 403),
                query={**_RANGE, "format": _anycase("json", "csv", "xlsx")},
            )
        },
        "/qa": {
            "get": _op(
                "质检 results of conversations ended from/to (default yesterday), lowest score first, with "
                "conversation_id and rules hit (supervisors)",
                _all(**{"from": _TIME, "to": _TIME}, results=_array(_ref("QaResult"))),
                errors=(400, 403),
                query={
                    **_RANGE,
                    "flagged": _anycase("", "0", "1", "true", "false", "yes", "no"),
                    "review": {"type": "string", "enum": ["", "open", "confirmed", "dismissed"]},
                },
            )
        },
        "/qa/rules": {
            "get": _op(
                "The 质检 rules in use and the problems of the last load of config/qa.yaml",
                _ref("QaRules"),
            )
        },
        "/qa/check": {
            "post": _op(
                "Check a draft as typed: hits (span, rule, suggested wording) and blocked",
                _all(hits=_array(_ref("QaHit")), blocked=_BOOL, rules_version=_null(_STR)),
                body=_obj(
                    ("text",), text={"type": "string", "maxLength": 2000}, first_reply=_ANY, closing=_ANY
                ),
            )
        },
        "/qa/{id}": {
            "get": _op(
                "One conversation's 质检 result with its messages (masked); hits point at message index and span",
                {
                    "allOf": [
                        _ref("QaResult"),
                        _all(
                            messages=_array(
                                _all(
                                    index={"type": "integer", "minimum": 0},
                                    sender=_STR,
                                    text=_STR,
                                    at=_null(_TIME),
                                )
                            )
                        ),
                    ]
                },
                errors=(403, 404),
                path_id=True,
            )
        },
        "/qa/{id}/review": {
            "post": _op(
                "Confirm or dismiss a flag with a note (kept on the result and in the audit log); 404 when the "
                "conversation has no flagged result, 409 when it was reviewed already",
                _all(conversation_id=_DIGITS, review={"type": "string", "enum": ["confirmed", "dismissed"]}),
                errors=(403, 404, 409),
                body=_obj(
                    ("action", "note"),
                    action={"type": "string", "enum": ["confirm", "dismiss"]},
                    note={"type": "string", "minLength": 1, "maxLength": 1000, "pattern": r"\S"},
                ),
                path_id=True,
            )
        },
    }


def supervisor_schemas() -> dict[str, Any]:
    """The schemas the supervisor paths refer to (components/schemas)."""
    kpi_row = {"type": "object", "description": "the KPI columns (`columns`) of one agent or group"}
    return {
        "Shift": _all(
            id=_ID,
            agent=_STR,
            group=_STR,
            start=_TIME,
            end=_TIME,
            breaks=_array({"type": "array", "items": _TIME, "minItems": 2, "maxItems": 2}),
        ),
        "CoverageGap": _all(group=_STR, start=_TIME, end=_TIME, text=_STR, date_text=_STR),
        "Swap": _all(
            id=_ID,
            shift_id=_ID,
            requester=_STR,
            with_agent=_STR,
            shift_start=_TIME,
            status={"type": "string", "enum": ["pending", "approved", "rejected"]},
            created_at=_TIME,
            decided_at=_null(_TIME),
            decided_by=_null(_STR),
            note=_null(_STR),
        ),
        "AgentsReport": _all(
            **{"from": _TIME, "to": _TIME},
            columns=_array(_STR),
            rows=_array({**kpi_row, "required": ["agent"], "properties": {"agent": _STR}}),
            groups=_array({**kpi_row, "required": ["group"], "properties": {"group": _STR}}),
        ),
        "QaHit": _all(
            rule=_STR,
            name=_STR,
            type=_STR,
            message_index=_null({"type": "integer", "minimum": 0}),
            start=_null({"type": "integer", "minimum": 0}),
            end=_null({"type": "integer", "minimum": 0}),
            text=_null(_STR),
            suggestion=_null(_STR),
            weight=_NUM,
            block=_BOOL,
            flag=_BOOL,
        ),
        "QaResult": _all(
            conversation_id=_DIGITS,
            agent=_null(_STR),
            group=_null(_STR),
            closed_at=_TIME,
            score=_NUM,
            max_score=_NUM,
            flagged=_BOOL,
            rules=_array(_STR),
            hits=_array(_ref("QaHit")),
            rules_version=_null(_STR),
            review=_null({"type": "string", "enum": ["open", "confirmed", "dismissed", None]}),
            review_note=_null(_STR),
            reviewed_by=_null(_STR),
            reviewed_at=_null(_TIME),
        ),
        "QaRules": _all(
            path=_STR,
            version=_null(_STR),
            rules=_array(
                _all(
                    id=_STR,
                    name=_STR,
                    type=_STR,
                    weight=_NUM,
                    block=_BOOL,
                    flag=_BOOL,
                    suggestion=_null(_STR),
                )
            ),
            max_score=_null(_NUM),
            flag_below=_null(_NUM),
            problems=_array(_STR),
        ),
    }
