"""Hot reload that keeps the last good knowledge base: a broken FAQ edit never takes the bot down."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from kb.loader import LoadResult, PathArg, load_kb
from kb.model import KnowledgeBase, Problem

__all__ = ["KnowledgeBaseHolder", "Snapshot"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Snapshot(Generic[T]):
    """A knowledge base and what was built from it (e.g. the classifier index), always from the same load."""

    kb: KnowledgeBase
    derived: T | None
    version: str


class KnowledgeBaseHolder(Generic[T]):
    """Holds the current `Snapshot`; `reload()` swaps in a new one only when the files load cleanly.

    Readers take `holder.current` once per message and use that snapshot throughout, so a reload in
    the middle of a message never mixes an old kb with a new index. The swap is one attribute
    assignment, atomic under the GIL; reloads themselves are serialised by a lock so a slow older
    load cannot overwrite a newer one. `reload` reads files and may build an index: from async code,
    run it in an executor.
    """

    def __init__(
        self,
        paths: PathArg | Iterable[PathArg] | None = None,
        build: Callable[[KnowledgeBase], T] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._paths = _as_list(paths) if paths is not None else None
        self._build = build
        self._clock = clock
        self._lock = threading.Lock()
        self._current: Snapshot[T] | None = None
        self.last_errors: tuple[Problem, ...] = ()
        self.last_attempt_at: float | None = None
        self.last_success_at: float | None = None

    @property
    def current(self) -> Snapshot[T] | None:
        """The last good snapshot, or None before the first successful load."""
        return self._current

    @property
    def healthy(self) -> bool:
        """True when a snapshot is loaded and the latest reload attempt succeeded."""
        return self._current is not None and not self.last_errors

    def reload(self, paths: PathArg | Iterable[PathArg] | None = None, *, force: bool = False) -> LoadResult:
        """Load the FAQ files (default: the paths given before) and swap them in if they are valid.

        An unchanged version keeps the current snapshot (no index rebuild) unless `force` is set.
        """
        with self._lock:
            if paths is not None:
                self._paths = _as_list(paths)
            if self._paths is None:
                raise ValueError("KnowledgeBaseHolder.reload needs FAQ paths (none were given before)")
            self.last_attempt_at = self._clock()
            result = load_kb(self._paths)
            if result.kb is None:
                self._fail(result.problems)
                return result
            old = self._current
            if old is not None and old.version == result.kb.version and not force:
                self.last_errors = ()
                self.last_success_at = self.last_attempt_at
                return result
            try:
                self._install(result.kb)
            except Exception as exc:  # a build bug must not take down the last good snapshot
                logger.exception("kb.build_failed", extra={"kb_version": result.kb.version})
                problem = Problem(
                    result.kb.sources[0] if result.kb.sources else "<kb>",
                    1,
                    f"building from knowledge base {result.kb.version} failed: {type(exc).__name__}: {exc}",
                )
                self._fail([problem])
                return LoadResult(None, [problem])
            logger.info(
                "kb.reloaded",
                extra={
                    "kb_version": result.kb.version,
                    "kb_entries": len(result.kb.entries),
                    "kb_previous": old.version if old else None,
                },
            )
            return result

    def install(self, kb: KnowledgeBase) -> Snapshot[T]:
        """Swap in an already-built knowledge base (tests, admin tools); runs `build` like a reload."""
        with self._lock:
            self.last_attempt_at = self._clock()
            return self._install(kb)

    def _install(self, kb: KnowledgeBase) -> Snapshot[T]:
        # Build beside the current snapshot, then publish kb and derived together in one assignment.
        derived = self._build(kb) if self._build is not None else None
        snapshot = Snapshot(kb, derived, kb.version)
        self._current = snapshot
        self.last_errors = ()
        self.last_success_at = self.last_attempt_at
        return snapshot

    def _fail(self, problems: list[Problem]) -> None:
        self.last_errors = tuple(problems)
        logger.warning(
            "kb.reload_failed",
            extra={
                "kb_errors": len(problems),
                "kb_first_error": str(problems[0]) if problems else None,
                "kb_kept": self._current.version if self._current else None,
            },
        )


def _as_list(paths: PathArg | Iterable[PathArg]) -> list[PathArg]:
    if isinstance(paths, str | os.PathLike):
        return [paths]
    return list(paths)
