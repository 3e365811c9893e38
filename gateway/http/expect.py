"""Every route answers `Expect: 100-continue` by its own body limit (gateway.http.bodies.expect_within):
server.max_body_bytes, uploads.max_bytes plus the multipart framing on the upload routes, or a route's
own lower cap (`body_capped`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from gateway.http.bodies import expect_within
from gateway.keys import RUNTIME
from gateway.media.upload_body import upload_body_limit


def body_limit(request: web.Request) -> int:
    return int(request.app[RUNTIME].settings.server.max_body_bytes)


def upload_limit(request: web.Request) -> int:
    return upload_body_limit(int(request.app[RUNTIME].settings.uploads.max_bytes))


expect_body = expect_within(body_limit)
expect_upload = expect_within(upload_limit)


def capped_limit(cap: int) -> Callable[[web.Request], int]:
    """A route's own body cap, never above server.max_body_bytes (which README promises for every route)."""

    def limit(request: web.Request) -> int:
        return min(cap, body_limit(request))

    return limit


def body_capped(
    limit: Callable[[web.Request], int], defs: Iterable[web.RouteDef]
) -> list[web.AbstractRouteDef]:
    """Routes that read their bodies with `limit` (`capped_limit`): they answer Expect by it too (a client
    that asks first is refused exactly where one that does not would be)."""
    expect = expect_within(limit)
    return [web.RouteDef(d.method, d.path, d.handler, {**d.kwargs, "expect_handler": expect}) for d in defs]


def upload_route(method: str, path: str, handler: Any) -> web.RouteDef:
    """A route whose body is a file upload."""
    return web.route(method, path, handler, expect_handler=expect_upload)


def add_routes(app: web.Application, defs: Iterable[web.AbstractRouteDef]) -> None:
    """Register routes; those without an expect handler of their own get `expect_body`."""
    guarded: list[web.AbstractRouteDef] = []
    for route in defs:
        if isinstance(route, web.RouteDef) and "expect_handler" not in route.kwargs:
            route = web.RouteDef(
                route.method, route.path, route.handler, {**route.kwargs, "expect_handler": expect_body}
            )
        guarded.append(route)
    app.router.add_routes(guarded)
