"""Edit FAQ YAML files in place: read or change one entry, keep every comment and the key order.

A round trip through ruamel.yaml (not PyYAML, which drops comments) so that an edit made in the admin
page is a small, reviewable git diff of the maintainer's own file. Pure functions over text; the caller
reads and writes the file (and checks its version, `file_version`, for concurrent edits). Reused by the
FAQ editor (`gateway/http/admin_faq_api.py`) and by tools that append learned entries.

`candidate_kb` loads the FAQ folder as it would be with some files replaced, with the same rules as
`kefu kb check` (`kb.loader.load_kb`), in a private temporary copy: the served files are never touched
until the caller decides to save.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from kb.loader import LoadResult, expand_paths, load_kb
from kb.model import Problem

__all__ = [
    "EDITABLE",
    "EditError",
    "add_entry",
    "candidate_kb",
    "display_name",
    "faq_root",
    "file_version",
    "list_entries",
    "read_entry",
    "relative_problem",
    "update_entry",
]

# What the editor may change; id stays (stored messages and reports refer to it), so do actions.
EDITABLE = ("question", "similar", "answer", "category", "keywords", "enabled")
_LISTS = ("similar", "keywords")


class EditError(ValueError):
    """The file cannot be edited as asked (unreadable YAML, no such entry, a bad field)."""


def _yaml() -> YAML:
    yaml = YAML()  # round-trip mode: comments, key order, flow lists and scalar styles survive
    yaml.width = 4096  # never re-wrap a maintainer's long answers
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the demo files' "  - id:" layout
    return yaml


def file_version(data: bytes | str) -> str:
    """A short content hash: the editor's version (ETag) of a file, to refuse concurrent edits."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:16]


def _load(text: str) -> CommentedMap:
    try:
        root = _yaml().load(text)
    except YAMLError as exc:
        raise EditError(f"invalid YAML: {exc}") from None
    if root is None:
        root = CommentedMap()
    if not isinstance(root, CommentedMap):
        raise EditError("the top level is not a mapping with faqs:")
    return root


def _faqs(root: CommentedMap) -> CommentedSeq:
    faqs = root.get("faqs")
    if faqs is None:
        faqs = root["faqs"] = CommentedSeq()
    if not isinstance(faqs, CommentedSeq):
        raise EditError("'faqs' is not a list of entries")
    return faqs


def _find(root: CommentedMap, entry_id: str) -> CommentedMap:
    for item in _faqs(root):
        if isinstance(item, CommentedMap) and str(item.get("id", "")).strip() == entry_id:
            return item
    raise EditError(f"no entry with id '{entry_id}'")


def _dump(root: CommentedMap) -> str:
    out = io.StringIO()
    _yaml().dump(root, out)
    return out.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)


def list_entries(text: str) -> list[dict[str, Any]]:
    """Every entry of a file: id, question, category and 1-based line (for the editor's list)."""
    root = _load(text)
    out = []
    for item in _faqs(root):
        if isinstance(item, CommentedMap) and "id" in item:
            out.append(
                {
                    "id": str(item["id"]),
                    "question": _plain(item.get("question")),
                    "category": _plain(item.get("category")),
                    "line": item.lc.line + 1,
                }
            )
    return out


def read_entry(text: str, entry_id: str) -> dict[str, Any]:
    """One entry's fields as plain JSON values (EditError when absent)."""
    item = _find(_load(text), entry_id)
    return {str(k): _plain(v) for k, v in item.items()}


def _styled(old: Any, new: str) -> Any:
    """The new text in the old scalar's block style (a folded `>-` answer stays folded)."""
    if isinstance(old, LiteralScalarString) or ("\n" in new and not isinstance(old, FoldedScalarString)):
        return LiteralScalarString(new)
    if isinstance(old, FoldedScalarString):
        return FoldedScalarString(new)
    return new


def _set_list(item: CommentedMap, key: str, values: Sequence[str]) -> None:
    old = item.get(key)
    if isinstance(old, CommentedSeq):
        # In place: the list keeps its flow/block style and the comments on its items' lines.
        del old[len(values) :]
        for i, value in enumerate(values):
            if i < len(old):
                old[i] = value
            else:
                old.append(value)
        return
    seq = CommentedSeq(values)
    if key == "keywords":
        seq.fa.set_flow_style()
    item[key] = seq


