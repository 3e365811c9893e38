"""`matcher.semantic.model: <directory>`: a sentence-transformers ONNX export, here a tiny one built by the test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from intents.encoder import OnnxEncoder, load_encoder
from intents.matcher import classifier_builder
from tests.intents.shop_faq import make_kb

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")

CHARS = "怎么退货款多久到账运费算开发票查物流"
DIM = 8


def _model_dir(tmp_path, *, pooling="mean"):
    """An ONNX graph (embedding lookup: token embeddings out) and a char-level tokenizer.json."""
    from onnx import TensorProto, helper, numpy_helper

    vocab = {"[PAD]": 0, "[UNK]": 1, **{c: i + 2 for i, c in enumerate(dict.fromkeys(CHARS))}}
    table = np.random.default_rng(3).normal(size=(len(vocab), DIM)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["token_embeddings"])],
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("token_embeddings", TensorProto.FLOAT, ["batch", "tokens", DIM])],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (tmp_path / "onnx").mkdir(parents=True)
    onnx.save(model, tmp_path / "onnx" / "model.onnx")

    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex("."), behavior="isolated")
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "kefu_encoder.json").write_text(json.dumps({"pooling": pooling}), encoding="utf-8")
    return tmp_path, vocab, table


def test_a_model_directory_is_loaded_and_mean_pooled(tmp_path):
    directory, vocab, table = _model_dir(tmp_path)
    encoder = OnnxEncoder(directory)
    assert encoder.dim == DIM and encoder.name.startswith("onnx-")
    vectors = encoder.encode(["退货", "怎么开发票"])
    for text, vector in zip(["退货", "怎么开发票"], vectors, strict=True):
        mean = table[[vocab[c] for c in text]].mean(axis=0)  # padding must not count
        assert np.allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)


def test_the_matcher_runs_on_a_model_directory(tmp_path):
    directory, _, _ = _model_dir(tmp_path / "m")
    classifier = classifier_builder(str(directory), cache_dir=tmp_path / "cache")(make_kb())
    assert classifier.semantic is not None and classifier.calibration is not None
    assert classifier.rank("怎么开发票", 1)[0].entry_id == "invoice"
    assert load_encoder(str(directory)) is load_encoder(str(directory))  # loaded once per process


def test_a_broken_directory_serves_lexically(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")
    classifier = classifier_builder(str(tmp_path))(make_kb())
    assert classifier.semantic is None
    assert classifier.classify("怎么退货").entry.id == "return-how"
