"""Full-text search of the job history: ``jobs_fts`` (FTS5, built by sqlite-utils in migration v8).

The index covers `schema.SEARCH_COLUMNS` (name, tags, parameters as JSON text, error type and
message, the tail of the latest attempt's log).  Triggers keep it current when a job is inserted,
deleted, or one of those columns is set; progress, heartbeats and claims do not touch it.
"""
from __future__ import annotations

import sqlite3

from ..errors import BadInput
from ..job import JobRecord


class SearchMixin:
    """`search`: the jobs whose indexed text matches an FTS5 query, best match first."""

    def search(self, query: str, limit: int = 50) -> list[JobRecord]:
        """Jobs matching ``query`` (SQLite FTS5 syntax: words, ``"a phrase"``, ``pre*``, ``OR``,
        ``NOT``, ``error_message: KeyError``), best match (bm25) first, then newest.  A query
        FTS5 cannot parse raises `BadInput` with what to do.

        >>> import tempfile, pathlib; from nbjobs.store import Store
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> rec, _ = s.insert_job({"name": "nightly-etl", "kind": "cell", "source": "1", "tags": ["prod"]},
        ...                       actor="doctest")
        >>> [r.name for r in s.search("prod")], s.search("nothing")
        (['nightly-etl'], [])
        """
        query = (query or "").strip()
        if not query:
            raise BadInput("give something to search for, e.g. nbjobs search KeyError")
        if limit < 1:
            raise BadInput(f"--limit must be 1 or more, not {limit}")
        try:
            rows = self.conn.execute(
                "SELECT jobs.* FROM jobs_fts JOIN jobs ON jobs.rowid = jobs_fts.rowid WHERE jobs_fts MATCH ? "
                "ORDER BY jobs_fts.rank, jobs.submitted_at DESC LIMIT ?", (query, int(limit))).fetchall()
        except sqlite3.OperationalError as exc:
            msg = str(exc)
            if "fts5" in msg or "no such column" in msg or "unterminated" in msg or "syntax" in msg:
                raise BadInput(f"cannot search for {query!r} ({msg}): to find text with punctuation "
                               "(: - . ' parentheses) put it in double quotes, e.g. search '\"KeyError: x\"'"
                               ) from None
            raise self._error(exc) from None
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        return [self._record(r) for r in rows]
