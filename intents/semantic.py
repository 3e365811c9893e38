"""The semantic stage: sentence embeddings of every FAQ question, and of the customer's text.

`Embedder` wraps an `Encoder` with what keeps it cheap: texts are normalised and truncated before
embedding (a pasted essay costs what a question costs), identical texts reuse their vector (the
memo), and the FAQ's vectors are cached on disk by text hash, so a reload re-embeds only the
questions that changed. The cache file holds the vectors of every kb built with it (up to
CACHE_MAX), not only the last one's, and the model's own vector of a fixed probe text: a file written
by another model under the same name (a stand-in, a replaced model directory) is not reused. Vectors
are shared in-process per encoder *object*, never per name. A corrupt or foreign cache file is
ignored and rewritten, never fatal.

`SemanticIndex` is the per-snapshot part: the question matrix and the scale that turns cosines into
a 0..1 score comparable with the lexical one. Two corrections make cosines mean more in a one-domain
FAQ, where every question says 花呗 or 退款: each encoder's vectors are centred on the kb's mean
(what all questions share stops counting; e5 puts any two of them at 0.85-1.0 before), and a question
close to many questions of other entries (a generic one, a "hub") has that closeness taken off its
cosines (CSLS), so it stops winning queries that merely share the domain. An entry's score mixes its
best question's cosine with its centroid's, as the lexical stage does, plus, for an encoder that has
one (`encoder.uncentred`), a small share of its best question's raw (uncentred) cosine: computed from
the centred rows (the raw rows are unit length), so it costs no second copy of the matrix.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intents.encoder import Encoder, blocks, uncentred
from intents.normalize import normalize

__all__ = ["Embedder", "SemanticIndex"]

logger = logging.getLogger(__name__)

MEMO_SIZE = 4096
BATCH = 64
# Questions of different entries compared to learn the scale; a fixed seed keeps a kb's scale stable.
SCALE_PAIRS = 20000
# Hubness: a question's mean cosine to its HUB_K nearest questions of other entries, times HUB_BETA,
# is taken off every cosine with it. Past HUB_SAMPLE questions the neighbours are looked for in a
# sample (k scaled down with it), which keeps a 50k-question build at seconds.
HUB_K = 10
HUB_BETA = 0.5
HUB_SAMPLE = 4000
HUB_CHUNK = 1024
CENTER_PRIOR = 10  # questions' worth of "no shift" in the kb's mean vector
# entry score = (1-c)·best question + c·entry centroid (as the lexical stage): an entry asked many ways
# is matched on all of them, not on its one luckiest question (ranks SMP2017 0.893 → 0.911 top-1).
CENTROID_WEIGHT = 0.4


# FAQ vectors already computed in this process, per encoder object (several apps, tests or eval runs
# build the same kb with the one loaded model); bounded: cleared when it outgrows what a 50k-question
# kb needs. Keyed by the object, not its name: an encoder that merely shares a name (a benchmark's
# stand-in, a test's fake) must never lend its vectors to the real model.
_SHARED: weakref.WeakKeyDictionary[Encoder, dict[bytes, np.ndarray]] = weakref.WeakKeyDictionary()
SHARED_MAX = 200_000
# Vectors kept in a cache file: the kb being built always, then those of other kbs built with the same
# model (most recent first) up to this many.
CACHE_MAX = 60_000
# Embedded once per Embedder and stored in the cache file: a file whose probe vector differs was written
# by another model (or another version of it) under the same name.
PROBE = "kefu 缓存校验：这段话的向量标识模型"
PROBE_TOLERANCE = 1e-4


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class Embedder:
    """An encoder plus truncation, a query memo and an on-disk cache of the FAQ's vectors."""

    def __init__(
        self, encoder: Encoder, *, cache_dir: str | Path | None = None, max_chars: int = 200
    ) -> None:
        self.encoder = encoder
        self.max_chars = max_chars
        self.cache_path = (
            Path(cache_dir) / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in encoder.name)}.npz"
            if cache_dir
            else None
        )
        self._memo: dict[str, np.ndarray] = {}
        self._kb: dict[bytes, np.ndarray] = {}  # the last built kb's vectors, by text hash
        self._probe: np.ndarray | None = None
        self._lock = threading.Lock()  # one kb embedding at a time (reloads are serialised anyway)
        # Texts being embedded now → set when their vector is in the memo: a burst of the same new
        # question (a promotion's) is embedded once while the others wait, not once per worker thread.
        self._pending: dict[str, threading.Event] = {}
        self._pending_lock = threading.Lock()
        self.encoded = 0  # texts actually run through the model (tests and the bench read it)

    def prepare(self, text: str) -> str:
        """The text as it is embedded: normalised and cut to max_chars."""
        return normalize(text or "")[: self.max_chars].strip()

    def query(self, text: str) -> np.ndarray:
        """One customer text's vector (memoised on its prepared form)."""
        key = self.prepare(text)
        vector = self._memo.get(key)
        if vector is not None:
            return vector
        # An FAQ question asked word for word (customers copy them, and menus send them): its vector came
        # with the kb, from the cache (a text embeds the same in any batch); no model run, no wait.
        vector = self._kb.get(_digest(key))
        if vector is not None:
            return vector
        with self._pending_lock:
            vector = self._memo.get(key)
            if vector is not None:
                return vector
            done = self._pending.get(key)
            if done is None:
                done = self._pending[key] = threading.Event()
                owner = True
            else:
                owner = False
        if not owner:
            done.wait()
            vector = self._memo.get(key)
            # None: the embedding failed (the error went to its caller) or was evicted already.
            return vector if vector is not None else self._encode([key])[0]
        try:
            vector = self._encode([key])[0]
            self._memo[key] = vector
            if len(self._memo) > MEMO_SIZE:  # first in, first out: the hot questions come right back
                with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                    del self._memo[next(iter(self._memo))]
        finally:
            with self._pending_lock:
                del self._pending[key]
            done.set()
        return vector

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.encoded += len(texts)
        return np.asarray(self.encoder.encode(texts), dtype=np.float32)

    def questions(self, texts: Sequence[str]) -> np.ndarray:
        """The FAQ questions' vectors (rows in order), embedding only those not cached."""
        prepared = [self.prepare(t) for t in texts]
        keys = [_digest(t) for t in prepared]
        with self._lock:
            known = dict(self._kb)
            shared = _shared(self.encoder)
            missing = list(dict.fromkeys(k for k in keys if k not in known))
            if missing:
                known.update((k, shared[k]) for k in missing if k in shared)
                missing = [k for k in missing if k not in known]
            on_disk: dict[bytes, np.ndarray] = {}
            if missing and self.cache_path is not None:
                on_disk = self._read_cache()
                known.update((k, on_disk[k]) for k in missing if k in on_disk)
                missing = [k for k in missing if k not in known]
            if missing:
                text_of = dict(zip(keys, prepared, strict=True))
                for start in range(0, len(missing), BATCH):
                    chunk = missing[start : start + BATCH]
                    vectors = self._encode([text_of[k] for k in chunk])
                    known.update(zip(chunk, vectors, strict=True))
            self._kb = {k: known[k] for k in keys}
            if len(shared) + len(self._kb) > SHARED_MAX:
                shared.clear()
            shared.update(self._kb)
            if self.cache_path is not None and (missing or not self.cache_path.exists()):
                self._write_cache(on_disk)
        dim = self.encoder.dim
        if not keys:
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([self._kb[k] for k in keys]).astype(np.float32, copy=False)

    def probe(self) -> np.ndarray:
        """The model's vector of PROBE: what identifies the model a cache file was written with."""
        if self._probe is None:  # not counted in `encoded`: that counts the FAQ's and customers' texts
            self._probe = np.asarray(self.encoder.encode([PROBE]), dtype=np.float32)[0]
        return self._probe

    def _read_cache(self) -> dict[bytes, np.ndarray]:
        path = self.cache_path
        if path is None or not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
                if keys.dtype != np.dtype("S16") or vectors.shape != (len(keys), self.encoder.dim):
                    raise ValueError("unexpected shapes")
                if "probe" not in data.files:
                    raise ValueError("no model probe (an older cache)")
                probe = data["probe"]
                if probe.shape != (self.encoder.dim,) or not np.allclose(
                    probe, self.probe(), rtol=0.0, atol=PROBE_TOLERANCE
                ):
                    raise ValueError(f"written by another model named {self.encoder.name}")
                return {bytes(k): v for k, v in zip(keys, vectors.astype(np.float32), strict=True)}
        except Exception as exc:  # corrupt, truncated or foreign: rebuilt below
            logger.warning("embedding cache %s unreadable (%s): re-embedding the FAQ", path, exc)
            return {}

    def _write_cache(self, others: dict[bytes, np.ndarray]) -> None:
        """The kb's vectors, then those of other kbs found in the file (`others`) up to CACHE_MAX."""
        path = self.cache_path
        assert path is not None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = dict(self._kb)
            for key, vector in others.items():
                if len(rows) >= CACHE_MAX:
                    break
                rows.setdefault(key, vector)
            keys = np.array(list(rows), dtype="S16")
            vectors = np.stack(list(rows.values())) if rows else np.zeros((0, self.encoder.dim))
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                np.savez(out, keys=keys, vectors=vectors.astype(np.float32), probe=self.probe())
            os.replace(tmp, path)  # atomic: a crash mid-write leaves the old cache, not half a file
        except OSError as exc:
            logger.warning("embedding cache %s not written (%s): the next start re-embeds", path, exc)


