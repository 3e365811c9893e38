import pytest

from intents.normalize import normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("怎么退货", "怎么退货"),
        ("怎麼退貨？", "怎么退货"),  # traditional → simplified, full-width punctuation dropped
        ("ＡＢＣ１２３", "abc123"),  # full-width letters and digits → half-width, casefolded
        ("iPhone　15 Pro", "iphone 15 pro"),  # ideographic space collapses
        ("退货!!!😂😂", "退货"),  # emoji and repeated punctuation
        ("退\u200b货\x07", "退 货"),  # zero-width and control characters never glue or break words silently
        ("1: 怎么退货", "怎么退货"),
        ("2. 运费多少", "运费多少"),
        ("3、发票", "发票"),
        ("(4) 改地址", "改地址"),
        ("① 怎么退货", "怎么退货"),
        ("一、运费多少", "运费多少"),
        ("1.5倍积分怎么算", "1.5倍积分怎么算"),  # a decimal is not a list number
        ("12期免息吗", "12期免息吗"),  # a leading number that is part of the question stays
        ("  怎么\n\t退货  ", "怎么 退货"),
        ("", ""),
        ("？？！", ""),
        ("👍", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_normalize_is_idempotent():
    for text in ("怎麼退貨？", "1: ＡＢＣ 退货😀", "12期免息吗"):
        assert normalize(normalize(text)) == normalize(text)
