"""Reliability features end to end (issue 4): dead letters, retention, secrets, parameter injection,
retry_on, idempotency keys, the magics' reliability options and the bad-input catalogue.

Everything is real: SQLite files, `nbjobs` subprocesses, worker processes, papermill and kernels.
Tests that run kernels are marked slow.
"""
from __future__ import annotations

import json
import os
import re
import secrets as pysecrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

import nbjobs
from support.cli import ID_RE, assert_bad_input as _assert_bad_input, nbj, nbj_here
from support.notebooks import write_notebook
from support.procs import start_worker, stop_worker, wait_for
from nbjobs.errors import ExpiredJob
from nbjobs.store import Store

JOB_WAIT = 90  # generous bound for a few small papermill jobs on a loaded 2-CPU machine
DATE_RE = re.compile(r"expired on (\d{4}-\d{2}-\d{2})")


# --- helpers --------------------------------------------------------------------------------------
def snapshot(db: Path) -> dict[str, list] | None:
    """Every row of every table (read-only connection), for "the database did not change".  The
    search index's tables are left out: a live worker brings that index up to date on its own
    (`Store.index_pending`), as it moves its heartbeat; they hold nothing but what the jobs hold."""
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                  if not r[0].startswith("jobs_fts")]
        assert {"jobs", "event_log", "attempt_log", "outputs", "workers", "expired", "settings"} <= set(tables)
        def columns(t: str) -> str:  # a live worker's heartbeat moves on its own; all else must stand still
            names = [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
            return ", ".join(n for n in names if (t, n) != ("workers", "heartbeat_at"))

        return {t: conn.execute(f"SELECT {columns(t)} FROM {t} ORDER BY {columns(t)}").fetchall() for t in tables}
    finally:
        conn.close()


def rows(home: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{home / 'nbjobs.db'}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def rows_of(home: Path, job_id: str) -> dict[str, int]:
    """How many rows each table holds for one job."""
    return {t: rows(home, f"SELECT count(*) FROM {t} WHERE {'id' if t == 'jobs' else 'job_id'} = ?",
                    (job_id,))[0][0] for t in ("jobs", "attempts", "events", "outputs")}




def submit(*args: str, home: Path) -> str:
    """`nbjobs run ARGS` (no waiting); returns the new job's ID."""
    r = nbj("run", *args, home=home)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.splitlines()[0]
    assert ID_RE.match(job_id), r.stdout
    return job_id


def expired_line(r: subprocess.CompletedProcess) -> str:
    """`show`/`logs` of a pruned job: exit 2, one line, "expired on DATE" (today), not "no job matches"."""
    line = _assert_bad_input(r)
    m = DATE_RE.search(line)
    assert m, line
    assert m.group(1) in (time.strftime("%Y-%m-%d"), time.strftime("%Y-%m-%d", time.gmtime())), line
    assert "no job matches" not in line
    return line



# --- dead letters -----------------------------------------------------------------------------------
# attempts 1 and 2 fail at once; attempts 3 and 4 (after the retry) fail once the test opens the gate,
# so the worker cannot run them while the test still looks at the retried job
DOOMED = """\
import pathlib, time
counter, gate = pathlib.Path({counter!r}), pathlib.Path({gate!r})
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
while n > 2 and not gate.exists():
    time.sleep(0.05)
raise ValueError('dlq-boom')"""


@pytest.mark.slow
def test_dead_letters_list_ack_retry_purge(home, worker, shell, tmp_path):
    env = dict(os.environ, NBJOBS_HOME=str(home))
    run = [sys.executable, "-m", "nbjobs", "run"]
    gate = tmp_path / "gate"
    code = DOOMED.format(counter=str(tmp_path / "counter"), gate=str(gate))
    failing = subprocess.Popen([*run, "-c", code, "--name", "doomed", "--retries", "1",
                                "--backoff-base", "0.1", "--jitter", "none", "--wait"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fine = submit("-c", "x = 1", "--name", "fine", home=home)
    out, err = failing.communicate(timeout=JOB_WAIT)
    assert failing.returncode == 1, out + err
    dead = out.splitlines()[0]
    assert "failed" in out and "ValueError: dlq-boom" in out
    nbjobs.wait(fine, timeout=JOB_WAIT)
    assert nbjobs.get(fine).state == nbjobs.State.SUCCEEDED

    # api: exactly the failed job, with its reason and last error; 2 attempts (1 + 1 retry)
    [rec] = nbjobs.dead_letters()
    assert (rec.id, rec.state, rec.reason, rec.attempts) == (dead, nbjobs.State.FAILED, "error", 2)
    assert (rec.error_type, rec.error_message) == ("ValueError", "dlq-boom")
    assert [a["outcome"] for a in nbjobs.get(dead).attempts()] == ["error", "error"]

    # CLI text and JSON
    r = nbj("dlq", home=home)
    assert r.returncode == 0, r.stderr
    head, *lines = r.stdout.splitlines()
    assert head.split() == ["ID", "NAME", "STATE", "REASON", "ATTEMPTS", "FINISHED", "LAST", "ERROR"]
    assert len(lines) == 1 and lines[0].split()[:5] == [dead[:8], "doomed", "failed", "error", "2"], r.stdout
    assert lines[0].endswith("ValueError: dlq-boom")
    r = nbj("dlq", "--json", home=home)
    [obj] = json.loads(r.stdout)
    assert (obj["id"], obj["state"], obj["reason"], obj["attempts"]) == (dead, "failed", "error", 2)
    assert obj["error"] == {"type": "ValueError", "message": "dlq-boom", "cell": 1}
    assert nbjobs.summary()["dead_letters"] == 1

    # %job dlq in an IPython shell: the handles, shown with reason and last error
    listed = shell.run_line_magic("job", "dlq")
    assert [j.id for j in listed] == [dead]
    text = repr(listed)
    assert dead[:8] in text and "error" in text and "ValueError: dlq-boom" in text, text

    # ack of a succeeded job: one line, nothing changes
    before = snapshot(home / "nbjobs.db")
    line = _assert_bad_input(nbj("dlq", "ack", fine[:8], home=home))
    assert "not a dead letter" in line and "succeeded" in line
    assert snapshot(home / "nbjobs.db") == before

    # ack: leaves the list, the record stays and says so
    r = nbj("dlq", "ack", dead[:8], home=home)
    assert r.returncode == 0 and r.stdout == f"{dead[:8]}: acknowledged\n", r.stderr
    assert nbjobs.dead_letters() == [] and nbjobs.summary()["dead_letters"] == 0
    assert nbj("dlq", home=home).stdout == "no dead letters\n"
    assert json.loads(nbj("dlq", "--json", home=home).stdout) == []
    assert list(shell.run_line_magic("job", "dlq")) == []
    acked = nbjobs.get(dead).record
    assert acked.state == nbjobs.State.FAILED and acked.acked_at is not None
    r = nbj("show", dead[:8], home=home)
    assert r.returncode == 0 and "acknowledged" in r.stdout and "dead letter: yes" not in r.stdout, r.stdout
    assert "dead letter acknowledged" in r.stdout  # the event
    acks = [e for e in nbjobs.get(dead).events() if e["reason"] == "dead letter acknowledged"]
    assert len(acks) == 1 and acks[0]["actor"].startswith("api:")

    # retry: same ID, active again, off the list, acked_at cleared, an event with who and when
    t0 = time.time()
    r = nbj("retry", dead[:8], home=home)
    assert r.returncode == 0 and r.stdout == f"{dead[:8]}: queued again\n", r.stderr
    again = nbjobs.get(dead).record
    assert again.state in (nbjobs.State.QUEUED, nbjobs.State.RUNNING), again.state
    assert again.acked_at is None
    assert nbjobs.dead_letters() == [] and "no dead letters" in nbj("dlq", home=home).stdout
    retried = [e for e in nbjobs.get(dead).events() if e["reason"] == "retried"]
    assert len(retried) == 1
    assert retried[0]["from_state"] == "failed" and retried[0]["to_state"] == "queued"
    assert retried[0]["actor"].startswith("api:") and "@" in retried[0]["actor"]
    assert t0 - 1 <= retried[0]["at"] <= time.time() + 1
    # the retry budget starts afresh: attempts 3 and 4 fail again, numbers continue
    gate.touch()
    nbjobs.wait(dead, timeout=JOB_WAIT)
    assert [a["number"] for a in nbjobs.get(dead).attempts()] == [1, 2, 3, 4]
    assert nbjobs.get(dead).record.attempts == 4
    assert [r.id for r in nbjobs.dead_letters()] == [dead]  # a dead letter again (it was not acked since)
    run_dir = home / "runs" / dead
    assert (run_dir / "4" / "output.ipynb").exists()

    # purge: a dry run deletes nothing; then the dead letter is gone and answers "expired on DATE"
    before = snapshot(home / "nbjobs.db")
    r = nbj("dlq", "purge", "--dry-run", home=home)
    assert r.returncode == 0 and r.stdout == "would purge 1 dead letter(s)\n", r.stderr
    assert snapshot(home / "nbjobs.db") == before and run_dir.exists()
    r = nbj("dlq", "purge", home=home)
    assert r.returncode == 0 and r.stdout == "purged 1 dead letter(s)\n", r.stderr
    assert rows_of(home, dead) == {"jobs": 0, "attempts": 0, "events": 0, "outputs": 0}
    assert not run_dir.exists()
    expired_line(nbj("show", dead[:8], home=home))
    with pytest.raises(ExpiredJob, match="expired on"):
        nbjobs.get(dead)
    assert nbjobs.dead_letters() == []
    assert nbjobs.get(fine).state == nbjobs.State.SUCCEEDED  # not a dead letter: kept
    assert (home / "runs" / fine).exists()


# --- retention ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_prune_removes_finished_jobs_rows_and_folders(home):
    proc = start_worker(home, "--concurrency", "2", "--grace", "5")
    try:
        ok = submit("-c", "import nbjobs\nnbjobs.record('small', 42)\nnbjobs.record('big', list(range(30000)))",
                    "--name", "ok", home=home)
        bad = submit("-c", "raise ValueError('prune-me')", "--name", "bad", home=home)
        nbjobs.wait([ok, bad], timeout=JOB_WAIT)
    finally:
        stop_worker(proc)
    assert nbjobs.get(ok).state == nbjobs.State.SUCCEEDED and nbjobs.get(bad).state == nbjobs.State.FAILED
    assert {o["kind"] for o in Store(home / "nbjobs.db").outputs(ok)} == {"json", "json-file"}
    queued = submit("-c", "x = 1", "--name", "queued", "--no-worker", home=home)
    cancelled = submit("-c", "x = 1", "--name", "cancelled", "--no-worker", home=home)
    assert nbj("cancel", cancelled, home=home).returncode == 0
    finished = {ok, bad, cancelled}
    for i in (ok, bad):
        assert (home / "runs" / i / "1" / "output.ipynb").exists()
    assert (home / "runs" / ok / "1" / "outputs").is_dir()
    wait_for(lambda: time.time() - rows(home, "SELECT max(finished_at) FROM jobs")[0][0] > 1.0, 10,
             "the finished jobs to be older than 1 s")

    # nothing is older than an hour: nothing goes
    before = snapshot(home / "nbjobs.db")
    r = nbj("prune", "--older-than", "1h", home=home)
    assert r.returncode == 0 and r.stdout.startswith("pruned 0 job(s)"), r.stderr
    assert snapshot(home / "nbjobs.db") == before

    # --dry-run lists without deleting
    r = nbj("prune", "--older-than", "1s", "--dry-run", "--json", home=home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dry_run"] is True and set(out["pruned"]) == finished
    assert snapshot(home / "nbjobs.db") == before
    assert all((home / "runs" / i).exists() for i in (ok, bad))

    # --state filters
    r = nbj("prune", "--older-than", "1s", "--state", "failed", "--json", home=home)
    assert r.returncode == 0 and json.loads(r.stdout) == {"pruned": [bad], "dry_run": False}, r.stdout + r.stderr
    assert rows_of(home, bad) == {"jobs": 0, "attempts": 0, "events": 0, "outputs": 0}
    assert not (home / "runs" / bad).exists()
    assert rows_of(home, ok)["jobs"] == 1 and (home / "runs" / ok).exists()
    line = expired_line(nbj("show", bad, home=home))
    assert "bad" in line and "failed" in line
    expired_line(nbj("show", bad[:8], home=home))
    expired_line(nbj("logs", bad[:8], home=home))
    with pytest.raises(ExpiredJob, match=r"expired on \d{4}-\d{2}-\d{2}"):
        nbjobs.get(bad)
    with pytest.raises(ExpiredJob):
        nbjobs.get(bad[:10])

    # everything finished goes; the queued job stays with all its rows
    queued_rows = rows_of(home, queued)
    r = nbj("prune", "--older-than", "1s", home=home)
    assert r.returncode == 0 and r.stdout.startswith("pruned 2 job(s)"), r.stdout + r.stderr
    for i in finished:
        assert rows_of(home, i) == {"jobs": 0, "attempts": 0, "events": 0, "outputs": 0}, i
        assert not (home / "runs" / i).exists()
        expired_line(nbj("show", i[:8], home=home))
    assert {r[0] for r in rows(home, "SELECT id FROM expired")} == finished
    assert rows_of(home, queued) == queued_rows and nbjobs.get(queued).state == nbjobs.State.QUEUED
    assert [r.id for r in nbjobs.records()] == [queued]
    r = nbj("prune", "--older-than", "1s", home=home)
    assert r.returncode == 0 and r.stdout.startswith("pruned 0 job(s)")


@pytest.mark.slow
def test_retention_setting_is_applied_by_a_worker_at_start(home):
    r = nbj("retention", home=home)
    assert r.returncode == 0 and r.stdout.startswith("retention: off"), r.stdout + r.stderr
    proc = start_worker(home, "--concurrency", "2", "--grace", "5")
    try:
        old = [submit("-c", "x = 1", "--name", "old-ok", home=home),
               submit("-c", "raise ValueError('old')", "--name", "old-bad", home=home)]
        nbjobs.wait(old, timeout=JOB_WAIT)
    finally:
        stop_worker(proc)
    r = nbj("retention", "2s", home=home)
    assert r.returncode == 0 and r.stdout == "retention: 2s\n", r.stderr
    assert nbj("retention", home=home).stdout == "retention: 2s\n"
    assert nbjobs.retention() == "2s"
    wait_for(lambda: time.time() - rows(home, "SELECT max(finished_at) FROM jobs")[0][0] > 2.0, 10,
             "the finished jobs to be older than 2 s")
    active = submit("-c", "import time; time.sleep(1)", "--name", "active", "--no-worker", home=home)
    assert all((home / "runs" / i).exists() for i in old)

    proc = start_worker(home, "--grace", "5")
    try:
        wait_for(lambda: not rows(home, "SELECT id FROM jobs WHERE name LIKE 'old-%'"), 15,
                 "the worker to apply the retention setting")
        for i in old:
            assert rows_of(home, i) == {"jobs": 0, "attempts": 0, "events": 0, "outputs": 0}
            assert not (home / "runs" / i).exists()
            expired_line(nbj("show", i[:8], home=home))
        assert {r[0] for r in rows(home, "SELECT id FROM expired")} == set(old)
        nbjobs.wait(active, timeout=JOB_WAIT)  # the active job was kept and runs
        assert nbjobs.get(active).state == nbjobs.State.SUCCEEDED
    finally:
        stop_worker(proc)

    r = nbj("retention", "off", home=home)
    assert r.returncode == 0 and r.stdout.startswith("retention: off"), r.stderr
    assert nbjobs.retention() is None and rows(home, "SELECT * FROM settings") == []


# --- secrets ------------------------------------------------------------------------------------------
SECRET_JOB = """\
import os, sys, nbjobs
tok = os.environ["MY_TOKEN"]
print("token is", tok)
sys.stderr.write("stderr token " + tok + "\\n")
sys.stderr.flush()
os.write(2, ("fd2 token " + tok + "\\n").encode())
nbjobs.record("token_len", len(tok))
raise RuntimeError("leaking " + tok)
"""


@pytest.mark.slow
def test_secrets_reach_the_job_and_are_never_written(home, monkeypatch):
    token = "tok-" + pysecrets.token_hex(16)
    monkeypatch.delenv("MY_TOKEN", raising=False)  # the submitting side never has it
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    proc = start_worker(home, "--concurrency", "2", "--grace", "5", env={"MY_TOKEN": token, "TINY": "ab1"})
    try:
        leaky = submit("-c", SECRET_JOB, "--name", "leaky", "--secret", "MY_TOKEN", home=home)
        missing = submit("-c", "print('never runs')", "--name", "missing", "--secret", "NOT_SET_ANYWHERE",
                         home=home)
        tiny = submit("-c", "import os; print(os.environ['TINY'])", "--name", "tiny", "--secret", "TINY",
                      home=home)
        nbjobs.wait([leaky, missing, tiny], timeout=JOB_WAIT)
        files_while_running = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    finally:
        worker_out = stop_worker(proc)

    rec = nbjobs.get(leaky).record
    assert rec.state == nbjobs.State.FAILED and rec.options["secrets"] == ["MY_TOKEN"]
    assert nbjobs.result(leaky) == {"token_len": len(token)}  # the job really saw the value
    assert rec.error_type == "RuntimeError" and rec.error_message == "leaking [secret MY_TOKEN]"
    log = nbjobs.logs(leaky)
    for text in ("token is [secret MY_TOKEN]", "stderr token [secret MY_TOKEN]", "fd2 token [secret MY_TOKEN]",
                 "RuntimeError: leaking [secret MY_TOKEN]"):
        assert text in log, (text, log)
    out_nb = (home / "runs" / leaky / "1" / "output.ipynb").read_text()
    assert "[secret MY_TOKEN]" in out_nb  # the printed value was redacted, not lost
    shown = nbj("show", leaky, "--json", home=home)
    assert shown.returncode == 0 and "[secret MY_TOKEN]" in shown.stdout

    # the value appears in no file under the home: db, wal, logs, output notebooks
    files = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    names = {p.name for p in files} | {p.name for p in files_while_running}
    assert {"nbjobs.db", "log.txt", "output.ipynb"} <= names, names
    assert "nbjobs.db-wal" in {p.name for p in files_while_running}
    for path, data in [*files_while_running.items(), *files.items()]:
        assert token.encode() not in data, f"the secret's value is in {path}"
    assert token not in worker_out

    # a secret missing from the worker's environment fails the attempt, naming the variable
    m = nbjobs.get(missing).record
    assert m.state == nbjobs.State.FAILED
    assert "NOT_SET_ANYWHERE" in m.error_message and "worker's environment" in m.error_message, m.error_message
    assert "never runs" not in nbjobs.logs(missing)
    # a secret too short to redact reliably is refused rather than risked in the logs
    t = nbjobs.get(tiny).record
    assert t.state == nbjobs.State.FAILED and "TINY" in t.error_message and "too short" in t.error_message
    assert "ab1" not in nbjobs.logs(tiny)


RECORD_JOB = """\
import os, nbjobs
tok = os.environ["MY_TOKEN"]
nbjobs.record("before", "unrelated")
{leak}
print("after " + "the record")
"""
LEAKS = {  # each records the secret's value: refused, and the job fails
    "plain": "nbjobs.record('leak', tok)",
    "in-dict": "nbjobs.record('leak', {'user': 'me', 'auth': ['Bearer ' + tok]})",
    "in-frame": "import pandas as pd\nnbjobs.record('leak', pd.DataFrame({'k': ['a', 'x' + tok + 'y'], 'n': [1, 2]}))",
}
SMUGGLE_JOB = """\
import json, os, pickle, nbjobs
tok, folder = os.environ["MY_TOKEN"], os.environ["NBJOBS_OUTPUT_DIR"]
with open(os.path.join(folder, "smuggled.pkl"), "wb") as f:
    pickle.dump({"t": tok}, f)
lines = [{"name": "inline", "kind": "json", "type_name": "builtins.str", "value": json.dumps(tok)},
         {"name": "file", "kind": "pickle", "type_name": "builtins.dict", "path": "smuggled.pkl"}]
with open(os.path.join(folder, "manifest.jsonl"), "a") as f:
    f.write("".join(json.dumps(e) + "\\n" for e in lines))
nbjobs.record("clean", 7)
"""
REFUSED = ("output 'leak' contains the value of secret MY_TOKEN; secrets are never recorded "
           "(record something derived from it instead)")


@pytest.mark.slow
def test_a_secrets_value_is_never_recorded(home, monkeypatch):
    token = "tok-" + pysecrets.token_hex(16)
    monkeypatch.delenv("MY_TOKEN", raising=False)
    # --no-warm: each kernel is started for its job with the job's environment (test_kernels covers warm ones)
    proc = start_worker(home, "--concurrency", "2", "--grace", "5", "--no-warm", env={"MY_TOKEN": token})
    try:
        leaks = {what: submit("-c", RECORD_JOB.format(leak=code), "--name", what, "--secret", "MY_TOKEN", home=home)
                 for what, code in LEAKS.items()}
        out = nbjobs.submit("import os\nok = 3\nleak = {'t': os.environ['MY_TOKEN']}", name="out",
                            outputs=["ok", "leak"], secrets=["MY_TOKEN"], start_worker=False).id
        smuggled = submit("-c", SMUGGLE_JOB, "--name", "smuggled", "--secret", "MY_TOKEN", home=home)
        fine = submit("-c", "import os, nbjobs\ntok = os.environ['MY_TOKEN']\nnbjobs.record('n', len(tok))\n"
                      "nbjobs.record('masked', tok[:4] + '...')", "--name", "fine", "--secret", "MY_TOKEN", home=home)
        nbjobs.wait([*leaks.values(), out, smuggled, fine], timeout=2 * JOB_WAIT)
        files_while_running = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
        tables = snapshot(home / "nbjobs.db")
    finally:
        worker_out = stop_worker(proc)

    for what, job_id in leaks.items():
        rec = nbjobs.get(job_id).record
        assert rec.state == nbjobs.State.FAILED, (what, rec.state, rec.error_message)
        assert (rec.error_type, rec.error_message) == ("BadInput", REFUSED), what
        log = nbjobs.logs(job_id)
        assert REFUSED in log and "after the record" not in log, (what, log)
        assert nbjobs.result(job_id) == {"before": "unrelated"}, what  # what was recorded before it stays
    o = nbjobs.get(out).record
    assert (o.state, o.error_message) == (nbjobs.State.FAILED, REFUSED)
    assert nbjobs.result(out) == {"ok": 3}
    # a manifest written by hand: the runner drops what holds the secret, says so, keeps the rest
    assert nbjobs.get(smuggled).record.state == nbjobs.State.SUCCEEDED
    assert nbjobs.result(smuggled) == {"clean": 7}
    log = nbjobs.logs(smuggled)
    for name in ("inline", "file"):
        assert f"[nbjobs] output {name!r} dropped: it contains the value of secret MY_TOKEN" in log, log
    assert not (home / "runs" / smuggled / "1" / "outputs" / "smuggled.pkl").exists()
    # something derived from the secret is recorded as usual
    assert nbjobs.get(fine).record.state == nbjobs.State.SUCCEEDED
    assert nbjobs.result(fine) == {"n": len(token), "masked": "tok-..."}

    # the value is in no column of any table, nor in any file under the home (db, wal, run folders)
    assert tables["outputs"] and token not in repr(tables)
    files = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert "nbjobs.db-wal" in {p.name for p in files_while_running}
    assert any(p.name == "manifest.jsonl" for p in files)
    for path, data in [*files_while_running.items(), *files.items()]:
        assert token.encode() not in data, f"the secret's value is in {path}"
    assert token not in worker_out


# --- parameters are data, never code --------------------------------------------------------------
NASTY = "1); import os; os.system('touch pwned')  #"
NASTY_YAML = "'''\"\"\"\\'); import os; os.system(\"touch pwned\")  #\nos.system('touch pwned') # \\"


@pytest.mark.slow
def test_parameter_injection_stays_data(home, worker, tmp_path):
    nb = write_notebook(tmp_path / "echo.ipynb",
                        ["import nbjobs\nnbjobs.record('x', x)\nnbjobs.record('t', type(x).__name__)\n"
                         "nbjobs.record('y', y)"],
                        parameters="x = None\ny = None")
    env = dict(os.environ, NBJOBS_HOME=str(home))
    cmd = [sys.executable, "-m", "nbjobs", "run", str(nb), "--wait"]
    procs = [subprocess.Popen([*cmd, *extra], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for extra in (["-p", "x", NASTY, "--key", "inject-p"], ["-r", "x", NASTY],
                           ["-y", json.dumps({"x": NASTY_YAML, "y": {NASTY: [NASTY_YAML]}})])]
    ids = []
    expected = [{"x": NASTY}, {"x": NASTY}, {"x": NASTY_YAML, "y": {NASTY: [NASTY_YAML]}}]
    for p, params in zip(procs, expected):
        out, err = p.communicate(timeout=JOB_WAIT)
        assert p.returncode == 0, out + err
        job_id = out.splitlines()[0]
        ids.append(job_id)
        assert nbjobs.result(job_id) == {"y": None, **params, "t": "str"}
        assert nbjobs.get(job_id).record.parameters == params
    assert not list(tmp_path.rglob("pwned")) and not (home / "pwned").exists()
    assert not Path("pwned").exists()

    # a key used by a finished job still returns that job, and nothing new runs
    r = nbj("run", str(nb), "-p", "x", "other", "--key", "inject-p", "--json", home=home)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["id"] == ids[0] and obj["state"] == "succeeded"
    assert len(nbjobs.records(limit=None)) == 3


# --- retry_on ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_retry_on_limits_which_failures_retry(home):
    proc = start_worker(home, "--concurrency", "3", "--grace", "5")
    try:
        fast = ["--backoff-base", "0.1", "--jitter", "none"]
        error_not_retried = submit("-c", "raise ValueError('no retry')", "--retry-on", "timeout", "--retries", "2",
                                   *fast, home=home)
        timeout_not_retried = submit("-c", "import time; time.sleep(60)", "--retry-on", "error", "--retries", "2",
                                     "--timeout", "3", *fast, home=home)
        error_retried = submit("-c", "raise ValueError('retried')", "--retry-on", "error,lost", "--retries", "1",
                               *fast, home=home)
        nbjobs.wait([error_not_retried, timeout_not_retried, error_retried], timeout=JOB_WAIT)
    finally:
        stop_worker(proc)
    a = nbjobs.get(error_not_retried)
    assert (a.state, a.record.attempts) == (nbjobs.State.FAILED, 1)
    assert [x["outcome"] for x in a.attempts()] == ["error"]
    assert a.record.options["retry_on"] == ["timeout"]
    b = nbjobs.get(timeout_not_retried)
    assert (b.state, b.record.attempts) == (nbjobs.State.TIMED_OUT, 1)
    assert [x["outcome"] for x in b.attempts()] == ["timeout"]
    assert "timeout of 3 s" in b.record.error_message
    c = nbjobs.get(error_retried)  # the control: a matching kind does retry
    assert (c.state, c.record.attempts) == (nbjobs.State.FAILED, 2)
    assert [x["outcome"] for x in c.attempts()] == ["error", "error"]
    assert "retry in 0.1 s" in " ".join(e["reason"] or "" for e in c.events())
    assert {r.id for r in nbjobs.dead_letters()} == {error_not_retried, timeout_not_retried, error_retried}


# --- idempotency ------------------------------------------------------------------------------------------
def test_idempotency_key_from_cli_api_and_magics(home, shell, tmp_path):
    write_notebook(tmp_path / "nb.ipynb", ["y = 1"])
    first = submit("-c", "x = 1", "--key", "K-1", "--no-worker", home=home)
    second = submit("-c", "x = 2", "--key", "K-1", "--no-worker", home=home)
    from_magic = shell.run_cell_magic("job", "--no-worker --key K-1", "x = 3")
    from_api = nbjobs.submit("x = 4", key="K-1", start_worker=False)
    assert second == first and from_magic.id == first and from_api.id == first
    assert rows(home, "SELECT count(*) FROM jobs")[0][0] == 1
    assert nbjobs.get(first).record.source == "x = 1"
    assert [e["to_state"] for e in nbjobs.get(first).events()] == ["queued"]

    # quotes group words and are removed, in the magics as in a shell: the same key from both
    quoted = shell.run_cell_magic("job", """--no-worker --key 'my key' --name "Q3 report" -p title "Q3 r" """, "x")
    rec = quoted.record
    assert (rec.idem_key, rec.name, rec.parameters) == ("my key", "Q3 report", {"title": "Q3 r"})
    assert submit("-c", "x", "--key", "my key", "--no-worker", home=home) == quoted.id
    assert shell.run_line_magic("job", "run nb.ipynb --no-worker --key 'my key'").id == quoted.id
    rows_now = rows(home, "SELECT count(*) FROM jobs")[0][0]
    assert rows_now == 2

    other = shell.run_cell_magic("job", "--no-worker --key K-2", "x = 5")
    assert other.id != first and rows(home, "SELECT count(*) FROM jobs")[0][0] == 3
    # a finished job keeps its key: the same submit returns it, finished, and creates nothing
    assert nbj("cancel", first, home=home).returncode == 0
    before = snapshot(home / "nbjobs.db")
    r = nbj("run", "-c", "x = 1", "--key", "K-1", "--json", "--no-worker", home=home)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == first
    assert json.loads(r.stdout)["state"] == "cancelled"
    assert shell.run_cell_magic("job", "--no-worker --key K-1", "x = 1").id == first
    assert snapshot(home / "nbjobs.db") == before


# --- magics: the reliability options reach the job ----------------------------------------------------------
def test_magic_reliability_options_are_stored(home, shell, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_TOKEN", "magic-secret-value")  # present here, but only the name may be stored
    job = shell.run_cell_magic(
        "job", "--no-worker --retries 1 --backoff-base 0.1 --backoff-factor 3 --backoff-cap 5 --jitter none "
               "--retry-on error,lost --secret MY_TOKEN --secret OTHER_TOKEN --timeout 9 --cell-timeout 7",
        "x = 1")
    rec = job.record
    assert rec.retries == 1 and rec.timeout == 9.0
    origin = rec.options.pop("origin")  # where the cell came from, for its tracebacks
    assert isinstance(origin["cell"], int) and origin["magic"].startswith("%%job --no-worker --retries 1")
    assert rec.options == {"cell_timeout": 7.0, "secrets": ["MY_TOKEN", "OTHER_TOKEN"],
                           "retry_on": ["error", "lost"],
                           "backoff": {"base": 0.1, "factor": 3.0, "cap": 5.0, "jitter": "none"}}
    write_notebook(tmp_path / "nb.ipynb", ["y = x"], parameters="x = 0")
    nb_job = shell.run_line_magic("job", "run nb.ipynb --no-worker --retries 2 --jitter full --retry-on timeout "
                                         "--backoff-cap 60 --secret MY_TOKEN -p x 3")
    assert nb_job.record.retries == 2 and nb_job.record.parameters == {"x": 3}
    assert nb_job.record.options == {"cell_timeout": None, "secrets": ["MY_TOKEN"], "retry_on": ["timeout"],
                                     "backoff": {"cap": 60.0, "jitter": "full"}}
    for data in snapshot(home / "nbjobs.db").values():
        assert "magic-secret-value" not in repr(data)


MAGIC_BAD = [
    ("%%job --no-worker --retry-on sometimes\nx = 1", "retry-on sometimes is unknown"),
    ("%%job --no-worker --backoff-factor 0.5\nx = 1", "backoff factor must be from 1"),
    ("%%job --no-worker --jitter half\nx = 1", "invalid choice: 'half'"),
    ("%%job --no-worker --secret 'A B'\nx = 1", "is not an environment variable name"),
    ("%%job --no-worker --key ''\nx = 1", "key must be a non-empty"),
    ("%%job --no-worker --timeout nan\nx = 1", "timeout must be more than 0"),
    ("%job run nb.ipynb --no-worker --retries -2", "retries must be from 0"),
    ("%job dlq ack", "give the job ID"),
    ("%job prune --older-than 30x", "not a duration"),
    ("%job prune --older-than 1d --state running", "not final"),
    ("%%job --no-worker --name 'unclosed\nx = 1", "close the quote"),
    ("%job wait $queued --timeout -1", "timeout must be 0 or more"),
    ("%job dlq ack $queued", "is queued, not a dead letter"),
    ("%job dlq ls $queued", "takes no job IDs"),
]


@pytest.mark.parametrize("source,message", MAGIC_BAD, ids=[m[1][:20] for m in MAGIC_BAD])
def test_magic_bad_reliability_input(source, message, home, shell, tmp_path):
    write_notebook(tmp_path / "nb.ipynb", ["y = x"], parameters="x = 0")
    store = Store(home / "nbjobs.db")
    queued = store.insert_job({"kind": "cell", "source": "x = 1", "name": "seed"}, "test")[0].id
    store.close()
    source = source.replace("$queued", queued[:10])
    before = snapshot(home / "nbjobs.db")
    if source.startswith("%%"):
        line, cell = source[2:].split("\n", 1)
        call = lambda: shell.run_cell_magic("job", line[len("job "):], cell)  # noqa: E731
    else:
        call = lambda: shell.run_line_magic("job", source[len("%job "):])  # noqa: E731
    with pytest.raises(UsageError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert snapshot(home / "nbjobs.db") == before


# --- the bad-input catalogue (extends tests/test_cli.py's) -----------------------------------------------------
@pytest.fixture
def rel_seeded(home, tmp_path):
    """A home with a succeeded, a failed (a dead letter), a queued and a pruned job, a retention
    setting, and a notebook to run."""
    store = Store(home / "nbjobs.db")
    spec = {"kind": "cell", "source": "x = 1", "kernel": "python3", "cwd": str(tmp_path)}
    ids = {}
    for name, outcome in (("done", "succeeded"), ("dead", "error"), ("gone", "succeeded")):
        rec, _ = store.insert_job(dict(spec, name=name), "test")
        claimed = store.claim("test-worker")
        assert claimed and claimed[0].id == rec.id
        store.finish_attempt(rec.id, 1, "test-worker", outcome, error={"type": "ValueError", "message": "x"})
        ids[name] = rec.id
    store.prune([ids.pop("gone")], "test")
    ids["queued"] = store.insert_job(dict(spec, name="queued"), "test")[0].id
    store.set_setting("retention", "30d")
    store.close()
    write_notebook(tmp_path / "nb.ipynb", ["y = x"], parameters="x = 0")
    return ids


K500 = "k" * 500
# (args, substring of the one error line); "$queued"/"$done"/"$dead" become those jobs' IDs
BAD_CASES = {
    # retries and timeouts
    "retries-absurd": (["run", "nb.ipynb", "--retries", "1000000000000"], "retries must be from 0 to 100"),
    "timeout-nan": (["run", "nb.ipynb", "--timeout", "nan"], "timeout must be more than 0"),
    "timeout-inf": (["run", "nb.ipynb", "--timeout", "inf"], "timeout must be more than 0"),
    "timeout-absurd": (["run", "nb.ipynb", "--timeout", "1e12"], "at most 2592000 seconds"),
    "cell-timeout-negative": (["run", "-c", "x = 1", "--cell-timeout", "-1"], "cell_timeout must be more than 0"),
    "cell-timeout-nan": (["run", "nb.ipynb", "--cell-timeout", "nan"], "cell_timeout"),
    "cell-timeout-inf": (["run", "nb.ipynb", "--cell-timeout", "inf"], "cell_timeout"),
    "cell-timeout-absurd": (["run", "nb.ipynb", "--cell-timeout", "1e12"], "cell_timeout"),
    # retry_on and backoff
    "retry-on-sometimes": (["run", "nb.ipynb", "--retry-on", "sometimes"], "retry-on sometimes is unknown"),
    "retry-on-empty": (["run", "nb.ipynb", "--retry-on", ""], "retry-on (empty) is unknown"),
    "retry-on-trailing-comma": (["run", "nb.ipynb", "--retry-on", "error,"], "retry-on"),
    "retry-on-one-bad": (["run", "-c", "x = 1", "--retry-on", "error,sometimes"], "retry-on sometimes"),
    "backoff-factor-below-1": (["run", "nb.ipynb", "--backoff-factor", "0.5"], "backoff factor must be from 1"),
    "backoff-factor-inf": (["run", "nb.ipynb", "--backoff-factor", "inf"], "backoff factor"),
    "backoff-base-negative": (["run", "nb.ipynb", "--backoff-base", "-1"], "backoff base must be from 0"),
    "backoff-base-nan": (["run", "nb.ipynb", "--backoff-base", "nan"], "backoff base"),
    "backoff-cap-absurd": (["run", "nb.ipynb", "--backoff-cap", "1e9"], "backoff cap must be from 0"),
    # idempotency keys
    "key-empty": (["run", "nb.ipynb", "--key", ""], "key must be a non-empty single-line string"),
    "key-blank": (["run", "nb.ipynb", "--key", "   "], "key must be"),
    "key-500-chars": (["run", "nb.ipynb", "--key", K500], "at most 200 characters"),
    "key-newline": (["run", "-c", "x = 1", "--key", "a\nb"], "single-line"),
    # secrets
    "secret-space": (["run", "nb.ipynb", "--secret", "A B"], "'A B' is not an environment variable name"),
    "secret-digit-first": (["run", "nb.ipynb", "--secret", "1X"], "'1X' is not an environment variable name"),
    "secret-empty": (["run", "nb.ipynb", "--secret", ""], "is not an environment variable name"),
    "secret-value-like": (["run", "-c", "x = 1", "--secret", "TOKEN=abc123"], "never its value"),
    "secret-dash": (["run", "nb.ipynb", "--secret", "MY-TOKEN"], "not an environment variable name"),
    # prune durations and states
    "prune-unit": (["prune", "--older-than", "30x"], "'30x' is not a duration"),
    "prune-negative": (["prune", "--older-than=-5d"], "'-5d' is not a duration"),
    "prune-zero": (["prune", "--older-than", "0s"], "more than 0"),
    "prune-word": (["prune", "--older-than", "abc"], "'abc' is not a duration"),
    "prune-empty": (["prune", "--older-than", ""], "'' is not a duration"),
    "prune-nan": (["prune", "--older-than", "nan"], "is not a duration"),
    "prune-absurd": (["prune", "--older-than", "99999999w"], "at most 100 years"),
    "prune-years": (["prune", "--older-than", "5y"], "'5y' is not a duration"),
    "prune-state-running": (["prune", "--older-than", "1s", "--state", "running"], "'running' is not final"),
    "prune-state-queued": (["prune", "--older-than", "1s", "--state", "queued"], "not final"),
    "prune-state-nope": (["prune", "--older-than", "1s", "--state", "nope"], "unknown state 'nope'"),
    "prune-good-and-bad-state": (["prune", "--older-than", "1s", "--state", "failed", "--state", "nope"],
                                 "unknown state"),
    "ls-state-nope": (["ls", "--state", "nope"], "unknown state 'nope'"),
    "ls-limit-zero": (["ls", "--limit", "0"], "--limit"),
    "ls-limit-negative": (["ls", "--limit", "-1"], "--limit"),
    # dead letters
    "dlq-ack-no-id": (["dlq", "ack"], "give the job ID"),
    "dlq-ack-queued": (["dlq", "ack", "$queued"], "is queued, not a dead letter"),
    "dlq-ack-succeeded": (["dlq", "ack", "$done"], "is succeeded, not a dead letter"),
    "dlq-ack-unknown": (["dlq", "ack", "0123456789abcdef"], "no job matches"),
    "dlq-ack-expired": (["dlq", "ack", "$gone"], "expired on"),
    "dlq-ack-one-bad-of-two": (["dlq", "ack", "$done", "$dead"], "not a dead letter"),
    "dlq-ack-good-then-bad": (["dlq", "ack", "$dead", "$done"], "not a dead letter"),  # all or none
    "dlq-ack-good-then-unknown": (["dlq", "ack", "$dead", "0123456789abcdef"], "no job matches"),
    "cancel-good-then-unknown": (["cancel", "$queued", "0123456789abcdef"], "no job matches"),
    "retry-good-then-expired": (["retry", "$dead", "$gone", "--no-worker"], "expired on"),
    "dlq-ls-with-id": (["dlq", "ls", "$dead"], "takes no job IDs"),
    "dlq-purge-with-id": (["dlq", "purge", "$dead"], "takes no job IDs"),
    "dlq-purge-bad-duration": (["dlq", "purge", "--older-than", "7x"], "'7x' is not a duration"),
    "dlq-limit-negative": (["dlq", "--limit", "-5"], "--limit"),
    "retry-expired": (["retry", "$gone", "--no-worker"], "expired on"),
    # retention
    "retention-years": (["retention", "5y"], "'5y' is not a duration"),
    "retention-negative": (["retention", "--", "-1d"], "'-1d' is not a duration"),
    "retention-zero": (["retention", "0"], "more than 0"),
    "retention-empty": (["retention", ""], "is not a duration"),
    # wait and worker numbers
    "wait-timeout-negative": (["wait", "$queued", "--timeout", "-1"], "timeout"),
    "wait-timeout-nan": (["wait", "$queued", "--timeout", "nan"], "timeout"),
    "run-wait-timeout-negative": (["run", "nb.ipynb", "--wait", "--timeout-wait", "-1"], "timeout"),
    "worker-grace-negative": (["worker", "--grace", "-1"], "--grace"),
    "worker-grace-nan": (["worker", "--grace", "nan"], "--grace"),
    "worker-idle-exit-negative": (["worker", "--idle-exit", "-1"], "--idle-exit"),
    "worker-idle-exit-nan": (["worker", "--idle-exit", "nan"], "--idle-exit"),
}

USAGE_CASES = {  # argparse's own errors: exit 2 and its usage text
    "retries-float": ["run", "nb.ipynb", "--retries", "1e12"],
    "retries-nan": ["run", "nb.ipynb", "--retries", "nan"],
    "retries-word": ["run", "nb.ipynb", "--retries", "abc"],
    "timeout-word": ["run", "nb.ipynb", "--timeout", "abc"],
    "backoff-base-word": ["run", "nb.ipynb", "--backoff-base", "abc"],
    "jitter-half": ["run", "nb.ipynb", "--jitter", "half"],
    "jitter-empty": ["run", "nb.ipynb", "--jitter", ""],
    "prune-negative-as-option": ["prune", "--older-than", "-5d"],
    "prune-no-duration": ["prune"],
    "retention-negative-as-option": ["retention", "-1d"],
    "retention-two-values": ["retention", "off", "30d"],
    "dlq-unknown-action": ["dlq", "nope"],
    "unknown-verb": ["deadletters"],
    "wait-timeout-word": ["wait", "abc", "--timeout", "soon"],
}


def _files(home: Path) -> list[Path]:
    return sorted(p.relative_to(home) for p in home.rglob("*") if not p.name.startswith("nbjobs.db"))


def _ids(args: list[str], seeded: dict[str, str]) -> list[str]:
    return [seeded.get(a[1:], a)[:12] if a.startswith("$") else a for a in args]


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_reliability_input(case, rel_seeded, home, tmp_path):
    args, needle = BAD_CASES[case]
    args = _ids(args, {**rel_seeded, "gone": rows(home, "SELECT id FROM expired")[0][0]})
    if args[0] == "run":
        args = [*args, "--no-worker"]
    before = snapshot(home / "nbjobs.db")
    files_before = _files(home)
    r = nbj_here(*args, home=home)  # the CLI's entry point in this process (tests/support/cli.py)
    line = _assert_bad_input(r)
    assert needle in line, line
    assert snapshot(home / "nbjobs.db") == before
    assert _files(home) == files_before  # no run folder, no inputs, no lock file


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_reliability_usage_errors_exit_2(case, rel_seeded, home):
    before = snapshot(home / "nbjobs.db")
    r = nbj_here(*USAGE_CASES[case], home=home)
    _assert_bad_input(r, usage=True)
    assert snapshot(home / "nbjobs.db") == before


@pytest.mark.parametrize("args,usage", [(["prune", "--older-than", "30x"], False), (["dlq", "ack", "$queued"], False),
                                        (["dlq", "nope"], True)], ids=["prune", "dlq-ack", "dlq-usage"])
def test_reliability_refusals_of_the_real_command(args, usage, rel_seeded, home):
    """A few of the catalogues' refusals through a real `nbjobs` process: the same line, exit 2."""
    args = _ids(args, rel_seeded)
    before = snapshot(home / "nbjobs.db")
    r = nbj(*args, home=home, timeout=20)  # a worker that wrongly starts is killed after 20 s
    _assert_bad_input(r, usage=usage)
    assert r.stderr == nbj_here(*args, home=home).stderr
    assert snapshot(home / "nbjobs.db") == before

