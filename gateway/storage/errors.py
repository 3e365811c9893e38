"""What storage raises to its callers (no SQLAlchemy or driver types leak out of the package)."""

from __future__ import annotations


class Conflict(Exception):
    """A unique constraint refused a write (a concurrent duplicate); re-read and retry."""


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the statement for a reason other than a conflict."""
