"""Named leases: one holder at a time (e.g. the schedule firer of a home), passed on when it expires."""
from __future__ import annotations

import time


class LeasesMixin:
    """Take, renew and drop a named lease."""

    def take_lease(self, name: str, holder: str, ttl: float, now: float | None = None) -> bool:
        """Hold the named lease for ``ttl`` seconds (or renew it).  False while someone else
        holds it; it passes to the next taker once it expired (its holder died)."""
        now = time.time() if now is None else now
        rows = self._q("SELECT holder, until FROM leases WHERE name = ?", (name,))
        if rows and rows[0]["until"] > now and (rows[0]["holder"] != holder or rows[0]["until"] - now > ttl * 2 / 3):
            return rows[0]["holder"] == holder  # held by another, or ours and fresh: no write
        with self._tx() as conn:
            row = conn.execute("SELECT holder, until FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row["holder"] != holder and row["until"] > now:
                return False
            conn.execute("INSERT OR REPLACE INTO leases (name, holder, until) VALUES (?, ?, ?)",
                         (name, holder, now + ttl))
        return True

    def drop_lease(self, name: str, holder: str) -> None:
        """Give the lease up (a stopping holder), so the next taker need not wait for it to expire."""
        if not self._q("SELECT 1 FROM leases WHERE name = ? AND holder = ?", (name, holder)):
            return
        with self._tx() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
