"""History, SLIs, SLOs, Prometheus and plots (nbjobs/metrics.py, nbjobs/plot.py).

Histories are built through the real store and state machine (`insert_job`, `claim`,
`finish_attempt`, `request_cancel`, `ack`), then moved to known times with
`support.loaders.retime`, so every number below is exact; one test runs real jobs on a real worker.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

import nbjobs
from nbjobs import cli, metrics
from nbjobs.errors import BadInput
from nbjobs.store import Store
from support.loaders import retime

T0 = 1_700_000_000.0          # the "now" of the constructed histories: 2023-11-14T22:13:20Z
H, MIN, DAY = 3600.0, 60.0, 86400.0
ALL_STATES = ["waiting", "queued", "running", "retrying", "succeeded", "failed", "timed_out", "cancelled"]
HISTORY_COLUMNS = ["id", "name", "kind", "state", "reason", "attempts", "priority", "tags", "submitted_at",
                   "started_at", "finished_at", "queue_wait_s", "runtime_s", "total_s", "error_type",
                   "error_message", "code_hash", "worker", "output_path"]
ATTEMPT_COLUMNS = ["id", "attempt", "name", "kind", "state", "outcome"] + [c for c in HISTORY_COLUMNS[4:] if c != "total_s"]
SLI_COLUMNS = ["runs", "succeeded", "failed", "timed_out", "cancelled", "success_rate", "p50_runtime_s",
               "p95_runtime_s", "p99_runtime_s", "p95_queue_wait_s", "mean_queue_wait_s", "retries_per_run",
               "dead_letters", "dead_letter_rate", "queue_depth", "slow_runs", "slow_running"]
SLO_COLUMNS = ["objective", "runs", "bad", "sli", "budget_total", "budget_spent", "budget_remaining",
               "budget_remaining_ratio", "burn_5m", "burn_30m", "burn_1h", "burn_6h", "burn_24h", "burn_3d", "alert"]
ERRORS = {"error": {"type": "ValueError", "message": "boom"}, "timeout": {"type": "Timeout", "message": "too slow"}}


def make_job(store: Store, name: str, submitted: float, attempts=(), outcomes=(), *, cancel_at: float | None = None,
             ack: bool = False, tags=(), priority: int = 0, retries: int | None = None) -> str:
    """One job through the real state machine, then moved to known times.

    ``outcomes`` are attempt outcomes (``succeeded``, ``error``, ``timeout``, ``cancelled``; None
    leaves the attempt running); ``attempts`` their ``(start, end)`` times.  The job's retry
    budget is exactly what the outcomes need, with zero backoff.  ``cancel_at``: cancelled
    before it ever ran.  No outcomes and no cancel: left queued.  ``retries`` overrides the budget
    (e.g. to leave a job ``retrying``).
    """
    if retries is None:
        failures = sum(1 for o in outcomes if o in ("error", "timeout"))
        retries = failures - (0 if outcomes and outcomes[-1] == "succeeded" else 1)
    rec, created = store.insert_job({"kind": "cell", "source": f"x = {name!r}", "name": name, "tags": list(tags),
                                     "retries": max(0, retries), "priority": priority, "code_hash": "c0ffee",
                                     "options": {"backoff": {"base": 0.0, "jitter": "none"}}}, actor="test")
    assert created
    for i, outcome in enumerate(outcomes):
        claimed = store.claim(f"w{i + 1}", now=time.time() + 1e6)  # far ahead: any backoff has elapsed
        assert claimed is not None and claimed[0].id == rec.id, "another job was claimable; build jobs in order"
        if outcome is not None:
            store.finish_attempt(rec.id, claimed[1], f"w{i + 1}", outcome, error=ERRORS.get(outcome))
    if cancel_at is not None:
        assert store.request_cancel(rec.id, "test") == "cancelled"
    if ack:
        store.ack(rec.id, "test")
    retime(store, rec.id, submitted, list(attempts), finished_at=cancel_at)
    return rec.id


def build_history(store: Store) -> dict[str, str]:
    """The history most tests read: three groups finished within 7 days of T0, plus noise."""
    ids = {}
    # group "a": runtimes 10, 20, 21, 30, 100 s; queue waits 5, 1, 2, 3, 4 s
    ids["a1"] = make_job(store, "a", T0 - 10 * H, [(T0 - 10 * H + 5, T0 - 10 * H + 15)], ["succeeded"])
    ids["a2"] = make_job(store, "a", T0 - 9 * H, [(T0 - 9 * H + 1, T0 - 9 * H + 21)], ["succeeded"], tags=["nightly"])
    ids["a3"] = make_job(store, "a", T0 - 8 * H, [(T0 - 8 * H + 2, T0 - 8 * H + 12),
                                                  (T0 - 8 * H + 20, T0 - 8 * H + 21, T0 - 8 * H + 42)],
                         ["error", "succeeded"])  # retried, then succeeded: one success; its 2nd attempt began after 1 s
    ids["a4"] = make_job(store, "a", T0 - 7 * H, [(T0 - 7 * H + 3, T0 - 7 * H + 33)], ["error"])   # dead letter
    ids["a5"] = make_job(store, "a", T0 - 6 * H, [(T0 - 6 * H + 4, T0 - 6 * H + 104)], ["timeout"], ack=True)
    ids["a6"] = make_job(store, "a", T0 - 5 * H, cancel_at=T0 - 5 * H + 60)  # cancelled before it ran
    # group "b": a single job
    ids["b1"] = make_job(store, "b", T0 - 2 * H, [(T0 - 2 * H + 0.5, T0 - 2 * H + 7.25)], ["succeeded"])
    # group "c": all failed
    ids["c1"] = make_job(store, "c", T0 - 3 * H, [(T0 - 3 * H + 1, T0 - 3 * H + 2)], ["error"])
    ids["c2"] = make_job(store, "c", T0 - 3 * H + 10, [(T0 - 3 * H + 11, T0 - 3 * H + 13)], ["timeout"])
    # outside the window: finished 8 days before T0
    ids["old"] = make_job(store, "a", T0 - 8 * DAY, [(T0 - 8 * DAY + 1, T0 - 8 * DAY + 2)], ["error"])
    # waiting to run at T0 (two), and one submitted after T0 (does not exist yet at T0)
    ids["q1"] = make_job(store, "a", T0 - 30 * MIN)
    ids["q2"] = make_job(store, "a", T0 - 1 * MIN)
    ids["future"] = make_job(store, "a", T0 + 10)
    return ids


# --- history -------------------------------------------------------------------------------------------
def test_history_empty_has_columns_and_dtypes(home):
    for attempts in (False, True):
        df = nbjobs.history(attempts=attempts)
        expected = HISTORY_COLUMNS if not attempts else ATTEMPT_COLUMNS
        assert list(df.columns) == expected and len(df) == 0
        assert isinstance(df.state.dtype, pd.CategoricalDtype) and list(df.state.cat.categories) == ALL_STATES
        for col in ("submitted_at", "started_at", "finished_at"):
            assert str(df[col].dtype) == "datetime64[ns, UTC]"
        for col in ("queue_wait_s", "runtime_s"):
            assert df[col].dtype == np.float64
        assert df.attempts.dtype == np.int64 and df.priority.dtype == np.int64


def test_history_one_row_per_job_with_exact_timings(store):
    ids = build_history(store)
    df = nbjobs.history()
    assert list(df.columns) == HISTORY_COLUMNS
    assert list(df.id) == [ids[k] for k in ("old", "a1", "a2", "a3", "a4", "a5", "a6", "c1", "c2", "b1", "q1", "q2",
                                             "future")]  # oldest submit first
    assert list(df.state.cat.categories) == ALL_STATES
    row = df.set_index("id").loc
    a3 = row[ids["a3"]]
    assert (a3["state"], a3["attempts"], a3["worker"], a3["queue_wait_s"], a3["runtime_s"], a3["total_s"]) == (
        "succeeded", 2, "w2", 2.0, 21.0, 42.0)  # runtime: the last attempt from its first cell; total: submit to end
    assert a3["submitted_at"] == pd.Timestamp(T0 - 8 * H, unit="s", tz="UTC")
    assert a3["started_at"] == pd.Timestamp(T0 - 8 * H + 2, unit="s", tz="UTC")
    assert a3["finished_at"] == pd.Timestamp(T0 - 8 * H + 42, unit="s", tz="UTC")
    assert pd.isna(a3["error_type"]) and a3["code_hash"] == "c0ffee" and a3["tags"] == ()
    a4 = row[ids["a4"]]
    assert (a4["state"], a4["reason"], a4["error_type"], a4["error_message"], a4["worker"]) == (
        "failed", "error", "ValueError", "boom", "w1")
    assert (a4["queue_wait_s"], a4["runtime_s"]) == (3.0, 30.0)
    assert row[ids["a2"]]["tags"] == ("nightly",)
    b1 = row[ids["b1"]]
    assert (b1["queue_wait_s"], b1["runtime_s"]) == (0.5, 6.75)
    a6 = row[ids["a6"]]  # cancelled before it ran: no start, no runtime, no worker
    assert a6["state"] == "cancelled" and pd.isna(a6["started_at"]) and np.isnan(a6["runtime_s"])
    assert a6["finished_at"] == pd.Timestamp(T0 - 5 * H + 60, unit="s", tz="UTC") and pd.isna(a6["worker"])
    q1 = row[ids["q1"]]
    assert q1["state"] == "queued" and pd.isna(q1["finished_at"]) and np.isnan(q1["queue_wait_s"])


def test_history_filters(store):
    ids = build_history(store)
    assert list(nbjobs.history(name="b").id) == [ids["b1"]]
    assert set(nbjobs.history(name="[bc]").id) == {ids["b1"], ids["c1"], ids["c2"]}  # a glob
    assert set(nbjobs.history(state="queued").id) == {ids["q1"], ids["q2"], ids["future"]}
    assert set(nbjobs.history(state=["failed", "timed_out"]).id) == {ids["a4"], ids["a5"], ids["c1"], ids["c2"],
                                                                     ids["old"]}
    assert list(nbjobs.history(tag="nightly").id) == [ids["a2"]]
    # since <= submitted_at < until, as epoch seconds, timestamps or ISO strings
    assert list(nbjobs.history(since=T0 - 2 * H, until=T0).id) == [ids["b1"], ids["q1"], ids["q2"]]
    assert list(nbjobs.history(since=pd.Timestamp(T0 - 2 * H, unit="s", tz="UTC"), until="2023-11-14T22:13:20Z").id) \
        == [ids["b1"], ids["q1"], ids["q2"]]
    assert list(nbjobs.history(until=T0 - 10 * H).id) == [ids["old"]]
    with pytest.raises(BadInput, match="unknown state"):
        nbjobs.history(state="done")
    with pytest.raises(BadInput, match="neither a time"):
        nbjobs.history(since="2023-13-45")


def test_history_per_attempt(store):
    ids = build_history(store)
    df = nbjobs.history(attempts=True, name="a", since=T0 - 10 * H, until=T0 - 6 * H + 1)
    assert list(df.columns) == ATTEMPT_COLUMNS
    assert list(zip(df.id, df.attempt)) == [(ids["a1"], 1), (ids["a2"], 1), (ids["a3"], 1), (ids["a3"], 2),
                                            (ids["a4"], 1), (ids["a5"], 1)]
    a3 = df[df.id == ids["a3"]]
    assert list(a3.outcome) == ["error", "succeeded"] and list(a3.state) == ["succeeded", "succeeded"]
    assert list(a3.worker) == ["w1", "w2"] and list(a3.error_type.fillna("-")) == ["ValueError", "-"]
    # attempt 1 waited since the submit; attempt 2 since attempt 1 ended (the backoff)
    assert list(a3.queue_wait_s) == [2.0, 8.0] and list(a3.runtime_s) == [10.0, 21.0]  # from each one's first cell
    assert list(df.outcome) == ["succeeded", "succeeded", "error", "succeeded", "error", "timeout"]


# --- SLIs -------------------------------------------------------------------------------------------------
def test_sli_exact_values_per_name(store):
    build_history(store)
    df = nbjobs.sli(window="7D", now=T0)
    assert list(df.columns) == SLI_COLUMNS and df.index.name == "name" and list(df.index) == ["a", "b", "c"]
    counts = {"runs", "succeeded", "failed", "timed_out", "cancelled", "dead_letters", "queue_depth",
              "slow_runs", "slow_running"}
    assert dict(df.dtypes.astype(str)) == {c: "int64" if c in counts else "float64" for c in SLI_COLUMNS}
    a = df.loc["a"]
    assert (a.runs, a.succeeded, a.failed, a.timed_out, a.cancelled) == (6, 3, 1, 1, 1)
    assert a.success_rate == 3 / 5                      # finished jobs only; cancelled left out
    runtimes, waits = [10.0, 20.0, 21.0, 30.0, 100.0], [5.0, 1.0, 2.0, 3.0, 4.0]  # a3: its last attempt only
    assert (a.p50_runtime_s, a.p95_runtime_s, a.p99_runtime_s) == tuple(np.quantile(runtimes, [0.5, 0.95, 0.99]))
    assert a.p50_runtime_s == 21.0                      # 'linear': position (n - 1) * q of the sorted values
    assert a.p95_runtime_s == pytest.approx(86.0, abs=1e-9)   # 30 + 0.8 * (100 - 30)
    assert a.p99_runtime_s == pytest.approx(97.2, abs=1e-9)   # 30 + 0.96 * (100 - 30)
    assert a.p95_queue_wait_s == np.quantile(waits, 0.95) and a.p95_queue_wait_s == pytest.approx(4.8, abs=1e-9)
    assert a.mean_queue_wait_s == 3.0
    assert a.retries_per_run == 1 / 6                   # a3's second attempt, over six runs
    assert (a.dead_letters, a.dead_letter_rate) == (1, 1 / 6)   # a4; a5 was acknowledged
    assert a.queue_depth == 2                           # q1 and q2; "future" did not exist at T0
    b = df.loc["b"]                                     # a single job
    assert (b.runs, b.success_rate, b.p50_runtime_s, b.p95_runtime_s, b.p99_runtime_s) == (1, 1.0, 6.75, 6.75, 6.75)
    assert (b.p95_queue_wait_s, b.retries_per_run, b.dead_letters, b.queue_depth) == (0.5, 0.0, 0, 0)
    c = df.loc["c"]                                     # all failed
    assert (c.runs, c.failed, c.timed_out, c.success_rate, c.dead_letters, c.dead_letter_rate) == (2, 1, 1, 0.0, 2, 1.0)
    assert (c.p50_runtime_s, c.mean_queue_wait_s) == (1.5, 1.0)


def test_sli_all_jobs_and_other_groupings(store):
    build_history(store)
    total = nbjobs.sli(window="7D", by=None, now=T0)
    assert list(total.index) == ["all"]
    t = total.loc["all"]
    assert (t.runs, t.succeeded, t.failed, t.timed_out, t.cancelled, t.queue_depth) == (9, 4, 2, 2, 1, 2)
    assert t.success_rate == 4 / 8
    assert t.p50_runtime_s == np.quantile([10, 20, 21, 30, 100, 6.75, 1, 2], 0.5)
    by_kind = nbjobs.sli(window="7D", by="kind", now=T0)
    assert list(by_kind.index) == ["cell"] and by_kind.loc["cell", "runs"] == 9
    # a shorter window: only b1 (2 h before T0) and the c jobs (3 h before)
    recent = nbjobs.sli(window="4h", now=T0)
    assert list(recent.index) == ["a", "b", "c"] and list(recent.runs) == [0, 1, 2]
    assert np.isnan(recent.loc["a", "success_rate"]) and recent.loc["a", "queue_depth"] == 2
    # the 8-day-old failure counts once the window reaches it
    assert nbjobs.sli(window="9D", now=T0).loc["a", "failed"] == 2


def test_sli_buckets(store):
    hour0 = (T0 // H) * H                     # T0 is 800 s into its hour
    make_job(store, "a", hour0 - 3 * H, [(hour0 - 3 * H + 10, hour0 - 3 * H + 70)], ["succeeded"])     # bucket 0
    make_job(store, "a", hour0 - H, [(hour0 - H + 10, hour0 - H + 20)], ["error"])                     # bucket 2
    make_job(store, "a", hour0 + 1, [(hour0 + 2, hour0 + 12)], ["succeeded"])                          # bucket 3
    make_job(store, "a", hour0 + 3, [(hour0 + 4, hour0 + 34)], ["succeeded"])                          # bucket 3
    make_job(store, "a", hour0 - 2 * H + 10, [(hour0 - H + 10, hour0 - H + 15)], ["succeeded"])         # waits over bucket 1's end
    make_job(store, "a", hour0 + 5)                                                                       # waiting at T0
    df = nbjobs.sli(window="3h", freq="1h", now=T0)
    buckets = pd.DatetimeIndex([pd.Timestamp(hour0 + k * H, unit="s", tz="UTC") for k in (-3, -2, -1, 0)])
    assert df.index.names == ["name", "bucket"]
    assert list(df.loc["a"].index) == list(buckets) and str(df.loc["a"].index.dtype) == "datetime64[ns, UTC]"
    a = df.loc["a"]
    assert list(a.runs) == [1, 0, 2, 2]
    assert list(a.success_rate.fillna(-1)) == [1.0, -1, 0.5, 1.0]
    assert list(a.p50_runtime_s.fillna(-1)) == [60.0, -1, 7.5, 20.0]
    assert list(a.queue_depth) == [0, 1, 0, 1]
    total = nbjobs.sli(window="3h", freq="1h", by=None, now=T0)
    assert list(total.index) == list(buckets) and list(total.runs) == [1, 0, 2, 2]


def test_sli_empty_single_and_live_queue(home, store):
    empty = nbjobs.sli()
    assert list(empty.columns) == SLI_COLUMNS and len(empty) == 0 and empty.index.name == "name"
    assert dict(empty.dtypes.astype(str)) == metrics.SLI_DTYPES
    one = nbjobs.sli(by=None)
    assert list(one.index) == ["all"] and one.loc["all", "runs"] == 0 and np.isnan(one.loc["all", "success_rate"])
    now = float(int(time.time()))
    make_job(store, "solo", now - 100, [(now - 90, now - 60)], ["succeeded"])
    make_job(store, "solo", now - 50, [(now - 40, now - 35)], ["error"], retries=1)   # failed once, now retrying
    make_job(store, "solo", now - 10)                                    # queued
    live = nbjobs.sli()                                                  # live: retrying counts as waiting
    assert (live.loc["solo", "runs"], live.loc["solo", "p99_runtime_s"], live.loc["solo", "queue_depth"]) == (1, 30.0, 2)
    assert nbjobs.summary()["queue_depth"] == 2


def test_bad_arguments(home):
    for call, needle in ((lambda: nbjobs.sli(by="worker"), "cannot group by"),
                         (lambda: nbjobs.sli(window="soon"), "not a duration"),
                         (lambda: nbjobs.sli(window="-1h"), "not a duration|positive"),
                         (lambda: nbjobs.sli(window="30D", freq="1s"), "buckets"),
                         (lambda: nbjobs.slo(objective=1.0), "between 0 and 1"),
                         (lambda: nbjobs.slo(objective="high"), "number"),
                         (lambda: metrics.serve(port=70000), "port")):
        with pytest.raises(BadInput, match=needle):
            call()


# --- SLOs -------------------------------------------------------------------------------------------------
def test_slo_budget_burn_rates_and_alert_levels(store):
    # objective 0.95: the budget is 5% of runs; page needs a bad fraction >= 0.72 in 1h and 5m
    # (14.4 x 5%) or >= 0.3 in 6h and 30m (6 x 5%); a ticket >= 0.05 in 3d and 6h.
    def run(name, finished, outcome):
        make_job(store, name, finished - 20, [(finished - 10, finished)], [outcome])

    run("page1", T0 - 60, "error")                             # 5m, 1h: 1/1 bad -> burn 20
    run("page2", T0 - 20 * MIN, "error")                       # 30m: 1/2 -> 10; 1h: 10 < 14.4; 5m: no data
    run("page2", T0 - 20 * MIN, "succeeded")
    run("page2", T0 - 3 * H, "succeeded")                      # 6h: 1/3 -> 6.67 >= 6
    run("edge", T0 - 10 * MIN, "error")                        # 30m and 6h: 3/10 -> exactly 6
    run("edge", T0 - 10 * MIN, "timeout")
    run("edge", T0 - 10 * MIN, "error")
    for _ in range(7):
        run("edge", T0 - 10 * MIN, "succeeded")
    run("ticket", T0 - 2 * H, "error")                         # 6h: 1/5 -> 4; 3d: 1/10 -> 2
    for _ in range(4):
        run("ticket", T0 - 2 * H, "succeeded")
    for _ in range(5):
        run("ticket", T0 - 2 * DAY, "succeeded")
    run("slow", T0 - 2 * H, "error")                           # 6h: 1/5 -> 4; 24h: 1/25 -> 0.8 < 1
    for _ in range(4):
        run("slow", T0 - 2 * H, "succeeded")
    for _ in range(20):
        run("slow", T0 - 12 * H, "succeeded")
    for _ in range(3):
        run("slow", T0 - 2 * DAY, "timeout")                   # 3d: 4/28 -> 2.86: a ticket (3d, not 24h)
    for _ in range(3):
        run("quiet", T0 - 30 * MIN - 1, "succeeded")
    run("quiet", T0 - 40 * DAY, "error")                       # outside every window
    make_job(store, "ticket", T0 - 5 * MIN, cancel_at=T0 - 4 * MIN)  # cancelled: not a run for the SLO

    df = nbjobs.slo(objective=0.95, window="30D", now=T0, min_runs=1)  # the rules alone
    assert list(df.columns) == SLO_COLUMNS and list(df.index) == ["edge", "page1", "page2", "quiet", "slow", "ticket"]
    assert dict(df.alert) == {"edge": "page", "page1": "page", "page2": "page", "quiet": "none", "slow": "ticket",
                              "ticket": "ticket"}
    assert df.alert.dtype == metrics.ALERT_DTYPE and df.alert.max() == "page"
    burn = lambda name, w: df.loc[name, f"burn_{w}"]  # noqa: E731
    assert burn("page1", "5m") == pytest.approx(20.0) and burn("page1", "3d") == pytest.approx(20.0)
    assert np.isnan(burn("page2", "5m")) and burn("page2", "30m") == pytest.approx(10.0)
    assert burn("page2", "1h") == pytest.approx(10.0) and burn("page2", "6h") == pytest.approx(20 / 3)
    assert burn("edge", "30m") == pytest.approx(6.0) and burn("edge", "6h") == pytest.approx(6.0)  # exactly at the threshold
    assert burn("edge", "1h") == pytest.approx(6.0) and np.isnan(burn("edge", "5m"))
    assert np.isnan(burn("ticket", "30m")) and burn("ticket", "6h") == pytest.approx(4.0)
    assert burn("ticket", "24h") == pytest.approx(4.0) and burn("ticket", "3d") == pytest.approx(2.0)
    assert burn("quiet", "1h") == 0.0 and np.isnan(burn("quiet", "30m"))
    assert burn("slow", "24h") == pytest.approx(0.8) and burn("slow", "3d") == pytest.approx((4 / 28) / 0.05)
    t = df.loc["ticket"]
    assert (t.runs, t.bad, t.budget_spent) == (10, 1, 1.0) and t.sli == 0.9
    assert t.budget_total == pytest.approx(0.5) and t.budget_remaining == pytest.approx(-0.5)
    assert t.budget_remaining_ratio == pytest.approx(-1.0)
    q = df.loc["quiet"]
    assert (q.runs, q.bad, q.sli, q.budget_remaining_ratio) == (3, 0, 1.0, 1.0)
    assert q.objective == 0.95
    # the same history at objective 0.5: nothing burns fast enough to page
    few = nbjobs.slo(objective=0.95, window="30D", now=T0)  # by default a group needs 10 runs to alert
    assert dict(few.alert) == {"edge": "page", "page1": "none", "page2": "none", "quiet": "none", "slow": "ticket",
                               "ticket": "ticket"}
    assert few.loc["page1", "burn_5m"] == pytest.approx(20.0)  # its numbers are still shown
    lax = nbjobs.slo(objective=0.5, now=T0, min_runs=1)
    assert dict(lax.alert) == {"edge": "none", "page1": "ticket", "page2": "none", "quiet": "none", "slow": "none",
                               "ticket": "none"}
    assert lax.loc["page1", "burn_1h"] == 2.0
    total = nbjobs.slo(objective=0.95, by=None, now=T0)
    assert list(total.index) == ["all"] and total.loc["all", "runs"] == 3 + 10 + 10 + 1 + 3 + 28
    assert total.loc["all", "burn_5m"] == pytest.approx(20.0)
    assert total.loc["all", "burn_30m"] == pytest.approx((5 / 13) / 0.05)   # all jobs together: only a ticket
    assert total.loc["all", "burn_6h"] == pytest.approx((7 / 27) / 0.05) and total.loc["all", "alert"] == "ticket"


def test_slo_empty(home):
    df = nbjobs.slo()
    assert list(df.columns) == SLO_COLUMNS and len(df) == 0
    total = nbjobs.slo(by=None)
    assert total.loc["all", "runs"] == 0 and np.isnan(total.loc["all", "burn_1h"])
    assert total.loc["all", "alert"] == "none"


# --- Prometheus -------------------------------------------------------------------------------------------
def parse(text: str) -> dict[str, dict]:
    """{family name: {(sample name, labels as a sorted tuple): value}}"""
    out: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        out[family.name]["_type"] = family.type
    return out


def test_prometheus_text(store):
    build_history(store)
    families = parse(metrics.prometheus_text())
    finished = families["nbjobs_jobs_finished"]
    assert finished["_type"] == "counter"
    value = lambda _fam, _sample, **labels: families[_fam][(_sample, tuple(sorted(labels.items())))]  # noqa: E731
    assert value("nbjobs_jobs_finished", "nbjobs_jobs_finished_total", name="a", state="succeeded") == 3
    assert value("nbjobs_jobs_finished", "nbjobs_jobs_finished_total", name="a", state="failed") == 2  # old too
    assert value("nbjobs_jobs_finished", "nbjobs_jobs_finished_total", name="c", state="timed_out") == 1
    assert value("nbjobs_jobs_finished", "nbjobs_jobs_finished_total", name="b", state="cancelled") == 0
    assert value("nbjobs_attempts", "nbjobs_attempts_total", name="a") == 7
    runtime = "nbjobs_job_runtime_seconds"
    assert families[runtime]["_type"] == "histogram"
    assert value(runtime, runtime + "_bucket", name="a", le="1.0") == 1       # old (1 s); le is inclusive
    assert value(runtime, runtime + "_bucket", name="a", le="10.0") == 2      # + a1 (10 s)
    assert value(runtime, runtime + "_bucket", name="a", le="30.0") == 5      # + a2 (20), a3 (21), a4 (30)
    assert value(runtime, runtime + "_bucket", name="a", le="+Inf") == 6      # + a5 (100)
    assert value(runtime, runtime + "_count", name="a") == 6
    assert value(runtime, runtime + "_sum", name="a") == 10 + 20 + 21 + 30 + 100 + 1
    wait = "nbjobs_job_queue_wait_seconds"
    assert value(wait, wait + "_bucket", name="b", le="0.5") == 1 and value(wait, wait + "_sum", name="b") == 0.5
    assert value("nbjobs_queue_depth", "nbjobs_queue_depth", name="a") == 3   # live: q1, q2, future
    assert value("nbjobs_jobs_running", "nbjobs_jobs_running", name="a") == 0
    assert value("nbjobs_dead_letters", "nbjobs_dead_letters", name="c") == 2
    assert value("nbjobs_dead_letters", "nbjobs_dead_letters", name="a") == 2  # a4 and old; a5 acknowledged
    assert value("nbjobs_workers", "nbjobs_workers") == 0


def test_prometheus_text_of_empty_home_parses(home):
    families = parse(metrics.prometheus_text())
    assert families["nbjobs_workers"]["_type"] == "gauge"
    assert set(families) >= {"nbjobs_jobs_finished", "nbjobs_job_runtime_seconds", "nbjobs_queue_depth"}


def test_serve_on_localhost_and_stop(store):
    build_history(store)
    server = metrics.serve(0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert parse(text)["nbjobs_dead_letters"][("nbjobs_dead_letters", (("name", "c"),))] == 2


# --- the CLI and the magic --------------------------------------------------------------------------------
def test_cli_metrics_formats(store, capsys):
    now = float(int(time.time()))
    make_job(store, "report", now - 100, [(now - 95, now - 65)], ["succeeded"])
    make_job(store, "report", now - 60, [(now - 59, now - 49)], ["error"])
    assert cli.main(["metrics"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^report\s+2\s+1\s+1\s+0\s+0\s+0\.5\s", out, re.M), out
    assert cli.main(["metrics", "--format", "json", "--by", "none"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["index"] == "all" and rows[0]["runs"] == 2 and rows[0]["p50_runtime_s"] == 20.0
    assert cli.main(["metrics", "--format", "csv", "--window", "1h", "--freq", "30min"]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert csv[0].startswith("name,bucket,runs,") and len(csv) == 1 + 3  # 3 half-hour buckets
    assert cli.main(["metrics", "--format", "prometheus"]) == 0
    fams = parse(capsys.readouterr().out)
    assert fams["nbjobs_jobs_finished"][("nbjobs_jobs_finished_total", (("name", "report"), ("state", "failed")))] == 1
    assert cli.main(["metrics", "--window", "whenever"]) == 2
    assert "not a duration" in capsys.readouterr().err


def test_cli_metrics_on_empty_home(home, capsys):
    assert cli.main(["metrics"]) == 0
    assert "no finished or waiting jobs in the last 7D" in capsys.readouterr().out


def test_cli_serve_until_interrupted(store, home):
    build_history(store)
    proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "metrics", "--serve", "--port", "0"],
                            env=dict(os.environ, NBJOBS_HOME=str(home)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert match, line
        with urllib.request.urlopen(match.group(0), timeout=10) as resp:
            families = parse(resp.read().decode())
        assert families["nbjobs_queue_depth"][("nbjobs_queue_depth", (("name", "a"),))] == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        proc2 = subprocess.Popen([sys.executable, "-m", "nbjobs", "metrics", "--serve", "--port", "0"],
                                 env=dict(os.environ, NBJOBS_HOME=str(home)), stdout=subprocess.PIPE, text=True)
        assert "serving" in proc2.stdout.readline()
        proc2.terminate()                                          # SIGTERM stops it cleanly too
        assert proc2.wait(timeout=20) == 0
    finally:
        for p in (proc, locals().get("proc2")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def test_magic_metrics_returns_the_sli_frame(store, tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    now = float(int(time.time()))
    make_job(store, "nb", now - 100, [(now - 90, now - 80)], ["succeeded"])
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    InteractiveShell.clear_instance()
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    try:
        shell.run_line_magic("load_ext", "nbjobs")
        df = shell.run_line_magic("job", "metrics --window 1h --by none")
        assert list(df.columns) == SLI_COLUMNS and df.loc["all", "runs"] == 1
        assert df.loc["all", "p50_runtime_s"] == 10.0
    finally:
        InteractiveShell.clear_instance()


# --- plots --------------------------------------------------------------------------------------------
@pytest.fixture
def plt(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_plots(store, plt):
    build_history(store)
    ax = nbjobs.plot.runtime(window="7D", now=T0)
    assert ax.get_title() == "Runtime of finished jobs, last 7 d, by name" and ax.get_xlabel() == "runtime (s)"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["c (n=2)", "b (n=1)", "a (n=5)"]           # slowest median on top; a6 never ran
    assert ax.get_xscale() == "log"                               # 1 s to 100 s
    ax = nbjobs.plot.success_rate(freq="1h", window="12h", now=T0, objective=0.9)
    assert ax.get_ylabel() == "success rate (%)" and "per 1 h" in ax.get_title()
    line = ax.get_lines()[0]
    expected = nbjobs.sli(window="12h", freq="1h", by=None, now=T0).success_rate * 100
    assert np.array_equal(np.asarray(line.get_ydata(), dtype=float), expected.to_numpy(), equal_nan=True)
    assert ax.get_lines()[1].get_ydata()[0] == pytest.approx(90.0)   # the objective
    import matplotlib.dates as mdates
    lo, hi = (mdates.num2date(x).timestamp() for x in ax.get_xlim())
    assert T0 - 12 * H - 3600 < lo and hi <= T0 + 3600            # the window's 12 buckets, even with one run
    one = nbjobs.plot.success_rate(freq="1h", window="7D", now=T0, by="name")  # one finished run for "b"
    lo, hi = (mdates.num2date(x).timestamp() for x in one.get_xlim())
    assert hi - lo <= 7 * DAY + 2 * H                             # not years around one dot
    from IPython.core.formatters import DisplayFormatter
    data, _meta = DisplayFormatter().format(ax)
    assert "<Axes" not in str(data)                               # no repr line above the figure
    ax = nbjobs.plot.burn(objective=0.95, now=T0)
    assert "objective 95.00%" in ax.get_title() and ax.get_ylabel() == "burn rate (\u00d7 sustainable)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5m", "30m", "1h", "6h", "24h", "3d"]
    heights = [p.get_height() for p in ax.patches]
    slo = nbjobs.slo(objective=0.95, by=None, now=T0)
    assert heights == pytest.approx([np.nan_to_num(slo.loc["all", f"burn_{w}"]) for w in metrics.BURN_WINDOWS])
    fig, own = plt.subplots()
    assert nbjobs.plot.runtime(ax=own, now=T0) is own


def test_plots_of_empty_home(home, plt):
    assert "no finished jobs" in nbjobs.plot.runtime().texts[0].get_text()
    assert nbjobs.plot.burn().get_title().endswith("alert none")
    assert len(nbjobs.plot.success_rate(freq="1D", window="3D").get_lines()) == 1


def test_import_stays_light():
    code = textwrap.dedent("""
        import sys, nbjobs
        heavy = lambda: sorted(m for m in ("pandas", "numpy", "matplotlib", "prometheus_client") if m in sys.modules)
        print(heavy())
        nbjobs.plot
        print(heavy(), callable(nbjobs.plot.runtime), callable(nbjobs.sli))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == "[] True True"  # nbjobs.plot loaded without matplotlib (or pandas)


