"""The app's typed keys: what a handler or job may take from `request.app`, each stored once by create_app.

Handlers reach their dependencies through these keys instead of importing the modules that build them,
so the HTTP, channel and job modules import nothing of the app factory (no import cycles, no globals).
"""

from __future__ import annotations

from aiohttp import web

from gateway.handoff_service import HandoffService
from gateway.qa_service import QaService
from gateway.runtime import Runtime

__all__ = ["HANDOFF", "QA", "RUNTIME"]

# The shared services of one app (settings, store, kb, pipeline, outbox, adapters, metrics).
RUNTIME: web.AppKey[Runtime] = web.AppKey("kefu_runtime", Runtime)
# The human side: queue, agents, CSAT, the agent event log.
HANDOFF: web.AppKey[HandoffService] = web.AppKey("kefu_handoff", HandoffService)
# 质检: the rules of config/qa.yaml in use (reloaded by jobs/qa_scoring.py).
QA: web.AppKey[QaService] = web.AppKey("kefu_qa", QaService)
