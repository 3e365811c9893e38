"""What storage raises to its callers (no SQLAlchemy or driver types leak out of the package)."""

from __future__ import annotations


class Conflict(Exception):
    """A unique constraint refused a write (a concurrent duplicate); re-read and retry."""


class StoreUnavailable(Exception):
    """The database cannot be reached or refused the statement for a reason other than a conflict."""


class NeedsTransaction(Exception):
    """A unit tried without a transaction (`Store.run(..., optimistic=True)` on PostgreSQL) must run in one:
    it was about to write more than its one turn, or what it read changed before its write. Raised before
    anything of it was written; the store runs it again in a transaction."""
