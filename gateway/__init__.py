"""The aiohttp gateway: channel adapters, the pipeline, storage, outbox, settings and CLI.

Kept import-light on purpose: `handoff` uses `gateway.message` and must not pull in aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from gateway.settings import Settings


def create_app(settings: Settings) -> web.Application:
    """Build the gateway application (see gateway.app)."""
    from gateway.app import create_app as _create_app

    return _create_app(settings)
