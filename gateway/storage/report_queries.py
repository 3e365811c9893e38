"""Read-only queries behind the 受理记录 (`kefu report`, `GET /api/v1/reports/records`).

Builds `handoff.reports.ConversationRecord`s for the conversations opened in [start, end); everything
counted from them is decided in `handoff.reports`. Plain selects on both databases (no date functions),
messages read in chunks of conversation ids so a month's export stays a handful of queries.
Also the retention purge (`kefu purge`): conversations closed before a cut-off, with everything that
hangs off them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, or_, select, update

from gateway.storage.schema.core import Conversation, Customer, MessageRecord, OutboxRecord
from gateway.storage.schema.handoff import (
    AgentEventRecord,
    AgentRecord,
    AssignmentRecord,
    CsatRecord,
    NoteRecord,
    TicketRecord,
)
from gateway.storage.sla_store import FollowUpRecord, SlaNoticeRecord
from gateway.storage.store import Store
from handoff.reports import ConversationRecord, FaqHit
from handoff.waiting import QUEUED_ANSWERED, QUEUED_UNANSWERED

__all__ = ["EntryInfo", "PurgeResult", "attached_keys", "conversation_records", "purge_before"]

# The same definition as the admin dashboard (gateway.storage.stats_queries): a question the bot could not
# answer is one it handed off for lack of a match, or only guessed at (您是不是想问).
UNANSWERED_HANDOFF_REASONS = ("no_match", "unsure", "no_kb")
_CHUNK = 500  # ids per IN (...): well under SQLite's and asyncpg's parameter limits


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """What the report shows of an FAQ entry: its standard question and category."""

    question: str
    category: str | None = None


EntryLookup = Callable[[str], EntryInfo | None]


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


@dataclass(slots=True)
class _MessageFacts:
    first_question: str = ""
    hits: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    first_agent_at: datetime | None = None


async def conversation_records(
    store: Store, start: datetime, end: datetime, *, entries: EntryLookup | None = None
) -> list[ConversationRecord]:
    """The conversations opened in [start, end) as report records, oldest first."""
    query = (
        select(
            Conversation.id,
            Conversation.channel,
            Conversation.state,
            Conversation.opened_at,
            Conversation.last_activity_at,
            Conversation.closed_at,
            Conversation.closed_reason,
            Conversation.handoff_reason,
            Conversation.group.label("conversation_group"),
            Conversation.queued_at,
            Customer.user_id,
            Customer.name.label("customer_name"),
            AssignmentRecord.agent_id,
            AssignmentRecord.group.label("assigned_group"),
            AssignmentRecord.assigned_at,
            AssignmentRecord.first_response_at,
            AssignmentRecord.active,
            AssignmentRecord.ended_at,
            AssignmentRecord.tags,
            AgentRecord.name.label("agent_name"),
            CsatRecord.rating,
            TicketRecord.id.label("ticket_id"),
            FollowUpRecord.due_at.label("follow_up_due_at"),
            FollowUpRecord.closed_at.label("follow_up_closed_at"),
        )
        .join(Customer, Customer.id == Conversation.customer_id)
        .outerjoin(AssignmentRecord, AssignmentRecord.conversation_id == Conversation.id)
        .outerjoin(AgentRecord, AgentRecord.id == AssignmentRecord.agent_id)
        .outerjoin(CsatRecord, CsatRecord.conversation_id == Conversation.id)
        .outerjoin(TicketRecord, TicketRecord.conversation_id == Conversation.id)
        .outerjoin(FollowUpRecord, FollowUpRecord.conversation_id == Conversation.id)
        .where(Conversation.opened_at >= start, Conversation.opened_at < end)
        .order_by(Conversation.opened_at, Conversation.id)
    )
    async with store.engine.connect() as conn:
        rows = list(await conn.execute(query))
        facts = await _message_facts(conn, [r.id for r in rows])
    lookup = entries or (lambda _entry_id: None)
    records: list[ConversationRecord] = []
    for r in rows:
        f = facts.get(r.id, _MessageFacts())
        infos = [(entry_id, lookup(entry_id)) for entry_id in f.hits]
        hits = tuple(FaqHit(entry_id, info.question if info else "") for entry_id, info in infos)
        category = next((info.category for _e, info in infos if info and info.category), None)
        handed_off_at = _aware(r.queued_at)
        first_agent = min(
            (t for t in (_aware(r.first_response_at), f.first_agent_at) if t is not None), default=None
        )
        human_ended = None
        if r.agent_id is not None and not r.active:
            human_ended = _aware(r.ended_at)
        elif handed_off_at is not None and r.closed_at is not None:
            human_ended = _aware(r.closed_at)  # closed while still queued (a 留言 answered and closed, idle)
        close_reason = r.closed_reason
        if close_reason is None and human_ended is not None and r.state == "bot":
            close_reason = "back_to_bot"
        records.append(
            ConversationRecord(
                conversation_id=str(r.id),
                started_at=_aware(r.opened_at),  # type: ignore[arg-type]
                channel=r.channel,
                customer_id=r.user_id,
                customer_name=r.customer_name or "",
                first_question=f.first_question,
                ended_at=_aware(r.closed_at) or (human_ended if r.state == "bot" else None),
                category=category,
                faq_hits=hits,
                unanswered=tuple(f.unanswered),
                handoff_reason=r.handoff_reason if handed_off_at is not None else None,
                handed_off_at=handed_off_at,
                is_ticket=r.ticket_id is not None,
                group=r.assigned_group or r.conversation_group,
                agent_id=str(r.agent_id) if r.agent_id is not None else None,
                agent_name=r.agent_name,
                assigned_at=_aware(r.assigned_at),
                first_agent_reply_at=first_agent,
                human_ended_at=human_ended,
                close_reason=close_reason,
                rating=r.rating,
                tags=tuple(r.tags or ()),
                follow_up_due_at=_aware(r.follow_up_due_at),
                follow_up_closed_at=_aware(r.follow_up_closed_at),
            )
        )
    return records


async def _message_facts(conn: object, ids: list[int]) -> dict[int, _MessageFacts]:
    facts: dict[int, _MessageFacts] = defaultdict(_MessageFacts)
    for chunk in _chunks(ids):
        query = (
            select(
                MessageRecord.conversation_id,
                MessageRecord.direction,
                MessageRecord.sender,
                MessageRecord.kind,
                MessageRecord.text,
                MessageRecord.decision,
                MessageRecord.reason,
                MessageRecord.entry_id,
                MessageRecord.created_at,
            )
            .where(MessageRecord.conversation_id.in_(chunk))
            .order_by(MessageRecord.conversation_id, MessageRecord.id)
        )
        for m in await conn.execute(query):  # type: ignore[attr-defined]
            f = facts[m.conversation_id]
            if m.direction == "in":
                if m.kind == "text" and not f.first_question and m.text:
                    f.first_question = m.text
                if m.entry_id and (m.decision == "answer" or m.reason == QUEUED_ANSWERED):
                    f.hits.append(m.entry_id)
                elif m.kind == "text" and (
                    m.decision == "suggest"
                    or (m.decision == "handoff" and m.reason in UNANSWERED_HANDOFF_REASONS)
                    or (m.decision == "with_human" and m.reason == QUEUED_UNANSWERED)
                ):
                    f.unanswered.append(m.text)
            elif m.sender == "agent" and f.first_agent_at is None:
                f.first_agent_at = _aware(m.created_at)
    return facts


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """How many rows the retention purge deleted, per table."""

    conversations: int
    messages: int
    other: int
    # Stored files of the deleted messages' attachments (gateway.media keys): the caller removes them.
    attachment_keys: tuple[str, ...] = ()


async def purge_before(store: Store, cutoff: datetime, *, dry_run: bool = False) -> PurgeResult:
    """Delete conversations over before `cutoff` with their messages, assignments, notes, CSAT, 留言, events.

    Over = closed, or a bot conversation silent since before the cut-off (the pipeline only closes those
    when the customer writes again). Queued and assigned ones are kept whatever their age: a human may
    still owe an answer. Customers stay (no text) so a returning customer keeps their id. Finished
    outbox rows created before the cut-off go too: they hold the texts that were sent.
    """
    async with store.write_lock(), store.engine.begin() as conn:
        ids = list(
            await conn.scalars(
                select(Conversation.id).where(
                    Conversation.state.in_(("closed", "bot")),
                    or_(Conversation.closed_at < cutoff, Conversation.closed_at.is_(None)),
                    Conversation.last_activity_at < cutoff,
                )
            )
        )
        messages = other = 0
        keys: list[str] = []
        for chunk in _chunks(ids):
            message_ids = select(MessageRecord.id).where(MessageRecord.conversation_id.in_(chunk))
            if dry_run:
                messages += len(list(await conn.scalars(message_ids)))
                continue
            attached = select(MessageRecord.attachment).where(
                MessageRecord.conversation_id.in_(chunk), MessageRecord.attachment.is_not(None)
            )
            keys += [a["key"] for a in await conn.scalars(attached) if isinstance(a, dict) and a.get("key")]
            # Children first: foreign keys are enforced on both databases.
            other += (
                await conn.execute(delete(OutboxRecord).where(OutboxRecord.message_id.in_(message_ids)))
            ).rowcount
            for table in (
                NoteRecord,
                CsatRecord,
                TicketRecord,
                AssignmentRecord,
                AgentEventRecord,
                SlaNoticeRecord,
                FollowUpRecord,
            ):
                other += (await conn.execute(delete(table).where(table.conversation_id.in_(chunk)))).rowcount
            # reply_to points from a reply to its question, both in the same conversation: clear, then delete.
            await conn.execute(
                update(MessageRecord).where(MessageRecord.conversation_id.in_(chunk)).values(reply_to=None)
            )
            messages += (
                await conn.execute(delete(MessageRecord).where(MessageRecord.conversation_id.in_(chunk)))
            ).rowcount
            await conn.execute(delete(Conversation).where(Conversation.id.in_(chunk)))
        if not dry_run:
            finished = delete(OutboxRecord).where(
                OutboxRecord.created_at < cutoff, OutboxRecord.status.in_(("sent", "failed", "undeliverable"))
            )
            other += (await conn.execute(finished)).rowcount
        return PurgeResult(len(ids), messages, other, tuple(dict.fromkeys(keys)))


async def attached_keys(store: Store, keys: Sequence[str]) -> set[str]:
    """Which of these stored-file keys a message or an outbox row still refers to (the unsent-upload sweep)."""
    found: set[str] = set()
    async with store.engine.connect() as conn:
        for chunk in [keys[i : i + _CHUNK] for i in range(0, len(keys), _CHUNK)]:
            for table in (MessageRecord, OutboxRecord):
                key = table.attachment["key"].as_string()
                found.update(await conn.scalars(select(key).where(key.in_(chunk))))
    return found
