"""The FAQ editor of the admin page (`/admin/api/faq…`): read an entry, check a change, save it.

- `GET /admin/api/faq` — the FAQ files (relative to the FAQ folder), each with its version and entries.
- `GET /admin/api/faq/entry?file=&id=` — one entry's fields and the file's version (its ETag).
- `POST /admin/api/faq/check` — the changed entry validated with `kefu kb check`'s rules on the whole
  candidate knowledge base (errors in Chinese, `file:line` relative to the FAQ folder), and how the test
  `questions` are answered now and would be answered after the change (the matcher built on the
  candidate, never swapped in).
- `PUT /admin/api/faq/entry` — save: 409 when the file changed since `version` was read, 422 with the
  problems when the change is invalid; else the file is rewritten with comments and order kept
  (`kb.editing`, ruamel.yaml) and the FAQ is reloaded at once, so the bot answers with it.
- `POST /admin/api/faq/entry` — a new entry appended to the file's `faqs:` (201), with the same checks,
  409 and 422; `POST /admin/api/faq/check` with `"new": true` checks one before it is created.

Only files the configured `kb.paths` load can be written (a name outside that list is a 404), so nothing
outside the FAQ folder is ever touched; writes go through a temporary file in the same folder and a rename,
with the version compared again under a file lock beside it (several `kefu serve` processes, one FAQ).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.http.auth import require_admin
from gateway.http.bodies import http_error, read_json
from gateway.keys import RUNTIME
from gateway.runtime import Runtime
from intents.matcher import Classifier
from intents.prediction import Prediction
from kb import editing
from kb.loader import expand_paths
from kb.model import KnowledgeBase, Problem
from kb.problems_zh import problem_zh
from kb.slots import trial_problems

MAX_QUESTIONS = 10
MAX_FIELD = 4000
MAX_LIST = 200


def faq_routes() -> list[web.AbstractRouteDef]:
    """Routes of the FAQ editor."""
    return [
        web.get("/admin/api/faq", list_files),
        web.get("/admin/api/faq/entry", get_entry),
        web.post("/admin/api/faq/check", check_entry),
        web.put("/admin/api/faq/entry", save_entry),
        web.post("/admin/api/faq/entry", create_entry),
    ]


@dataclass(frozen=True, slots=True)
class FaqFiles:
    """The FAQ folder and the files the configured paths load, by their name relative to it."""

    root: str
    files: dict[str, str]  # relative name (with /) → path

    @classmethod
    def of(cls, runtime: Runtime) -> FaqFiles:
        paths = runtime.kb.paths
        root = editing.faq_root(paths)
        files, _problems = expand_paths(paths)
        named = {os.path.relpath(os.path.abspath(f), root).replace(os.sep, "/"): f for f in files}
        return cls(root, named)

    def path(self, name: object) -> str:
        """The path of a listed file; 404 for any other name (so no path can escape the folder)."""
        if not isinstance(name, str) or name not in self.files:
            raise http_error(
                web.HTTPNotFound, f"没有这个 FAQ 文件：{name}" if isinstance(name, str) else "缺少 file"
            )
        return self.files[name]


def problems_json(problems: list[Problem], root: str) -> list[dict[str, Any]]:
    """Problems for the page: Chinese text, file relative to the FAQ folder, line, entry."""
    out = []
    for problem in problems:
        shown = editing.relative_problem(problem, root)
        out.append(
            {
                "file": shown.file,
                "line": shown.line,
                "entry_id": shown.entry_id,
                "severity": shown.severity,
                "text": problem_zh(shown),
            }
        )
    return out


async def kb_errors_zh(runtime: Runtime) -> list[str]:
    """The last failed reload's problems in Chinese, relative to the FAQ folder (dashboard)."""
    errors = list(runtime.kb.holder.last_errors)
    if not errors:
        return []

    def shown() -> list[str]:  # faq_root stats the paths and relpath reads the cwd: off the event loop
        return [p["text"] for p in problems_json(errors, editing.faq_root(runtime.kb.paths))]

    return await asyncio.to_thread(shown)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write_if_unchanged(path: str, version: str, text: str) -> str | None:
    """Write `text` if the file still has `version`; else the version it has now (nothing written).

    Compare and write happen under an exclusive lock on `.<file>.lock` beside the file (hidden, so the
    loader ignores it; the same lock `kb.learned` takes for learned.yaml), so two `kefu serve` processes,
    or the editor and 教机器人, cannot both write over one version; the new content goes to a temporary
    file in the same folder first, then one rename replaces the file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    with open(os.path.join(folder, f".{os.path.basename(path)}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = editing.file_version(_read(path))
        if now != version:
            return now
        fd, tmp = tempfile.mkstemp(prefix=".kefu-edit-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                out.write(text)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return None


async def _json_body(request: web.Request) -> dict[str, Any]:
    data = await read_json(request, request.app[RUNTIME].settings.server.max_body_bytes)
    if not isinstance(data, dict):
        raise http_error(web.HTTPBadRequest, "请求体必须是 JSON 对象")
    return data


def _changes(data: dict[str, Any]) -> dict[str, Any]:
    entry = data.get("entry")
    if not isinstance(entry, dict):
        raise http_error(web.HTTPBadRequest, 'entry 必须是对象，例如 {"answer": "…"}')
    unknown = sorted(set(entry) - set(editing.EDITABLE))
    if unknown:
        raise http_error(
            web.HTTPBadRequest, f"不能修改 {', '.join(unknown)}；可修改：{', '.join(editing.EDITABLE)}"
        )
    for key, value in entry.items():
        if isinstance(value, str) and len(value) > MAX_FIELD:
            raise http_error(web.HTTPBadRequest, f"{key} 超过 {MAX_FIELD} 个字符")
        if isinstance(value, list) and (
            len(value) > MAX_LIST or not all(isinstance(v, str) and len(v) <= MAX_FIELD for v in value)
        ):
            raise http_error(web.HTTPBadRequest, f"{key} 必须是不超过 {MAX_LIST} 项的文本列表")
    return entry


def _entry_id(data: dict[str, Any] | Any) -> str:
    value = data.get("id")
    if not isinstance(value, str) or not value.strip() or len(value) > 128:
        raise http_error(web.HTTPBadRequest, "id 必须是条目的编号")
    return value


def _questions(data: dict[str, Any]) -> list[str]:
    raw = data.get("questions", [])
    if not isinstance(raw, list) or not all(isinstance(q, str) and len(q) <= 200 for q in raw):
        raise http_error(
            web.HTTPBadRequest, f"questions 必须是文本列表（每条不超过 200 字，最多 {MAX_QUESTIONS} 条）"
        )
    return [q.strip() for q in raw if q.strip()][:MAX_QUESTIONS]


async def list_files(request: web.Request) -> web.Response:
    """GET /admin/api/faq — files, versions and entries (id, question, category, line)."""
    await require_admin(request)
    faq = await asyncio.to_thread(FaqFiles.of, request.app[RUNTIME])

    def listing() -> list[dict[str, Any]]:  # file reads and YAML parsing: off the event loop
        files = []
        for name, path in faq.files.items():
            text = _read(path)
            try:
                entries = editing.list_entries(text)
            except editing.EditError:
                entries = []  # a broken file is listed (its problems show on the dashboard), not editable
            files.append({"name": name, "version": editing.file_version(text), "entries": entries})
        return files

    files = await asyncio.to_thread(listing)
    return _json({"folder": os.path.basename(faq.root), "files": files})


async def get_entry(request: web.Request) -> web.Response:
    """GET /admin/api/faq/entry?file=&id= — one entry and the file's version."""
    await require_admin(request)
    faq = await asyncio.to_thread(FaqFiles.of, request.app[RUNTIME])
    name = request.query.get("file")
    path, entry_id = faq.path(name), _entry_id(request.query)
    text = await asyncio.to_thread(_read, path)
    try:
        entry = await asyncio.to_thread(editing.read_entry, text, entry_id)
    except editing.EditError as exc:
        raise http_error(web.HTTPNotFound, f"找不到条目：{exc}") from None
    return _json({"file": name, "version": editing.file_version(text), "entry": entry})


