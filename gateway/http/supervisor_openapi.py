"""OpenAPI paths of the supervisor APIs (排班, 绩效, 质检), merged into gateway.openapi.spec().

Described to the agent API's standard (every response with its schema, nullability, bounds, media types
and error bodies), so schemathesis checks them too (tests/gateway/test_openapi_conformance.py). The error
responses and the `Error` schema are the agent API's components.
"""

from __future__ import annotations

from typing import Any

from gateway.http.openapi_parts import (
    BOOL,
    DIGITS,
    ID,
    NUM,
    STR,
    TIME,
    XLSX,
    array,
    full,
    json_response,
    null,
    obj,
    operation,
    query,
    ref,
)

__all__ = ["supervisor_paths", "supervisor_schemas"]

_NAME = {"type": "string", "minLength": 1, "maxLength": 64}
_INT = {"type": "integer"}
_ANY: dict[str, Any] = {}  # the server reads only `true` here and ignores anything else


def _anycase(*words: str) -> dict[str, Any]:
    """A string the server compares case-insensitively (`.lower()`) with one of `words`."""
    alternatives = "|".join(
        "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in w) for w in words
    )
    return {"type": "string", "pattern": f"^(?:{alternatives})$"}


def _op(
    summary: str,
    ok: dict[str, Any] | None,
    *,
    status: int = 200,
    errors: tuple[int, ...] = (),
    body: dict[str, Any] | None = None,
    body_required: bool = True,
    query_params: dict[str, dict[str, Any]] | None = None,
    path_id: bool = False,
) -> dict[str, Any]:
    """One operation: its OK response (a JSON schema, or a full response object), errors, body, params."""
    if ok is None or "content" in ok:
        ok_response = ok or {"description": "Done (no body)"}
        ok_response.setdefault("description", "OK")
    else:
        ok_response = json_response(ok)
    codes = {401, *errors} | ({400, 413} if body is not None else set())
    params = [{"name": "id", "in": "path", "required": True, "schema": ID}] if path_id else []
    params += [query(name, schema) for name, schema in (query_params or {}).items()]
    return operation(
        summary,
        ok_response,
        status=status,
        codes=codes,
        body=body,
        body_required=body_required,
        params=params,
    )


# from/to: a date (YYYY-MM-DD; `to` is the whole day) or an ISO-8601 time; from before to, at most 92 days.
_RANGE = {
    "from": {**STR, "description": "first day or time (default: see the operation)"},
    "to": {**STR, "description": "last day (inclusive) or end time"},
}


