"""The deployment's starter canned replies (`handoff.canned_file`), imported once into an empty table.

Once imported, the table is the source: replies are managed in the console and the API, so a reply an
admin deleted does not come back at the next start.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from handoff.canned import CannedReply, validate_canned

if TYPE_CHECKING:
    from gateway.handoff_service import HandoffService

logger = logging.getLogger(__name__)


class CannedFileError(ValueError):
    """The canned-reply file cannot be used; the message names the file and the entry."""


def read_canned_file(path: str | Path) -> list[CannedReply]:
    """The replies of a `canned: [{title, text, group}]` file, each checked like one added in the API."""
    try:
        data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CannedFileError(f"{path}: {exc}") from None
    items = data.get("canned") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise CannedFileError(f"{path}: expected `canned:` with a list of {{title, text, group}}")
    replies = []
    for n, item in enumerate(items, 1):
        where = f"{path}: canned[{n}]"
        if not isinstance(item, dict) or not isinstance(item.get("title"), str) or not item["title"].strip():
            raise CannedFileError(f"{where}: needs a title")
        text, group = item.get("text"), item.get("group")
        if not isinstance(text, str) or (problems := validate_canned(text)):
            raise CannedFileError(
                f"{where} ({item['title']}): " + "; ".join(problems if text else ["no text"])
            )
        if group is not None and not isinstance(group, str):
            raise CannedFileError(f"{where} ({item['title']}): group must be a group name")
        replies.append(CannedReply(item["title"].strip(), text.strip(), group))
    return replies


async def seed_canned(service: HandoffService) -> int:
    """Import `handoff.canned_file` when no canned reply exists yet; how many were added."""
    path = service.settings.canned_file
    if not path or await service.db.canned():
        return 0
    try:
        replies = await asyncio.to_thread(read_canned_file, path)
    except CannedFileError as exc:
        logger.error("canned replies not imported: %s", exc)
        return 0
    for reply in replies:
        await service.db.add_canned(reply.title, reply.text, reply.group, None)
    logger.info("imported %d canned replies from %s", len(replies), path)
    return len(replies)
