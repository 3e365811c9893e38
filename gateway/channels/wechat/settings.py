"""A WeChat official account's settings (`channels.wechat[]` in gateway.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WeChatAccountSettings(BaseModel):
    """One WeChat official account (公众号): its callback token, optional AES key and API credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    token: str = Field(min_length=1)
    aes_key: str | None = None  # EncodingAESKey (43 chars) for compatible/safe mode
    appid: str = Field(min_length=1)
    secret: str = ""
    api_base: str = "https://api.weixin.qq.com"
    # Replay window: a request whose signed `timestamp` is further than this from our clock is refused (403).
    # ±5 minutes of clock skew plus WeChat's retry span (3 attempts, 5 s apart), rounded up.
    max_clock_skew_s: float = Field(default=330, gt=0, le=86_400)
    # WeChat retries a message it got no answer to after 5 s. With several processes (redis.url) a request
    # of the same MsgId that comes sooner is not such a retry and never gets a second passive answer.
    retry_interval_s: float = Field(default=5.0, gt=0, le=60)

    @field_validator("aes_key")
    @classmethod
    def _aes_key_length(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if len(value) != 43:
            raise ValueError(f"EncodingAESKey must be 43 characters, got {len(value)}")
        return value

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
