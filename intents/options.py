"""Tunables of the FAQ matcher, shared by its lexical, semantic and calibration stages."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MatcherOptions"]


@dataclass(frozen=True, slots=True)
class MatcherOptions:
    """Tunables of the matcher (defaults measured on two public Chinese intent/FAQ sets)."""

    word_weight: float = 0.4  # share of the cosine from jieba words; the rest from character n-grams
    min_ngram: int = 1
    max_ngram: int = 2
    # entry score = (1-c)·best question + c·centroid: entries asked many ways are matched on all of them
    centroid_weight: float = 0.6
    # raw confidence = top · (margin / top) ** margin_power, margin = top − best other target
    margin_power: float = 0.6
    # ...the same with the semantic stage: fused scores of the top entries sit closer together (two
    # encoders and the lexical score averaged), so the margin weighs more. Measured on the three eval
    # sets: 0.75 to 1 answer more in-scope questions at a lower must-not-answer rate than 0.6.
    semantic_margin_power: float = 0.75
    # raw confidence → 0..1, piecewise linear: the default Thresholds (answer 0.62, suggest 0.35) sit
    # where, on both public sets, precision ≥ 0.9 with ≤ 10% of off-topic questions answered.
    calibration: tuple[tuple[float, float], ...] = (
        (0.0, 0.0),
        (0.06, 0.35),
        (0.105, 0.62),
        (0.3, 0.9),
        (1.0, 1.0),
    )
    intent_bar: float = 0.35  # a small-talk example must score this (and beat every entry) to fire
    # Candidate generation: the entries of the best questions plus the best centroids are scored
    # exactly; everything else cannot be in the top 3 in practice, and skipping it keeps a 50k kb fast.
    top_questions: int = 64
    top_centroids: int = 16
    # Features with longer posting lists ("吗", "怎么" in a big kb) are left out of candidate
    # generation and added back exactly for the candidates only: bounded work per query at 50k.
    defer_postings: int = 5000
    max_chars: int = 200  # of normalised text used for matching (and embedded)
    hmm: bool = False
    # Semantic stage (when an encoder is loaded): entry score = (1-w)·lexical + w·rescaled cosine.
    semantic_weight: float = 0.7
    # ...and an answer needs this lexical score for its entry, else its confidence shrinks in
    # proportion: meaning alone puts 怎么做红烧肉 near some shop entry, never with shared words.
    lexical_support: float = 0.15
    # Calibrated thresholds: the answer threshold keeps the estimated precision at this level.
    target_precision: float = 0.9
    calibration_sample: int = 2000  # kb questions held out (at most) when calibrating
