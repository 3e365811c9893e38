"""Fixtures: the small shop FAQ of shop_faq.py and its classifier."""

from __future__ import annotations

import pytest

from kb.model import KnowledgeBase
from tests.intents.shop_faq import make_kb


@pytest.fixture(scope="session")
def shop_kb() -> KnowledgeBase:
    return make_kb()


@pytest.fixture(scope="session")
def shop(shop_kb):
    from intents.matcher import Classifier

    return Classifier.build(shop_kb)
