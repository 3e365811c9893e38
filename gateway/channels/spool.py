"""The inbound spool: a message the database cannot take before the platform's deadline is kept on disk.

When storing a message outlasts its channel's reply deadline (a locked SQLite, a frozen PostgreSQL), the
delivery policy writes the message to one file here (write, fsync, rename, fsync the directory) and only
then acknowledges it. The store keeps going in the background; once it commits, the file is removed. If
it fails, or the process dies first, `Spool.replay` hands the file's message to the pipeline again — every
`RETRY_S` and at start-up — until the database takes it. Replaying is idempotent: the pipeline dedupes on
(channel, account, channel_msg_id), so a message stored before the crash is found, not stored twice, and its
replies' outbox rows are written if they are missing. Only messages with a platform id are spooled.

Files are named `<ns since epoch>-<key hash>.json`, so a replay keeps the order in which they arrived
within each conversation; different conversations are replayed side by side (REPLAY_CONCURRENCY), so a
backlog left by a crash (slow custom actions in it) does not keep the last customer waiting for minutes.

A spooled message is not replayed while someone handles it. Across processes sharing the directory
(`--workers`), the file is locked (flock) by the process whose store runs, and by a replay while it
replays it: another replay leaves a locked file, and the rest of its conversation, for a later round.
Within a process, `inflight` holds the message's running task (a webhook's or a replay's): a replay leaves
such a message for later, and a platform retry joins a running replay instead of handling the message a
second time (a custom action would otherwise run twice). A retry that reaches another process while a
replay runs is not joined: there the message is deduplicated by its id once one of the two has stored it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.message import Attachment, Message
from gateway.storage import is_unavailable

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: no cross-process locks, one process per spool
    fcntl = None  # type: ignore[assignment]
# Turned off (and said once) on a filesystem that refuses flock (some network and FUSE mounts).
_LOCKING = [fcntl is not None]
# What `_replay_one` says besides 1 (stored) and 0 (refused or gone, go on): someone handles the message
# now, so its conversation waits for a later round (its order kept); None: the database is unavailable.
BUSY = -1

logger = logging.getLogger(__name__)

REPLAY_CONCURRENCY = 8  # conversations replayed at once (each one's messages in order)
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
        self._locks: dict[str, int] = {}  # key → the locked descriptor of its file while its store runs here
        self.owned: set[str] = set()
        # spool key → the task handling that message in this process now (a webhook's or a replay's).
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        self._refused: dict[str, int] = {}  # file name → refusals for its content (not outages)

    def has(self, message: Message) -> bool:
        return spool_key(message) in self._files

    async def write(self, message: Message) -> None:
        """Make the message durable (raises OSError when the disk refuses: the caller keeps waiting)."""
        key = spool_key(message)
        if key in self._files:
            return
        path, fd = await asyncio.to_thread(self._write, key, encode(message))
        if key in self._files:  # another request of the same message spooled it meanwhile: keep one file
            await asyncio.to_thread(_unlink, path)
            if fd is not None:
                os.close(fd)
            return
        self._files[key] = path
        if fd is not None:
            self._locks[key] = fd

    def _write(self, key: str, blob: bytes) -> tuple[Path, int | None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{time.time_ns():020d}-{key}.json"
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
            # Locked before it has its name: no other process's replay can take it while our store runs.
            held: int | None = os.dup(f.fileno())
            if _try_lock(held) is not True:
                os.close(held)
                held = None
        try:
            os.replace(tmp, path)
            # The rename is durable only once the directory entry is.
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            if held is not None:
                os.close(held)
            raise
        return path, held

    async def remove(self, message: Message) -> None:
        """The message is in the database: forget its file."""
        key = spool_key(message)
        path = self._files.pop(key, None)
        self.owned.discard(key)
        try:
            if path is not None:
                await asyncio.to_thread(_unlink, path)
        finally:
            self._unlock(key)

    def disown(self, message: Message) -> None:
        """This process's store of the message failed: its replay (here or in another process) takes it."""
        key = spool_key(message)
        self.owned.discard(key)
        self._unlock(key)

    def _unlock(self, key: str) -> None:
        fd = self._locks.pop(key, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases its lock

    def pending(self) -> list[Path]:
        """Spooled files not owned by a running store of this process, oldest first."""
        if not self.directory.is_dir():
            return []
        paths = sorted(self.directory.glob("*.json"))
        return [p for p in paths if p.stem.partition("-")[2] not in self.owned]

    async def replay(self, handle: Callable[[Message], Awaitable[Any]]) -> int:
        """Offer every pending file to `handle`: each conversation's in order, REPLAY_CONCURRENCY conversations
        at once; nothing more starts once the database is found unavailable. Returns how many went in."""
        by_conversation: dict[str, list[tuple[Path, Message]]] = {}
        for path in await asyncio.to_thread(self.pending):
            try:
                message = decode(await asyncio.to_thread(path.read_bytes))
            except FileNotFoundError:
                continue  # another process (same directory) took it
            except (OSError, ValueError, TypeError, KeyError) as exc:
                logger.error("spool: %s is unreadable (%s); moved aside", path.name, exc)
                await asyncio.to_thread(_set_aside, path)
                continue
            by_conversation.setdefault(message.conversation_key, []).append((path, message))
        unavailable = asyncio.Event()
        slots = asyncio.Semaphore(REPLAY_CONCURRENCY)
        done = 0

        async def conversation(items: Iterable[tuple[Path, Message]]) -> None:
            nonlocal done
            async with slots:
                for path, message in items:
                    if unavailable.is_set():
                        return
                    outcome = await self._replay_one(path, message, handle)
                    if outcome is None:
                        unavailable.set()
                        return
                    if outcome == BUSY:
                        return  # its later messages must not overtake it
                    done += outcome

        await asyncio.gather(*(conversation(items) for items in by_conversation.values()))
        return done

    async def _replay_one(
        self, path: Path, message: Message, handle: Callable[[Message], Awaitable[Any]]
    ) -> int | None:
        """1 when the message went in; 0 when it was refused (retried later) or is gone (stored by someone);
        BUSY when someone handles it now; None when the database is unavailable."""
        key = spool_key(message)
        if key in self.inflight:
            return BUSY
        fd = await asyncio.to_thread(_claim, path)
        if fd == _GONE:
            return 0
        if fd == _LOCKED:
            return BUSY  # another process stores or replays it now
        if key in self.inflight:  # a webhook took it up during the claim's thread hop
            os.close(fd)
            return BUSY
        task = asyncio.ensure_future(handle(message))
        self.inflight[key] = task
        try:
            await asyncio.shield(task)
            if self._files.get(key) == path:  # (a webhook that joined may have spooled its own file)
                del self._files[key]
            await asyncio.to_thread(_unlink, path)  # before the lock goes: nobody replays it again
            return 1
        except Exception as exc:
            if is_unavailable(exc):
                # The database is still unavailable: the file stays, the next round tries again.
                logger.warning("spool: %s not stored yet (%s); retrying", path.name, exc)
                return None
            # Refused for what it is (a bug, bad data): the others go on; this one is retried a
            # while, then set aside for an operator (the log names the file).
            tries = self._refused[path.name] = self._refused.get(path.name, 0) + 1
            if tries < MAX_REFUSALS:
                logger.warning("spool: %s refused (%s); retrying", path.name, exc)
            else:
                logger.error("spool: %s refused %d times (%s); set aside as .bad", path.name, tries, exc)
                await asyncio.to_thread(_set_aside, path)
            return 0
        except asyncio.CancelledError:
            task.cancel()  # shutting down: the file stays and is replayed at the next start
            raise
        finally:
            if self.inflight.get(key) is task:
                del self.inflight[key]
            os.close(fd)

    async def run(self, handle: Callable[[Message], Awaitable[Any]], every_s: float = RETRY_S) -> None:
        """The replay loop: at start-up, then every `every_s` seconds (cancelled at shutdown)."""
        while True:
            try:
                if n := await self.replay(handle):
                    logger.info("spool: %d spooled message(s) stored", n)
            except Exception:
                logger.exception("spool: replay round failed")
            await asyncio.sleep(every_s)


def _try_lock(fd: int) -> bool | None:
    """True: `fd` now holds an exclusive lock; False: another process holds one; None: no locking here."""
    if fcntl is None or not _LOCKING[0]:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:  # ENOLCK, EOPNOTSUPP…: this filesystem has no flock; go on without
        _LOCKING[0] = False
        logger.warning("spool: file locks unavailable in this directory (%s); one process per spool_dir", exc)
        return None
    return True


_GONE, _LOCKED = -1, -2  # what `_claim` says instead of a descriptor


def _claim(path: Path) -> int:
    """A descriptor of a spool file to replay it (locked where locks work), _GONE or _LOCKED."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return _GONE
    locked = _try_lock(fd)
    if locked is False:
        os.close(fd)
        return _LOCKED
    if locked and not os.path.exists(path):
        os.close(fd)  # its owner stored it and removed it between our open and our lock
        return _GONE
    return fd


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
