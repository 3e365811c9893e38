"""The learned-additions file (`kb.learned_path`, default `config/faq/learned.yaml`): what agents taught.

Two kinds of additions, both accepted from the agent console or the admin dashboard:
- "this question = FAQ entry X": the customer's question becomes a similar question of entry X, under the
  file's `similar:` section (read by `kb/similar.py`), so the admin's own files are never written;
- "new FAQ entry from this answer": a `faqs:` entry with the question(s), the agent's answer, an id and
  an optional category.

Every write holds an exclusive lock (a `.learned.yaml.lock` file beside it, `flock`, so several processes
and threads queue), validates the whole knowledge base with the candidate file exactly as a reload would
(`load_kb`), and only then replaces the file atomically (write a hidden temporary file, fsync, rename):
a failed or concurrent write never leaves a half-written or invalid file. Adding what is already there
changes nothing (`Taught.added` is False). Comments and hand edits survive (ruamel.yaml round trip), so
the file is reviewable in git; who taught what and when is an end-of-line comment.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from kb.loader import LoadResult, PathArg, expand_paths, load_kb
from kb.model import KnowledgeBase, Problem
from kb.schema import SLUG_RE
from kb.text import fold_question

__all__ = ["LearnError", "LearnedFile", "Taught", "learned_paths", "new_entry_id"]

HEADER = """\
# 从客服学到的问题 — kefu's learned additions (kb.learned_path).
# Written by kefu when an agent or an admin accepts "这个问题 = FAQ 条目 X" (similar:, added to an
# entry of the other FAQ files) or "用这条回复新建 FAQ 条目" (faqs:). Checked like any FAQ file and
# hot-reloaded; review it in git. Who taught what is the comment at the end of each line.
"""
MAX_QUESTIONS = 20  # per accepted addition (a dashboard cluster shows at most five wordings)
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True, slots=True)
class Taught:
    """What one accepted addition did: `added` False when everything was there already."""

    kind: Literal["similar", "entry"]
    entry_id: str
    questions: tuple[str, ...]  # the questions now in the file for this addition (new or not)
    added: bool


class LearnError(Exception):
    """An addition refused: `reason` is not_found (no such entry), conflict or invalid (+ the problems)."""

    def __init__(
        self,
        reason: Literal["not_found", "conflict", "invalid"],
        message: str,
        problems: Sequence[Problem] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.problems = tuple(problems)


def learned_paths(paths: Sequence[PathArg], learned: PathArg | None) -> list[str]:
    """The FAQ paths a load reads: the configured ones plus the learned file once it exists."""
    out = [os.fspath(p) for p in paths]
    if learned is None or not os.path.isfile(learned):
        return out
    folder = os.path.realpath(os.path.dirname(os.path.abspath(learned)))
    if folder not in {os.path.realpath(p) for p in out}:  # a FAQ directory already holds it
        out.append(os.fspath(learned))
    return out


def new_entry_id(question: str) -> str:
    """A stable id for an entry created from a question: accepting it twice finds the same id."""
    digest = hashlib.sha1(fold_question(question).encode("utf-8")).hexdigest()[:8]
    return f"learned-{digest}"


class LearnedFile:
    """The additions file of one deployment, beside the FAQ paths it extends."""

    def __init__(self, path: PathArg, kb_paths: Sequence[PathArg]) -> None:
        self.path = Path(path)
        self.kb_paths = [os.fspath(p) for p in kb_paths]
        self._lock_path = self.path.with_name(f".{self.path.name}.lock")

    # --- the two kinds of additions ----------------------------------------------------------------

    def add_similar(self, entry_id: str, questions: Sequence[str], note: str = "") -> Taught:
        """Make `questions` similar questions of entry `entry_id` (defined in any FAQ file)."""
        wanted = _clean(questions)
        with self._locked():
            kb = self._current_kb()
            entry = kb.get(entry_id)
            if entry is None:
                raise LearnError("not_found", f"no FAQ entry '{entry_id}'")
            owners = _owners(kb)
            new: list[str] = []
            for text in wanted:
                owner = owners.get(fold_question(text))
                if owner is not None and owner != entry_id:
                    raise LearnError("conflict", f"'{text}' is already a question of entry {owner}")
                if owner is None and fold_question(text) not in {fold_question(q) for q in new}:
                    new.append(text)
            if new:
                doc = self._read()
                section = doc.get("similar")
                if not isinstance(section, dict):
                    section = doc["similar"] = CommentedMap()
                items = section.get(entry_id)
                if not isinstance(items, list):
                    items = section[entry_id] = CommentedSeq()
                for node in (section, items):  # a hand-written [a, b] gets one line per question
                    if hasattr(node, "fa"):
                        node.fa.set_block_style()
                for text in new:
                    items.append(_scalar(text))
                    if note:
                        items.yaml_add_eol_comment(note, len(items) - 1)
                self._write(doc)
        return Taught("similar", entry_id, tuple(wanted), bool(new))

    def add_entry(
        self,
        questions: Sequence[str],
        answer: str,
        *,
        entry_id: str | None = None,
        category: str | None = None,
        note: str = "",
    ) -> Taught:
        """A new entry: the first question is its question, the others its similar questions."""
        wanted = _clean(questions)
        answer = answer.strip()
        if not answer:
            raise LearnError("invalid", "the answer is empty")
        entry_id = (entry_id or "").strip() or new_entry_id(wanted[0])
        if not SLUG_RE.match(entry_id):
            raise LearnError(
                "invalid", f"id '{entry_id}' is not a slug: lowercase letters, digits, '.', '_' and '-'"
            )
        category = (category or "").strip() or None
        with self._locked():
            kb = self._current_kb()
            existing = kb.get(entry_id)
            if existing is not None:
                same = existing.answer == answer and {fold_question(q) for q in wanted} <= {
                    fold_question(q) for q in existing.questions
                }
                if same:  # the same acceptance again (a retry, a second click)
                    return Taught("entry", entry_id, tuple(wanted), False)
                raise LearnError(
                    "conflict", f"there is already an entry with id '{entry_id}'; choose another id"
                )
            owners = _owners(kb)
            for text in wanted:
                if (owner := owners.get(fold_question(text))) is not None:
                    raise LearnError(
                        "conflict",
                        f"'{text}' is already a question of entry {owner}; use \"this question = entry {owner}\"",
                    )
            doc = self._read()
            faqs = doc.get("faqs")
            if not isinstance(faqs, list):
                faqs = doc["faqs"] = CommentedSeq()
            item = CommentedMap()
            item["id"] = entry_id
            item["question"] = _scalar(wanted[0])
            if len(wanted) > 1:
                item["similar"] = CommentedSeq(_scalar(q) for q in wanted[1:])
            item["answer"] = _scalar(answer)
            if category is not None:
                item["category"] = _scalar(category)
            if note:
                item.yaml_add_eol_comment(note, "id")
            faqs.append(item)
            self._write(doc)
        return Taught("entry", entry_id, tuple(wanted), True)

    # --- reading, validating, writing ------------------------------------------------------------

    def paths(self) -> list[str]:
        """What a load of this deployment's FAQ reads (the learned file once it exists)."""
        return learned_paths(self.kb_paths, self.path)

    def _current_kb(self) -> KnowledgeBase:
        result = load_kb(self.paths())
        if result.kb is None:
            raise LearnError(
                "invalid", "the FAQ files have errors; fix them (or reload) before teaching", result.problems
            )
        return result.kb

    def _read(self) -> Any:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = HEADER
        try:
            doc = _yaml().load(text)
        except YAMLError as exc:  # hand-broken since the last load: say so rather than overwrite it
            raise LearnError("invalid", f"{self.path} is not valid YAML: {exc}") from None
        if doc is None:
            doc = _yaml().load(HEADER + "similar: {}\n")
            doc["similar"] = CommentedMap()
        if not isinstance(doc, dict):
            raise LearnError("invalid", f"{self.path}: the top level must be a mapping (similar:, faqs:)")
        return doc

    def _write(self, doc: Any) -> None:
        """Validate the candidate with every FAQ file, then swap it in atomically."""
        buffer = io.StringIO()
        _yaml().dump(doc, buffer)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(buffer.getvalue())
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, _mode(self.path))
            result = self._load_with(tmp)
            if result.kb is None:
                problems = [replace(p, file=str(self.path)) if p.file == tmp else p for p in result.problems]
                raise LearnError("invalid", "the addition would make the FAQ invalid", problems)
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_dir(self.path.parent)

    def _load_with(self, candidate: str) -> LoadResult:
        files, _ = expand_paths(self.kb_paths)
        mine = os.path.realpath(self.path)
        files = [f for f in files if os.path.realpath(f) != mine]
        return load_kb([*files, candidate])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A folder kefu may not write (a read-only deployment) is said as a refusal, not an exception.
        try:
            self._lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self._lock_path, "a+b")  # noqa: SIM115 - closed below, after the yield
        except OSError as exc:
            raise LearnError(
                "invalid", f"cannot write beside {self.path}: {exc.strerror or exc}; check kb.learned_path"
            ) from None
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the handle closes
            try:
                yield
            except OSError as exc:
                raise LearnError(
                    "invalid", f"cannot write {self.path}: {exc.strerror or exc}; check kb.learned_path"
                ) from None


