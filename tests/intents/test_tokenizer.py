import random

import jieba

from intents.tokenizer import Tokenizer


def test_synonyms_fold_to_the_first_word():
    tokenizer = Tokenizer(synonyms=[("退货", "退换货", "退掉")])
    assert "退货" in tokenizer.tokenize("我想退换货")
    assert "退货" in tokenizer.tokenize("这个能退掉吗")
    assert "退换货" not in tokenizer.tokenize("我想退换货")


def test_traditional_synonym_folds_too():
    tokenizer = Tokenizer(synonyms=[("快递", "物流")])
    assert tokenizer.tokenize("物流到哪了")[0] == "快递"


def test_user_words_are_cut_whole():
    plain = Tokenizer()
    custom = Tokenizer(words=["七天无理由"])
    assert "七天无理由" not in plain.tokenize("支持七天无理由吗")
    assert "七天无理由" in custom.tokenize("支持七天无理由吗")


def test_user_words_do_not_leak_between_snapshots_or_into_global_jieba():
    Tokenizer(words=["悦购优选会员"])
    assert "悦购优选会员" not in Tokenizer().tokenize("悦购优选会员怎么开")
    assert "悦购优选会员" not in jieba.lcut("悦购优选会员怎么开", HMM=False)


def test_spaces_and_punctuation_are_not_tokens():
    assert Tokenizer().tokenize("怎么  退货？？") == ("怎么", "退货")


def test_the_words_are_jiebas_own():
    """Tokenizer cuts with its own pass over jieba's dictionary: the same words as jieba.cut, text by text
    (random mixes of common characters, letters, digits, jieba's joining symbols and whitespace; a user word)."""
    rng = random.Random(14)
    alphabet = "的一是了我不人在有这个上们来到时大地为子中你说生国年着就那和要出也得里后自以会家可下而过天去能对小多然于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己面最但现前些所同日手又行意动方期它头经长儿回位分爱老因很给名法间知世什两次使身者被高已亲其进此话常与活正感花呗借分期额度退货款abcXYZ019 +#&._%-，。？！\t\n"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += ["a" * 300, "1" * 50 + "号", "iphone13pro怎么样", "c++和c#", "花呗分期还款", "wifi密码是多少"]
    tokenizer = Tokenizer(words=["花呗分期"])
    for text in texts:
        assert tokenizer._cut(text) == list(tokenizer._jieba.cut(text, HMM=False)), text
