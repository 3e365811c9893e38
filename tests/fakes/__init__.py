"""Fake upstream platform APIs served by real aiohttp servers in tests (after opsdroid's connector tests)."""
