"""The FAQ's custom-action parts (issue 15): the top-level `slots:` section and an entry's `action`,
`required_slots` and `form`, read from YAML nodes with `file:line` problems, plus the slot regex guard.

```yaml
slots:
  order_id:
    regex: "[A-Z][0-9]{8}"       # extraction from the customer's text (group 1 if the regex has groups)
    ask: 您好，请告诉我您的订单号。  # what kefu asks when an entry needs the slot
    ttl_minutes: 30              # a filled slot is forgotten after this long
    values: [顺丰, 圆通]          # or: fixed values found in the text
faqs:
  - id: track-order
    question: 我的快递到哪了
    action: action_order_status  # a rasa-sdk action runs instead of (or, on failure, beside) `answer`
    required_slots: [order_id]   # asked for first (a form); `validate_<form>` is honoured
```
The readers work with the loader's node reader (duck-typed: `error`, `string`, `strings`, `fields`, `ref`).
"""

from __future__ import annotations

import re
import re._constants as _sre_constants  # the regex parse tree (private since 3.11), for the
import re._parser as _sre_parse  # star-height check in slot_problem
from collections.abc import Iterable, Mapping
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from kb.model import FaqEntry, Problem, RuleIntent, SlotSpec

# The declared slots by name, as the loader collects them.
Slots = dict[str, SlotSpec]

SLOT_KEYS = ("regex", "ask", "ttl_minutes", "values")
ENTRY_ACTION_KEYS = ("action", "required_slots", "form")
# rasa-sdk action names are Python-identifier-like (action_order_status, validate_order_form).
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
# The answer of an entry with an action and no `answer`, for a gateway without `actions:` configured.
ACTION_ONLY_ANSWER = "您好，这个问题需要为您查询后台系统，请回复“转人工”，由人工客服为您查询处理。"
# Repeats bounded above this count as unbounded for the nesting check ((a{1,100}){1,100} is as bad).
_SMALL_REPEAT = 16


def slot_problem(pattern: str) -> str | None:
    """Why a slot regex is unusable (does not compile, or can backtrack catastrophically), else None.

    The guard is structural: an unbounded repeat nested in another repeat (star height > 1, as in
    `(a+)+` or `(\\w+\\s?)*`) is refused, since Python's `re` has no timeout and one such pattern on a
    long message would stall the gateway.
    """
    try:
        parsed = _sre_parse.parse(pattern)
    except re.error as exc:
        return f"regex does not compile: {exc}"
    if _nested_unbounded(parsed, inside_repeat=False):
        return (
            "regex nests an unbounded repeat inside another (like (a+)+), which can take forever on a "
            "long message; write it without the nesting, e.g. [A-Z][0-9]{8}"
        )
    return None


def _big(high: Any) -> bool:
    return high is _sre_constants.MAXREPEAT or high > _SMALL_REPEAT


def _nested_unbounded(items: Any, *, inside_repeat: bool) -> bool:
    """True when an unbounded (or large) repeat sits inside another repeat."""
    for op, arg in items:
        if op in (_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT, _sre_constants.POSSESSIVE_REPEAT):
            _low, high, sub = arg
            if _big(high) and inside_repeat:
                return True
            if _nested_unbounded(sub, inside_repeat=inside_repeat or _big(high) or high > 1):
                return True
        elif op is _sre_constants.SUBPATTERN:
            if _nested_unbounded(arg[-1], inside_repeat=inside_repeat):
                return True
        elif op is _sre_constants.BRANCH:
            if any(_nested_unbounded(branch, inside_repeat=inside_repeat) for branch in arg[1]):
                return True
        elif op in (_sre_constants.ASSERT, _sre_constants.ASSERT_NOT):
            if _nested_unbounded(arg[1], inside_repeat=inside_repeat):
                return True
        elif op is _sre_constants.ATOMIC_GROUP and _nested_unbounded(arg, inside_repeat=inside_repeat):
            return True
    return False


# Long inputs a slot regex must get through quickly (`kefu kb check`): runs of one kind of character with
# a tail that makes a match fail late, where backtracking explodes.
_TRIAL_CHARS = ("a", "A", "0", "A1", " ", "字", "a-", "0.")
TRIAL_LENGTH = 10_000
TRIAL_TIMEOUT_S = 2.0
_TRIAL = """
import re, sys
pattern = re.compile(sys.argv[1])
for unit in sys.argv[2:]:
    text = unit * (TRIAL_LENGTH // len(unit)) + "\\x00!"
    pattern.search(text)
"""


