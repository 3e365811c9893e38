"""The QQ conversation-key space, shared by OneBot and the official QQ bot (`qq:{account}:…`)."""

from __future__ import annotations


def parse_conversation_key(key: str) -> dict[str, str]:
    """Addressing recovered from a conversation key (fallback when an Outgoing carries no target)."""
    parts = key.split(":")
    if len(parts) == 5 and parts[0] == "qq" and parts[2] == "group":
        return {"chat_type": "group", "group_id": parts[3], "user_id": parts[4]}
    if len(parts) == 4 and parts[0] == "qq" and parts[2] == "private":
        return {"chat_type": "private", "user_id": parts[3]}
    return {}
