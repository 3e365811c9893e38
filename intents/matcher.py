"""The FAQ matcher: `Classifier.build(kb)` indexes one knowledge-base snapshot, `classify(text)` decides.

Two stages score every FAQ entry: the lexical TF-IDF index (`intents.lexical`), and, when an encoder
is loaded, sentence embeddings (`intents.semantic`), fused as (1-w)·lexical + w·rescaled cosine so
that neither scale dominates. Rule intents (complaint, 转人工, small talk) come first, as before.

Confidence is not the raw similarity: a query that is as close to another entry (or to small talk),
or whose words the kb has never seen, is not a confident match. It combines the top score with its
margin over the runner-up, which is what keeps off-topic questions from getting an FAQ answer.
Lexically it is mapped onto 0..1 with fixed points so the default Thresholds mean the same on any
kb; with the semantic stage the thresholds are calibrated per kb at build (`intents.calibration`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter
from pathlib import Path

import numpy as np

from intents.calibration import Calibration, calibrate
from intents.courtesy import strip_courtesy
from intents.encoder import DEFAULT_MODEL, load_encoder
from intents.lexical import FUNCTION_WORDS, LexicalIndex, Target, build_lexical, candidates
from intents.normalize import normalize
from intents.options import MatcherOptions
from intents.prediction import Candidate, Decision, Prediction, Thresholds
from intents.rules import KeywordRules, effective_intents, example_phrases
from intents.semantic import Embedder, SemanticIndex
from intents.tokenizer import Tokenizer
from kb.model import KnowledgeBase, RuleIntent

__all__ = ["Classifier", "MatcherOptions", "classifier_builder"]

logger = logging.getLogger(__name__)

# Predictions remembered per classifier (a new index starts empty, so a reload never serves stale ones).
MEMO_SIZE = 4096
MEMO_MAX_CHARS = 64
# 猜你想问 shows this many entries: a question that clearly belongs to one of them, though not to which,
# is offered them (see `_classify`).
SUGGESTIONS = 3
# What may be left of a text without its courtesy for the whole to count as small talk (早上好亲爱的).
COURTESY_REMAINDER = 3


@dataclass(frozen=True, slots=True, eq=False)
class Classifier:
    """An immutable matcher over one KnowledgeBase snapshot; build once per (re)load, share freely."""

    kb: KnowledgeBase
    thresholds: Thresholds
    options: MatcherOptions
    tokenizer: Tokenizer
    keyword_rules: KeywordRules
    _targets: tuple[Target, ...]
    _question_texts: tuple[str, ...]
    _index: LexicalIndex
    _n_entries: int
    semantic: SemanticIndex | None = None
    # How the thresholds were chosen (None: given, or lexical-only with the fixed defaults).
    calibration: Calibration | None = None
    # The same short questions come in all day ("怎么退货"): their predictions are kept per index. A plain
    # dict, not functools.lru_cache over a bound method: that would make every classifier a reference
    # cycle, left for the cyclic GC after each reload.
    _memo: dict[str, Prediction] = field(default_factory=dict, init=False, repr=False, compare=False)

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        kb: KnowledgeBase,
        thresholds: Thresholds | None = None,
        options: MatcherOptions | None = None,
        *,
        embedder: Embedder | None = None,
    ) -> Classifier:
        """Index every question of every enabled entry and every rule-intent example of `kb`.

        With an `embedder` the semantic stage is built too (a failing encoder leaves it out, logged),
        and thresholds not given are calibrated on the kb itself.
        """
        options = options or MatcherOptions()
        intents = effective_intents(kb)
        keywords = [k for e in kb.entries if e.enabled for k in e.keywords]
        tokenizer = Tokenizer((*kb.words, *keywords), kb.synonyms, hmm=options.hmm)

        targets = [Target(e, None, e.questions) for e in kb.entries if e.enabled]
        n_entries = len(targets)
        for intent in intents:
            phrases = example_phrases(intent)
            if phrases:
                targets.append(Target(None, intent, phrases))

        texts: list[str] = []
        # Building allocates millions of small objects and no cycles: the cyclic GC would rescan them
        # over and over (a 50k kb built 3× slower with it on).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            index = build_lexical(targets, tokenizer, options, texts)
        finally:
            if gc_was_enabled:
                gc.enable()
        semantic = None
        if embedder is not None:
            try:  # every target, rule intents too: a question as close to 你好吗 as to an entry is unsure
                semantic = SemanticIndex.build(embedder, texts, index.owner, index.n_targets)
            except Exception:  # the encoder failed mid-way: serve lexically rather than not at all
                logger.exception("semantic stage not built: answering with the lexical matcher only")
        classifier = cls(
            kb=kb,
            thresholds=thresholds or Thresholds(),
            options=options,
            tokenizer=tokenizer,
            keyword_rules=KeywordRules.build(intents),
            _targets=tuple(targets),
            _question_texts=tuple(texts),
            _index=index,
            _n_entries=n_entries,
            semantic=semantic,
        )
        if semantic is None or n_entries == 0:
            return classifier
        found = calibrate(index, semantic, n_entries, options)
        options = replace(options, semantic_weight=found.semantic_weight)
        return replace(
            classifier, thresholds=thresholds or found.thresholds, options=options, calibration=found
        )

    def memoised(self, text: str) -> Prediction | None:
        """The remembered prediction for text, if any (the gateway asks before going to a thread)."""
        return self._memo.get(text)

    def with_thresholds(self, thresholds: Thresholds) -> Classifier:
        """The same index with other cut-offs (cheap: nothing is rebuilt)."""
        return replace(self, thresholds=thresholds)

    # ---- scoring ----------------------------------------------------------------------------

    def _ranked(
        self, tokens: Sequence[str], text: str
    ) -> tuple[list[tuple[float, int, int]], list[tuple[float, int, int]], np.ndarray | None]:
        """(lexical ranking, fused ranking) of the targets, each (score, target, row), best first, and
        the semantic score of every target.

        Without the semantic stage both are the lexical ranking (and there are no semantic scores).
        """
        lexical = candidates(self._index, self.options, self._n_entries, tokens) if tokens else []
        return (lexical, *self._fused(lexical, text))

    def _fused(
        self, lexical: list[tuple[float, int, int]], text: str
    ) -> tuple[list[tuple[float, int, int]], np.ndarray | None]:
        """The fused ranking (the lexical one without the semantic stage) and every target's semantic score."""
        semantic = self.semantic
        if semantic is None or self._n_entries == 0:
            return lexical, None
        shaped = semantic.vector(text)[None, :]
        all_cosines, plain = semantic.scores(shaped)
        cosines = all_cosines[0]
        sem = semantic.entry_scores(all_cosines, semantic.centroid_cosines(shaped), plain)[0]
        n = len(sem)
        lex = np.zeros(n)
        rows: dict[int, int] = {}
        for score, t, row in lexical:
            lex[t] = score
            rows[t] = row
        w = self.options.semantic_weight
        fused = (1.0 - w) * lex + w * sem
        k = min(8, n)
        top = np.argpartition(-fused, k - 1)[:k] if n > k else np.arange(n)
        ranked = []
        for t in top.tolist():
            row = rows.get(t)
            if row is None:  # matched on meaning only: show its semantically closest question
                lo, hi = self._index.ranges[t]
                row = lo + int(np.argmax(cosines[lo:hi])) if hi > lo else lo
            ranked.append((float(fused[t]), t, row))
        ranked.sort(key=lambda x: (-x[0], x[1]))
        return ranked, sem

    def _confidence(self, top: float, runner_up: float) -> float:
        """Top score discounted by how little it beats the runner-up (ambiguity ⇒ low confidence)."""
        if top <= 0 or runner_up >= top:
            return 0.0
        if self.semantic is not None:  # fused scores: the calibrated thresholds are on this raw scale
            power = self.options.semantic_margin_power
            return float(min(top * ((top - runner_up) / top) ** power, 1.0))
        raw = top * ((top - runner_up) / top) ** self.options.margin_power
        return _piecewise(raw, self.options.calibration)

    def _entry_candidates(self, ranked: list[tuple[float, int, int]], k: int) -> tuple[Candidate, ...]:
        out = []
        for score, t, row in ranked:
            entry = self._targets[t].entry
            if entry is None or score <= 0:
                continue
            out.append(Candidate(entry.id, self._question_texts[row], round(min(score, 1.0), 4)))
            if len(out) >= k:
                break
        return tuple(out)

    def rank(self, text: str, k: int = 3) -> tuple[Candidate, ...]:
        """The k best FAQ entries for text, one per entry, best first, ignoring rules and thresholds."""
        core = strip_courtesy(normalize(text or "")[: self.options.max_chars])
        words = self.tokenizer.words(core)
        return self._entry_candidates(self._ranked(words, core)[1], k) if words else ()

    # ---- classify ---------------------------------------------------------------------------

    def classify(self, text: str, *, memo: bool = True) -> Prediction:
        """Decide what to do with one customer message: answer, suggest, hand off or small talk.

        memo=False always computes (benchmarks and evaluations time the matcher, not the memo).
        """
        if not memo or len(text) > MEMO_MAX_CHARS:  # a pasted essay is rarely sent twice: keep it out
            return self._classify(text)
        memo = self._memo
        prediction = memo.get(text)
        if prediction is None:
            prediction = memo[text] = self._classify(text)
            if len(memo) > MEMO_SIZE:  # first in, first out: cheap, and the hot questions come right back
                with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread evicted it
                    del memo[next(iter(memo))]
        return prediction

    def _classify(self, text: str) -> Prediction:
        normalized = normalize(text or "")
        # A pasted essay is matched on its opening (where people put the question) to bound the
        # latency; rule keywords are still looked for in all of it.
        clipped = normalized[: self.options.max_chars]
        whole = self.keyword_rules.strip_negated(clipped) or clipped
        # Greetings and thanks around the question are not the question (intents.courtesy); rule
        # keywords below still see them ("谢谢，转人工").
        core = strip_courtesy(whole)
        tokens = self.tokenizer.words(core)
        if not tokens:
            # Only emoji/punctuation/whitespace: nothing to match and nothing to hand over; ask for words.
            return Prediction(
                decision=Decision.SUGGEST,
                confidence=0.0,
                reason="empty",
                tokens=tokens,
                reply=self.kb.replies.get("greeting"),
            )
        rule = self.keyword_rules.match(normalized.replace(" ", ""))
        if rule is not None:
            return self._rule_prediction(rule, 1.0, tokens)
        # The semantic stage embeds the text without its courtesy, negated words included (as before).
        meant = core if whole == clipped else strip_courtesy(clipped)
        prediction = self._decide(tokens, normalized, meant)
        if (
            core != whole
            and len(core.replace(" ", "")) <= COURTESY_REMAINDER
            and prediction.decision is not Decision.ANSWER
            and prediction.intent is None
        ):
            # Courtesy around a word or two that match nothing ("早上好亲爱的"): the whole text is small
            # talk after all. Not a longer question the FAQ does not know: that one is not a greeting.
            words = self.tokenizer.words(whole)
            said = self._lexical_intent(candidates(self._index, self.options, self._n_entries, words), words)
            if said is not None:
                return said
        return prediction

    def _lexical_intent(
        self, lexical: list[tuple[float, int, int]], tokens: tuple[str, ...]
    ) -> Prediction | None:
        """A rule intent's prediction when it tops the lexical ranking clearly enough, else None."""
        if not lexical:
            return None
        top_score, top, _ = lexical[0]
        top_intent = self._targets[top].intent
        if top_intent is None or top_score < self.options.intent_bar:
            return None
        runner_up = lexical[1][0] if len(lexical) > 1 else 0.0
        return self._rule_prediction(top_intent, self._confidence(top_score, runner_up), tokens)

    def _decide(self, tokens: tuple[str, ...], normalized: str, meant: str) -> Prediction:
        """The decision for a text's matched words (`tokens`; `normalized`: all of it; `meant`: what the
        semantic stage embeds)."""
        lexical = candidates(self._index, self.options, self._n_entries, tokens)
        # Rule intents (small talk, 转人工) are decided on the lexical ranking alone, before the
        # semantic stage: a "谢谢" or "在吗" costs no embedding.
        said = self._lexical_intent(lexical, tokens)
        if said is not None:
            return said
        entries, meaning = self._fused(lexical, meant)
        ranked = lexical
        if not ranked and not entries:
            return Prediction(decision=Decision.HANDOFF, confidence=0.0, reason="no_match", tokens=tokens)
        if self.semantic is not None:
            ranked = entries  # the fused ranking; rule intents were decided lexically just above
        alternatives = self._entry_candidates(ranked, SUGGESTIONS)
        if not alternatives:
            return Prediction(decision=Decision.HANDOFF, confidence=0.0, reason="no_match", tokens=tokens)
        # The runner-up is the best *other* target, rule intents included: a question as close to
        # "你好吗" as to an FAQ entry is not a confident FAQ match.
        best_score, best_t = next((s, t) for s, t, _ in ranked if self._targets[t].entry is not None)
        second = next((s for s, t, _ in ranked if t != best_t), 0.0)
        confidence = self._confidence(best_score, second)
        # The same, with the suggestions taken as one: the best against the first target outside them.
        # Two or three entries close to the question and to each other ("优惠券问题": 券不能用, 有券吗)
        # leave no margin to answer, but the question is theirs: offer them rather than queue for a human.
        group = self._confidence(best_score, _score_outside(ranked, SUGGESTIONS))
        meaning_ok = True
        if self.semantic is not None:
            lexical_score = next((sc for sc, t, _ in lexical if t == best_t), 0.0)
            support = min(1.0, lexical_score / self.options.lexical_support)
            confidence *= support
            group *= support
            floor = self.calibration.semantic_floor if self.calibration is not None else 0.0
            meaning_ok = floor <= 0 or meaning is None or float(meaning[best_t]) >= floor
        # A single character or a bare one-character topic ("退", "那个券") is too little to answer.
        # The kb's own short questions ("坏了", "没货了") still answer: there the margin decides.
        has_content = any(t not in FUNCTION_WORDS for t in tokens) and len(normalized.replace(" ", "")) > 1
        if confidence >= self.thresholds.answer and has_content and meaning_ok:
            decision, reason = Decision.ANSWER, "faq"
        elif confidence >= self.thresholds.suggest or group >= self.thresholds.answer:
            decision, reason = Decision.SUGGEST, "unsure"
        else:
            decision, reason = Decision.HANDOFF, "no_match"
        return Prediction(
            decision=decision,
            confidence=round(confidence, 4),
            entry=self._targets[best_t].entry if decision is Decision.ANSWER else None,
            alternatives=alternatives,
            reason=reason,
            tokens=tokens,
        )

    def _rule_prediction(self, intent: RuleIntent, confidence: float, tokens: tuple[str, ...]) -> Prediction:
        if intent.action == "handoff":
            return Prediction(
                decision=Decision.HANDOFF,
                confidence=round(confidence, 4),
                intent=intent.name,
                priority=intent.priority,
                reason="complaint" if intent.priority == "high" else "asked_human",
                tokens=tokens,
                reply=intent.reply,
            )
        decision = Decision.ANSWER if intent.action == "answer" else Decision.SMALLTALK
        return Prediction(
            decision=decision,
            confidence=round(confidence, 4),
            intent=intent.name,
            priority=intent.priority,
            reason="smalltalk" if decision is Decision.SMALLTALK else "rule",
            tokens=tokens,
            reply=intent.reply,
        )


