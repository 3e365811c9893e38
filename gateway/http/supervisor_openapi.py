"""OpenAPI paths of the supervisor APIs (排班, 绩效, 质检), merged into gateway.openapi.spec()."""

from __future__ import annotations

from typing import Any

__all__ = ["supervisor_paths"]

_ERROR = {"$ref": "#/components/responses/Error"}
_STR = {"type": "string"}
_INT = {"type": "integer"}


def _op(
    summary: str,
    *,
    ok: int = 200,
    errors: tuple[int, ...] = (400, 401, 403),
    body: dict[str, Any] | None = None,
    query: tuple[str, ...] = (),
    path_id: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {str(ok): {"description": "OK"}, **{str(e): _ERROR for e in errors}},
    }
    params: list[dict[str, Any]] = []
    if path_id:
        params.append({"name": "id", "in": "path", "required": True, "schema": _INT})
    params += [{"name": q, "in": "query", "required": False, "schema": _STR} for q in query]
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


_RANGE = ("from", "to")


def supervisor_paths() -> dict[str, Any]:
    """The /shifts, /reports/agents and /qa paths."""
    return {
        "/shifts": {
            "get": _op(
                "排班: shifts overlapping from/to (default this week), any agent",
                query=(*_RANGE, "group", "agent"),
            ),
            "post": _op(
                "Add a shift (supervisors); ISO-8601 start/end, naive = business-hours time zone → {id}",
                ok=201,
                errors=(400, 401, 403, 409),
                body=_obj(
                    ("agent", "group", "start", "end"),
                    agent=_STR,
                    group=_STR,
                    start=_STR,
                    end=_STR,
                    breaks={"type": "array", "items": {"type": "array", "items": _STR}},
                ),
            ),
        },
        "/shifts/{id}": {
            "delete": _op("Remove a shift (supervisors)", ok=204, errors=(401, 403, 404), path_id=True)
        },
        "/shifts/coverage": {
            "get": _op(
                "Business hours with nobody of a group on shift: 周六 21:00–22:00 售后组无人值班",
                query=(*_RANGE, "group"),
            )
        },
        "/shifts/swaps": {
            "get": _op("Swap requests (supervisors: all; agents: their own)", query=("status",)),
            "post": _op(
                "Ask a colleague to take one of your shifts → 201 pending, or 422 with the rule broken "
                "(shifts.swap_notice_days, shifts.max_swaps_per_month, a busy colleague)",
                ok=201,
                errors=(400, 401, 403, 404, 422),
                body=_obj(("shift_id", "with_agent"), shift_id=_INT, with_agent=_STR),
            ),
        },
        "/shifts/swaps/{id}/approve": {
            "post": _op(
                "Approve a pending swap (supervisors): the shift moves to the colleague",
                errors=(401, 403, 404, 409),
                body=_obj(note=_STR),
                path_id=True,
            )
        },
        "/shifts/swaps/{id}/reject": {
            "post": _op(
                "Reject a pending swap (supervisors)",
                errors=(401, 403, 404, 409),
                body=_obj(note=_STR),
                path_id=True,
            )
        },
        "/reports/agents": {
            "get": _op(
                "绩效: one row per agent (JSON also per group) for conversations started from/to (default "
                "yesterday): conversations, first response p50/p90, handling, messages, transfers, 留言, SLA "
                "breaches, CSAT, attendance, 质检 (supervisors)",
                query=(*_RANGE, "format"),
            )
        },
        "/qa": {
            "get": _op(
                "质检 results of conversations ended from/to, lowest score first, with conversation_id and rules hit",
                query=(*_RANGE, "flagged", "review"),
            )
        },
        "/qa/rules": {
            "get": _op(
                "The 质检 rules in use and the problems of the last load of config/qa.yaml", errors=(401,)
            )
        },
        "/qa/check": {
            "post": _op(
                "Check a draft as typed: hits (span, rule, suggested wording) and blocked",
                errors=(400, 401),
                body=_obj(("text",), text=_STR, first_reply={"type": "boolean"}, closing={"type": "boolean"}),
            )
        },
        "/qa/{id}": {
            "get": _op(
                "One conversation's 质检 result with its messages (masked); hits point at message index and span",
                errors=(401, 403, 404),
                path_id=True,
            )
        },
        "/qa/{id}/review": {
            "post": _op(
                "Confirm or dismiss a flag with a note (kept on the result and in the audit log)",
                errors=(400, 401, 403, 404, 409),
                body=_obj(
                    ("action", "note"), action={"type": "string", "enum": ["confirm", "dismiss"]}, note=_STR
                ),
                path_id=True,
            )
        },
    }
