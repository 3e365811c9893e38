"""The Rasa action-server protocol as kefu speaks it: the request it builds, the response it accepts.

Request (`POST /webhook`, or `ActionExecutor.run` in-process): `next_action`, `sender_id`, `tracker`
(sender_id, slots, latest_message {text, intent {name, confidence}, entities}, events, active_loop…),
`domain`, `version`. Response: `events` (`slot` → SlotSet, `followup` → FollowupAction) and `responses`
(`text`, `buttons`, `image`, `custom`). A response `custom` of `{"handoff": true, "reason": "…"}` (from
`dispatcher.utter_message(json_message={"handoff": True, "reason": "…"})`) hands the conversation to a human.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kb.model import KnowledgeBase

RASA_SDK_PROTOCOL_VERSION = "3.1.0"
# Events of earlier messages handed to an action (Rasa sends the whole history; a few turns are enough here).
RECENT_EVENTS = 10


class MalformedResponse(ValueError):
    """The action answered something that is not the action-server response shape."""


@dataclass(frozen=True, slots=True)
class ActionReply:
    """One thing an action says: text, buttons (kefu's suggestions), an image URL."""

    text: str
    suggestions: tuple[str, ...] = ()
    image: str | None = None


@dataclass(frozen=True, slots=True)
class ActionResponse:
    """A parsed action response."""

    replies: tuple[ActionReply, ...] = ()
    slot_sets: Mapping[str, Any] = field(default_factory=dict)
    followup: str | None = None
    handoff_reason: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One earlier message of the conversation, for the tracker's `events`."""

    direction: str  # "in" (customer) or "out"
    text: str
    at: datetime
    entry_id: str | None = None


def domain_for(kb: KnowledgeBase, actions: Sequence[str] = ()) -> dict[str, Any]:
    """The Rasa domain kefu's FAQ amounts to: its slots, and one form per entry with required slots."""
    forms: dict[str, Any] = {}
    for entry in kb.entries:
        if entry.action and entry.required_slots:
            forms[entry.form_name or entry.action] = {"required_slots": list(entry.required_slots)}
    slots = {
        name: {"type": "any", "influence_conversation": False, "mappings": [{"type": "custom"}]}
        for name in kb.slots
    }
    slots["requested_slot"] = {
        "type": "any",
        "influence_conversation": False,
        "mappings": [{"type": "custom"}],
    }
    return {
        "version": "3.1",
        "intents": [e.id for e in kb.entries],
        "entities": list(kb.slots),
        "slots": slots,
        "responses": {},
        "actions": list(actions),
        "forms": forms,
    }


def build_request(
    *,
    action: str,
    sender_id: str,
    text: str,
    intent: str | None,
    confidence: float | None,
    slots: Mapping[str, Any],
    entities: Mapping[str, Any],
    history: Sequence[HistoryItem],
    domain: Mapping[str, Any],
    channel: str,
    active_form: str | None = None,
    candidates: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The action-server request for one action call on a kefu conversation.

    `candidates` are freshly extracted slot values for `validate_<form>`: they go last in `events` as
    `slot` events, which is where rasa-sdk's FormValidationAction looks for slots to validate.
    """
    all_slots = {name: None for name in domain.get("slots", {})}
    all_slots.update(slots)
    if candidates:
        all_slots.update(candidates)
    latest = {
        "text": text,
        "intent": {"name": intent, "confidence": confidence if confidence is not None else 0.0},
        "intent_ranking": [{"name": intent, "confidence": confidence or 0.0}] if intent else [],
        "entities": [
            {"entity": name, "value": value, "extractor": "kefu"} for name, value in entities.items()
        ],
    }
    events: list[dict[str, Any]] = []
    for item in list(history)[-RECENT_EVENTS:]:
        timestamp = item.at.timestamp()
        if item.direction == "in":
            parse = {
                "text": item.text,
                "intent": {"name": item.entry_id, "confidence": 1.0 if item.entry_id else 0.0},
            }
            events.append({"event": "user", "timestamp": timestamp, "text": item.text, "parse_data": parse})
        else:
            events.append({"event": "bot", "timestamp": timestamp, "text": item.text})
    events.append({"event": "user", "text": text, "parse_data": latest, "input_channel": channel})
    if active_form:
        events.append({"event": "active_loop", "name": active_form})
    for name, value in (candidates or {}).items():
        events.append({"event": "slot", "name": name, "value": value})
    tracker = {
        "sender_id": sender_id,
        "slots": all_slots,
        "latest_message": latest,
        "events": events,
        "paused": False,
        "followup_action": None,
        "active_loop": {"name": active_form} if active_form else {},
        "latest_action_name": "action_listen",
        "latest_input_channel": channel,
    }
    return {
        "next_action": action,
        "sender_id": sender_id,
        "tracker": tracker,
        "domain": dict(domain),
        "version": RASA_SDK_PROTOCOL_VERSION,
    }


def parse_response(body: Any) -> ActionResponse:
    """Read an action-server response; anything off-shape raises MalformedResponse."""
    if not isinstance(body, Mapping):
        raise MalformedResponse(f"response is {type(body).__name__}, not an object")
    events = body.get("events")
    responses = body.get("responses")
    events = [] if events is None else events
    responses = [] if responses is None else responses
    if not isinstance(events, list) or not isinstance(responses, list):
        raise MalformedResponse("events and responses must be lists")
    slot_sets: dict[str, Any] = {}
    followup: str | None = None
    handoff: str | None = None
    for event in events:
        if not isinstance(event, Mapping) or not isinstance(event.get("event"), str):
            raise MalformedResponse(f"event without a type: {event!r:.80}")
        kind = event["event"]
        if kind == "slot":
            name = event.get("name")
            if not isinstance(name, str):
                raise MalformedResponse("slot event without a name")
            slot_sets[name] = event.get("value")
        elif kind == "followup":
            name = event.get("name")
            if not isinstance(name, str):
                raise MalformedResponse("followup event without an action name")
            followup = name
        elif kind == "handoff":  # kefu's own event, for actions that prefer an event to a response
            handoff = str(event.get("reason") or "action")
    replies: list[ActionReply] = []
    for response in responses:
        if not isinstance(response, Mapping):
            raise MalformedResponse(f"response item is {type(response).__name__}, not an object")
        custom = response.get("custom") or response.get("json_message")
        if isinstance(custom, Mapping) and custom.get("handoff") is True:
            handoff = str(custom.get("reason") or "action")
        text = response.get("text")
        if text is not None and not isinstance(text, str):
            raise MalformedResponse("response text is not a string")
        buttons = response.get("buttons") or []
        if not isinstance(buttons, list):
            raise MalformedResponse("buttons must be a list")
        suggestions = tuple(
            str(b.get("title") or b.get("payload"))
            for b in buttons
            if isinstance(b, Mapping) and (b.get("title") or b.get("payload"))
        )
        image = response.get("image")
        image = image if isinstance(image, str) and image else None
        if text or suggestions or image:
            replies.append(ActionReply(text or "", suggestions, image))
    return ActionResponse(tuple(replies), slot_sets, followup, handoff)
