"""The inbound spool: a message the database cannot take before the platform's deadline is kept on disk.

When storing a message outlasts its channel's reply deadline (a locked SQLite, a frozen PostgreSQL), the
delivery policy writes the message to one file here (write, fsync, rename, fsync the directory) and only
then acknowledges it. The store keeps going in the background; once it commits, the file is removed. If
it fails, or the process dies first, `Spool.replay` hands the file's message to the pipeline again — every
`RETRY_S` and at start-up — until the database takes it. Replaying is idempotent: the pipeline dedupes on
(channel, account, channel_msg_id), so a message stored before the crash is found, not stored twice, and its
replies' outbox rows are written if they are missing. Only messages with a platform id are spooled.

Files are named `<ns since epoch>-<key hash>.json`, so a replay keeps the order in which they arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.message import Attachment, Message
from gateway.storage import is_unavailable

logger = logging.getLogger(__name__)

RETRY_S = 2.0  # how often spooled messages are offered to the database again
MAX_REFUSALS = 100  # a message the database refuses for its content this often is set aside
_FIELDS = {f.name for f in fields(Message)}


def spool_key(message: Message) -> str:
    """The dedupe key of a message (its platform id within channel and account) as a file-name hash."""
    raw = f"{message.channel}\0{message.account}\0{message.channel_msg_id}"
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def encode(message: Message) -> bytes:
    """A message as one JSON document (values of `raw` that JSON cannot hold become strings)."""
    data = asdict(message)
    data["received_at"] = message.received_at.isoformat()
    data["attachment"] = message.attachment.as_json() if message.attachment else None
    return json.dumps(data, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")


def decode(blob: bytes) -> Message:
    data: dict[str, Any] = json.loads(blob.decode("utf-8", "surrogatepass"))
    data = {k: v for k, v in data.items() if k in _FIELDS}
    data["received_at"] = datetime.fromisoformat(data["received_at"])
    data["segments"] = tuple(data.get("segments") or ())
    data["attachment"] = Attachment.from_json(data.get("attachment"))
    return Message(**data)


class Spool:
    """One directory of spooled messages; `owned` are those whose first store is still running here."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files: dict[str, Path] = {}  # key → file, for messages spooled by this process
        self.owned: set[str] = set()
        self._refused: dict[str, int] = {}  # file name → refusals for its content (not outages)

    def has(self, message: Message) -> bool:
        return spool_key(message) in self._files

    async def write(self, message: Message) -> None:
        """Make the message durable (raises OSError when the disk refuses: the caller keeps waiting)."""
        key = spool_key(message)
        if key in self._files:
            return
        path = await asyncio.to_thread(self._write, key, encode(message))
        self._files[key] = path

    def _write(self, key: str, blob: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{time.time_ns():020d}-{key}.json"
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # The rename is durable only once the directory entry is.
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    async def remove(self, message: Message) -> None:
        """The message is in the database: forget its file."""
        key = spool_key(message)
        path = self._files.pop(key, None)
        self.owned.discard(key)
        if path is not None:
            await asyncio.to_thread(_unlink, path)

    def pending(self) -> list[Path]:
        """Spooled files not owned by a running store of this process, oldest first."""
        if not self.directory.is_dir():
            return []
        paths = sorted(self.directory.glob("*.json"))
        return [p for p in paths if p.stem.partition("-")[2] not in self.owned]

    async def replay(self, handle: Callable[[Message], Awaitable[Any]]) -> int:
        """Offer every pending file to `handle` in order; stops at the first failure. Returns how many went in."""
        done = 0
        for path in await asyncio.to_thread(self.pending):
            try:
                message = decode(await asyncio.to_thread(path.read_bytes))
            except FileNotFoundError:
                continue  # another process (same directory) took it
            except (OSError, ValueError, TypeError, KeyError) as exc:
                logger.error("spool: %s is unreadable (%s); moved aside", path.name, exc)
                await asyncio.to_thread(_set_aside, path)
                continue
            try:
                await handle(message)
            except Exception as exc:
                if is_unavailable(exc):
                    # The database is still unavailable: the file stays, the next round tries again.
                    logger.warning("spool: %s not stored yet (%s); retrying", path.name, exc)
                    return done
                # Refused for what it is (a bug, bad data): the others go on; this one is retried a
                # while, then set aside for an operator (the log names the file).
                tries = self._refused[path.name] = self._refused.get(path.name, 0) + 1
                if tries < MAX_REFUSALS:
                    logger.warning("spool: %s refused (%s); retrying", path.name, exc)
                else:
                    logger.error("spool: %s refused %d times (%s); set aside as .bad", path.name, tries, exc)
                    await asyncio.to_thread(_set_aside, path)
                continue
            self._files.pop(spool_key(message), None)
            await asyncio.to_thread(_unlink, path)
            done += 1
        return done

    async def run(self, handle: Callable[[Message], Awaitable[Any]], every_s: float = RETRY_S) -> None:
        """The replay loop: at start-up, then every `every_s` seconds (cancelled at shutdown)."""
        while True:
            try:
                if n := await self.replay(handle):
                    logger.info("spool: %d spooled message(s) stored", n)
            except Exception:
                logger.exception("spool: replay round failed")
            await asyncio.sleep(every_s)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _set_aside(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.rename(path.with_suffix(".bad"))


def spool_directory(configured: Path | None, database_url: str, sqlite_file: Path | None) -> Path | None:
    """Where the spool lives: the configured directory, else beside the SQLite file, else data/spool.

    None for an in-memory SQLite database (nothing there survives a restart anyway).
    """
    if configured is not None:
        return configured
    if database_url.startswith("sqlite"):
        return None if sqlite_file is None else sqlite_file.with_name(sqlite_file.name + "-spool")
    return Path("data/spool")
