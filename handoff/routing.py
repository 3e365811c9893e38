"""Skill-group routing: which group a handed-off conversation goes to, and at which priority.

Config (the `handoff:` section of gateway.yaml, parsed by the gateway and passed here as plain data)::

    default_group: 售前
    groups:
      - name: 售前
        categories: [商品咨询, 下单支付]
      - name: 售后
        categories: [退换货, 物流]
        intents: [complaint]   # rule intents routed here...
        priority: high         # ...are queued at this priority (complaints first)

`groups` may also be a mapping `{售后: {categories: [...], ...}}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from handoff.agents import validate_group_name
from handoff.queue import Priority
from kb.model import RuleIntent

__all__ = ["DEFAULT_GROUP", "Route", "RoutingConfigError", "RoutingRules", "SkillGroup"]

DEFAULT_GROUP = "客服"  # used when a deployment configures no groups at all
_GROUP_KEYS = frozenset({"name", "categories", "intents", "priority"})


class RoutingConfigError(ValueError):
    """The routing config is invalid; str() names the field to fix."""


@dataclass(frozen=True, slots=True)
class SkillGroup:
    """A skill group (售前, 售后 …): the FAQ categories and rule intents it receives."""

    name: str
    categories: frozenset[str] = field(default_factory=frozenset)
    intents: frozenset[str] = field(default_factory=frozenset)
    # Queue priority of conversations routed here *by one of its intents* (e.g. complaint → high).
    # Category routes stay normal: a whole group at high priority would make priority meaningless in
    # its own queue, since queues are per group.
    priority: Priority = Priority.NORMAL

    def __post_init__(self) -> None:
        validate_group_name(self.name)
        for name in ("categories", "intents"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise ValueError(f"group {self.name}: {name} must be a list, got the string {value!r}")
            object.__setattr__(self, name, frozenset(value))
        object.__setattr__(self, "priority", Priority.parse(self.priority))


@dataclass(frozen=True, slots=True)
class Route:
    """Where a handoff goes: the group's queue and the priority within it."""

    group: str
    priority: Priority