def _piecewise(x: float, points: Sequence[tuple[float, float]]) -> float:
    """np.interp(x, xs, ys) for one x, to the last bit, without building two arrays per call."""
    if x < points[0][0]:
        return points[0][1]
    if x > points[-1][0]:
        return points[-1][1]
    j = bisect_right(points, x, key=itemgetter(0)) - 1
    x0, y0 = points[j]
    if j == len(points) - 1 or x0 == x:
        return y0
    x1, y1 = points[j + 1]
    return (y1 - y0) / (x1 - x0) * (x - x0) + y0


def _score_outside(ranked: Sequence[tuple[float, int, int]], k: int) -> float:
    """The score of the best target after the first k distinct ones (ranked best first), 0 if none."""
    seen: set[int] = set()
    for score, target, _ in ranked:
        if target not in seen:
            if len(seen) == k:
                return score
            seen.add(target)
    return 0.0


def classifier_builder(
    model: str | None = DEFAULT_MODEL,
    *,
    cache_dir: str | Path | None = None,
    thresholds: Thresholds | None = None,
    target_precision: float = 0.9,
) -> Callable[[KnowledgeBase], Classifier]:
    """`kb → Classifier` for the holder: the encoder is loaded on the first build (in the reload's
    worker thread, not at import) and shared by every later build; when it cannot be loaded the
    builds are lexical and the reason was logged once."""
    options = replace(MatcherOptions(), target_precision=target_precision)
    embedder: list[Embedder | None] = []

    def build(kb: KnowledgeBase) -> Classifier:
        if not embedder:
            encoder = load_encoder(model)
            embedder.append(Embedder(encoder, cache_dir=cache_dir) if encoder is not None else None)
        return Classifier.build(kb, thresholds, options, embedder=embedder[0])

    return build
