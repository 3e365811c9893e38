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
