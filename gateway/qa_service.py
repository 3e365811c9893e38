"""质检 rules in the running gateway: config/qa.yaml, hot reloaded, and the `block: true` check of a reply.

The rules are read in a worker thread; a broken edit keeps the last good rules and its `file:line`
problems are logged and shown by `GET /api/v1/qa/rules`. Scoring finished conversations is the job in
`gateway/jobs/qa_scoring.py`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field

from handoff.qa import check_draft
from kb.model import Problem
from kb.qa_rules import QaRules, load_qa_rules

logger = logging.getLogger(__name__)

__all__ = ["QaService", "blocked_reply"]


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


@dataclass(eq=False)
class QaService:
    """The current 质检 rules and their last load's problems."""

    path: str
    rules: QaRules | None = None
    problems: list[Problem] = field(default_factory=list)
    _mtime: float | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def reload(self, *, force: bool = False) -> bool:
        """Load the file again when it changed (or `force`); True when new rules are in use."""
        async with self._lock:
            mtime = await asyncio.to_thread(_mtime, self.path)
            if not force and mtime == self._mtime and self.rules is not None:
                return False
            self._mtime = mtime
            result = await asyncio.to_thread(load_qa_rules, self.path)
            self.problems = list(result.problems)
            if result.rules is None:
                for problem in result.problems:
                    logger.error("qa rules: %s", problem)
                if self.rules is not None:
                    logger.error("qa rules: keeping the last good rules (version %s)", self.rules.version)
                return False
            changed = self.rules is None or self.rules.version != result.rules.version
            self.rules = result.rules
            if changed:
                logger.info(
                    "qa rules loaded: version=%s rules=%d", result.rules.version, len(result.rules.rules)
                )
            return changed

    def status(self) -> dict[str, object]:
        """For the API: the file, the version in use and the problems of the last load."""
        return {
            "path": self.path,
            "version": self.rules.version if self.rules else None,
            "rules": [
                {
                    "id": r.id,
                    "name": r.name,
                    "type": r.type,
                    "weight": r.weight,
                    "block": r.block,
                    "flag": r.flag,
                    "suggestion": r.suggestion,
                }
                for r in (self.rules.rules if self.rules else ())
            ],
            "max_score": self.rules.max_score if self.rules else None,
            "flag_below": self.rules.flag_below if self.rules else None,
            "problems": [str(p) for p in self.problems],
        }


def blocked_reply(qa: QaService | None, text: str) -> dict[str, object] | None:
    """The 422 body when `text` hits a `block: true` rule (the console checks drafts, this enforces)."""
    if qa is None or qa.rules is None:
        return None
    hits = [h for h in check_draft(text, qa.rules).hits if h.block]
    if not hits:
        return None
    names = "、".join(dict.fromkeys(h.rule_name for h in hits))
    return {
        "error": f"回复包含禁止发送的内容（{names}），请修改后再发送",
        "hits": [h.as_dict() for h in hits],
    }
