"""The FAQ knowledge base: YAML schema, loading with file:line errors, lint, immutable snapshots."""

from kb.model import FaqEntry, KnowledgeBase, Problem, Replies, RuleIntent, SourceRef

__all__ = ["FaqEntry", "KnowledgeBase", "Problem", "Replies", "RuleIntent", "SourceRef"]
