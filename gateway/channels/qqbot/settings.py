"""An official QQ bot's settings (`channels.qqbot[]` in gateway.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_API_BASE = "https://api.sgroup.qq.com"
DEFAULT_TOKEN_URL = "https://bots.qq.com/app/getAppAccessToken"


class QQBotAccountSettings(BaseModel):
    """One QQ official bot (webhook mode): AppID and AppSecret from q.qq.com, API endpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    appid: str = Field(min_length=1)
    secret: str = Field(min_length=1)
    api_base: str = DEFAULT_API_BASE
    token_url: str = DEFAULT_TOKEN_URL

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
