"""Canned replies (话术) per skill group, with `{customer_name}`-style placeholders.

Only `{identifier}` is a placeholder: ASCII letters, digits and `_`, not starting with a digit, directly
inside one pair of braces — no format specs, indexing or attribute access (a template is admin input, and
`str.format` on it could read `{0.__class__}`). Any other brace is plain text: "{ 订单号 }", "{}", "{1,2}",
JSON like `{"a": 1}` or Chinese inside braces reach the customer as written. A reply to a customer that
still contains a placeholder was not filled in, and the agent API refuses it (`unfilled_refusal`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from handoff.agents import AgentInfo

__all__ = [
    "KNOWN_PLACEHOLDERS",
    "MAX_CANNED_LENGTH",
    "CannedReply",
    "RenderedCanned",
    "canned_for_agent",
    "may_edit_canned",
    "unfilled_refusal",
    "missing_placeholders",
    "placeholders",
    "render_canned",
    "render_canned_report",
    "validate_canned",
]

KNOWN_PLACEHOLDERS: Mapping[str, str] = MappingProxyType(
    {
        "customer_name": "客户昵称",
        "agent_name": "客服名字",
        "order_id": "订单号",
        "group": "技能组",
        "shop_name": "店铺名称",
        "date": "今天的日期",
        "service_hours": "人工客服服务时间",
    }
)
# WeChat 客服消息 text is limited to 2048 bytes; 600 characters of Chinese stay well inside it.
MAX_CANNED_LENGTH = 600

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Something that looks meant as a placeholder but is not one: "{customer name}", "{ 订单号 }", "{}".
_ALMOST = re.compile(r"\{[^{}\n]{0,30}\}")


@dataclass(frozen=True, slots=True)
class CannedReply:
    """One canned reply; `group` None = offered to every group."""

    title: str
    text: str
    group: str | None = None


@dataclass(frozen=True, slots=True)
class RenderedCanned:
    """A rendered canned reply and the placeholders that had no value (left visible in `text`)."""

    text: str
    missing: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every placeholder got a value, so the text can go to the customer as is."""
        return not self.missing


def placeholders(template: str) -> tuple[str, ...]:
    """The placeholder names in a template, in order of first appearance."""
    return tuple(dict.fromkeys(_PLACEHOLDER.findall(template)))


def render_canned_report(template: str, context: Mapping[str, object]) -> RenderedCanned:
    """Fill placeholders from `context`; unknown or empty ones stay visible and are listed in `missing`."""
    missing: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = context.get(name)
        if value is None or value == "":
            if name not in missing:
                missing.append(name)
            return match.group(0)
        return str(value)

    # One pass of re.sub: a value that itself contains "{order_id}" (a customer can pick their nickname)
    # is inserted verbatim and never expanded again.
    return RenderedCanned(_PLACEHOLDER.sub(fill, template), tuple(missing))


def render_canned(template: str, context: Mapping[str, object]) -> str:
    """Fill `{name}` placeholders from `context`; never raises on unknown ones, they stay visible."""
    return render_canned_report(template, context).text


def missing_placeholders(template: str, context: Mapping[str, object]) -> tuple[str, ...]:
    """Placeholders of the template that `context` cannot fill (absent, None or empty)."""
    return render_canned_report(template, context).missing


def validate_canned(template: str, allowed: Iterable[str] = KNOWN_PLACEHOLDERS) -> list[str]:
    """Problems with a template, each naming what to fix; an empty list means it is fine to save."""
    problems: list[str] = []
    if not template or not template.strip():
        return ["the reply text is empty"]
    if len(template) > MAX_CANNED_LENGTH:
        problems.append(f"the reply is {len(template)} characters; keep it under {MAX_CANNED_LENGTH}")
    allowed = set(allowed)
    for name in placeholders(template):
        if name not in allowed:
            problems.append(
                f"unknown placeholder {{{name}}}; use one of "
                + ", ".join(f"{{{a}}}" for a in sorted(allowed))
            )
    for match in _ALMOST.finditer(template):
        if not _PLACEHOLDER.fullmatch(match.group(0)):
            problems.append(
                f"{match.group(0)} is not a valid placeholder: use letters, digits and _ only, e.g. {{customer_name}}"
            )
    return problems


def canned_for_agent(replies: Iterable[CannedReply], agent: AgentInfo) -> list[CannedReply]:
    """The canned replies an agent is offered: global ones and those of their groups (all for supervisors)."""
    return [r for r in replies if r.group is None or agent.role.sees_everything or agent.serves(r.group)]


UNFILLED_CODE = "unfilled_placeholder"


def unfilled_refusal(text: str) -> dict[str, object] | None:
    """Why a reply to a customer must not be sent as is (placeholders left in it), or None to send it.

    The body of the API's 422: a Chinese message naming each placeholder, a stable code, the names.
    """
    names = placeholders(text)
    if not names:
        return None
    shown = "、".join(
        f"{{{n}}}" + (f"（{KNOWN_PLACEHOLDERS[n]}）" if n in KNOWN_PLACEHOLDERS else "") for n in names
    )
    return {
        "error": f"回复中还有未填写的占位符：{shown}。请填写实际内容后再发送。",
        "code": UNFILLED_CODE,
        "placeholders": list(names),
    }


def may_edit_canned(agent: AgentInfo, created_by: str | None, group: str | None) -> bool:
    """Supervisors and admins manage every canned reply (the shared ones too); an agent only the ones they
    added for one of their groups."""
    if agent.role.sees_everything:
        return True
    return created_by == agent.id and group is not None and agent.serves(group)
