"""Full-text search of the job history (migration v8, ``jobs_fts`` built by sqlite-utils) and
`nbjobs.db()`: real SQLite files; one slow test runs a real job on a real worker."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nbjobs
from nbjobs.errors import BadInput
from nbjobs.store import MIGRATIONS, SCHEMA_VERSION, Store
from nbjobs.store.schema import SEARCH_COLUMNS
from nbjobs.worker import log_tail
from support.cli import assert_bad_input, nbj
from support.shell import ok, run

ACTOR = "test"


def add(store: Store, **spec) -> str:
    rec, created = store.insert_job({"kind": "cell", "source": "1 + 1", **spec}, actor=ACTOR)
    assert created
    return rec.id


def fail(store: Store, job_id: str, error_type: str, message: str, tail: str | None = None) -> None:
    """Claim ``job_id`` and end its attempt with an error (and a log tail)."""
    rec, n = store.claim("w-test")
    assert rec.id == job_id
    store.finish_attempt(job_id, n, "w-test", "error", error={"type": error_type, "message": message},
                         log_tail=tail)


def names(records) -> list[str]:
    return [r.name for r in records]


def index_state(store: Store) -> tuple:
    """Everything FTS5 keeps for ``jobs_fts``: its shadow tables' rows."""
    return tuple(tuple(map(tuple, store.conn.execute(f"SELECT * FROM jobs_fts_{t}").fetchall()))
                 for t in ("data", "idx", "docsize"))


# --- the store ---------------------------------------------------------------------------------------------
def test_search_finds_jobs_by_name_tag_parameter_error_and_log_tail(store):
    etl = add(store, name="nightly-etl", tags=["prod", "etl"], parameters={"region": "eu-west", "n": 7})
    add(store, name="train-model", tags=["gpu"], parameters={"epochs": 3})
    fail(store, etl, "KeyError", "'customer_id' not in frame", tail="loaded 120 rows\nzanzibar happened\n")

    assert names(store.search("train")) == ["train-model"]
    assert names(store.search("gpu")) == ["train-model"]
    assert names(store.search("west")) == ["nightly-etl"]          # a parameter value (JSON text)
    assert names(store.search("KeyError")) == ["nightly-etl"]      # the error type
    assert names(store.search("customer_id")) == ["nightly-etl"]   # the error message
    assert names(store.search("zanzibar")) == ["nightly-etl"]      # the log tail
    assert names(store.search('"nightly-etl"')) == ["nightly-etl"]
    assert names(store.search("error_message: customer_id")) == ["nightly-etl"]
    assert sorted(names(store.search("prod OR gpu"))) == ["nightly-etl", "train-model"]
    assert store.search("nothing like this") == []
    assert len(store.search("prod OR gpu", limit=1)) == 1
    [a] = store.attempts(etl)
    assert a["log_tail"] == "loaded 120 rows\nzanzibar happened\n"  # kept per attempt too


def test_search_ranks_best_match_first(store):
    add(store, name="weekly", parameters={"note": "timeout"})
    add(store, name="timeout-probe", tags=["timeout"], parameters={"note": "timeout timeout"})
    assert names(store.search("timeout"))[0] == "timeout-probe"


def test_the_index_follows_retries_and_deletes(store):
    job = add(store, name="flaky", retries=1)
    fail(store, job, "ValueError", "first blowup")
    assert names(store.search("blowup")) == ["flaky"]
    rec, n = store.claim("w-test", now=time.time() + 3600)  # the retry's backoff has passed
    store.finish_attempt(job, n, "w-test", "succeeded", log_tail="all good now\n")
    assert store.search("blowup") == []                  # the error is gone from the job ...
    assert names(store.search("good")) == ["flaky"]      # ... the latest log tail is in
    store.conn.execute("DELETE FROM jobs WHERE id = ?", (job,))
    assert store.search("good") == []
    assert store.conn.execute("INSERT INTO jobs_fts (jobs_fts) VALUES ('integrity-check')")


def test_progress_heartbeat_and_claim_do_not_touch_the_index(store):
    job = add(store, name="busy", tags=["x"])
    assert store.index_pending() == 1
    store.claim("w-test")
    before, changes = index_state(store), store.conn.total_changes
    store.set_progress(job, "w-test", 1, 5)
    store.heartbeat("w-test")
    store.set_progress(job, "w-test", 2, 5)
    # three statements, one jobs row each (total_changes counts rows written by triggers too);
    # the heartbeat also marks the workers table (no worker row here: nothing)
    assert store.conn.total_changes - changes == 3
    assert index_state(store) == before
    # whereas setting an indexed column of an indexed job keeps what its index row holds ...
    store.conn.execute("UPDATE jobs SET error_message = 'changed' WHERE id = ?", (job,))
    assert [tuple(r) for r in store.conn.execute("SELECT error_message FROM jobs_fts_stale")] == [(None,)]
    assert names(store.search("changed")) == ["busy"]  # ... and the next search re-indexes it
    assert index_state(store) != before
    assert store.conn.execute("SELECT count(*) FROM jobs_fts_stale").fetchone()[0] == 0


