"""Groups: a parameter sweep is one group (its own ID, same form as job IDs) of ordinary jobs that
carry its ID in ``jobs.group_id``.  Submitted in one transaction: all of a sweep's jobs or none."""
from __future__ import annotations

import json
import time
from typing import Any, Iterable

from ..errors import AmbiguousJob, BadInput
from ..job import JobRecord, new_id, normalize_prefix, short_id


class GroupsMixin:
    """Insert a group with its jobs, read it back, count its jobs per state; ID lookup across jobs and groups."""

    def insert_group(self, group: dict[str, Any], specs: Iterable[dict[str, Any]], actor: str) -> tuple[str, bool]:
        """Record a group (``name``, ``params``: the swept parameter names, ``options``, ``idem_key``)
        and its jobs (job specs as `insert_job` takes them) in one transaction.  Returns
        ``(group_id, created)``; with an ``idem_key`` already used, nothing is written and the
        existing group's ID comes back with ``created=False``."""
        now = time.time()
        specs = list(specs)
        gid = group.get("id") or new_id()
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO groups (id, name, kind, params, size, idem_key, created_at, created_by, options) "
                "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (idem_key) WHERE idem_key IS NOT NULL DO NOTHING",
                (gid, group["name"], group.get("kind", "sweep"), json.dumps(list(group.get("params") or [])),
                 len(specs), group.get("idem_key"), now, actor, json.dumps(group.get("options") or {})))
            if cur.rowcount == 0:
                row = conn.execute("SELECT id FROM groups WHERE idem_key = ?", (group["idem_key"],)).fetchone()
                return row["id"], False
            for i, spec in enumerate(specs):
                # a microsecond apart: workers claim (and lists show) the jobs in the sweep's order
                at = now + i * 1e-6
                row = self._job_row(dict(spec, group_id=gid), actor, at)
                self._insert(conn, row, list(spec.get("after") or ()), actor, at)
        return gid, True

    def get_group(self, group_id: str) -> dict[str, Any]:
        """One group's row, decoded (``params`` and ``options`` parsed); unknown raises."""
        rows = self._q("SELECT * FROM groups WHERE id = ?", (group_id,))
        if not rows:
            raise self._unknown(group_id)
        d = dict(rows[0])
        d["params"] = json.loads(d["params"] or "[]")
        d["options"] = json.loads(d["options"] or "{}")
        return d

    def group_jobs(self, group_id: str) -> list[JobRecord]:
        """The jobs of a group in the sweep's order (``options.sweep_index``)."""
        recs = [self._record(r) for r in self._q("SELECT * FROM jobs WHERE group_id = ?", (group_id,))]
        return sorted(recs, key=lambda r: (r.options.get("sweep_index", 0), r.submitted_at, r.id))

    def group_counts(self, group_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Per group that has jobs: ``total``, jobs per state (``states``), first start and last end, and
        the group's ``name`` and ``created_at``.  Two indexed reads."""
        ids = list(dict.fromkeys(group_ids))
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for r in self._q(f"SELECT group_id, state, count(*) AS n, min(started_at) AS s, max(finished_at) AS f "
                             f"FROM jobs WHERE group_id IN ({', '.join('?' * len(chunk))}) "
                             "GROUP BY group_id, state", chunk):
                d = out.setdefault(r["group_id"], {"total": 0, "states": {}, "started_at": None,
                                                   "finished_at": None})
                d["total"] += r["n"]
                d["states"][r["state"]] = r["n"]
                if r["s"] is not None:
                    d["started_at"] = r["s"] if d["started_at"] is None else min(d["started_at"], r["s"])
                if r["f"] is not None:
                    d["finished_at"] = r["f"] if d["finished_at"] is None else max(d["finished_at"], r["f"])
            for r in self._q(f"SELECT id, name, created_at FROM groups WHERE id IN ({', '.join('?' * len(chunk))})",
                             chunk):
                if r["id"] in out:
                    out[r["id"]].update(name=r["name"], created_at=r["created_at"])
        return out

    def list_groups(self, limit: int | None = 20) -> list[dict[str, Any]]:
        """Groups, newest first."""
        sql = "SELECT id FROM groups ORDER BY created_at DESC, id" + (f" LIMIT {int(limit)}" if limit else "")
        return [self.get_group(r["id"]) for r in self._q(sql)]

    # --- IDs ------------------------------------------------------------------------------------
    def resolve_any(self, text: str) -> tuple[str, str]:
        """``("job", id)`` or ``("group", id)`` for an ID or unique prefix of either: job and group IDs
        share one form and one lookup, so a prefix matching both a job and a group is ambiguous."""
        prefix = normalize_prefix(text)
        upper = prefix + "g"  # every hex digit sorts below 'g'
        jobs = self._q("SELECT id, name FROM jobs WHERE id >= ? AND id < ? ORDER BY id LIMIT 6", (prefix, upper))
        groups = self._q("SELECT id, name FROM groups WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                         (prefix, upper))
        found = [("job", r["id"], r["name"]) for r in jobs] + [("group", r["id"], r["name"]) for r in groups]
        if len(found) == 1:
            return found[0][0], found[0][1]
        if len(found) > 1:
            shown = ", ".join(f"{short_id(i)} ({name}{', a group' if kind == 'group' else ''})"
                              for kind, i, name in found[:5])
            raise AmbiguousJob(f"ID prefix '{prefix}' matches several jobs or groups: {shown}; give more characters")
        raise self._unknown(prefix)

    def resolve(self, text: str) -> str:
        """The full job ID for an ID or unique prefix, as in git.  Raises a clear error otherwise
        (also when the prefix names a group: this verb takes one job)."""
        kind, full = self.resolve_any(text)
        if kind == "group":
            g = self.get_group(full)
            raise BadInput(f"{short_id(full)} is a group ({g['name']}, {g['size']} jobs), not a job; give one of its "
                           f"jobs' IDs (`nbjobs show {short_id(full)}` lists them)")
        return full

    def check_group_prefix(self, text: str) -> str:
        """The full ID of a group given by ID or unique prefix (a job's ID is refused)."""
        kind, full = self.resolve_any(text)
        if kind != "group":
            raise BadInput(f"{short_id(full)} is a job, not a group; give a group's ID (from `nbjobs sweep`)")
        return full
