"""FAQ hot reload for the running gateway: file watching, SIGHUP and the admin endpoint.

Loading YAML and building the classifier index take real CPU time, so they run in a thread executor
beside the current snapshot; `kb.holder.KnowledgeBaseHolder` swaps the new (kb, classifier) pair in
with one assignment, or keeps the last good one and records the errors (file:line) when the edit is
broken. The pipeline reads `snapshot()` once per message.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intents.matcher import Classifier
from intents.prediction import Thresholds
from kb.holder import KnowledgeBaseHolder
from kb.learned import LearnedFile
from kb.loader import expand_paths
from kb.model import KnowledgeBase

if TYPE_CHECKING:
    from gateway.metrics import Metrics

logger = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What one reload did: whether the files were valid, the version now served, and the errors."""

    ok: bool
    changed: bool
    version: str | None
    previous: str | None
    errors: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (admin API, audit log)."""
        return {
            "ok": self.ok,
            "changed": self.changed,
            "version": self.version,
            "previous": self.previous,
            "errors": list(self.errors),
        }


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp else None


class KbService:
    """The gateway's knowledge base: the current (kb, classifier) snapshot and how it is reloaded."""

    def __init__(
        self,
        paths: Sequence[Path | str],
        thresholds: Thresholds | None,
        *,
        build: Callable[[KnowledgeBase], Classifier] | None = None,
        metrics: Metrics | None = None,
        learned: Path | str | None = None,
    ) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self.thresholds = thresholds
        self.metrics = metrics
        self.build = build or (lambda kb: Classifier.build(kb, thresholds))
        self.holder: KnowledgeBaseHolder[Classifier] = KnowledgeBaseHolder(self.paths, build=self.build)
        self._lock = asyncio.Lock()
        # The admin FAQ editor's read-check-write of a file (gateway/http/admin_faq_api.py): one at a time.
        self.edit_lock = asyncio.Lock()
        self._fingerprint: Fingerprint | None = None
        # The learned-additions file (kb.learned_path): read with the paths once it exists.
        self.learned = LearnedFile(learned, self.paths) if learned is not None else None

    def load_paths(self) -> list[str]:
        """What a reload reads: the FAQ paths, plus the learned file once one was written."""
        return self.learned.paths() if self.learned is not None else list(self.paths)

    def snapshot(self) -> tuple[KnowledgeBase, Classifier] | None:
        """The current knowledge base and its classifier, always from the same load (None before one)."""
        current = self.holder.current
        if current is None or current.derived is None:
            return None
        return current.kb, current.derived

    @property
    def version(self) -> str | None:
        """The version of the knowledge base being served (None before one is loaded)."""
        current = self.holder.current
        return current.version if current else None

    async def reload(self, *, reason: str, force: bool = False) -> ReloadReport:
        """Load the files in a worker thread and swap them in if valid; never raises for bad files."""
        async with self._lock:  # one reload at a time: a slow old one must not finish after a newer one
            loop = asyncio.get_running_loop()
            previous = self.version
            fingerprint = await loop.run_in_executor(None, self._scan)
            # load_paths looks for the learned file: a stat, so in the worker thread too.
            result = await loop.run_in_executor(
                None, lambda: self.holder.reload(self.load_paths(), force=force)
            )
            self._fingerprint = fingerprint
        errors = tuple(str(p) for p in self.holder.last_errors)
        ok = result.kb is not None and not errors
        report = ReloadReport(ok, self.version != previous, self.version, previous, errors)
        if ok:
            logger.info(
                "kb reload (%s): version %s (%s), %d entries",
                reason,
                report.version,
                "changed" if report.changed else "unchanged",
                len(self.holder.current.kb.entries) if self.holder.current else 0,
            )
        else:
            # Every problem, each with file:line, so the person who edited the FAQ can fix it from the log.
            logger.error(
                "kb reload (%s) failed, still serving version %s:\n%s",
                reason,
                report.version,
                "\n".join(f"  {e}" for e in errors),
            )
        if self.metrics is not None:
            self.metrics.kb_reloads.labels("ok" if ok else "error").inc()
            current = self.holder.current
            self.metrics.kb_entries.set(len(current.kb.enabled_entries) if current else 0)
        return report

    def status(self) -> dict[str, Any]:
        """For /healthz and the admin API: what is served and whether the last reload worked."""
        current = self.holder.current
        return {
            "loaded": current is not None,
            "version": current.version if current else None,
            "entries": len(current.kb.enabled_entries) if current else 0,
            "loaded_at": _iso(current.kb.loaded_at) if current else None,
            "last_attempt_at": _iso(self.holder.last_attempt_at),
            "healthy": self.holder.healthy,
            "errors": [str(p) for p in self.holder.last_errors],
            "paths": self.paths,
            "learned_path": os.fspath(self.learned.path) if self.learned is not None else None,
        }

    # --- watching ----------------------------------------------------------------------------------

    def _scan(self) -> Fingerprint:
        """(file, mtime_ns, size) of every FAQ file: cheap to poll, no watcher dependency needed."""
        files, _problems = expand_paths(self.load_paths())
        out: list[tuple[str, int, int]] = []
        for file in files:
            try:
                stat = os.stat(file)
            except OSError:
                out.append((file, -1, -1))
                continue
            out.append((file, stat.st_mtime_ns, stat.st_size))
        return tuple(out)

    async def changed(self) -> bool:
        """True when the FAQ files differ from what the last reload read."""
        fingerprint = await asyncio.get_running_loop().run_in_executor(None, self._scan)
        return fingerprint != self._fingerprint

    async def watch(self, interval_s: float) -> None:
        """Poll the files every interval and reload on change (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                if await self.changed():
                    await self.reload(reason="file change")
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("kb watcher: checking the FAQ files failed")