def test_submit_claim_and_end_write_nothing_to_the_index(store):
    """The hot path: a job's submit, claim and end (with a log tail and an error) write no index
    row; the next search indexes it, with its text as it is then."""
    before = index_state(store)
    job = add(store, name="hot", tags=["path"])
    fail(store, job, "OSError", "disk gone", tail="spinning up\nquokka\n")
    assert index_state(store) == before
    assert store.conn.execute("SELECT count(*) FROM jobs_fts_stale").fetchone()[0] == 0
    assert names(store.search("quokka")) == ["hot"] and names(store.search("OSError path")) == ["hot"]
    assert store.conn.execute("INSERT INTO jobs_fts (jobs_fts) VALUES ('integrity-check')")


def test_search_finds_jobs_submitted_and_changed_after_the_last_indexing(store):
    old = add(store, name="before", tags=["alpha"], retries=1)
    assert names(store.search("alpha")) == ["before"]          # indexes it
    assert store.index_pending() == 0                          # nothing left to do
    new = add(store, name="after", tags=["alpha"])             # submitted after that indexing
    assert sorted(names(store.search("alpha"))) == ["after", "before"]
    fail(store, old, "ValueError", "first wombat")             # indexed job, new error text
    assert names(store.search("wombat")) == ["before"]
    rec, n = store.claim("w-test", now=time.time() + 3600)
    store.finish_attempt(old, n, "w-test", "succeeded", log_tail="fine\n")
    assert store.search("wombat") == [] and names(store.search("fine")) == ["before"]
    fail(store, new, "KeyError", "numbat")                     # changed, then deleted before any search
    store.conn.execute("UPDATE jobs SET name = 'renamed' WHERE id = ?", (old,))
    store.prune([new], ACTOR)
    store.conn.execute("DELETE FROM jobs WHERE id = ?", (old,))
    assert store.search("alpha OR numbat OR fine OR renamed") == []
    assert store.conn.execute("SELECT count(*) FROM jobs_fts_stale").fetchone()[0] == 0
    assert store.conn.execute("INSERT INTO jobs_fts (jobs_fts) VALUES ('integrity-check')")
    # a deleted job's rowid used again (it was the largest) is indexed as a new job
    third = add(store, name="third", tags=["alpha"])
    assert [r.id for r in store.search("alpha")] == [third]
    store.rebuild_search()
    assert [r.id for r in store.search("alpha")] == [third]
    assert store.conn.execute("INSERT INTO jobs_fts (jobs_fts) VALUES ('integrity-check')")


def test_the_update_trigger_names_the_indexed_columns_only(store):
    sql = store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs_au'").fetchone()[0]
    assert f"AFTER UPDATE OF {', '.join(SEARCH_COLUMNS)} ON" in sql
    assert "progress_done" not in sql and "lease_until" not in sql


@pytest.mark.parametrize("query", ['"KeyError', "KeyError: x", "x.y", "(a", "my-job"])
def test_a_query_fts5_cannot_parse_is_one_clear_line(store, query):
    add(store, name="a")
    with pytest.raises(BadInput) as err:
        store.search(query)
    msg = str(err.value)
    assert "\n" not in msg and "double quotes" in msg and repr(query) in msg


def test_empty_query_and_bad_limit_are_refused(store):
    with pytest.raises(BadInput, match="something to search"):
        store.search("  ")
    with pytest.raises(BadInput, match="--limit"):
        store.search("x", limit=0)


# --- migration from an existing v7 home ------------------------------------------------------------------
def make_v7_home(path: Path) -> dict[str, str]:
    """A database as nbjobs wrote it at schema v7 (its own migrations, applied as SQL), with jobs."""
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    for step in MIGRATIONS[:7]:
        conn.executescript(step)
    now = time.time()
    jobs = {"a1" * 16: ("nightly-etl", "failed", '["prod"]', '{"region": "eu-west"}', "KeyError",
                        "'customer_id' not in frame"),
            "b2" * 16: ("train-model", "succeeded", '["gpu"]', '{"epochs": 3}', None, None)}
    for job_id, (name, state, tags, parameters, etype, emsg) in jobs.items():
        conn.execute("INSERT INTO jobs (id, name, kind, state, tags, parameters, source, submitted_at, run_at, "
                     "updated_at, error_type, error_message) VALUES (?,?,'cell',?,?,?,'1',?,?,?,?,?)",
                     (job_id, name, state, tags, parameters, now, now, now, etype, emsg))
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    return {name: job_id for job_id, (name, *_) in jobs.items()}