@dataclass(frozen=True, slots=True)
class RoutingRules:
    """Intent and category → skill group; unknown ones go to `default_group`."""

    groups: tuple[SkillGroup, ...] = (SkillGroup(DEFAULT_GROUP),)
    default_group: str = DEFAULT_GROUP
    _by_intent: Mapping[str, SkillGroup] = field(init=False, repr=False, compare=False)
    _by_category: Mapping[str, SkillGroup] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        names = [g.name for g in self.groups]
        if not names:
            problems.append("groups: at least one skill group is required")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"groups: duplicate group names {duplicates}")
        if names and self.default_group not in names:
            problems.append(
                f"default_group: {self.default_group!r} is not a configured group (known: {', '.join(names)})"
            )
        by_intent: dict[str, SkillGroup] = {}
        by_category: dict[str, SkillGroup] = {}
        for group in self.groups:
            for table, keys, what in (
                (by_intent, group.intents, "intent"),
                (by_category, group.categories, "category"),
            ):
                for key in sorted(keys):
                    other = table.get(key)
                    if other is not None and other.name != group.name:
                        # Ambiguous routing would depend on list order; make the admin decide.
                        problems.append(f"{what} {key!r} is routed to both {other.name} and {group.name}")
                    table[key] = group
        if problems:
            raise RoutingConfigError("; ".join(problems))
        object.__setattr__(self, "_by_intent", by_intent)
        object.__setattr__(self, "_by_category", by_category)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> RoutingRules:
        """Build and validate rules from the `handoff:` config section (None/empty = one default group)."""
        if not section:
            return cls()
        raw_groups = section.get("groups") or []
        if isinstance(raw_groups, Mapping):
            raw_groups = [{"name": name, **(body or {})} for name, body in raw_groups.items()]
        if not isinstance(raw_groups, Sequence) or isinstance(raw_groups, str):
            raise RoutingConfigError("groups: must be a list of groups or a mapping of name → group")
        groups: list[SkillGroup] = []
        for index, raw in enumerate(raw_groups):
            where = f"groups[{index}]"
            if not isinstance(raw, Mapping):
                raise RoutingConfigError(f"{where}: must be a mapping with a name, got {raw!r}")
            unknown = set(raw) - _GROUP_KEYS
            if unknown:
                raise RoutingConfigError(
                    f"{where}: unknown keys {sorted(unknown)} (allowed: {', '.join(sorted(_GROUP_KEYS))})"
                )
            try:
                groups.append(
                    SkillGroup(
                        name=raw.get("name"),  # type: ignore[arg-type]
                        categories=_str_list(raw.get("categories"), "categories"),
                        intents=_str_list(raw.get("intents"), "intents"),
                        priority=raw.get("priority"),  # type: ignore[arg-type]
                    )
                )
            except (ValueError, TypeError) as exc:
                raise RoutingConfigError(f"{where}: {exc}") from None
        default = section.get("default_group")
        if not groups:
            # Only a default named: one group of that name, so notices and the console can use it.
            return cls((SkillGroup(default),), default) if default else cls()
        default = default or groups[0].name
        return cls(groups=tuple(groups), default_group=default)

    @property
    def group_names(self) -> tuple[str, ...]:
        """Every configured group, in config order."""
        return tuple(g.name for g in self.groups)

    @property
    def uses_categories(self) -> bool:
        """True when some group is chosen by FAQ category (else a handoff need not look its category up)."""
        return bool(self._by_category)

    def get(self, name: str) -> SkillGroup | None:
        """The group called `name`, or None."""
        return next((g for g in self.groups if g.name == name), None)

    def group_for(self, intent: str | None = None, category: str | None = None) -> str:
        """The skill group for a handoff: the intent's route wins, then the FAQ category's, then the default."""
        # Intent first: "投诉" on a question about 物流 is a complaint for 售后, not a shipping question.
        if intent and intent in self._by_intent:
            return self._by_intent[intent].name
        if category and category in self._by_category:
            return self._by_category[category].name
        return self.default_group

    def priority_for(self, intent: str | None = None, declared: Priority | str | None = None) -> Priority:
        """Queue priority: the routed group's intent priority or the kb's declared one, whichever is higher."""
        # Config can raise a priority but never lower one the kb declared (a complaint stays high).
        configured = (
            self._by_intent[intent].priority if intent and intent in self._by_intent else Priority.NORMAL
        )
        declared_p = Priority.parse(declared)
        return max(configured, declared_p, key=lambda p: p.rank)

    def route(
        self, intent: str | None = None, category: str | None = None, declared: Priority | str | None = None
    ) -> Route:
        """Group and priority for a handoff, in one call."""
        return Route(self.group_for(intent, category), self.priority_for(intent, declared))

    def with_rule_intents(self, intents: Iterable[RuleIntent]) -> RoutingRules:
        """Add the kb's `RuleIntent.group` routes; config routes win, an unknown group is an error."""
        extra: dict[str, set[str]] = {}
        for intent in intents:
            if intent.group is None or intent.name in self._by_intent:
                continue
            if self.get(intent.group) is None:
                where = f" ({intent.source})" if intent.source else ""
                raise RoutingConfigError(
                    f"intent {intent.name}{where}: group {intent.group!r} is not a configured group "
                    f"(known: {', '.join(self.group_names)})"
                )
            extra.setdefault(intent.group, set()).add(intent.name)
        if not extra:
            return self
        groups = tuple(
            SkillGroup(g.name, g.categories, g.intents | extra.get(g.name, set()), g.priority)
            for g in self.groups
        )
        return RoutingRules(groups=groups, default_group=self.default_group)


def _str_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{key}: must be a list of names, got {value!r}")
    bad = [v for v in value if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ValueError(f"{key}: names must be non-empty strings, got {bad!r}")
    return [v.strip() for v in value]
