"""CQ codes: what OneBot sends as a string arrives as the same segments as the array format, and what kefu
sends cannot be mistaken for a CQ code."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.channels.onebot import cq


def test_escape_text_and_params():
    assert cq.escape("A&B [x]") == "A&amp;B &#91;x&#93;"
    assert cq.escape("a,b") == "a,b"  # commas only matter inside CQ parameters
    assert cq.escape("a,b[1]", in_param=True) == "a&#44;b&#91;1&#93;"


def test_unescape_does_not_decode_twice():
    # "&amp;#91;" is the escaped form of the literal text "&#91;", not of "[".
    assert cq.unescape("&amp;#91;") == "&#91;"
    assert cq.unescape(cq.escape("&#91;")) == "&#91;"


def test_parse_splits_codes_and_text():
    segments = cq.parse("[CQ:at,qq=3000000001] 退货&#91;急&#93;[CQ:face,id=14]")
    assert segments == [
        {"type": "at", "data": {"qq": "3000000001"}},
        {"type": "text", "data": {"text": " 退货[急]"}},
        {"type": "face", "data": {"id": "14"}},
    ]


def test_parse_unescapes_params():
    [segment] = cq.parse("[CQ:share,url=https://x.example/?a=1&amp;b=2,title=A&#44;B]")
    assert segment["data"] == {"url": "https://x.example/?a=1&b=2", "title": "A,B"}


def test_string_and_array_formats_give_the_same_segments():
    array = [{"type": "at", "data": {"qq": 3000000001}}, {"type": "text", "data": {"text": " 你好"}}]
    assert cq.normalise("[CQ:at,qq=3000000001] 你好") == cq.normalise(array)


@pytest.mark.parametrize("bad", [42, [{"data": {}}], [{"type": "text", "data": "x"}], None])
def test_normalise_refuses_what_is_not_a_message(bad):
    with pytest.raises(ValueError):
        cq.normalise(bad)


def test_render_an_at_and_hostile_text():
    out = cq.render([cq.at_segment(123), cq.text_segment(" [CQ:at,qq=all] 全体")])
    assert out == "[CQ:at,qq=123] &#91;CQ:at,qq=all&#93; 全体"
    assert cq.parse(out)[1]["data"]["text"] == " [CQ:at,qq=all] 全体"


def test_mentions_and_strip():
    segments = cq.parse("[CQ:at,qq=1] hi [CQ:at,qq=2]")
    assert cq.mentions(segments, "1") and cq.mentions(segments, "2") and not cq.mentions(segments, "3")
    assert cq.plain_text(cq.without_mention(segments, "1")).strip() == "hi"


@given(st.text())
def test_text_survives_render_and_parse(text):
    parsed = cq.parse(cq.render([cq.text_segment(text)]))
    assert cq.plain_text(parsed) == text
    assert all(s["type"] == "text" for s in parsed)


@given(st.text(), st.text())
def test_params_survive_render_and_parse(a, b):
    [segment] = cq.parse(cq.render([{"type": "share", "data": {"url": a, "title": b}}]))
    assert segment["data"] == {"url": a, "title": b}