# --- real runs ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_runs(home, worker, tmp_path):
    marker = tmp_path / "failed-once"
    flaky = (f"import pathlib\np = pathlib.Path({str(marker)!r})\n"
             "if not p.exists():\n    p.write_text('x')\n    raise RuntimeError('first attempt fails')\n")
    jobs = [nbjobs.submit("x = 1", name="ok", start_worker=False),
            nbjobs.submit("raise ValueError('nope')", name="bad", start_worker=False),
            nbjobs.submit(flaky, name="flaky", retries=1, backoff={"base": 0.2, "jitter": "none"}, start_worker=False)]
    nbjobs.wait(jobs, timeout=120)
    worker_id = [w["id"] for w in Store(home / "nbjobs.db").live_workers() if w["pid"] == worker.pid][0]
    df = nbjobs.history().set_index("name")
    assert list(df.state.astype(str)[["ok", "bad", "flaky"]]) == ["succeeded", "failed", "succeeded"]
    assert list(df.attempts[["ok", "bad", "flaky"]]) == [1, 1, 2] and set(df.worker) == {worker_id}
    assert df.loc["bad", "error_type"] == "ValueError" and df.output_path.notna().all()
    assert (df.queue_wait_s >= 0).all() and (df.runtime_s > 0).all()
    spans = (df.finished_at - df.started_at).dt.total_seconds()
    assert (df.runtime_s < spans).all()  # the start phase (a kernel getting ready) is not the job's runtime
    assert np.allclose(df.total_s, (df.finished_at - df.submitted_at).dt.total_seconds(), atol=1e-5)
    last = nbjobs.history(attempts=True).groupby("name").last()
    assert np.allclose(df.runtime_s, last.runtime_s[df.index], atol=1e-5)  # the last attempt's run time
    per_attempt = nbjobs.history(attempts=True, name="flaky")
    assert list(per_attempt.outcome) == ["error", "succeeded"]
    assert per_attempt.queue_wait_s.iloc[1] >= 0.2        # the backoff counts as waiting
    assert df.loc["flaky", "runtime_s"] == per_attempt.runtime_s.iloc[1] < df.loc["flaky", "total_s"] - 0.2
    s = nbjobs.sli(by=None).loc["all"]
    assert (s.runs, s.succeeded, s.failed, s.success_rate, s.dead_letters, s.queue_depth) == (3, 2, 1, 2 / 3, 1, 0)
    assert s.retries_per_run == 1 / 3
    assert s.p50_runtime_s == np.quantile(df.runtime_s, 0.5)
    fams = parse(metrics.prometheus_text())
    assert fams["nbjobs_workers"][("nbjobs_workers", ())] == 1
    assert fams["nbjobs_attempts"][("nbjobs_attempts_total", (("name", "flaky"),))] == 2


def test_sli_counts_slow_runs_and_slow_running_jobs(store):
    from support.loaders import insert_rows

    t0 = time.time()
    row = dict(name="n", kind="cell", attempts=1, submitted_at=t0 - 100, started_at=t0 - 90)
    insert_rows(store, [dict(row, state="succeeded", finished_at=t0 - 10, slow_at=t0 - 50),
                        dict(row, state="failed", finished_at=t0 - 10, slow_at=t0 - 50),
                        dict(row, state="succeeded", finished_at=t0 - 10),
                        dict(row, state="running", slow_at=t0 - 50),
                        dict(row, state="running"),
                        dict(row, name="m", state="running", slow_at=t0 - 50)])
    live = nbjobs.sli(window="7D")  # the present: running jobs count
    assert (live.loc["n", "slow_runs"], live.loc["n", "slow_running"], live.loc["n", "runs"]) == (2, 1, 3)
    assert (live.loc["m", "runs"], live.loc["m", "slow_running"]) == (0, 1)  # shown for its slow running job
    past = nbjobs.sli(window="7D", now=t0)  # another moment: nothing is running "now" there
    assert (past.loc["n", "slow_runs"], past.loc["n", "slow_running"]) == (2, 0) and "m" not in past.index
