"""Full-text search of the job history: ``jobs_fts`` (FTS5, built by sqlite-utils in migration v8).

The index covers `schema.SEARCH_COLUMNS` (name, tags, parameters as JSON text, error type and
message, the tail of the latest attempt's log).  It is kept off the submit, claim and end of a job
(migration v14): `SearchMixin.index_pending` indexes, in one transaction, the jobs added since the
last indexing (rowids above the largest indexed one) and re-indexes those whose indexed text
changed (``jobs_fts_stale`` keeps the values their index rows hold).  Every search calls it
first, so a search finds every job as it is now; an idle worker calls it too, so searches rarely
wait.  Deleting a job removes its index row at once (a trigger).
"""
from __future__ import annotations

import sqlite3

from ..errors import BadInput
from ..job import JobRecord
from .schema import SEARCH_COLUMNS

_COLS = ", ".join(SEARCH_COLUMNS)
#: is anything waiting to be indexed?  Two index lookups and a peek, no write lock
_PENDING = ("SELECT (SELECT COALESCE(MAX(rowid), 0) FROM jobs) > (SELECT COALESCE(MAX(id), 0) FROM jobs_fts_docsize) "
            "OR EXISTS (SELECT 1 FROM jobs_fts_stale)")


class SearchMixin:
    """`search`: the jobs whose indexed text matches an FTS5 query, best match first; `index_pending`."""

    def index_pending(self, limit: int | None = None) -> int:
        """Bring the search index up to date: index the jobs added since the last indexing, re-index
        the jobs whose indexed text changed since theirs.  One transaction (``limit``: at most that
        many new jobs in it; the rest waits for the next call).  Returns how many jobs it indexed.

        >>> import tempfile, pathlib; from nbjobs.store import Store
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> rec, _ = s.insert_job({"name": "a", "kind": "cell", "source": "1"}, actor="doctest")
        >>> s.index_pending(), s.index_pending()
        (1, 0)
        """
        try:
            if not self.conn.execute(_PENDING).fetchone()[0]:
                return 0
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        with self._tx() as conn:
            stale = conn.execute(f"INSERT INTO jobs_fts (jobs_fts, rowid, {_COLS}) "
                                 f"SELECT 'delete', rowid, {_COLS} FROM jobs_fts_stale").rowcount
            if stale:
                conn.execute(f"INSERT INTO jobs_fts (rowid, {_COLS}) SELECT j.rowid, {', '.join('j.' + c for c in SEARCH_COLUMNS)} "
                             "FROM jobs_fts_stale s JOIN jobs j ON j.rowid = s.rowid")
                conn.execute("DELETE FROM jobs_fts_stale")
            # every job up to the largest indexed rowid is indexed: a new job's rowid is above all
            # rowids in use (and an indexed job that is deleted leaves the index with it)
            last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM jobs_fts_docsize").fetchone()[0]
            new = conn.execute(f"INSERT INTO jobs_fts (rowid, {_COLS}) SELECT rowid, {_COLS} FROM jobs "
                               f"WHERE rowid > ? ORDER BY rowid" + (f" LIMIT {int(limit)}" if limit else ""),
                               (last,)).rowcount
        return stale + new

    def rebuild_search(self) -> None:
        """Rebuild the search index from every job (the repair for an index that went wrong; the rowids
        it follows are ``jobs.seq``, which a ``VACUUM`` keeps since schema v15)."""
        with self._tx() as conn:
            conn.execute("INSERT INTO jobs_fts (jobs_fts) VALUES ('rebuild')")
            conn.execute("DELETE FROM jobs_fts_stale")

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
        self.index_pending()
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
