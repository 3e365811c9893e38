"""Who may do what in the console: agents see their groups' queue and their own conversations;
supervisors and admins see and reassign everything.

Every check returns a `Permission` (truthy when allowed) carrying a reason the console can show;
`require()` turns a denial into `PermissionDenied` for handlers that prefer exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass

from handoff.agents import AgentInfo, Role
from handoff.state import ConversationState

__all__ = [
    "ConversationRef",
    "Permission",
    "PermissionDenied",
    "can_claim",
    "can_close",
    "can_hand_back",
    "can_manage_agents",
    "can_reassign",
    "can_reply",
    "can_transfer",
    "can_view",
    "require",
]


@dataclass(frozen=True, slots=True)
class ConversationRef:
    """What a permission check needs to know about a conversation."""

    id: str
    group: str  # the skill group whose queue it is (or was) in
    state: ConversationState
    assigned_agent_id: str | None = None  # the current agent; for a closed one, the last agent


@dataclass(frozen=True, slots=True)
class Permission:
    """The answer to "may this agent do that?", with the reason when not (for the console and the audit log)."""

    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


class PermissionDenied(Exception):
    """An agent tried something their role or groups do not allow; str() is the reason."""


_OK = Permission(True)


def _deny(reason: str) -> Permission:
    return Permission(False, reason)


def require(permission: Permission) -> None:
    """Raise PermissionDenied with the reason unless the permission is granted."""
    if not permission:
        raise PermissionDenied(permission.reason)


def _is_own(agent: AgentInfo, conversation: ConversationRef) -> bool:
    return conversation.assigned_agent_id is not None and conversation.assigned_agent_id == agent.id


def can_view(agent: AgentInfo, conversation: ConversationRef) -> Permission:
    """Supervisors/admins: everything; agents: their own conversations and their groups' queue."""
    if not agent.enabled:
        return _deny("your account is disabled")
    if agent.role.sees_everything or _is_own(agent, conversation):
        return _OK
    if conversation.state is ConversationState.QUEUED and agent.serves(conversation.group):
        return _OK
    if conversation.state is ConversationState.QUEUED:
        return _deny(f"the conversation is queued for group {conversation.group}, which you are not in")
    return _deny("the conversation is not yours")


def can_claim(agent: AgentInfo, conversation: ConversationRef, load: int | None = None) -> Permission:
    """May the agent take this queued conversation? `load` (their open chats) checks capacity when given."""
    if not agent.enabled:
        return _deny("your account is disabled")
    if conversation.state is not ConversationState.QUEUED:
        # An assigned one must be reassigned by a supervisor; claiming would be a silent takeover.
        return _deny(f"only queued conversations can be claimed; this one is {conversation.state.value}")
    if not agent.role.sees_everything and not agent.serves(conversation.group):
        return _deny(f"the conversation is queued for group {conversation.group}, which you are not in")
    if load is not None and load >= agent.max_chats:
        return _deny(f"you are at your limit of {agent.max_chats} conversations; close one first")
    return _OK


def can_reply(agent: AgentInfo, conversation: ConversationRef) -> Permission:
    """Only the assigned agent replies, whatever their role, so a customer never hears two humans at once."""
    if not agent.enabled:
        return _deny("your account is disabled")
    if conversation.state is not ConversationState.ASSIGNED:
        return _deny(f"the conversation is {conversation.state.value}; claim it before replying")
    if not _is_own(agent, conversation):
        hint = "; reassign it to yourself first" if agent.role.sees_everything else ""
        return _deny(f"the conversation is assigned to another agent{hint}")
    return _OK


def can_transfer(
    agent: AgentInfo,
    conversation: ConversationRef,
    *,
    to_agent: AgentInfo | None = None,
    to_group: str | None = None,
) -> Permission:
    """May the agent hand this conversation to another agent or group? Exactly one target is required."""
    if (to_agent is None) == (to_group is None):
        return _deny("choose exactly one target: an agent or a group")
    if not agent.enabled:
        return _deny("your account is disabled")
    if conversation.state not in (ConversationState.QUEUED, ConversationState.ASSIGNED):
        return _deny(f"a {conversation.state.value} conversation cannot be transferred")
    if not agent.role.sees_everything:
        # The assignee may pass their chat on; a group member may re-route a mis-routed queued one.
        own = conversation.state is ConversationState.ASSIGNED and _is_own(agent, conversation)
        in_queue = conversation.state is ConversationState.QUEUED and agent.serves(conversation.group)
        if not (own or in_queue):
            return _deny("you can only transfer your own conversations or your groups' queue")
    if to_agent is not None:
        if not to_agent.enabled:
            return _deny(f"agent {to_agent.name} is disabled")
        if _is_own(to_agent, conversation) and conversation.state is ConversationState.ASSIGNED:
            return _deny(f"the conversation is already with {to_agent.name}")
    elif to_group == conversation.group and conversation.state is ConversationState.QUEUED:
        return _deny(f"the conversation is already queued for {to_group}")
    return _OK


def can_reassign(agent: AgentInfo, conversation: ConversationRef, to_agent: AgentInfo) -> Permission:
    """Supervisors and admins may give any open conversation to any enabled agent."""
    if not agent.enabled:
        return _deny("your account is disabled")
    if not agent.role.sees_everything:
        return _deny("only supervisors and admins can reassign conversations")
    if conversation.state not in (ConversationState.QUEUED, ConversationState.ASSIGNED):
        return _deny(f"a {conversation.state.value} conversation cannot be reassigned")
    if not to_agent.enabled:
        return _deny(f"agent {to_agent.name} is disabled")
    if conversation.state is ConversationState.ASSIGNED and _is_own(to_agent, conversation):
        return _deny(f"the conversation is already with {to_agent.name}")
    return _OK


def can_close(agent: AgentInfo, conversation: ConversationRef) -> Permission:
    """The assignee or a supervisor/admin may close (or hand back to the bot) an open conversation."""
    if not agent.enabled:
        return _deny("your account is disabled")
    if conversation.state not in (ConversationState.QUEUED, ConversationState.ASSIGNED):
        return _deny(f"the conversation is already {conversation.state.value}")
    if agent.role.sees_everything or _is_own(agent, conversation):
        return _OK
    return _deny("only the assigned agent or a supervisor can close this conversation")


def can_hand_back(agent: AgentInfo, conversation: ConversationRef) -> Permission:
    """Handing back to the bot ends the human part like a close, so the same people may do it."""
    return can_close(agent, conversation)


def can_manage_agents(agent: AgentInfo) -> Permission:
    """Only admins create agents, change roles/groups and issue tokens."""
    if agent.enabled and agent.role is Role.ADMIN:
        return _OK
    return _deny("only admins can manage agents")