def trial_problems(slots: Mapping[str, SlotSpec]) -> list[Problem]:
    """Each slot regex run on 10 kB inputs in a child process; one that does not finish in 2 s is a problem.

    The structural check (`slot_problem`) misses polynomial blow-ups such as `\\d+\\d+\\d+x`; this trial
    catches them before the gateway meets one (`kefu kb check` runs it, a reload does not).
    """
    import subprocess
    import sys

    problems: list[Problem] = []
    code = _TRIAL.replace("TRIAL_LENGTH", str(TRIAL_LENGTH))
    for spec in slots.values():
        if not spec.regex:
            continue
        try:
            subprocess.run(
                [sys.executable, "-c", code, spec.regex, *_TRIAL_CHARS],
                check=True,
                capture_output=True,
                timeout=TRIAL_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            where = spec.source
            problems.append(
                Problem(
                    where.file if where else "<faq>",
                    where.line if where else 1,
                    f"slot '{spec.name}': regex takes longer than {TRIAL_TIMEOUT_S:g} s on a "
                    f"{TRIAL_LENGTH // 1000} kB message (backtracking); simplify it, e.g. [A-Z][0-9]{{8}}",
                )
            )
        except subprocess.CalledProcessError:
            continue  # does not compile: the loader already said so
    return problems


def read_slots(reader: Any, node: Node, known: dict[str, SlotSpec]) -> None:
    """The `slots:` section of one file into `known` (a slot declared twice is an error)."""
    if not isinstance(node, MappingNode):
        reader.error(node, "'slots' must be a mapping of slot name → {regex, ask, ttl_minutes}")
        return
    for key_node, value_node in node.value:
        name = str(key_node.value) if isinstance(key_node, ScalarNode) else ""
        if not NAME_RE.match(name):
            reader.error(
                key_node, f"slot name '{name}' must be a word of letters, digits and _ (like order_id)"
            )
            continue
        if name in known:
            where = known[name].source
            reader.error(key_node, f"slot '{name}' is declared twice (first at {where})")
            continue
        if not isinstance(value_node, MappingNode):
            reader.error(value_node, f"slot '{name}' must be a mapping with regex, ask and ttl_minutes")
            continue
        fields = reader.fields(value_node, SLOT_KEYS, f"slot '{name}'")
        regex = reader.string(fields.get("regex"), f"slots.{name}.regex")
        if regex is not None and (problem := slot_problem(regex)) is not None:
            reader.error(fields["regex"], f"slot '{name}': {problem}")
            regex = None
        ask = reader.string(fields.get("ask"), f"slots.{name}.ask")
        values = tuple(text for text, _ in reader.strings(fields.get("values"), f"slots.{name}.values"))
        ttl = _minutes(reader, fields.get("ttl_minutes"), name)
        if "regex" not in fields and not values:
            reader.error(
                key_node, f"slot '{name}' has neither 'regex' nor 'values': kefu could never fill it"
            )
        known[name] = SlotSpec(name, regex, ask, ttl, values, reader.ref(key_node))


def _minutes(reader: Any, node: Node | None, name: str) -> float | None:
    if node is None or (isinstance(node, ScalarNode) and node.value in ("", "null", "~")):
        return None
    try:
        value = float(node.value) if isinstance(node, ScalarNode) else -1.0
    except ValueError:
        value = -1.0
    if value <= 0:
        reader.error(node, f"slots.{name}.ttl_minutes must be a positive number of minutes")
        return None
    return value


def read_entry_action(
    reader: Any, fields: Mapping[str, Node], entry_id: str | None
) -> tuple[str | None, tuple[str, ...], str | None]:
    """An entry's `action`, `required_slots` and `form` (names checked; uses are checked in `check_uses`)."""
    action = reader.string(fields.get("action"), "action", entry_id)
    if action is not None and not NAME_RE.match(action):
        reader.error(
            fields["action"], f"action '{action}' is not an action name (like action_order_status)", entry_id
        )
        action = None
    required = tuple(
        text for text, _ in reader.strings(fields.get("required_slots"), "required_slots", entry_id)
    )
    form = reader.string(fields.get("form"), "form", entry_id)
    if form is not None and not NAME_RE.match(form):
        reader.error(fields["form"], f"form '{form}' is not a form name (like order_form)", entry_id)
        form = None
    if (required or form) and action is None and "action" not in fields:
        reader.error(
            fields.get("required_slots") or fields["form"],
            "required_slots/form need an 'action' to run",
            entry_id,
        )
    return action, required, form


def intent_entry(intent: RuleIntent) -> FaqEntry | None:
    """A rule intent with a custom action as the entry-like thing forms and actions work on."""
    if intent.custom_action is None:
        return None
    return FaqEntry(
        id=f"intent.{intent.name}",
        question=intent.examples[0] if intent.examples else intent.name,
        answer=intent.reply or ACTION_ONLY_ANSWER,
        action=intent.custom_action,
        required_slots=intent.required_slots,
        source=intent.source,
    )


def check_uses(entries: Iterable[FaqEntry], slots: Mapping[str, SlotSpec]) -> list[Problem]:
    """Every required slot is declared under `slots:`."""
    problems: list[Problem] = []
    for entry in entries:
        for name in entry.required_slots:
            if name not in slots:
                source = entry.source
                known = ", ".join(sorted(slots)) or "none declared"
                problems.append(
                    Problem(
                        source.file if source else "<faq>",
                        source.line if source else 1,
                        f"required slot '{name}' is not declared under 'slots:' ({known})",
                        entry.id,
                    )
                )
    return problems
