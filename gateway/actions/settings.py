"""The `actions:` section of gateway.yaml: where kefu's custom actions (rasa-sdk) run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ActionsSettings(BaseModel):
    """Custom actions: in-process `modules`, or a Rasa action server at `url` (not both).

    `on_error` says what the customer gets when an action fails (server down, timeout, 5xx, malformed
    answer, an exception): `offer` — an apology and a 转人工 suggestion; `handoff` — an apology and a human.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = (
        None  # e.g. http://127.0.0.1:5055/webhook (`python -m rasa_sdk --actions my_shop.actions`)
    )
    modules: list[str] = Field(
        default_factory=list
    )  # e.g. [my_shop.actions], loaded with rasa-sdk's ActionExecutor
    timeout_s: float = Field(default=3.0, gt=0, le=60)  # per call; WeChat's passive reply waits 5 s in all
    on_error: Literal["offer", "handoff"] = "offer"
    form_ttl_minutes: float = Field(default=30, gt=0)  # an unanswered form is dropped after this
    max_followups: int = Field(default=3, ge=0, le=10)  # FollowupAction chain length before kefu stops
    # In-process demo/back-office apps started beside the gateway (module:factory → an aiohttp app), e.g. the
    # demo shop API that the demo actions query: {"demo.shop_api:create_app": 8091}.
    serve_apps: dict[str, int] = Field(default_factory=dict)
    # The action the agent console runs for the customer panel's 订单信息 (with the conversation's slots and
    # history), e.g. action_order_status; unset: no order panel.
    order_info: str | None = Field(default=None, pattern=r"^action_[a-z0-9_]+$")

    @model_validator(mode="after")
    def _one_way(self) -> ActionsSettings:
        if self.url and self.modules:
            raise ValueError(
                "set either actions.url (an action server) or actions.modules (in-process), not both"
            )
        return self

    @property
    def enabled(self) -> bool:
        """True when actions can run at all."""
        return bool(self.url or self.modules)
