"""The `redis:` section of gateway.yaml: the shared coordination layer of several kefu processes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RedisSettings(BaseModel):
    """Where the processes of one deployment share their coordination state (gateway/coord/).

    Without `url` a single process keeps everything in its own memory, as before.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None  # e.g. redis://127.0.0.1:6379/0
    # Every key and pub/sub channel starts with `<prefix>:` (several deployments may share one Redis).
    prefix: str = Field(default="kefu", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # A command slower than this counts as Redis being down (a clear 503 rather than a hung webhook).
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    # The Retry-After of the 503 answered while Redis is down.
    retry_after_s: int = Field(default=5, ge=1, le=3600)

    @field_validator("url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis.url must start with redis://, rediss:// or unix://")
        return value
