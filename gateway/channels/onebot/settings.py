"""A OneBot v11 account's settings (`channels.onebot[]` in gateway.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class OneBotAccountSettings(BaseModel):
    """One OneBot v11 bot (a QQ account run by NapCat/Lagrange/go-cqhttp/LLOneBot)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    # HTTP POST: OneBot signs bodies with HMAC-SHA1 under this secret (X-Signature: sha1=…).
    secret: str | None = None
    # Reverse WebSocket: the bearer token the client must present; also sent to the HTTP API.
    access_token: str | None = None
    # The OneBot HTTP API (e.g. http://127.0.0.1:3000) for later sends when no reverse WebSocket is up.
    api_url: str | None = None
    reply_in_group: Literal["mention", "always"] = "mention"

    @field_validator("secret", "access_token", "api_url")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value
