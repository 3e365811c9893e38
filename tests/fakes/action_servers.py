"""Action servers for tests: the real `python -m rasa_sdk` in a subprocess, and a misbehaving fake.

The real one serves tests/fixtures/actions_pkg, exactly as a shop would serve its own action package.
The fake speaks the same URL but answers 500, broken JSON, an off-shape body, or nothing in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
TEST_ACTIONS = "tests.fixtures.actions_pkg.actions"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def rasa_action_server(package: str = TEST_ACTIONS) -> Iterator[str]:
    """Run `python -m rasa_sdk --actions <package>` on a free port; yields its webhook URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "rasa_sdk", "--actions", package, "--port", str(port), "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"rasa_sdk exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("rasa_sdk did not come up within 60 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/webhook"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def broken_action_server() -> web.Application:
    """POST /webhook/<mode>: `500`, `html` (not JSON), `shape` (JSON, wrong shape), `slow` (no answer)."""

    async def webhook(request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        await request.json()
        if mode == "500":
            return web.json_response({"error": "boom"}, status=500)
        if mode == "html":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        if mode == "shape":
            return web.json_response({"events": "not a list", "responses": [1, 2]})
        await asyncio.sleep(30)
        return web.json_response({"events": [], "responses": []})

    async def actions(request: web.Request) -> web.Response:
        return web.json_response([{"name": "action_order_status"}])

    app = web.Application()
    app.router.add_post("/webhook/{mode}", webhook)
    app.router.add_get("/webhook/{mode}/actions", actions)
    return app
