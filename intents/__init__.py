"""Intent classification: normalisation, jieba tokens, the FAQ matcher and rule intents."""

from intents.prediction import Candidate, Decision, Prediction, Thresholds

__all__ = ["Candidate", "Decision", "Prediction", "Thresholds"]
