"""The schema pieces every OpenAPI builder shares (openapi.py and its learn, media and supervisor parts).

One definition of an id, a time, a text the server accepts, an object whose properties are all present,
an error response, so the parts of `/api/v1/openapi.json` cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from gateway.http.bodies import ID_MAX

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Text the server accepts: not only whitespace, no control characters but tab, newline and carriage return
# (PostgreSQL cannot store NUL; the others are never typed).
TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f]*[^\s\u0000-\u001f][^\u0000-\u0008\u000b\u000c\u000e-\u001f]*$"

STR = {"type": "string"}
ID = {"type": "integer", "format": "int32", "minimum": 1, "maximum": ID_MAX}  # INTEGER keys
DIGITS = {"type": "string", "pattern": "^[0-9]+$"}  # ids serialised as strings (agents' ids)
TIME = {"type": "string", "format": "date-time"}
BOOL = {"type": "boolean"}
NUM = {"type": "number"}
CONVERSATION = [{"$ref": "#/components/parameters/ConversationId"}]  # the {id} of /conversations/{id}/…


def ref(name: str) -> dict[str, Any]:
    """A reference to components/schemas/`name`."""
    return {"$ref": f"#/components/schemas/{name}"}


def error(code: int) -> dict[str, Any]:
    """A reference to the shared error response of `code` (components/responses/E<code>)."""
    return {"$ref": f"#/components/responses/E{code}"}


def text(max_length: int) -> dict[str, Any]:
    """A text the server accepts, of 1 to `max_length` characters."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": TEXT_PATTERN}


def obj(required: tuple[str, ...] = (), *, extra: bool = True, **props: Any) -> dict[str, Any]:
    """An object of `props`, the `required` ones always present; `extra=False` forbids any other."""
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if not extra:
        out["additionalProperties"] = False
    return out


def full(**props: Any) -> dict[str, Any]:
    """An object whose every property is always present."""
    return obj(tuple(props), **props)


def null(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An optional query parameter."""
    out = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        out["description"] = description
    return out


def json_response(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def operation(
    summary: str,
    ok: dict[str, Any],
    *,
    status: int,
    codes: set[int],
    body: dict[str, Any] | None,
    body_required: bool,
    params: list[dict[str, Any]],
) -> dict[str, Any]:
    """One operation: `ok` (a full response object) under `status`, the shared error responses of `codes`,
    the JSON request body and the parameters (each only when there is one)."""
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {str(status): ok, **{str(code): error(code) for code in sorted(codes)}},
    }
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op
