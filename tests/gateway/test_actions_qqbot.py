"""A form over the official QQ bot: the answers go out through the bot API as passive replies."""

from __future__ import annotations

from typing import Any

from tests.fakes.action_servers import TEST_ACTIONS
from tests.gateway import test_qqbot
from tests.gateway.test_actions_flow import ACTIONS_FAQ, ASK_ORDER
from tests.gateway.test_qqbot import GROUP

# The QQ bot suite's fixtures: the fake bot API and a kefu wired to it.
qq_api = test_qqbot.qq_api
start_kefu = test_qqbot.start_kefu


async def test_a_qq_group_member_fills_the_form(start_kefu: Any, faq_dir: Any) -> None:
    kefu = await start_kefu(
        kb={"paths": [str(faq_dir), str(ACTIONS_FAQ)]}, actions={"modules": [TEST_ACTIONS], "timeout_s": 20}
    )
    await kefu.ask(content=" 我的快递到哪了")
    # The bot answers after the ack, through the API: the next message waits for the question.
    [first] = await kefu.api.wait_for_messages(1, within=60)
    await kefu.ask(content=" A12345678")
    first, second = await kefu.api.wait_for_messages(2, within=60)
    assert first["path"] == second["path"] == f"/v2/groups/{GROUP}/messages"
    assert first["content"] == ASK_ORDER
    assert second["content"].startswith("您的订单A12345678已到达【上海转运中心】")