def _yaml() -> YAML:
    y = YAML()  # round trip: comments, order and quoting of hand edits are kept
    y.preserve_quotes = True  # "yes" must stay quoted: PyYAML would read a bare yes as true
    y.width = 4096  # never fold a long answer across lines
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _scalar(text: str) -> Any:
    """A string written so that PyYAML (YAML 1.1, the loader) reads it back as the same text."""
    if "\n" in text:
        return LiteralScalarString(text)
    if yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False)) != _STR_TAG:
        return DoubleQuotedScalarString(text)  # yes, no, 007, 1:20 … are not strings in YAML 1.1
    return text


def _clean(questions: Sequence[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for raw in questions:
        text = " ".join(raw.split())  # one line: a customer's line breaks mean nothing in a question
        key = fold_question(text)
        if not key:
            raise LearnError("invalid", f"question {raw!r} has no letters or digits in it")
        if key not in seen:
            seen.add(key)
            out.append(text)
    if not out:
        raise LearnError("invalid", "no question given")
    if len(out) > MAX_QUESTIONS:
        raise LearnError("invalid", f"at most {MAX_QUESTIONS} questions at once")
    return out


def _owners(kb: KnowledgeBase) -> dict[str, str]:
    """Folded question → the enabled entry that has it."""
    return {fold_question(q): e.id for e in kb.entries if e.enabled for q in e.questions}


def _mode(path: Path) -> int:
    """The file's permissions, kept across the rename (a new file: what the umask allows)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a crash right after must not bring back the old file)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
