"""Agents: roles, skill groups, capacity, and the API token that is shown once and stored hashed."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "MAX_CHATS_LIMIT",
    "TOKEN_PREFIX",
    "AgentInfo",
    "Role",
    "hash_token",
    "new_token",
    "validate_agent_name",
    "validate_group_name",
    "verify_token",
]

# A sanity ceiling, not a policy: more parallel chats than this is a typo in the admin form.
MAX_CHATS_LIMIT = 50
# A recognisable prefix lets secret scanners (and people) spot a leaked kefu token in logs or commits.
TOKEN_PREFIX = "kefu_"
_NAME_MAX = 32
_GROUP_MAX = 32


class Role(StrEnum):
    AGENT = "agent"  # serves the queues of their skill groups and their own conversations
    SUPERVISOR = "supervisor"  # sees and reassigns everything
    ADMIN = "admin"  # a supervisor who also manages agents, groups and config

    @property
    def sees_everything(self) -> bool:
        """True for supervisor and admin: every queue and conversation is visible and reassignable."""
        return self is not Role.AGENT


def _check_label(value: object, what: str, limit: int) -> str | None:
    """The problem with a display label (agent name, group name), or None when it is fine."""
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if not value.strip():
        return f"{what} must not be empty"
    if value != value.strip():
        return f"{what} {value!r} must not start or end with whitespace"
    if len(value) > limit:
        return f"{what} {value!r} is longer than {limit} characters"
    # Control/format characters (newlines, zero-width, RTL overrides) would garble the console and
    # the "客服 <name> 为您服务" notice, or let two names look identical.
    bad = [ch for ch in value if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")]
    if bad:
        return f"{what} {value!r} contains control characters {[hex(ord(ch)) for ch in bad]}"
    return None


def validate_agent_name(name: object) -> str:
    """Return the display name shown to customers, or raise ValueError saying what to fix."""
    problem = _check_label(name, "agent name", _NAME_MAX)
    if problem:
        raise ValueError(problem)
    return name  # type: ignore[return-value]


def validate_group_name(name: object) -> str:
    """Return a skill-group name (e.g. 售前, 售后), or raise ValueError saying what to fix."""
    problem = _check_label(name, "group name", _GROUP_MAX)
    if problem:
        raise ValueError(problem)
    if any(ch in name for ch in "{},/"):  # type: ignore[operator]
        # Group names appear in URLs, CSV exports and notice templates; keep them plain.
        raise ValueError(f"group name {name!r} must not contain any of {{ }} , /")
    return name  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """A human agent: who they are, what they may do, which groups they serve and how many chats at once."""

    id: str
    name: str  # display name, shown to customers: "客服 <name> 为您服务"
    role: Role = Role.AGENT
    groups: frozenset[str] = field(default_factory=frozenset)
    max_chats: int = 5
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError(f"agent id must be a non-empty string, got {self.id!r}")
        validate_agent_name(self.name)
        # Accept "agent"/"supervisor"/"admin" straight from config or the database.
        try:
            object.__setattr__(self, "role", Role(self.role))
        except ValueError:
            allowed = ", ".join(r.value for r in Role)
            raise ValueError(f"agent {self.id}: role must be one of {allowed}, got {self.role!r}") from None
        if isinstance(self.groups, str):
            # A bare string would silently become a set of characters: {"售", "后"}.
            raise ValueError(
                f"agent {self.id}: groups must be a list of group names, got the string {self.groups!r}"
            )
        groups = frozenset(self.groups)
        for group in groups:
            validate_group_name(group)
        object.__setattr__(self, "groups", groups)
        if isinstance(self.max_chats, bool) or not isinstance(self.max_chats, int):
            raise ValueError(f"agent {self.id}: max_chats must be an integer, got {self.max_chats!r}")
        if not 0 <= self.max_chats <= MAX_CHATS_LIMIT:
            # 0 is allowed on purpose: an admin who configures but never takes chats.
            raise ValueError(
                f"agent {self.id}: max_chats must be between 0 and {MAX_CHATS_LIMIT}, got {self.max_chats}"
            )

    def serves(self, group: str) -> bool:
        """True when the agent is a member of this skill group."""
        return group in self.groups

    def serves_any(self, groups: Iterable[str]) -> bool:
        """True when the agent is a member of at least one of these groups."""
        return not self.groups.isdisjoint(groups)


def hash_token(plain: str) -> str:
    """The sha256 hex digest stored in place of an API token."""
    # A plain (unsalted, fast) hash is right here: tokens are 256 random bits, not passwords, so there is
    # nothing to brute-force, and an indexed lookup by hash needs the hash to be deterministic.
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh API token as (plain, hash): print `plain` once, store only `hash`."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return plain, hash_token(plain)


def verify_token(plain: str, stored_hash: str) -> bool:
    """True when `plain` hashes to `stored_hash`, compared in constant time."""
    if not isinstance(plain, str) or not isinstance(stored_hash, str) or not plain:
        return False
    # Bytes, not str: compare_digest raises TypeError on non-ASCII str, and a garbled stored value must
    # simply not match.
    return hmac.compare_digest(hash_token(plain).encode(), stored_hash.strip().lower().encode("utf-8"))
