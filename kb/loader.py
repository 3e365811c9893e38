"""Load FAQ YAML files into a validated KnowledgeBase, reporting every problem with its file:line.

The files are parsed to PyYAML nodes (not Python objects) so that every entry, key and list item keeps
the line it was written on; a maintainer fixing the FAQ needs `file:line`, not "entry 37 is wrong".
Bad input never raises: each problem becomes a `Problem` and the caller gets `kb=None`.
This module merges files and checks across them; the node readers are in `kb/schema.py`, the YAML
node helpers and the nesting guard in `kb/yaml_nodes.py`.
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kb.model import DEFAULT_REPLIES, FaqEntry, KnowledgeBase, Problem, Replies, RuleIntent, SourceRef
from kb.schema import (
    ANSWER_KEYS,
    CHANNELS,
    FAQ_KEYS,
    INTENT_ACTIONS,
    INTENT_KEYS,
    INTENT_PRIORITIES,
    SLUG_RE,
    TOP_LEVEL_KEYS,
    YAML_SUFFIXES,
    NodeReader,
    Seen,
    slug_hint,
)
from kb.similar import Addition, apply_similar, read_similar
from kb.slots import ACTION_ONLY_ANSWER, Slots, check_uses, intent_entry, read_entry_action, read_slots
from kb.text import fold_question
from kb.yaml_nodes import (
    MAX_NESTING,
    NULL_TAG,
    YamlLoader,
    clip,
    describe,
    is_null,
    is_text,
    too_deep,
)

__all__ = [
    "ANSWER_KEYS",
    "CHANNELS",
    "FAQ_KEYS",
    "INTENT_ACTIONS",
    "INTENT_KEYS",
    "INTENT_PRIORITIES",
    "LoadResult",
    "PathArg",
    "TOP_LEVEL_KEYS",
    "expand_paths",
    "load_kb",
]

PathArg = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The knowledge base when the files had no errors (else None), and every error found."""

    kb: KnowledgeBase | None
    problems: list[Problem] = field(default_factory=list)
    # Problems that block `kb check` but not a lenient load (`strict=False`): non-slug ids and a
    # question under two ids. Evaluation data exported from other systems has both.
    soft: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        """True when a knowledge base was built and nothing is wrong."""
        return self.kb is not None and not self.problems


