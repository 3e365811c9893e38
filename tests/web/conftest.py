"""Browser-test fixtures: a real gateway on 127.0.0.1 (SQLite, the test FAQ) and Debian's chromium.

The gateway runs in the test's own event loop (AppRunner + TCPSite on a free port); Playwright's async
API drives the browser in the same loop, so nothing blocks it. Without /usr/bin/chromium (or the
playwright package) the browser tests skip with the reason — except under KEFU_REQUIRE_SERVICES=1 (CI),
where they fail. `scripts/ensure_chromium.sh` installs chromium and a CJK font.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.keys import RUNTIME
from gateway.runtime import Runtime
from gateway.settings import settings_from_mapping
from handoff.agents import Role, new_token
from tests.conftest import ADMIN_TOKEN, TEST_FAQ, deep_merge, services_required

EXPECT_TIMEOUT_MS = 10_000
CHROMIUM = os.environ.get("KEFU_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
GROUPS = [
    {"name": "售前", "categories": ["售前", "支付", "优惠"]},
    {
        "name": "售后",
        "categories": ["售后", "物流", "订单", "发票"],
        "intents": ["complaint"],
        "priority": "high",
    },
]


def _unavailable(reason: str) -> None:
    if services_required():
        pytest.fail(f"browser tests required (KEFU_REQUIRE_SERVICES=1) but {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason} (run scripts/ensure_chromium.sh)")


@dataclass
class Gateway:
    """A running gateway: its base URL and runtime."""

    url: str
    runtime: Runtime

    async def add_agent(
        self, name: str, groups: tuple[str, ...] = ("售前", "售后"), role: Role = Role.AGENT
    ) -> str:
        """Create an agent; returns their plain API token."""
        plain, hashed = new_token()
        assert self.runtime.handoff is not None
        await self.runtime.handoff.db.add_agent(
            name, role=role, groups=groups, max_chats=5, token_hash=hashed
        )
        return plain


@pytest.fixture
def web_settings(tmp_path: Path) -> Callable[..., Any]:
    """Settings for a browser test: SQLite in tmp, a copy of the test FAQ, manual assignment."""
    faq = tmp_path / "faq"
    shutil.copytree(TEST_FAQ, faq)

    def make(**sections: Any) -> Any:
        base: dict[str, Any] = {
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'db' / 'kefu.db'}"},
            "kb": {"paths": [str(faq)], "watch": False},
            "outbox": {"poll_interval_s": 0.05, "base_delay_s": 0.02, "max_delay_s": 0.1},
            "admin": {"token": ADMIN_TOKEN},
            "channels": {"web": {"enabled": True}},
            "matcher": {"semantic": {"model": "none"}},  # lexical, as in tests/conftest.py
            "handoff": {
                "groups": GROUPS,
                "default_group": "售前",
                "assignment": "manual",
                "job_interval_s": 0.5,
            },
        }
        return settings_from_mapping(deep_merge(base, sections))

    return make


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` as a real HTTP server on 127.0.0.1 (a free port), in this test's event loop: its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running(settings: Any) -> AsyncIterator[Gateway]:
    """The gateway made from `settings`, serving (see `serving`)."""
    app = create_app(settings)
    async with serving(app) as url:
        yield Gateway(url, app[RUNTIME])


@pytest.fixture
async def gateway(web_settings: Callable[..., Any]) -> AsyncIterator[Gateway]:
    """The gateway with the default browser-test settings."""
    async with running(web_settings()) as gateway:
        yield gateway


@pytest.fixture
async def serve_page() -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """Serve an HTML page at / of a server of its own (another origin, as a shop's site is): its URL."""
    async with contextlib.AsyncExitStack() as servers:

        async def serve(html: str) -> str:
            async def page(request: web.Request) -> web.Response:
                return web.Response(text=html, content_type="text/html", charset="utf-8")

            app = web.Application()
            app.router.add_get("/", page)
            return await servers.enter_async_context(serving(app)) + "/"

        yield serve


@dataclass
class Guard:
    """Records what the pages tried that they must not: requests off 127.0.0.1, JS errors."""

    blocked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.blocked, f"pages tried to reach the network: {self.blocked}"
        assert not self.errors, f"errors in the pages: {self.errors}"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Debian chromium through Playwright's async API (skip/fail when absent)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} not found")
    async with async_playwright() as p:
        instance = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture
def expect(browser: Any) -> Any:
    """Playwright's `expect` (imported only once the browser fixture found playwright and chromium)."""
    from playwright.async_api import expect as playwright_expect

    playwright_expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    return playwright_expect


@pytest.fixture
def guard() -> Guard:
    """What the pages did wrong; checked at the end of a test."""
    return Guard()


@pytest.fixture
def new_context(browser: Any, guard: Guard) -> Callable[..., Any]:
    """A fresh browser context (its own storage) that blocks every request off 127.0.0.1."""

    async def make(**options: Any) -> Any:
        options.setdefault("locale", "zh-CN")
        options.setdefault("viewport", {"width": 1000, "height": 700})
        context = await browser.new_context(**options)

        async def route(route: Any) -> None:
            url = route.request.url
            host = urlsplit(url).hostname
            if url.startswith(("data:", "blob:", "about:")) or host == "127.0.0.1":
                await route.continue_()
            else:
                guard.blocked.append(url)
                await route.abort()

        await context.route("**/*", route)
        return context

    return make


def watch(page: Any, guard: Guard) -> Any:
    """Collect a page's uncaught errors and console errors (CSP violations show up there)."""
    page.on("pageerror", lambda exc: guard.errors.append(f"{page.url}: {exc}"))
    page.on(
        "response",
        lambda resp: guard.errors.append(f"{resp.status} {resp.url}") if resp.status >= 400 else None,
    )
    page.on(
        "console",
        lambda msg: guard.errors.append(f"{page.url}: {msg.text}") if msg.type == "error" else None,
    )
    return page


async def sign_in(page: Any, gateway: Gateway, token: str) -> None:
    """Open the agent console and sign in with `token` (Enter in the token field)."""
    await page.goto(gateway.url + "/agent")
    await page.get_by_label("客服令牌").fill(token)
    await page.get_by_label("客服令牌").press("Enter")


async def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    """Save a PNG under artifacts/screenshots/ (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