@dataclass(frozen=True, slots=True)
class Candidate:
    """The edited file's new text and the knowledge base it would give (None when invalid)."""

    name: str
    text: str
    kb: KnowledgeBase | None
    problems: list[dict[str, Any]]


def _is_new(data: dict[str, Any]) -> bool:
    new = data.get("new", False)
    if not isinstance(new, bool):
        raise http_error(web.HTTPBadRequest, "new 必须是 true 或 false")
    return new


def _missing(changes: dict[str, Any]) -> str | None:
    """What a new entry still lacks, in the editor's words (the schema would say it in terms of YAML)."""
    names = {"question": "标准问题", "answer": "答案"}
    missing = [name for key, name in names.items() if not str(changes.get(key) or "").strip()]
    return "新条目需要填写" + "和".join(missing) if missing else None


async def _candidate(
    runtime: Runtime, faq: FaqFiles, data: dict[str, Any], *, new: bool = False
) -> tuple[Candidate, str]:
    """(the candidate, the file's current text) for a check or save body; `new`: the entry is added."""
    name = data.get("file")
    path = faq.path(name)
    assert isinstance(name, str)
    current = await asyncio.to_thread(_read, path)
    entry_id, changes = _entry_id(data), _changes(data)
    missing = _missing(changes) if new else None
    if missing:
        raise http_error(web.HTTPUnprocessableEntity, missing)
    try:
        edit = editing.add_entry if new else editing.update_entry
        new_text = await asyncio.to_thread(edit, current, entry_id, changes)
    except editing.EditError as exc:
        verb = "无法新建" if new else "无法修改"
        raise http_error(web.HTTPUnprocessableEntity, f"{verb}：{exc}") from None
    # Everything a reload reads (the learned file too), so the check sees what the bot will; load_paths stats.
    result = await asyncio.to_thread(
        lambda: editing.candidate_kb(runtime.kb.load_paths(), faq.root, {name: new_text})
    )
    problems = list(result.problems)
    if result.kb is not None:  # the slot-regex trial of `kefu kb check`
        problems += await asyncio.to_thread(trial_problems, result.kb.slots)
    errors = [p for p in problems if p.severity == "error"]
    shown = await asyncio.to_thread(problems_json, problems, faq.root)  # relpath reads the cwd
    return Candidate(name, new_text, result.kb if not errors else None, shown), current


