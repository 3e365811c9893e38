"""The typed config of one WeCom 微信客服 account (`channels.wecom[]`), owned by the channel."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"


class WeComAccountSettings(BaseModel):
    """One 企业微信 corp's 微信客服 callback (route `/wecom/{name}`) and API credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The account name in kefu: the route `/wecom/{name}` and the `wecom:{name}:…` conversation keys.
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    # 企业ID (我的企业 → 企业信息): the receive id of the callback encryption and gettoken's corpid.
    corp_id: str = Field(min_length=1)
    # The Secret of the 微信客服 app (微信客服 → API → Secret), for /cgi-bin/gettoken.
    secret: str = Field(min_length=1)
    # Token and EncodingAESKey of 微信客服 → API → 回调配置.
    token: str = Field(min_length=1)
    aes_key: str
    api_base: str = DEFAULT_API_BASE
    # Serve only this 客服帐号 (open_kfid, wk…); unset = every account the secret may read.
    open_kfid: str | None = None
    # kefu: kefu's own agents take handed-off customers (WeCom stays in 智能助手 state);
    # wecom: the session goes to WeCom's reception staff (service_state/trans).
    handoff_mode: Literal["kefu", "wecom"] = "kefu"
    # handoff_mode wecom: give the session to this 接待人员 (state 3); unset = the 待接入池 queue (state 2).
    servicer_userid: str | None = None
    # A customer message older than this when pulled (a backlog after downtime, or the history on the
    # first pull) is recorded but not answered: the answer would arrive out of context.
    answer_within_minutes: float = Field(default=60, gt=0)
    # Replay window: a validly signed callback whose `timestamp` is further than this from our clock is
    # refused (403). ±5 minutes of clock skew plus WeCom's retries of an unanswered callback, as WeChat's.
    max_clock_skew_s: float = Field(default=330, gt=0, le=86_400)

    @field_validator("aes_key")
    @classmethod
    def _aes_key_length(cls, value: str) -> str:
        if len(value) != 43:
            raise ValueError(f"EncodingAESKey must be 43 characters, got {len(value)}")
        return value

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("open_kfid", "servicer_userid")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None
