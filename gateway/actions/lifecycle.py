"""Wiring custom actions into an app: the pipeline hook, and start/stop with the app (cleanup_ctx)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.actions.service import ActionService
from gateway.actions.settings import ActionsSettings
from gateway.keys import RUNTIME

if TYPE_CHECKING:
    from gateway.metrics import Metrics
    from gateway.pipeline import Pipeline
    from gateway.storage import Store

logger = logging.getLogger(__name__)


def install_actions(pipeline: Pipeline, settings: ActionsSettings, store: Store, metrics: Metrics) -> None:
    """Give the pipeline its action hook when `actions:` is configured (else nothing changes)."""
    if settings.enabled:
        pipeline.actions = ActionService(settings, store, metrics=metrics)


async def actions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the apps in `actions.serve_apps` (the demo shop API), then the runner; stop both on cleanup."""
    runtime = app[RUNTIME]
    runners: list[web.AppRunner] = []
    for target, port in runtime.settings.actions.serve_apps.items():
        module_name, _, factory = target.partition(":")
        module = importlib.import_module(module_name)
        served = web.AppRunner(getattr(module, factory or "create_app")())
        await served.setup()
        await web.TCPSite(served, "127.0.0.1", port).start()
        logger.info("actions: %s serving on http://127.0.0.1:%d", target, port)
        runners.append(served)
    service = runtime.pipeline.actions
    if isinstance(service, ActionService):
        await service.start()
    try:
        yield
    finally:
        if isinstance(service, ActionService):
            await service.close()
        for served in runners:
            await served.cleanup()