def supervisor_paths() -> dict[str, Any]:
    """The /shifts, /reports/agents and /qa paths."""

    def decide(summary: str) -> dict[str, Any]:
        """Approve or reject a pending swap: the same request (an optional note), the swap's new status."""
        return _op(
            summary,
            full(id=ID, status={"type": "string", "enum": ["approved", "rejected"]}),
            errors=(403, 404, 409),
            body=obj(note=_ANY),
            body_required=False,
            path_id=True,
        )

    return {
        "/shifts": {
            "get": _op(
                "排班: shifts overlapping from/to (default this week from Monday), any agent; 400 for an "
                "unknown agent or a bad range",
                full(**{"from": TIME, "to": TIME}, shifts=array(ref("Shift"))),
                errors=(400,),
                query_params={**_RANGE, "group": STR, "agent": STR},
            ),
            "post": _op(
                "Add a shift (supervisors); ISO-8601 start/end, naive = business-hours time zone → {id}; 400 "
                "for an unknown agent or group or an agent outside the group, 409 when it overlaps another",
                full(id=ID),
                status=201,
                errors=(403, 409),
                body=obj(
                    ("agent", "group", "start", "end"),
                    agent=_NAME,
                    group=_NAME,
                    start=STR,
                    end=STR,
                    breaks=array({"type": "array", "items": STR, "minItems": 2, "maxItems": 2}),
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
                full(**{"from": TIME, "to": TIME}, gaps=array(ref("CoverageGap"))),
                errors=(400,),
                query_params={**_RANGE, "group": STR},
            )
        },
        "/shifts/swaps": {
            "get": _op(
                "Swap requests (supervisors: all; agents: their own)",
                full(swaps=array(ref("Swap"))),
                errors=(400,),
                query_params={"status": {"type": "string", "enum": ["", "pending", "approved", "rejected"]}},
            ),
            "post": _op(
                "Ask a colleague to take one of your shifts → 201 pending; 403 for someone else's shift, 422 "
                "with the rule broken (shifts.swap_notice_days, shifts.max_swaps_per_month, a busy colleague)",
                full(id=ID, status={"type": "string", "enum": ["pending"]}),
                status=201,
                errors=(403, 404, 422),
                body=obj(
                    ("shift_id", "with_agent"),
                    shift_id={"oneOf": [{**ID, "minimum": 0}, DIGITS]},
                    with_agent=_NAME,
                ),
            ),
        },
        "/shifts/swaps/{id}/approve": {
            "post": decide("Approve a pending swap (supervisors): the shift moves to the colleague")
        },
        "/shifts/swaps/{id}/reject": {"post": decide("Reject a pending swap (supervisors)")},
        "/reports/agents": {
            "get": _op(
                "绩效: one row per agent (JSON also per group) for conversations started from/to (default "
                "yesterday): conversations, first response p50/p90, handling, messages, transfers, 留言, SLA "
                "breaches, CSAT, attendance, 质检 (supervisors)",
                {
                    "description": "The report",
                    "content": {
                        "application/json": {"schema": ref("AgentsReport")},
                        "text/csv": {"schema": STR},
                        XLSX: {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                errors=(400, 403),
                query_params={**_RANGE, "format": _anycase("json", "csv", "xlsx")},
            )
        },
        "/qa": {
            "get": _op(
                "质检 results of conversations ended from/to (default yesterday), lowest score first, with "
                "conversation_id and rules hit (supervisors)",
                full(**{"from": TIME, "to": TIME}, results=array(ref("QaResult"))),
                errors=(400, 403),
                query_params={
                    **_RANGE,
                    "flagged": _anycase("", "0", "1", "true", "false", "yes", "no"),
                    "review": {"type": "string", "enum": ["", "open", "confirmed", "dismissed"]},
                },
            )
        },
        "/qa/rules": {
            "get": _op(
                "The 质检 rules in use and the problems of the last load of config/qa.yaml",
                ref("QaRules"),
            )
        },
        "/qa/check": {
            "post": _op(
                "Check a draft as typed: hits (span, rule, suggested wording) and blocked",
                full(hits=array(ref("QaHit")), blocked=BOOL, rules_version=null(STR)),
                body=obj(
                    ("text",), text={"type": "string", "maxLength": 2000}, first_reply=_ANY, closing=_ANY
                ),
            )
        },
        "/qa/{id}": {
            "get": _op(
                "One conversation's 质检 result with its messages (masked); hits point at message index and span",
                {
                    "allOf": [
                        ref("QaResult"),
                        full(
                            messages=array(
                                full(
                                    index={"type": "integer", "minimum": 0},
                                    sender=STR,
                                    text=STR,
                                    at=null(TIME),
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
                full(conversation_id=DIGITS, review={"type": "string", "enum": ["confirmed", "dismissed"]}),
                errors=(403, 404, 409),
                body=obj(
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
        "Shift": full(
            id=ID,
            agent=STR,
            group=STR,
            start=TIME,
            end=TIME,
            breaks=array({"type": "array", "items": TIME, "minItems": 2, "maxItems": 2}),
        ),
        "CoverageGap": full(group=STR, start=TIME, end=TIME, text=STR, date_text=STR),
        "Swap": full(
            id=ID,
            shift_id=ID,
            requester=STR,
            with_agent=STR,
            shift_start=TIME,
            status={"type": "string", "enum": ["pending", "approved", "rejected"]},
            created_at=TIME,
            decided_at=null(TIME),
            decided_by=null(STR),
            note=null(STR),
        ),
        "AgentsReport": full(
            **{"from": TIME, "to": TIME},
            columns=array(STR),
            rows=array({**kpi_row, "required": ["agent"], "properties": {"agent": STR}}),
            groups=array({**kpi_row, "required": ["group"], "properties": {"group": STR}}),
        ),
        "QaHit": full(
            rule=STR,
            name=STR,
            type=STR,
            message_index=null({"type": "integer", "minimum": 0}),
            start=null({"type": "integer", "minimum": 0}),
            end=null({"type": "integer", "minimum": 0}),
            text=null(STR),
            suggestion=null(STR),
            weight=NUM,
            block=BOOL,
            flag=BOOL,
        ),
        "QaResult": full(
            conversation_id=DIGITS,
            agent=null(STR),
            group=null(STR),
            closed_at=TIME,
            score=NUM,
            max_score=NUM,
            flagged=BOOL,
            rules=array(STR),
            hits=array(ref("QaHit")),
            rules_version=null(STR),
            review=null({"type": "string", "enum": ["open", "confirmed", "dismissed", None]}),
            review_note=null(STR),
            reviewed_by=null(STR),
            reviewed_at=null(TIME),
        ),
        "QaRules": full(
            path=STR,
            version=null(STR),
            rules=array(
                full(
                    id=STR,
                    name=STR,
                    type=STR,
                    weight=NUM,
                    block=BOOL,
                    flag=BOOL,
                    suggestion=null(STR),
                )
            ),
            max_score=null(NUM),
            flag_below=null(NUM),
            problems=array(STR),
        ),
    }