def _answer(prediction: Prediction, channel: str = "web") -> dict[str, Any]:
    entry = prediction.entry
    return {
        "decision": prediction.decision.value,
        "confidence": round(prediction.confidence, 3),
        "entry_id": entry.id if entry else None,
        "entry_question": entry.question if entry else None,
        "answer": entry.answer_for(channel) if entry and prediction.decision.value == "answer" else None,
        "suggestions": [a.question for a in prediction.alternatives[:3]]
        if prediction.decision.value == "suggest"
        else [],
    }


async def _preview(runtime: Runtime, kb: KnowledgeBase | None, questions: list[str]) -> list[dict[str, Any]]:
    """How each test question is answered now and by the candidate (built aside, never swapped in)."""
    if not questions:
        return []
    current = runtime.kb.snapshot()
    candidate: Classifier | None = await asyncio.to_thread(runtime.kb.build, kb) if kb is not None else None

    def run() -> list[dict[str, Any]]:
        out = []
        for q in questions:
            out.append(
                {
                    "question": q,
                    "now": _answer(current[1].classify(q, memo=False)) if current else None,
                    "after": _answer(candidate.classify(q, memo=False)) if candidate else None,
                }
            )
        return out

    return await asyncio.to_thread(run)


async def check_entry(request: web.Request) -> web.Response:
    """POST /admin/api/faq/check {file, id, entry, questions} — problems and the answer preview."""
    await require_admin(request)
    runtime = request.app[RUNTIME]
    data = await _json_body(request)
    questions = _questions(data)
    faq = await asyncio.to_thread(FaqFiles.of, runtime)
    new = _is_new(data)
    missing = _missing(_changes(data)) if new else None
    if missing:  # a check reports what is wrong (200); only a save refuses it (422)
        faq.path(data.get("file"))
        problem = {"file": data.get("file"), "line": None, "entry_id": _entry_id(data), "severity": "error"}
        return _json({"ok": False, "problems": [{**problem, "text": missing}], "preview": []})
    candidate, _current = await _candidate(runtime, faq, data, new=new)
    preview = await _preview(runtime, candidate.kb, questions)
    return _json({"ok": candidate.kb is not None, "problems": candidate.problems, "preview": preview})


async def save_entry(request: web.Request) -> web.Response:
    """PUT /admin/api/faq/entry {file, id, entry, version} — 409 on a concurrent edit, 422 when invalid."""
    return await _write_entry(request, new=False)


async def create_entry(request: web.Request) -> web.Response:
    """POST /admin/api/faq/entry {file, id, entry, version} — a new entry (201); 409 and 422 as for a save."""
    return await _write_entry(request, new=True)


async def _write_entry(request: web.Request, *, new: bool) -> web.Response:
    caller = await require_admin(request)
    runtime = request.app[RUNTIME]
    data = await _json_body(request)
    version = data.get("version") or request.headers.get("If-Match", "").strip('"') or None
    if not isinstance(version, str):
        raise http_error(web.HTTPBadRequest, "缺少 version（读取条目时返回的文件版本）")
    faq = await asyncio.to_thread(FaqFiles.of, runtime)
    async with runtime.kb.edit_lock:
        candidate, current = await _candidate(runtime, faq, data, new=new)
        if editing.file_version(current) != version:
            raise http_error(
                web.HTTPConflict,
                "该文件已被其他人修改，请重新打开条目后再编辑",
                fields={"version": editing.file_version(current)},
            )
        if candidate.kb is None:
            raise http_error(
                web.HTTPUnprocessableEntity, "条目有错误，未保存", fields={"problems": candidate.problems}
            )
        changed = await asyncio.to_thread(
            _write_if_unchanged, faq.path(candidate.name), version, candidate.text
        )
        if changed is not None:  # another process saved in between
            raise http_error(
                web.HTTPConflict, "该文件已被其他人修改，请重新打开条目后再编辑", fields={"version": changed}
            )
        report = await runtime.kb.reload(reason=f"FAQ editor ({caller.who})")
    details = {
        "file": candidate.name,
        "id": data.get("id"),
        "new": new,
        "fields": sorted(data["entry"]),
        **report.as_json(),
    }
    await runtime.store.audit("kb.add" if new else "kb.edit", caller.who, details)
    return _json(
        {
            "file": candidate.name,
            "id": data.get("id"),
            "version": editing.file_version(candidate.text),
            "reload": report.as_json(),
            "kb": runtime.kb.status(),
            "problems": candidate.problems,  # warnings only, if any
        },
        status=201 if new else 200,
    )


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))
