"""What agents do through the API and the console: view, claim, reply, transfer, reassign, close,
presence. Mixed into HandoffService (gateway/handoff_service.py), whose queue, notices and event log
these actions use.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.handoff_events import CLAIM_STATUS, HandoffError, check_claim, require
from gateway.jobs.follow_ups import open_for_complaint
from gateway.message import Attachment
from gateway.storage import Conflict
from handoff import notices
from handoff.agents import AgentInfo
from handoff.permissions import (
    ConversationRef,
    can_claim,
    can_close,
    can_hand_back,
    can_reassign,
    can_reply,
    can_transfer,
    can_view,
)
from handoff.presence import Presence, accepts_new_chats
from handoff.state import ConversationState
from handoff.store import ClaimOutcome, ClaimResult
from handoff.wrapup import CloseReason, normalize_wrap_up_tags


class AgentActions:
    """The agent-facing half of HandoffService."""

    async def conversation_for(self, agent: AgentInfo, conversation_id: str) -> ConversationRef:
        """The conversation if the agent may see it; 404 / 403 otherwise."""
        ref = await self.db.get_conversation(conversation_id)
        if ref is None:
            raise HandoffError(404, f"no conversation {conversation_id}")
        require(can_view(agent, ref))
        return ref

    async def claim(self, agent: AgentInfo, conversation_id: str) -> ClaimResult:
        """An agent takes a queued conversation; exactly one of racing claims wins."""
        ref = await self.db.get_conversation(conversation_id)
        if ref is None:
            raise HandoffError(404, f"no conversation {conversation_id}")
        if ref.state is ConversationState.ASSIGNED and (
            agent.role.sees_everything or agent.serves(ref.group)
        ):
            raise HandoffError(409, CLAIM_STATUS[ClaimOutcome.TAKEN][1])
        require(can_claim(agent, ref))
        before = await self.flow.snapshot()
        result = await self.db.claim(conversation_id, agent.id, by=agent.id)
        if result.outcome is ClaimOutcome.AT_CAPACITY:
            raise HandoffError(
                409, f"you are at your limit of {agent.max_chats} conversations; close one first"
            )
        check_claim(result)
        await self._assigned(int(conversation_id), agent.id, auto=False, by=agent.id)
        await self._positions(before)
        return result

    async def reply(
        self,
        agent: AgentInfo,
        conversation_id: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        attachment: Attachment | None = None,
    ) -> int:
        """The assigned agent's reply: stored, queued in the outbox, delivered through the channel.

        The same `idempotency_key` (per agent) returns the first reply's id and sends nothing again.
        """
        ref = await self.db.get_conversation(conversation_id)
        if ref is None:
            raise HandoffError(404, f"no conversation {conversation_id}")
        require(can_reply(agent, ref))
        key = f"idempotency:{agent.id}:{idempotency_key}" if idempotency_key is not None else None
        if key is not None and (sent := await self.sent_with_key(int(conversation_id), key)) is not None:
            return sent  # a retry: the first send's message; nothing stored, sent or published again
        try:
            message_id = await self.notify(
                int(conversation_id),
                text,
                sender="agent",
                sender_name=agent.name,
                agent_id=agent.id,
                idempotency_key=key,
                attachment=attachment,
            )
        except Conflict:
            if key is None:
                raise
            # A concurrent retry with the same key stored it first: that one is the reply.
            message_id = await self.notify(
                int(conversation_id), text, sender="agent", agent_id=agent.id, idempotency_key=key
            )
            return message_id
        await self._publish(
            "message.agent",
            {"message_id": message_id, "text": text, "agent_id": agent.id},
            conversation_id=int(conversation_id),
            agent_id=agent.id,  # the assignee's other tabs and supervisors; colleagues may not view it
        )
        return message_id

    async def transfer(
        self, agent: AgentInfo, conversation_id: str, *, to_agent: str | None, to_group: str | None
    ) -> ClaimResult:
        """Hand the conversation to another agent (by name or id) or another group's queue."""
        ref = await self.db.get_conversation(conversation_id)
        if ref is None:
            raise HandoffError(404, f"no conversation {conversation_id}")
        target = None
        if to_agent is not None:
            target = await self.db.agent_by_name(to_agent) or await self.db.get_agent(to_agent)
            if target is None:
                raise HandoffError(404, f"no agent {to_agent!r}")
        if to_group is not None and self.rules.get(to_group) is None:
            raise HandoffError(400, f"unknown group {to_group!r}; known: {', '.join(self.rules.group_names)}")
        require(can_transfer(agent, ref, to_agent=target, to_group=to_group))
        before = await self.flow.snapshot()
        result = await self.db.transfer(
            conversation_id,
            by=agent.id,
            expected_agent_id=ref.assigned_agent_id,
            to_group=to_group,
            to_agent_id=target.id if target else None,
        )
        check_claim(result)
        cid = int(conversation_id)
        await self.notify(
            cid, notices.transferred(to_group=to_group, to_agent_name=target.name if target else None)
        )
        payload = {
            "from_agent_id": ref.assigned_agent_id,
            "to_agent_id": result.agent_id,
            "to_group": to_group,
            "by": agent.id,
        }
        await self._publish("conversation.transferred", payload, conversation_id=cid, group=ref.group)
        if to_group is not None:
            if to_group != ref.group:
                await self._publish("conversation.queued", payload, conversation_id=cid, group=to_group)
            await self.assign_waiting(before=before)
        elif target is not None:
            await self._publish(
                "conversation.assigned",
                {**payload, "agent_id": target.id, "agent_name": target.name},
                conversation_id=cid,
                agent_id=target.id,
            )
            await self._positions(before)
        return result

    async def reassign(self, agent: AgentInfo, conversation_id: str, to_agent: str) -> ClaimResult:
        """Supervisor move of any open conversation to another agent."""
        ref = await self.db.get_conversation(conversation_id)
        if ref is None:
            raise HandoffError(404, f"no conversation {conversation_id}")
        target = await self.db.agent_by_name(to_agent) or await self.db.get_agent(to_agent)
        if target is None:
            raise HandoffError(404, f"no agent {to_agent!r}")
        require(can_reassign(agent, ref, target))
        before = await self.flow.snapshot()
        result = await self.db.reassign(
            conversation_id, target.id, by=agent.id, expected_agent_id=ref.assigned_agent_id
        )
        check_claim(result)
        cid = int(conversation_id)
        await self.notify(cid, notices.transferred(to_agent_name=target.name))
        payload = {
            "from_agent_id": ref.assigned_agent_id,
            "agent_id": target.id,
            "agent_name": target.name,
            "by": agent.id,
        }
        await self._publish("conversation.reassigned", payload, conversation_id=cid, group=ref.group)
        await self._publish("conversation.assigned", payload, conversation_id=cid, agent_id=target.id)
        await self._positions(before)
        return result

    async def close(
        self,
        agent: AgentInfo | None,
        conversation_id: str,
        *,
        reason: CloseReason = CloseReason.AGENT,
        tags: Sequence[str] = (),
    ) -> None:
        """End the human part: closed (with the CSAT question) or back to the bot; frees the agent's slot."""
        ref = await self.db.get_conversation(conversation_id)
        if ref is None:
            raise HandoffError(404, f"no conversation {conversation_id}")
        if agent is not None:
            check = can_hand_back if reason is CloseReason.BACK_TO_BOT else can_close
            require(check(agent, ref))
        try:
            clean_tags = normalize_wrap_up_tags(tags, self.settings.wrap_up_tags)
        except ValueError as exc:
            raise HandoffError(400, str(exc)) from None
        before = await self.flow.snapshot()
        done = await self.db.close(
            conversation_id,
            reason=reason,
            by=agent.id if agent else None,
            tags=clean_tags,
            at=self.clock.now(),
        )
        if not done:
            raise HandoffError(409, "the conversation has already ended")
        cid = int(conversation_id)
        holder = ref.assigned_agent_id
        name = None
        if holder is not None:
            holder_info = await self.db.get_agent(holder)
            name = holder_info.name if holder_info else None
        if reason is CloseReason.BACK_TO_BOT:
            text = notices.back_to_bot()
        elif reason is CloseReason.IDLE:
            text = notices.auto_closed(with_csat=reason.asks_csat)
        else:
            text = notices.closed_by_agent(name)
        await self.notify(cid, text)
        payload = {
            "reason": reason.value,
            "tags": list(clean_tags),
            "by": agent.id if agent else None,
            "agent_id": holder,
        }
        await self._publish("conversation.closed", payload, conversation_id=cid, group=ref.group)
        await open_for_complaint(self, cid, ref.group)  # a complaint gets a 回访 ticket with a deadline
        await self.assign_waiting(before=before)

    async def heartbeat(self, agent: AgentInfo) -> None:
        """A console ping: fresh presence; an agent coming (back) online gets waiting conversations."""
        row = await self.db.agent_row(agent.id)
        was_online = row is not None and accepts_new_chats(row.presence)
        await self.db.heartbeat(agent.id, self.clock.now())
        if not was_online:
            await self._publish(
                "agent.presence", {"agent_id": agent.id, "presence": "online"}, agent_id=agent.id
            )
            await self.assign_waiting()

    async def set_presence(self, agent: AgentInfo, presence: Presence) -> None:
        """The agent chose online/away/offline in the console."""
        if presence is Presence.OFFLINE:
            await self.db.go_offline(agent.id)
        else:
            await self.db.record_heartbeat(agent.id, presence, self.clock.now())
        await self._publish(
            "agent.presence", {"agent_id": agent.id, "presence": presence.value}, agent_id=agent.id
        )
        if presence is Presence.ONLINE:
            await self.assign_waiting()

    def connected(self, agent: AgentInfo) -> None:
        """A console WebSocket opened."""
        self._connections[agent.id] = self._connections.get(agent.id, 0) + 1

    async def disconnected(self, agent: AgentInfo) -> None:
        """A console WebSocket closed; the last one of an agent takes them offline at once."""
        left = self._connections.get(agent.id, 1) - 1
        if left > 0:
            self._connections[agent.id] = left
            return
        self._connections.pop(agent.id, None)
        await self.db.go_offline(agent.id)