def test_migrating_a_v7_home_back_fills_the_index(tmp_path):
    path = tmp_path / "home" / "nbjobs.db"
    ids = make_v7_home(path)
    s = Store(path)
    assert s.version == SCHEMA_VERSION >= 8  # v8 built the index; later versions add their own
    assert names(s.search("KeyError")) == ["nightly-etl"]
    assert names(s.search("customer_id")) == ["nightly-etl"]
    assert names(s.search("gpu")) == ["train-model"]
    assert names(s.search("west")) == ["nightly-etl"]
    assert s.get(ids["train-model"]).name == "train-model"
    assert [r["log_tail"] for r in s.conn.execute("SELECT log_tail FROM jobs")] == [None, None]
    new = add(s, name="after-migration", tags=["fresh"])
    assert [r.id for r in s.search("fresh")] == [new]       # the triggers work on the migrated file
    s.close()
    assert Store(path).version == SCHEMA_VERSION            # reopening: nothing to do


def test_migrating_does_not_load_pandas(tmp_path):
    probe = ("import sys; from nbjobs.store import Store; s = Store(sys.argv[1]); "
             "print(s.version, 'pandas' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "h" / "nbjobs.db")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(SCHEMA_VERSION), "False", "False"]


# --- nbjobs.db() and nbjobs.search() -------------------------------------------------------------------
def test_db_is_a_sqlite_utils_database_on_the_homes_file(home, store):
    add(store, name="nightly-etl", tags=["prod"])
    db = nbjobs.db()
    import sqlite_utils

    assert isinstance(db, sqlite_utils.Database)
    assert Path(db.execute("PRAGMA database_list").fetchone()[2]) == home / "nbjobs.db"
    assert db["jobs"].count == 1
    assert db["jobs"].detect_fts() == "jobs_fts"
    assert [r["name"] for r in db["jobs"].search("prod")] == ["nightly-etl"]  # sqlite-utils' own search
    assert nbjobs.search("prod")[0].name == "nightly-etl"
    db.close()


def test_import_nbjobs_does_not_import_sqlite_utils():
    probe = "import sys, nbjobs; print('sqlite_utils' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_log_tail_keeps_the_end_from_a_whole_line(tmp_path):
    log = tmp_path / "log.txt"
    assert log_tail(log) is None
    log.write_text("".join(f"line {i}\n" for i in range(2000)))
    tail = log_tail(log, limit=100)
    assert tail.endswith("line 1999\n") and tail.startswith("line ") and len(tail.encode()) <= 100
    log.write_text("short\n")
    assert log_tail(log, limit=100) == "short\n"


# --- the CLI and the magic -------------------------------------------------------------------------------
def test_cli_search_table_json_and_bad_query(home, store):
    job = add(store, name="nightly-etl", tags=["prod"])
    add(store, name="other")
    r = nbj("search", "prod")
    assert r.returncode == 0, r.stderr
    assert "nightly-etl" in r.stdout and "other" not in r.stdout
    assert r.stdout.splitlines()[0] == nbj("ls").stdout.splitlines()[0]  # the same table as ls
    r = nbj("search", "prod OR other", "--limit", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 1
    assert json.loads(nbj("search", "prod", "--json").stdout)[0]["id"] == job
    assert "no job matches" in nbj("search", "zzz").stdout
    line = assert_bad_input(nbj("search", '"KeyError'))
    assert "double quotes" in line


def test_magic_search_returns_a_joblist(shell, store, capsys):
    add(store, name="nightly-etl", tags=["prod"])
    from nbjobs.panel import JobList

    found = ok(shell, "%job search prod")
    assert isinstance(found, JobList) and [j.name for j in found] == ["nightly-etl"]
    assert type(found) is type(ok(shell, "%job ls"))
    result = run(shell, '%job search "\\"KeyError"')
    assert result.result is None
    out = capsys.readouterr()
    assert "double quotes" in out.err + out.out and "Traceback" not in out.err + out.out


# --- a real job on a real worker ---------------------------------------------------------------------------
@pytest.mark.slow
def test_a_word_printed_by_a_real_job_is_found(home, worker):
    job = nbjobs.submit("print('quetzalcoatl was here')\nraise KeyError('region_code')", name="printer",
                        tags=["search-test"])
    job.wait(60)
    assert job.state == nbjobs.State.FAILED
    assert [r.id for r in nbjobs.search("quetzalcoatl")] == [job.id]   # the log tail
    assert [r.id for r in nbjobs.search("region_code")] == [job.id]    # the error message
    assert "quetzalcoatl" in job.attempts()[-1]["log_tail"]
