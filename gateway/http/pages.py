"""The gateway's own web pages: the customer chat (`/chat`, embeddable with `/widget.js`), the agent
console (`/agent`), the admin dashboard (`/admin`) and the supervisor page (`/supervisor`: 排班, 绩效, 质检).

Plain HTML/CSS/JS shipped in `gateway/http/static/` (no build step, no CDN, no request leaves the
gateway). Every page is served with `charset=utf-8` and a Content-Security-Policy that allows only this
origin, so even a text that slipped past the pages' escaping could not load or run anything.

Also here: `GET /agent/api/conversations/{id}/suggestions`, the FAQ matcher's best answers for the
customer's last message (the console's one-click 推荐回答), authenticated like the agent API.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.channels.web.ws import install_web_chat
from gateway.handoff_events import HandoffError
from gateway.http.auth import require_agent
from gateway.http.bodies import http_error, path_id
from gateway.http.expect import add_routes
from gateway.keys import HANDOFF, RUNTIME
from handoff.canned import render_canned
from intents.prediction import Candidate

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/static/"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
    ".png": "image/png",
}
PAGES = {
    "/chat": "chat.html",
    "/agent": "agent.html",
    "/admin": "admin.html",
    "/supervisor": "supervisor.html",  # 排班, 绩效, 质检
}
MAX_SUGGESTIONS = 3
LOOK_BACK = 5  # customer lines searched for one the matcher can rank


def csp(request: web.Request, *, frameable: bool) -> str:
    """Only this origin (its WebSocket included); the chat may be framed by a shop, the consoles not."""
    host = request.host
    return "; ".join(
        [
            "default-src 'self'",
            f"connect-src 'self' ws://{host} wss://{host}",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'self'",
            "object-src 'none'",
            f"frame-ancestors {'*' if frameable else chr(39) + 'none' + chr(39)}",
        ]
    )


class Assets:
    """Static files read once, off the event loop, and kept in memory (a few tens of KB)."""

    def __init__(self, root: Path = STATIC) -> None:
        self.root = root
        self._cache: dict[str, bytes] = {}

    async def get(self, name: str) -> bytes | None:
        """The bytes of `name` under the static root, or None (never outside the root)."""
        if name in self._cache:
            return self._cache[name]
        path = (self.root / name).resolve()
        if self.root not in path.parents or path.suffix not in CONTENT_TYPES:
            return None
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            return None
        self._cache[name] = data
        return data


def page_routes(assets: Assets | None = None) -> list[web.AbstractRouteDef]:
    """GET /chat, /agent, /admin, /widget.js, /static/{name} and the console's suggestions endpoint."""
    assets = assets or Assets()

    async def page(request: web.Request) -> web.Response:
        name = PAGES[request.path]
        return await _serve(request, assets, name, frameable=request.path == "/chat")

    async def widget(request: web.Request) -> web.Response:
        response = await _serve(request, assets, "widget.js", frameable=False)
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    async def favicon(request: web.Request) -> web.Response:
        return await _serve(request, assets, "favicon.svg", frameable=False)

    async def static(request: web.Request) -> web.Response:
        return await _serve(request, assets, request.match_info["name"], frameable=False)

    routes: list[web.AbstractRouteDef] = [web.get(path, page) for path in PAGES]
    routes += [
        web.get("/widget.js", widget),
        web.get("/favicon.ico", favicon),
        web.get(STATIC_PREFIX + "{name:[A-Za-z0-9_.-]+}", static),
        web.get("/agent/api/conversations/{id}/suggestions", suggestions),
    ]
    return routes


async def _serve(request: web.Request, assets: Assets, name: str, *, frameable: bool) -> web.Response:
    data = await assets.get(name)
    if data is None:
        raise http_error(web.HTTPNotFound, f"no file {name}")
    suffix = Path(name).suffix
    headers = {
        "Content-Type": CONTENT_TYPES[suffix],
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": csp(request, frameable=frameable),
    }
    if suffix == ".html":
        headers["Cache-Control"] = "no-cache"
    response = web.Response(body=data, headers=headers)
    return response


async def suggestions(request: web.Request) -> web.Response:
    """The matcher's best FAQ answers for the customer's last message (agent token; 403/404 as the API)."""
    agent = await require_agent(request)
    service = request.app[HANDOFF]
    raw = str(path_id(request, "conversation"))
    try:
        await service.conversation_for(agent, raw)
    except HandoffError as exc:
        kind = web.HTTPForbidden if exc.status == 403 else web.HTTPNotFound
        raise http_error(kind, exc.message) from None
    runtime = request.app[RUNTIME]
    conv = await runtime.store.conversation(int(raw))
    messages = await runtime.store.messages(int(raw))
    inbound = [m for m in reversed(messages) if m.direction == "in" and m.kind == "text"][:LOOK_BACK]
    items: list[dict[str, object]] = []
    snapshot = runtime.kb.snapshot()
    last = inbound[0] if inbound else None
    if snapshot is not None:
        kb, classifier = snapshot

        def place() -> tuple[Any, tuple[Candidate, ...]]:
            """The customer's latest line the matcher can place ("转人工" or "在吗" are not questions)."""
            for message in inbound:
                found = classifier.rank(message.text, k=MAX_SUGGESTIONS)
                if found:
                    return message, found
            return last, ()

        # Ranking embeds the texts (semantic stage): a worker thread, never the event loop.
        last, ranked = await asyncio.to_thread(place)
        for candidate in ranked:
            entry = kb.get(candidate.entry_id)
            if entry is None or not entry.enabled:
                continue
            items.append(
                {
                    "entry_id": entry.id,
                    "question": entry.question,
                    # {service_hours} filled as the bot fills it: the agent sends what the customer reads.
                    "answer": render_canned(
                        entry.answer_for(conv.channel if conv else None), runtime.pipeline.placeholders
                    ),
                    "score": candidate.score,
                }
            )
    body = {"message": last.text if last else None, "suggestions": items}
    return web.json_response(body, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def install_web(app: web.Application) -> None:
    """Add the pages and the chat WebSocket to a gateway app (before it starts).

    Idempotent, so a test may call it on an app whose factory already did.
    """
    if any(getattr(r.resource, "canonical", None) == "/chat" for r in app.router.routes()):
        return
    runtime = app[RUNTIME]
    install_web_chat(runtime, lambda defs: add_routes(app, defs))
    add_routes(app, page_routes())