def _apply(item: CommentedMap, changes: Mapping[str, Any]) -> None:
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise EditError(f"cannot edit {', '.join(unknown)}; editable: {', '.join(EDITABLE)}")
    for key in EDITABLE:  # a fixed order, so a new key lands where a maintainer would put it
        if key not in changes:
            continue
        value = changes[key]
        if (value is None or value == "" or value == []) and key not in ("question", "answer"):
            item.pop(key, None)  # an emptied optional field goes away rather than staying as `key: ""`
            continue
        if key in _LISTS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise EditError(f"{key} must be a list of texts")
            _set_list(item, key, value)
        elif key == "enabled":
            if not isinstance(value, bool):
                raise EditError("enabled must be true or false")
            if value:
                item.pop("enabled", None)  # the default: keep files free of `enabled: true`
            else:
                item["enabled"] = False
        elif key == "answer" and isinstance(item.get("answer"), CommentedMap):
            if not isinstance(value, str):
                raise EditError("answer must be a text")
            item["answer"]["default"] = _styled(item["answer"].get("default"), value)
        else:
            if not isinstance(value, str):
                raise EditError(f"{key} must be a text")
            item[key] = _styled(item.get(key), value)


def update_entry(text: str, entry_id: str, changes: Mapping[str, Any]) -> str:
    """The file's text with one entry's fields changed; everything else (comments too) as it was."""
    root = _load(text)
    _apply(_find(root, entry_id), changes)
    return _dump(root)


def add_entry(text: str, entry_id: str, fields: Mapping[str, Any]) -> str:
    """The file's text with a new entry appended to `faqs:` (EditError when the id is taken)."""
    root = _load(text)
    faqs = _faqs(root)
    if any(isinstance(i, CommentedMap) and str(i.get("id", "")) == entry_id for i in faqs):
        raise EditError(f"id '{entry_id}' is already used in this file")
    item = CommentedMap([("id", entry_id)])
    _apply(item, fields)
    faqs.append(item)
    return _dump(root)


# --- the candidate knowledge base ---------------------------------------------------------------------


def faq_root(paths: Iterable[str]) -> str:
    """The FAQ folder: the common directory of the configured paths (files count by their directory)."""
    dirs = [os.path.abspath(p if os.path.isdir(p) else os.path.dirname(p) or ".") for p in paths]
    if not dirs:
        raise EditError("no FAQ paths configured")
    return os.path.commonpath(dirs)


def relative_problem(problem: Problem, root: str) -> Problem:
    """The problem with its file shown relative to the FAQ folder (no server paths on a page)."""
    file = problem.file
    if os.path.isabs(file):
        rel = os.path.relpath(file, root)
        file = rel if not rel.startswith("..") else os.path.basename(file)
    # Messages quote other places too ("already used at /srv/kefu/config/faq/a.yaml:3").
    message = problem.message.replace(root.rstrip(os.sep) + os.sep, "")
    return replace(problem, file=file.replace(os.sep, "/"), message=message)


def display_name(path: str, root: str) -> str:
    """A file's name for the pages: relative to the FAQ folder, or its base name when outside it."""
    rel = os.path.relpath(os.path.abspath(path), root)
    return (os.path.basename(path) if rel.startswith("..") else rel).replace(os.sep, "/")


def candidate_kb(paths: Sequence[str], root: str, replaced: Mapping[str, str]) -> LoadResult:
    """Load the FAQ as it would be with `replaced` (name relative to `root` → text).

    A private copy under a temporary directory (each configured path in its own numbered folder, so a
    path outside `root` never leads a copy outside the directory) keeps the files, their order and names
    as the loader sees them, so problems and the kb version come out as they will after the save.
    Problems name files by `display_name`.
    """
    files, problems = expand_paths(paths)
    if problems:
        return LoadResult(None, [relative_problem(p, root) for p in problems])
    with tempfile.TemporaryDirectory(prefix="kefu-faq-") as tmp:
        copies: list[str] = []
        shown: dict[str, str] = {}  # copy → name on the page
        for i, path in enumerate(paths):
            base = os.path.abspath(path)
            folder = os.path.join(tmp, str(i))
            os.makedirs(folder)
            if os.path.isdir(base):
                copies.append(folder)
                mine = [f for f in files if os.path.dirname(os.path.abspath(f)) == base]
            else:
                copies.append(os.path.join(folder, os.path.basename(base)))
                mine = [f for f in files if os.path.abspath(f) == base]
            for file in mine:
                target = os.path.join(folder, os.path.basename(file))
                name = display_name(file, root)
                shown[target] = name
                if name in replaced:
                    with open(target, "w", encoding="utf-8") as out:
                        out.write(replaced[name])
                else:
                    shutil.copyfile(file, target)
        result = load_kb(copies)

    def named(problem: Problem) -> Problem:
        message = problem.message
        for copy, name in shown.items():
            message = message.replace(copy, name)
        return replace(problem, file=shown.get(problem.file, os.path.basename(problem.file)), message=message)

    return LoadResult(result.kb, [named(p) for p in result.problems], tuple(named(p) for p in result.soft))
