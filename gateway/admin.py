"""The admin API (`/admin/api/…`): bearer-token protected views of the outbox and the knowledge base."""

from __future__ import annotations

import hmac
import json

from aiohttp import web

from gateway.bodies import http_error
from gateway.runtime import RUNTIME, Runtime
from gateway.storage import OUTBOX_STATUSES

MAX_LIST = 500


def admin_routes() -> list[web.AbstractRouteDef]:
    """Routes of the admin API."""
    return [
        web.get("/admin/api/outbox", list_outbox),
        web.get("/admin/api/kb", kb_status),
        web.post("/admin/api/kb/reload", kb_reload),
    ]


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def require_admin(request: web.Request) -> str:
    """Check `Authorization: Bearer <admin.token>`; returns who (for the audit log)."""
    token = _runtime(request).settings.admin.token
    if token is None:
        raise http_error(web.HTTPForbidden, "the admin API is disabled: set admin.token in the config")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise http_error(
            web.HTTPUnauthorized, "missing bearer token", headers={"WWW-Authenticate": 'Bearer realm="kefu"'}
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise http_error(web.HTTPForbidden, "wrong admin token")
    return "admin"


async def list_outbox(request: web.Request) -> web.Response:
    """GET /admin/api/outbox?status=&limit= — outbox rows, newest first."""
    require_admin(request)
    status = request.query.get("status") or None
    if status is not None and status not in OUTBOX_STATUSES:
        raise http_error(web.HTTPBadRequest, f"status must be one of {', '.join(OUTBOX_STATUSES)}")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise http_error(web.HTTPBadRequest, "limit must be an integer") from None
    limit = max(1, min(limit, MAX_LIST))
    store = _runtime(request).store
    rows = await store.list_outbox(status, limit=limit)
    counts = await store.outbox_counts()
    return web.json_response({"counts": counts, "items": [r.as_json() for r in rows]}, dumps=_dumps)


async def kb_status(request: web.Request) -> web.Response:
    """GET /admin/api/kb — the served version, entry count and the last reload's errors (file:line)."""
    require_admin(request)
    return web.json_response(_runtime(request).kb.status(), dumps=_dumps)


async def kb_reload(request: web.Request) -> web.Response:
    """POST /admin/api/kb/reload — reload the FAQ now; 422 with the errors when the files are broken."""
    who = require_admin(request)
    runtime = _runtime(request)
    report = await runtime.kb.reload(reason="admin API", force=request.query.get("force") == "1")
    await runtime.store.audit("kb.reload", who, report.as_json())
    body = {**report.as_json(), "kb": runtime.kb.status()}
    return web.json_response(body, status=200 if report.ok else 422, dumps=_dumps)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
