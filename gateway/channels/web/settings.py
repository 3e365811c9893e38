"""The web chat channel's settings (`channels.web` in gateway.yaml)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class WebChannelSettings(BaseModel):
    """The website chat webhook."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # When set, requests must carry X-Kefu-Signature: sha256=<hmac_sha256(secret, body)>.
    secret: str | None = None
    # Where later replies (agent answers) are POSTed; unset = clients poll GET /web/conversations/…
    callback_url: str | None = None
    # Messages per visitor (one bucket per user_id, shared by /web/ws tabs and POST /web/messages):
    # `rate_limit_burst` at once, refilled at `rate_limit_per_minute`; null switches the limit off.
    rate_limit_per_minute: float | None = Field(default=60, gt=0, le=6000)
    rate_limit_burst: int = Field(default=5, ge=1, le=1000)
    # Signed GETs carry `ts` (unix seconds) in their query; further than this from our clock → 403.
    max_clock_skew_s: float = Field(default=300, gt=0, le=86_400)
    # Without a secret anyone can read any visitor's history: `kefu serve` refuses a non-loopback
    # server.host unless this is set to true on purpose.
    public_history: bool = False
    # Shown when the chat opens (not stored); unset = the FAQ's `greeting` reply.
    welcome: str | None = None
    # Buttons under the welcome: FAQ entry ids or questions; empty = the FAQ's first
    # `common_question_count` entries (file order is the curated order).
    common_questions: tuple[str, ...] = ()
    common_question_count: int = Field(default=4, ge=0, le=10)

    @field_validator("secret", "callback_url", "welcome")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("rate_limit_per_minute", "rate_limit_burst", mode="before")
    @classmethod
    def _a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML `yes` would otherwise pass as 1; an empty env value switches the per-minute limit off.
        if isinstance(value, bool):
            raise ValueError("must be a number, not true/false")
        if value == "" and info.field_name == "rate_limit_per_minute":
            return None
        return value
