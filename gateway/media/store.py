"""Where uploaded and fetched files are kept: the `MediaStore` interface and its local-directory form.

An S3-compatible store can implement the same three methods later; callers only see keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

KEY_BYTES = 16  # 128 random bits: a key cannot be guessed, and it is never a path
SECRET_FILE = ".url-key"


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What the store knows about one file (kept beside it)."""

    key: str
    mime: str
    name: str
    size: int
    owner: str  # who uploaded it: a web visitor's conversation key, `agent:{id}`, or a channel's fetch


class MediaStore(Protocol):
    """Files by key; keys are made by the store."""

    async def put(self, data: bytes, *, mime: str, name: str, owner: str) -> StoredFile:
        """Keep the bytes; returns the new key with the file's facts."""
        ...

    async def info(self, key: str) -> StoredFile | None:
        """The facts of a stored file, or None."""
        ...

    async def read(self, key: str) -> bytes | None:
        """The bytes of a stored file, or None."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove a stored file (the retention purge); False when there was none."""
        ...

    async def older_than(self, cutoff: float, limit: int) -> list[str]:
        """Keys of files stored before `cutoff` (unix seconds), oldest first, at most `limit`."""
        ...


def valid_key(key: str) -> bool:
    """A key as the stores make it (hex of KEY_BYTES): anything else is refused before any file access."""
    return len(key) == KEY_BYTES * 2 and all(c in "0123456789abcdef" for c in key)


class LocalMediaStore:
    """Files in a directory: `{dir}/{key[:2]}/{key}` and its facts in `{key}.json` (file I/O off the loop)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / key

    async def put(self, data: bytes, *, mime: str, name: str, owner: str) -> StoredFile:
        key = secrets.token_hex(KEY_BYTES)
        stored = StoredFile(key=key, mime=mime, name=name, size=len(data), owner=owner)
        await asyncio.to_thread(self._write, stored, data)
        return stored

    def _write(self, stored: StoredFile, data: bytes) -> None:
        path = self._path(stored.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        os.replace(partial, path)  # never a half-written file under its key
        meta = json.dumps(asdict(stored), ensure_ascii=False)
        path.with_suffix(".json").write_text(meta, encoding="utf-8")

    async def info(self, key: str) -> StoredFile | None:
        if not valid_key(key):
            return None
        return await asyncio.to_thread(self._info, key)

    def _info(self, key: str) -> StoredFile | None:
        try:
            data = json.loads(self._path(key).with_suffix(".json").read_text(encoding="utf-8"))
            return StoredFile(**data)
        except (OSError, ValueError, TypeError):
            return None

    async def read(self, key: str) -> bytes | None:
        if not valid_key(key):
            return None
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except OSError:
            return None

    async def delete(self, key: str) -> bool:
        if not valid_key(key):
            return False
        path = self._path(key)
        return await asyncio.to_thread(_remove, (path, path.with_suffix(".json")))

    async def older_than(self, cutoff: float, limit: int) -> list[str]:
        return await asyncio.to_thread(self._older_than, cutoff, limit)

    def _older_than(self, cutoff: float, limit: int) -> list[str]:
        found: list[tuple[float, str]] = []
        try:
            folders = [d for d in self.directory.iterdir() if d.is_dir() and len(d.name) == 2]
        except FileNotFoundError:
            return []
        for folder in folders:
            for meta in folder.glob("*.json"):
                try:
                    stored_at = meta.stat().st_mtime
                except FileNotFoundError:  # deleted meanwhile
                    continue
                if stored_at < cutoff and valid_key(meta.stem):
                    found.append((stored_at, meta.stem))
        found.sort()
        return [key for _, key in found[:limit]]


def _remove(paths: tuple[Path, ...]) -> bool:
    found = False
    for path in paths:
        try:
            path.unlink()
            found = True
        except FileNotFoundError:
            pass
    return found


def read_secret(directory: Path) -> bytes | None:
    """The signing key kept in `{directory}/.url-key`, if there is one."""
    try:
        return bytes.fromhex((directory / SECRET_FILE).read_text(encoding="ascii").strip()) or None
    except (OSError, ValueError):
        return None


def keep_secret(directory: Path, key: bytes | None) -> bytes | None:
    """Keep `key` in `{directory}/.url-key` (owner-only); a key another process kept first wins."""
    directory.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: of two processes starting together, the first one's key is kept
        fd = os.open(directory / SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret(directory) or key
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write((key or b"").hex())
    return key
