"""Wrap-up tags an agent picks when closing."""

from __future__ import annotations

import pytest

from handoff.wrapup import MAX_TAGS, normalize_wrap_up_tags


def test_tags_are_trimmed_deduplicated_and_keep_their_order() -> None:
    assert normalize_wrap_up_tags([" 退货 ", "物流", "退货", "", "ＶＩＰ"]) == ("退货", "物流", "VIP")


@pytest.mark.parametrize(
    ("tags", "allowed", "message"),
    [
        ("退货", None, "must be a list"),
        (["退" * 21], None, "longer than 20"),
        (["a\nb"], None, "control characters"),
        ([3], None, "must be a string"),
        (["闲聊"], ["退货", "物流"], "unknown wrap-up tag '闲聊'; allowed: 物流, 退货"),
        ([f"t{i}" for i in range(MAX_TAGS + 1)], None, "at most 10"),
    ],
)
def test_bad_tags_name_the_problem(tags: object, allowed: list[str] | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_wrap_up_tags(tags, allowed)  # type: ignore[arg-type]