def _shared(encoder: Encoder) -> dict[bytes, np.ndarray]:
    """This encoder object's in-process vectors (a private dict when it cannot be weakly referenced)."""
    try:
        return _SHARED.setdefault(encoder, {})
    except TypeError:  # not hashable or not weakly referenceable: nothing shared
        return {}


@dataclass(frozen=True, slots=True, eq=False)
class SemanticIndex:
    """Question vectors of one snapshot's FAQ entries, centred on the kb, and the scale of their cosines."""

    embedder: Embedder
    matrix: np.ndarray  # questions × dim, centred per encoder part; rows in the lexical index's order
    starts: np.ndarray  # first row of each entry (for reduceat)
    has_rows: np.ndarray  # bool per entry: some question embedded
    base: float  # typical (hub-corrected) cosine of two questions of different entries: scored 0
    center: np.ndarray  # the kb's mean raw vector (subtracted from every part of a query's vector)
    hub: np.ndarray  # per question row: HUB_BETA × its closeness to other entries' questions
    sums: np.ndarray  # per target: the sum of its question rows (its centroid's direction)
    sums_norm: np.ndarray  # per target: the length of that sum (0 without questions)
    entry_hub: np.ndarray  # per target: its questions' mean hub correction
    # Parts whose raw cosine counts too: (first column, dims, weight, share, |centre part|²) each, and
    # per such part a (2, rows) array: each row's n/weight and n·a + |m|² (see `_raw_terms`).
    plain_parts: tuple[tuple[int, int, float, float, float], ...] = ()
    plain_terms: tuple[np.ndarray, ...] = ()
    plain_base: float = 0.0  # typical raw cosine of two questions of different entries: scored 0

    @classmethod
    def build(
        cls, embedder: Embedder, texts: Sequence[str], owner: np.ndarray, n_entries: int
    ) -> SemanticIndex:
        """`texts[i]` is a question of entry `owner[i]`; rows are grouped by entry, in order."""
        raw = embedder.questions(texts)
        # Shrunk towards 0 for a tiny kb, whose mean is mostly its few questions themselves.
        n = len(raw)
        center = raw.sum(axis=0) / (n + CENTER_PRIOR) if n else np.zeros(embedder.encoder.dim, np.float32)
        parts = blocks(embedder.encoder)
        matrix = _shape(raw, center, parts)
        counts = np.bincount(owner, minlength=n_entries) if len(owner) else np.zeros(n_entries, int)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])) if n_entries else np.zeros(0, int)
        hub = HUB_BETA * _hubness(matrix, owner)
        sums = np.zeros((n_entries, matrix.shape[1]), dtype=np.float32)
        filled = counts > 0
        if filled.any():  # rows are grouped by entry, in order
            sums[filled] = np.add.reduceat(matrix, starts[filled], axis=0)
        entry_hub = np.bincount(owner, weights=hub, minlength=n_entries) / np.maximum(counts, 1)
        plain_parts, lo = [], 0
        for (dim, weight), share in zip(parts, uncentred(embedder.encoder), strict=True):
            if share > 0:
                m = center[lo : lo + dim]
                plain_parts.append((lo, dim, weight, share, float(m @ m)))
            lo += dim
        terms = []
        for part in plain_parts:
            length, along = _raw_terms(matrix, center, part)
            terms.append(np.stack((length / part[2], length * along + part[4])).astype(np.float32))
        return cls(
            embedder,
            matrix,
            starts.astype(np.int64),
            counts > 0,
            _base(matrix, owner, hub),
            center,
            hub,
            sums,
            np.linalg.norm(sums, axis=1),
            entry_hub,
            tuple(plain_parts),
            tuple(terms),
            _plain_base(matrix, owner, tuple(plain_parts), terms),
        )

    def vector(self, text: str) -> np.ndarray:
        """The customer text's vector, shaped like the question rows (centred on this kb)."""
        raw = self.embedder.query(text)[None, :]
        return _shape(raw, self.center, blocks(self.embedder.encoder))[0]

    def cosines(self, vectors: np.ndarray) -> np.ndarray:
        """Hub-corrected cosines of shaped vectors (n × dim, see `vector`) to every question row."""
        return vectors @ self.matrix.T - self.hub

    def scores(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """`cosines`, and the raw cosines of the `plain_parts` (their shares' weighted mean; None
        without such parts) of shaped vectors to every question row: one pass over the matrix."""
        if not self.plain_parts:
            return vectors @ self.matrix.T - self.hub, None
        total = -np.broadcast_to(self.hub, (vectors.shape[0], self.matrix.shape[0]))
        plain: np.ndarray | None = None
        shares = sum(part[3] for part in self.plain_parts)
        done = 0
        for part, (scale, offset) in zip(self.plain_parts, self.plain_terms, strict=True):
            lo, dim, _, share, _ = part
            if lo > done:  # the parts before this one, in one product
                total = total + vectors[:, done:lo] @ self.matrix[:, done:lo].T
            raw = vectors[:, lo : lo + dim] @ self.matrix[:, lo : lo + dim].T
            total = total + raw
            length, along = _raw_terms(vectors, self.center, part)
            # raw_q·raw_j = (n_q ĉ_q + m)·(n_j ĉ_j + m) = dots·n_q·scale_j + n_q a_q + offset_j (in place)
            raw *= scale
            raw *= length[:, None]
            raw += offset
            raw += (length * along)[:, None]
            if share != shares:
                raw *= share / shares
            plain = raw if plain is None else plain + raw
            done = lo + dim
        if done < self.matrix.shape[1]:
            total = total + vectors[:, done:] @ self.matrix[:, done:].T
        return total, plain

    def centroid_cosines(self, vectors: np.ndarray) -> np.ndarray:
        """Hub-corrected cosines of shaped vectors to every entry's centroid (targets as columns)."""
        return (vectors @ self.sums.T) / np.maximum(self.sums_norm, 1e-6) - self.entry_hub

    def entry_scores(
        self, cosines: np.ndarray, centroids: np.ndarray | None = None, plain: np.ndarray | None = None
    ) -> np.ndarray:
        """Per entry (columns): its best question's cosine mixed with its centroid's (`centroids`, see
        `centroid_cosines`; without it, the best question's alone), rescaled so `base` → 0, 1 → 1;
        plus the `plain_parts`' shares of its best question's raw cosine (`plain`, see `scores`),
        rescaled the same way from `plain_base`."""
        n = len(self.has_rows)
        out = np.zeros((cosines.shape[0], n))
        if cosines.shape[1] and self.has_rows.any():
            best = self._best(cosines)
            if centroids is not None:
                best = (1 - CENTROID_WEIGHT) * best + CENTROID_WEIGHT * centroids
            out = np.where(self.has_rows, best, self.base)
        out = np.clip((out - self.base) / (1.0 - self.base), 0.0, 1.0)
        if plain is not None and plain.shape[1] and self.has_rows.any():
            raw = np.where(self.has_rows, self._best(plain), self.plain_base)
            raw = np.where(np.isfinite(raw), raw, self.plain_base)
            share = sum(part[3] for part in self.plain_parts)
            out += share * np.clip((raw - self.plain_base) / (1.0 - self.plain_base), 0.0, 1.0)
        return out

    def _best(self, cosines: np.ndarray) -> np.ndarray:
        """Per entry: the best of its question rows' columns (entries without rows: any value)."""
        return np.maximum.reduceat(cosines, np.minimum(self.starts, cosines.shape[1] - 1), axis=1)

    def query_scores(self, text: str) -> np.ndarray:
        shaped = self.vector(text)[None, :]
        cosines, plain = self.scores(shaped)
        return self.entry_scores(cosines, self.centroid_cosines(shaped), plain)[0]


def _shape(raw: np.ndarray, center: np.ndarray, parts: tuple[tuple[int, float], ...]) -> np.ndarray:
    """Each encoder part centred, back to unit length and weighted, so that a dot product of two
    shaped rows is the weighted mean of the parts' centred cosines."""
    out = np.empty(raw.shape, dtype=np.float32)
    lo = 0
    for dim, weight in parts:
        part = raw[:, lo : lo + dim] - center[lo : lo + dim]
        norms = np.linalg.norm(part, axis=1, keepdims=True)
        out[:, lo : lo + dim] = part / np.maximum(norms, 1e-6) * np.sqrt(weight)
        lo += dim
    return out


def _raw_terms(
    shaped: np.ndarray, center: np.ndarray, part: tuple[int, int, float, float, float]
) -> np.ndarray:
    """(n, a) per shaped row, for one part: the length n of its raw row's centred part and a = ĉ·m, its
    centred direction along the centre m. The encoders' raw rows are unit length, so from
    |n ĉ + m| = 1: n = −a + √(a² − |m|² + 1)."""
    lo, dim, weight, _, m2 = part
    along = (shaped[:, lo : lo + dim] / np.sqrt(weight)) @ center[lo : lo + dim]
    length = -along + np.sqrt(np.maximum(along * along - m2 + 1.0, 0.0))
    return np.stack((length, along)).astype(np.float32)


def _plain_base(
    matrix: np.ndarray,
    owner: np.ndarray,
    parts: tuple[tuple[int, int, float, float, float], ...],
    terms: tuple[np.ndarray, ...],
) -> float:
    """Median raw cosine (the parts' shares' weighted mean) of random question pairs from different
    entries, with the same pairs as `_base` (0 when none)."""
    a, b = _scale_pairs(owner)
    if not len(a) or not parts:
        return 0.0
    shares = sum(part[3] for part in parts)
    raw = np.zeros(len(a))
    for (lo, dim, weight, share, m2), (scale, offset) in zip(parts, terms, strict=True):
        dots = np.einsum("ij,ij->i", matrix[a, lo : lo + dim], matrix[b, lo : lo + dim])
        raw += (share / shares) * (dots * scale[a] * scale[b] * weight + offset[a] + offset[b] - m2)
    return float(min(np.median(raw), 0.95))


def _hubness(matrix: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Per row: mean cosine to its HUB_K nearest rows of other targets (in a sample past HUB_SAMPLE)."""
    n = len(matrix)
    if n < 2:
        return np.zeros(n, dtype=np.float32)
    ref = np.arange(n)
    k = HUB_K
    if n > HUB_SAMPLE:
        ref = np.sort(np.random.default_rng(11).choice(n, HUB_SAMPLE, replace=False))
        k = max(1, round(HUB_K * HUB_SAMPLE / n))
    k = min(k, len(ref) - 1)
    out = np.zeros(n, dtype=np.float32)
    reference = matrix[ref]
    for lo in range(0, n, HUB_CHUNK):
        rows = slice(lo, min(lo + HUB_CHUNK, n))
        sims = matrix[rows] @ reference.T
        sims[owner[rows, None] == owner[None, ref]] = -np.inf  # its own entry's questions do not count
        top = -np.partition(-sims, k - 1, axis=1)[:, :k]
        finite = np.isfinite(top)
        out[rows] = np.where(finite, top, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    return out


def _base(matrix: np.ndarray, owner: np.ndarray, hub: np.ndarray) -> float:
    """Median (hub-corrected) cosine of random question pairs from different entries (0 when none)."""
    a, b = _scale_pairs(owner)
    if not len(a):
        return 0.0
    cos = np.einsum("ij,ij->i", matrix[a], matrix[b]) - hub[b]
    return float(min(np.median(cos), 0.95))


def _scale_pairs(owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SCALE_PAIRS random row pairs, those of different entries kept (a fixed seed: a kb's scale is stable)."""
    n = len(owner)
    if n < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(12)
    a = rng.integers(0, n, SCALE_PAIRS)
    b = rng.integers(0, n, SCALE_PAIRS)
    keep = owner[a] != owner[b]
    return a[keep], b[keep]
