"""Two ways to run a custom action, both through rasa-sdk: in this process, or on a Rasa action server.

`InProcessRunner` loads `actions.modules` with rasa-sdk's `ActionExecutor` and runs an action on the event
loop when its `run` is a coroutine, in a worker thread when it is plain (a sync action doing I/O must not
stall every other customer). `RemoteRunner` POSTs the same request to `actions.url` over one keep-alive
session. Both time out after `actions.timeout_s` and turn every failure into `ActionFailed`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import pkgutil
from typing import Any, Protocol

import aiohttp

from gateway.actions.protocol import ActionResponse, MalformedResponse, parse_response

logger = logging.getLogger(__name__)


class ActionFailed(Exception):
    """An action could not give an answer; `kind` is the metric label (down, timeout, http_5xx, ...)."""

    def __init__(self, action: str, kind: str, detail: str = "") -> None:
        super().__init__(f"action {action} failed: {kind}{': ' + detail if detail else ''}")
        self.action = action
        self.kind = kind
        self.detail = detail


class ActionRunner(Protocol):
    """Runs one action-server request and lists the actions it knows."""

    async def start(self) -> None:
        """Load modules / open the session (at app startup)."""
        ...

    async def close(self) -> None:
        """Release what `start` opened."""
        ...

    async def run(self, request: dict[str, Any]) -> ActionResponse:
        """The parsed response to one request; raises ActionFailed."""
        ...

    async def names(self) -> list[str]:
        """The action names this runner can run."""
        ...


class InProcessRunner:
    """rasa-sdk's ActionExecutor over `actions.modules`, inside the gateway process."""

    def __init__(self, modules: list[str], timeout_s: float) -> None:
        self.modules = list(modules)
        self.timeout_s = timeout_s
        self._executor: Any = None

    async def start(self) -> None:
        # Importing rasa-sdk and the action modules reads files: off the event loop.
        self._executor = await asyncio.to_thread(self._load)

    def _load(self) -> Any:
        # Lazily: a kefu without actions never pays for rasa-sdk's import.
        from rasa_sdk.executor import ActionExecutor
        from rasa_sdk.interfaces import Action
        from rasa_sdk.utils import all_subclasses

        for name in self.modules:
            _import_tree(name)
        executor = ActionExecutor()
        # rasa-sdk's register_package registers every Action subclass of the whole process (and exits the
        # process on an ImportError); kefu registers only the classes of the configured modules.
        for cls in all_subclasses(Action):
            if _inside(cls.__module__, self.modules) and not inspect.isabstract(cls):
                executor.register_action(cls)
        logger.info("actions: loaded %d actions from %s", len(executor.actions), ", ".join(self.modules))
        return executor

    async def close(self) -> None:
        self._executor = None

    async def names(self) -> list[str]:
        if self._executor is None:
            await self.start()
        return sorted(self._executor.actions)

    async def run(self, request: dict[str, Any]) -> ActionResponse:
        name = str(request.get("next_action"))
        if self._executor is None:
            await self.start()
        executor = self._executor
        run = executor.actions.get(name)
        if run is None:
            raise ActionFailed(name, "not_found", "no such action in actions.modules")
        try:
            if _runs_async(run):
                result = await asyncio.wait_for(executor.run(request), self.timeout_s)
            else:
                # A sync action (requests, a DB driver...) runs in a worker thread with a loop of its own.
                result = await asyncio.wait_for(
                    asyncio.to_thread(lambda: asyncio.run(executor.run(request))), self.timeout_s
                )
        except TimeoutError:
            raise ActionFailed(name, "timeout", f"no answer within {self.timeout_s:g} s") from None
        except Exception as exc:
            kind = "rejected" if type(exc).__name__ == "ActionExecutionRejection" else "exception"
            raise ActionFailed(name, kind, f"{type(exc).__name__}: {exc}") from exc
        body = result.model_dump() if hasattr(result, "model_dump") else result
        try:
            return parse_response(body)
        except MalformedResponse as exc:
            raise ActionFailed(name, "malformed", str(exc)) from None


def _import_tree(name: str) -> None:
    """Import a module, or a package with all its submodules; a clear error if it cannot be imported."""
    try:
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):
            for info in pkgutil.walk_packages(module.__path__, prefix=f"{name}."):
                importlib.import_module(info.name)
    except ImportError as exc:
        raise RuntimeError(f"actions.modules: cannot import {name!r}: {exc}") from exc


def _inside(module: str, names: list[str]) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in names)


def _runs_async(run: Any) -> bool:
    """True when the action's run, and a form validator's validate_/extract_ methods, are coroutines."""
    if not inspect.iscoroutinefunction(run):
        return False
    owner = getattr(run, "__self__", None)
    if owner is None:
        return True
    for attr in dir(type(owner)):
        if attr.startswith(("validate_", "extract_")) and attr not in ("validate_events",):
            method = getattr(owner, attr, None)
            if callable(method) and not inspect.iscoroutinefunction(method):
                return False
    return True


class RemoteRunner:
    """The Rasa action-server HTTP protocol: `POST actions.url`, `GET <base>/actions`."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def base(self) -> str:
        """The server's root (the webhook URL without its `/webhook`)."""
        return (
            self.url[: -len("/webhook")]
            if self.url.rstrip("/").endswith("/webhook")
            else self.url.rstrip("/")
        )

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            # One keep-alive pool for every call: no TCP handshake per customer message.
            connector = aiohttp.TCPConnector(limit=32, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def names(self) -> list[str]:
        await self.start()
        assert self._session is not None
        async with self._session.get(self.base.rstrip("/") + "/actions") as response:
            response.raise_for_status()
            body = await response.json(content_type=None)
        return sorted(str(item["name"]) for item in body if isinstance(item, dict) and "name" in item)

    async def run(self, request: dict[str, Any]) -> ActionResponse:
        name = str(request.get("next_action"))
        await self.start()
        assert self._session is not None
        try:
            async with self._session.post(self.url, json=request) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            raise ActionFailed(name, "timeout", f"no answer within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise ActionFailed(name, "down", type(exc).__name__) from None
        if status >= 500:
            raise ActionFailed(name, "http_5xx", f"HTTP {status}")
        if status == 404:
            raise ActionFailed(name, "not_found", "the action server does not know this action")
        if status == 400:
            raise ActionFailed(name, "rejected", "the action rejected the call (ActionExecutionRejection)")
        if status != 200:
            raise ActionFailed(name, "http_error", f"HTTP {status}")
        try:
            body = json.loads(raw)
            return parse_response(body)
        except (ValueError, MalformedResponse) as exc:
            raise ActionFailed(name, "malformed", str(exc)[:200]) from None


def runner_for(url: str | None, modules: list[str], timeout_s: float) -> ActionRunner | None:
    """The runner the settings ask for (None when actions are not configured)."""
    if url:
        return RemoteRunner(url, timeout_s)
    if modules:
        return InProcessRunner(modules, timeout_s)
    return None