def load_kb(paths: PathArg | Iterable[PathArg], *, strict: bool = True) -> LoadResult:
    """Load, validate and merge FAQ files (directories expand to their *.yaml in sorted order).

    With `strict=False` a knowledge base is still built when the only problems are soft ones
    (ids that are not slugs, a question under two ids); they stay listed in `problems`.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    path_list = [os.fspath(p) for p in paths]
    # A big FAQ makes hundreds of thousands of YAML nodes, none in a reference cycle; the cyclic GC
    # would rescan them again and again and cost a third of the load time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load(path_list, strict)
    finally:
        if gc_was_enabled:
            gc.enable()


def _load(path_list: list[str], strict: bool) -> LoadResult:
    files, problems = expand_paths(path_list)
    builder = _Builder(problems)
    digest = hashlib.sha256()
    for file in files:
        data = builder.read(file)
        if data is None:
            continue
        # The file name (not the directory) goes into the version, so `config/faq` and an absolute
        # path to the same files give the same version on every host.
        name = os.path.basename(file).encode("utf-8", "surrogateescape")
        digest.update(name + b"\0" + len(data).to_bytes(8, "big"))
        digest.update(data)
        builder.parse(file, data)
    builder.finish(files, path_list)
    apply_similar(builder, builder.entries, builder.additions, set(builder._ids), builder.question)
    intent_actions = [e for e in map(intent_entry, builder.intents) if e is not None]
    problems.extend(check_uses([*builder.entries, *intent_actions], builder.slots))

    order = {file: i for i, file in enumerate(files)}
    problems.sort(key=lambda p: (order.get(p.file, -1), p.line, p.column or 0))
    soft = tuple(p for p in problems if id(p) in builder.soft_ids)
    if problems and (strict or len(soft) < len(problems)):
        return LoadResult(None, problems, soft)
    kb = KnowledgeBase(
        entries=tuple(builder.entries),
        version=digest.hexdigest()[:12],
        synonyms=tuple(builder.synonyms),
        words=tuple(builder.words),
        intents=tuple(builder.intents),
        replies=Replies(
            MappingProxyType({**DEFAULT_REPLIES, **builder.replies}), MappingProxyType(builder.reply_sources)
        ),
        sources=tuple(files),
        slots=MappingProxyType(builder.slots),
        loaded_at=time.time(),
    )
    return LoadResult(kb, problems, soft)


def expand_paths(paths: Iterable[str]) -> tuple[list[str], list[Problem]]:
    """The YAML files named by `paths` (directories: their *.yaml/*.yml, sorted), without repeats."""
    files: list[str] = []
    problems: list[Problem] = []
    seen: set[str] = set()

    def add(file: str) -> None:
        key = os.path.normcase(os.path.realpath(file))
        if key not in seen:
            seen.add(key)
            files.append(file)

    for path in paths:
        p = Path(path)
        try:
            if p.is_dir():
                found = sorted(
                    child.name
                    for child in p.iterdir()
                    if child.suffix in YAML_SUFFIXES and not child.name.startswith(".") and child.is_file()
                )
                if not found:
                    problems.append(Problem(path, 1, "no FAQ files (*.yaml) in this directory"))
                for name in found:
                    add(os.path.join(path, name))
            elif p.is_file():
                add(path)
            elif p.exists():
                problems.append(Problem(path, 1, "not a regular file or directory"))
            else:
                problems.append(Problem(path, 1, "no such file or directory"))
        except OSError as exc:
            problems.append(Problem(path, 1, f"cannot read: {exc.strerror or exc}"))
    return files, problems


class _Builder(NodeReader):
    """Parses files one after another into one merged knowledge base, collecting problems."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        self.entries: list[FaqEntry] = []
        self.synonyms: list[tuple[str, ...]] = []
        self.words: list[str] = []
        self.intents: list[RuleIntent] = []
        self.replies: dict[str, str] = {}
        self.slots: Slots = {}
        self.additions: list[Addition] = []  # `similar:` sections, applied once every file is read
        self.entry_count = 0
        self.enabled_count = 0
        self.first_entry: SourceRef | None = None
        self._ids: dict[str, Seen] = {}
        self._questions: dict[str, Seen] = {}
        self._synonym_words: dict[str, Seen] = {}
        self._word_set: set[str] = set()
        self._intent_names: dict[str, Seen] = {}
        self._reply_keys: dict[str, Seen] = {}

    # -- files --------------------------------------------------------------------------------------

    def read(self, file: str) -> bytes | None:
        try:
            return Path(file).read_bytes()
        except OSError as exc:
            self.incomplete = True
            self.problems.append(Problem(file, 1, f"cannot read file: {exc.strerror or exc}"))
            return None

    def parse(self, file: str, data: bytes) -> None:
        self.file = file
        text = self._decode(data)
        if text is None:
            return
        if (deep_line := too_deep(text)) is not None:
            self.incomplete = True
            self.error(
                deep_line, f"nesting too deep (over {MAX_NESTING} levels); a FAQ file needs only a few"
            )
            return
        try:
            root = yaml.compose(text, Loader=YamlLoader)
        except RecursionError:  # the pure-Python parser, when libyaml is missing
            self.incomplete = True
            self.error(1, "nesting too deep for the YAML parser; a FAQ file needs only a few levels")
            return
        except yaml.MarkedYAMLError as exc:
            self.incomplete = True
            self._yaml_error(exc)
            return
        except yaml.YAMLError as exc:  # pragma: no cover - every parser error we know carries a mark
            self.incomplete = True
            self.error(1, f"invalid YAML: {exc}")
            return
        if is_null(root):
            return  # an empty file (or only comments) adds nothing
        assert root is not None
        if not isinstance(root, MappingNode):
            hint = (
                "; did you forget the 'faqs:' line above the entries?"
                if isinstance(root, SequenceNode)
                else ""
            )
            self.error(
                root,
                f"the top level must be a mapping with faqs:, synonyms:, words:, intents:, replies:; got {describe(root)}{hint}",
            )
            self.incomplete = True
            return
        fields = self.fields(root, TOP_LEVEL_KEYS, "the top level")
        if (node := fields.get("faqs")) is not None:
            for item in self.items(node, "faqs", "a list of entries ('- id: ...')"):
                self.faq(item)
        if (node := fields.get("synonyms")) is not None:
            for item in self.items(node, "synonyms", "a list of word groups ('- [退货, 退换货]')"):
                self.synonym_group(item)
        if (node := fields.get("words")) is not None:
            self.dictionary_words(node)
        if (node := fields.get("intents")) is not None:
            for item in self.items(node, "intents", "a list of intents ('- name: ...')"):
                self.intent(item)
        if (node := fields.get("slots")) is not None:
            read_slots(self, node, self.slots)
        if (node := fields.get("replies")) is not None:
            self.reply_texts(node)
        if (node := fields.get("similar")) is not None:
            read_similar(self, node, self.additions)

    def _decode(self, data: bytes) -> str | None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.incomplete = True
            line_start = data.rfind(b"\n", 0, exc.start) + 1
            column = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
            self.problems.append(
                Problem(
                    self.file,
                    data.count(b"\n", 0, exc.start) + 1,
                    f"file is not UTF-8 (byte 0x{data[exc.start]:02x} cannot be decoded); "
                    "save it as UTF-8 — GBK/GB2312 is a common cause",
                    column=column,
                )
            )
            return None
        return text.removeprefix("\ufeff")  # editors on Windows like to add a BOM

    def _yaml_error(self, exc: yaml.MarkedYAMLError) -> None:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
        if exc.problem and exc.context:
            context_line = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
            message += f" ({exc.context}{context_line})"
        if "tab" in message or "'\\t'" in message:
            message += "; indent with spaces, not tabs"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, None)
        self.problems.append(Problem(self.file, line, message, column=column))

    def finish(self, files: list[str], paths: list[str]) -> None:
        """Whole-knowledge-base checks, after every file was parsed."""
        # A file we could not parse may hold the entries; its own problem already says what to fix.
        if self.incomplete or (self.entry_count and self.enabled_count):
            return
        if self.entry_count == 0:
            if files:
                where = files[0]
            elif paths:
                return  # every path was missing or empty, already reported by expand_paths
            else:
                where = "<no FAQ path given>"
            self.problems.append(
                Problem(
                    where, 1, "no faq entries found; add at least one under 'faqs:' (id, question, answer)"
                )
            )
        elif self.first_entry is not None:
            self.problems.append(
                Problem(
                    self.first_entry.file,
                    self.first_entry.line,
                    f"all {self.entry_count} faq entries are disabled (enabled: false); the bot would have nothing to answer",
                )
            )

    # -- sections -----------------------------------------------------------------------------------

    def faq(self, node: Node) -> None:
        """One `faqs:` item: check every field, register its id and questions, keep it if valid."""
        self.entry_count += 1
        if not isinstance(node, MappingNode):
            self.error(
                node, f"each faq entry must be a mapping with id, question and answer, got {describe(node)}"
            )
            return
        if self.first_entry is None:
            self.first_entry = self.ref(node)
        before = len(self.problems)
        raw = {str(k.value): v for k, v in node.value if isinstance(k, ScalarNode)}
        # Read the id first so every later problem of this entry can name it.
        entry_id = None
        if is_text(raw.get("id")):
            entry_id = str(raw["id"].value).strip() or None
        fields = self.fields(node, FAQ_KEYS, "this faq entry", entry_id)

        if "id" not in fields:
            self.error(node, "faq entry has no 'id'; add a stable slug such as 'id: return-how'", entry_id)
        else:
            value = self.string(fields["id"], "id", entry_id, required=True)
            if value is not None:
                if not SLUG_RE.match(value):
                    self.soft_error(
                        fields["id"],
                        f"id '{value}' is not a valid slug: use lowercase letters, digits, '.', '_' and '-', "
                        f"starting with a letter or digit{slug_hint(value)}",
                        entry_id,
                    )
                if (seen := self._ids.get(value)) is not None:
                    self.error(fields["id"], f"duplicate id '{value}': already used at {seen.ref}", entry_id)
                else:
                    self._ids[value] = self.seen(fields["id"])

        question = None
        if "question" not in fields:
            self.error(
                node, "faq entry has no 'question'; add the canonical question customers ask", entry_id
            )
        else:
            question = self.string(fields["question"], "question", entry_id, required=True)
        similar = self.strings(fields.get("similar"), "similar", entry_id)
        action, required_slots, form = read_entry_action(self, fields, entry_id)
        if action is not None and "answer" not in fields:
            answer, variants = ACTION_ONLY_ANSWER, {}  # said only where no action can run
        else:
            answer, variants = self.answer(fields.get("answer"), node, entry_id)
        category = self.string(fields.get("category"), "category", entry_id)
        keywords = self.strings(fields.get("keywords"), "keywords", entry_id)
        enabled = self.boolean(fields.get("enabled"), "enabled", entry_id)
        enabled = True if enabled is None else enabled

        if enabled:
            self.enabled_count += 1
            # A disabled entry is never matched, so it may keep questions a replacement entry now owns.
            questions = [(question, fields["question"])] if question is not None else []
            for text, qnode in questions + similar:
                self.question(text, qnode, entry_id)

        # Soft problems (see LoadResult.soft) keep the entry, so a lenient load still has it.
        if (
            all(id(p) in self.soft_ids for p in self.problems[before:])
            and entry_id is not None
            and question is not None
            and answer is not None
        ):
            self.entries.append(
                FaqEntry(
                    id=entry_id,
                    question=question,
                    answer=answer,
                    similar=tuple(text for text, _ in similar),
                    answers=MappingProxyType(variants),
                    category=category,
                    keywords=tuple(text for text, _ in keywords),
                    enabled=enabled,
                    source=self.ref(node),
                    action=action,
                    required_slots=required_slots,
                    form=form,
                )
            )

    def answer(
        self, node: Node | None, entry: MappingNode, entry_id: str | None
    ) -> tuple[str | None, dict[str, str]]:
        """The default answer and the per-channel variants of a faq entry."""
        if node is None:
            self.error(entry, "faq entry has no 'answer'; add the reply the bot should send", entry_id)
            return None, {}
        if isinstance(node, MappingNode):
            fields = self.fields(node, ANSWER_KEYS, "the answer variants", entry_id)
            variants: dict[str, str] = {}
            for key, value_node in fields.items():
                value = self.string(value_node, f"answer.{key}", entry_id, required=True)
                if value is not None:
                    variants[key] = value
            if "default" not in fields:
                self.error(
                    node,
                    "answer variants need a 'default:' answer, used on channels without their own variant",
                    entry_id,
                )
            return variants.pop("default", None), variants
        if isinstance(node, ScalarNode) and not is_text(node) and node.tag != NULL_TAG:
            self.error(
                node,
                f"'answer' must be a string or a mapping of channel variants ({', '.join(ANSWER_KEYS)}), "
                f"got {describe(node)}; put it in quotes if it is meant as text",
                entry_id,
            )
            return None, {}
        if isinstance(node, SequenceNode):
            self.error(
                node,
                f"'answer' must be a string or a mapping of channel variants ({', '.join(ANSWER_KEYS)}), got a list",
                entry_id,
            )
            return None, {}
        return self.string(node, "answer", entry_id, required=True), {}

    def question(self, text: str, node: Node, entry_id: str | None) -> None:
        """Register a question; the same question (after folding) under two ids is an error."""
        key = fold_question(text)
        if not key:
            self.error(node, f"question '{text}' has no letters or digits in it", entry_id)
            return
        seen = self._questions.get(key)
        if seen is None:
            self._questions[key] = self.seen(node, entry_id)
        elif seen.owner != entry_id:
            self.soft_error(
                node,
                f"question '{text}' is also a question of entry {seen.owner} ({seen.ref}); "
                "one question must lead to one answer — keep it in one entry",
                entry_id,
            )

    def synonym_group(self, node: Node) -> None:
        """One synonym group: at least two words, each word in only one group."""
        if not isinstance(node, SequenceNode):
            hint = f"; write it as a list: [{clip(str(node.value))}]" if isinstance(node, ScalarNode) else ""
            self.error(node, f"each synonym group must be a list of words, got {describe(node)}{hint}")
            return
        words = self.strings(node, "synonym group")
        group: list[str] = []
        for word, word_node in words:
            key = word.casefold()
            seen = self._synonym_words.get(key)
            if seen is not None:
                where = (
                    "earlier in this group" if seen.ref == self.ref(node) else f"in the group at {seen.ref}"
                )
                self.error(
                    word_node, f"synonym '{word}' is already {where}; a word can belong to one group only"
                )
                continue
            self._synonym_words[key] = self.seen(node)
            group.append(word)
        if len(words) < 2:
            self.error(node, "a synonym group needs at least two words (the canonical word first)")
        elif len(group) == len(words):
            self.synonyms.append(tuple(group))

    def dictionary_words(self, node: Node) -> None:
        """`words:` — jieba user-dictionary entries; jieba splits its lines on spaces, so no spaces."""
        for word, word_node in self.strings(node, "words"):
            if any(ch.isspace() for ch in word):
                self.error(word_node, f"dictionary word '{word}' contains a space; list each word separately")
            elif word not in self._word_set:
                self._word_set.add(word)
                self.words.append(word)

    def intent(self, node: Node) -> None:
        """One rule intent (complaint, 转人工, small talk...)."""
        if not isinstance(node, MappingNode):
            self.error(
                node, f"each intent must be a mapping with name, action and keywords, got {describe(node)}"
            )
            return
        before = len(self.problems)
        raw = {str(k.value): v for k, v in node.value if isinstance(k, ScalarNode)}
        name = None
        if is_text(raw.get("name")):
            name = str(raw["name"].value).strip() or None
        self.prefix = f"intent {name}: " if name else ""
        try:
            fields = self.fields(node, INTENT_KEYS, "this intent")
            if "name" not in fields:
                self.error(node, "intent has no 'name'; add one such as 'name: complaint'")
            elif (value := self.string(fields["name"], "name", required=True)) is not None:
                if not SLUG_RE.match(value):
                    self.error(
                        fields["name"],
                        f"name '{value}' is not a valid slug: use lowercase letters, digits, '.', '_' and '-', "
                        f"starting with a letter or digit{slug_hint(value)}",
                    )
                if (seen := self._intent_names.get(value)) is not None:
                    self.error(
                        fields["name"], f"duplicate intent name '{value}': already defined at {seen.ref}"
                    )
                else:
                    self._intent_names[value] = self.seen(fields["name"])

            action = None
            custom_action = None
            if "action" not in fields:
                self.error(node, f"intent has no 'action'; use one of {', '.join(INTENT_ACTIONS)}")
            elif is_text(fields["action"]) and str(fields["action"].value).strip().startswith("action_"):
                # A custom action (rasa-sdk) answers this intent; `reply` is said when it cannot run.
                custom_action, action = str(fields["action"].value).strip(), "answer"
            else:
                action = self.choice(fields["action"], "action", INTENT_ACTIONS)
            required_slots = tuple(t for t, _ in self.strings(fields.get("required_slots"), "required_slots"))
            priority = self.choice(fields.get("priority"), "priority", INTENT_PRIORITIES)
            group = self.string(fields.get("group"), "group")
            keywords = self.strings(fields.get("keywords"), "keywords")
            examples = self.strings(fields.get("examples"), "examples")
            reply = self.string(fields.get("reply"), "reply")
            if "keywords" not in fields and "examples" not in fields:
                self.error(node, "intent has neither 'keywords' nor 'examples', so it can never match")
            if action == "answer" and "reply" not in fields and custom_action is None:
                self.error(node, "intent has action 'answer' but no 'reply' to answer with")
        finally:
            self.prefix = ""

        if len(self.problems) == before and name is not None and action is not None:
            self.intents.append(
                RuleIntent(
                    name=name,
                    action=cast(Literal["handoff", "smalltalk", "answer"], action),
                    keywords=tuple(text for text, _ in keywords),
                    examples=tuple(text for text, _ in examples),
                    priority=cast(Literal["normal", "high"], priority or "normal"),
                    reply=reply,
                    group=group,
                    source=self.ref(node),
                    custom_action=custom_action,
                    required_slots=required_slots,
                )
            )

    def reply_texts(self, node: Node) -> None:
        """`replies:` — overrides of the service phrases in DEFAULT_REPLIES."""
        if is_null(node):
            return
        if not isinstance(node, MappingNode):
            self.error(
                node,
                f"'replies' must be a mapping of phrase keys to texts (greeting: ...), got {describe(node)}",
            )
            return
        for key, value_node in self.fields(node, tuple(DEFAULT_REPLIES), "replies").items():
            if (seen := self._reply_keys.get(key)) is not None:
                self.error(value_node, f"reply '{key}' is already defined at {seen.ref}; keep one")
                continue
            self._reply_keys[key] = self.seen(value_node)
            value = self.string(value_node, f"replies.{key}", required=True)
            if value is not None:
                self.replies[key] = value

    @property
    def reply_sources(self) -> dict[str, SourceRef]:
        """Where each overridden service phrase was written."""
        return {key: seen.ref for key, seen in self._reply_keys.items()}
