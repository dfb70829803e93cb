"""The `nbjobs` command (nbjobs/cli.py), run as a real subprocess against a real home."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import nbjobs
from support.cli import ID_RE, assert_bad_input, nbj, nbj_here
from support.notebooks import write_notebook
from nbjobs.store import Store

VERBS = ["run", "ls", "show", "logs", "result", "cancel", "retry", "wait", "worker", "demo"]


def _snapshot(db: Path) -> dict[str, list] | None:
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        order = {"events": "job_id, id", "attempts": "job_id, number"}  # clustered by job: no rowid
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY {order.get(t, 'rowid')}").fetchall()
                for t in ("jobs", "events", "attempts", "outputs", "workers")}
    finally:
        conn.close()


# --- the happy paths ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_run_wait_json_result_logs_show_ls_wait(home, worker, tmp_path):
    nb = write_notebook(tmp_path / "report.ipynb",
                        ["import nbjobs\nnbjobs.record('n', n)\nnbjobs.record('title', title)\nprint('report-done')"],
                        parameters="n = 0\ntitle = ''")
    bad = write_notebook(tmp_path / "bad.ipynb", ["x = 1", "raise ValueError('cli-boom')"])
    env = dict(os.environ, NBJOBS_HOME=str(home))
    cmd = [sys.executable, "-m", "nbjobs", "run"]
    procs = {  # three at once: the worker runs two at a time
        "ok": subprocess.Popen([*cmd, "report.ipynb", "-p", "n", "7", "-p", "title", "Q3", "--wait"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "bad": subprocess.Popen([*cmd, "bad.ipynb", "--wait"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "code": subprocess.Popen([*cmd, "-c", "import nbjobs; print('quick-out'); nbjobs.record('answer', 6*7)",
                                  "--name", "quick", "--json", "--wait"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    out = {k: (p.communicate(timeout=90), p.returncode) for k, p in procs.items()}

    (stdout, stderr), rc = out["ok"]
    assert rc == 0, stderr
    lines = stdout.splitlines()
    assert ID_RE.match(lines[0]), stdout
    ok_id = lines[0]
    assert "succeeded" in lines[1] and ok_id[:8] in lines[1]
    assert nbjobs.result(ok_id) == {"n": 7, "title": "Q3"}
    assert nbjobs.get(ok_id).record.parameters == {"n": 7, "title": "Q3"}

    (stdout, stderr), rc = out["bad"]
    assert rc == 1, stdout + stderr
    bad_id = stdout.splitlines()[0]
    assert ID_RE.match(bad_id)
    assert "failed" in stdout and "ValueError: cli-boom" in stdout
    assert nbjobs.get(bad_id).state == nbjobs.State.FAILED

    (stdout, stderr), rc = out["code"]
    assert rc == 0, stderr
    obj = json.loads(stdout)  # exactly one JSON object, nothing else
    assert isinstance(obj, dict)
    assert ID_RE.match(obj["id"]) and obj["state"] == "succeeded" and obj["attempts"] == 1 and obj["error"] is None
    assert obj["name"] == "quick"
    code_id = obj["id"]

    r = nbj("result", code_id[:7], "--json", home=home)
    assert r.returncode == 0 and r.stdout == '{"answer": 42}\n'
    r = nbj("result", code_id[:7], home=home)
    assert r.returncode == 0 and "answer = 42" in r.stdout

    r = nbj("logs", code_id, home=home)
    assert r.returncode == 0 and "quick-out" in r.stdout
    r = nbj("logs", ok_id[:6], "-f", home=home)  # ended: prints and returns
    assert r.returncode == 0 and "report-done" in r.stdout

    r = nbj("show", bad_id[:6], home=home)
    assert r.returncode == 0
    assert f"id:         {bad_id}" in r.stdout and "state:      failed (error)" in r.stdout
    assert "ValueError: cli-boom (cell 2 of the notebook)" in r.stdout and "#1  error" in r.stdout
    r = nbj("show", bad_id[:6], "--json", home=home)
    assert r.returncode == 0
    shown = json.loads(r.stdout)
    assert shown["id"] == bad_id and shown["state"] == "failed"
    assert shown["error"] == {"type": "ValueError", "message": "cli-boom", "cell": 1}
    assert [a["outcome"] for a in shown["attempt_history"]] == ["error"]
    assert [e["to_state"] for e in shown["events"]] == ["queued", "running", "failed"]

    r = nbj("ls", home=home)
    assert r.returncode == 0
    rows = r.stdout.splitlines()
    assert rows[0].split() == ["ID", "NAME", "STATE", "ATTEMPTS", "QUEUED", "STARTED", "DURATION"]
    assert len(rows) == 4
    by_id = {row.split()[0]: row for row in rows[1:]}
    assert "quick" in by_id[code_id[:8]] and "succeeded" in by_id[code_id[:8]]
    assert "failed (error)" in by_id[bad_id[:8]]
    r = nbj("ls", "--json", home=home)
    listed = json.loads(r.stdout)
    assert {j["id"]: j["state"] for j in listed} == {ok_id: "succeeded", bad_id: "failed", code_id: "succeeded"}
    r = nbj("ls", "--json", "--state", "failed", home=home)
    assert [j["id"] for j in json.loads(r.stdout)] == [bad_id]

    r = nbj("wait", ok_id[:8], code_id[:8], "--timeout", "5", home=home)
    assert r.returncode == 0 and r.stdout.count("succeeded") == 2
    r = nbj("wait", bad_id[:8], "--timeout", "5", home=home)
    assert r.returncode == 1 and "failed" in r.stdout
    r = nbj("wait", ok_id, "--json", home=home)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == ok_id

    # placement: the local executor offers no resources, so a job that needs some is never claimed;
    # a younger one that needs none runs past it
    gpu = json.loads(nbj_here("run", "-c", "x = 1", "--resources", "GPU=1,MEM=64e9", "--json", home=home).stdout)["id"]
    assert nbjobs.get(gpu).record.resources == {"GPU": 1.0, "MEM": 64e9}
    plain = nbjobs.submit("y = 2", start_worker=False)
    assert plain.wait(90).state == nbjobs.State.SUCCEEDED
    assert (nbjobs.get(gpu).state, nbjobs.get(gpu).record.attempts) == (nbjobs.State.QUEUED, 0)
    shown = nbj_here("show", gpu, home=home).stdout
    assert "queued, needs GPU=1, MEM=6.4e+10" in shown.splitlines()[0]  # the receipt line
    assert "resources:  GPU=1, MEM=6.4e+10" in shown
    assert "placement:  no live worker offers GPU=1, MEM=6.4e+10" in shown and "local executor: none" in shown
    nbjobs.cancel(gpu)


def test_queued_json_cancel_retry_wait_timeout(home, tmp_path):
    r = nbj("run", "-c", "x = 1", "--name", "quick", "--json", "--no-worker", home=home)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert set(obj) >= {"id", "state", "attempts", "error"}
    assert obj["state"] == "queued" and obj["attempts"] == 0 and obj["error"] is None
    job_id = obj["id"]

    r = nbj("wait", job_id[:8], "--timeout", "0.5", home=home)  # how soon: benchmarks/bench_stop.py
    assert r.returncode == 1 and "still not finished" in r.stderr

    r = nbj("cancel", job_id[:8], home=home)
    assert r.returncode == 0 and r.stdout == f"{job_id[:8]}: cancelled\n"
    assert nbjobs.get(job_id).state == nbjobs.State.CANCELLED
    r = nbj("retry", job_id[:8], "--no-worker", home=home)
    assert r.returncode == 0 and r.stdout == f"{job_id[:8]}: queued again\n"
    assert nbjobs.get(job_id).state == nbjobs.State.QUEUED
    assert Store(home / "nbjobs.db").live_workers() == []  # --no-worker meant it

    r = nbj("ls", home=home)
    assert job_id[:8] in r.stdout and "queued" in r.stdout
    r = nbj("result", job_id, home=home)
    assert r.returncode == 0 and "(no recorded outputs)" in r.stdout


def test_ls_on_empty_home(home):
    r = nbj("ls", home=home)
    assert r.returncode == 0 and "no jobs yet" in r.stdout
    assert json.loads(nbj("ls", "--json", home=home).stdout) == []


@pytest.mark.parametrize("verb", [None, *VERBS])
def test_help_of_every_verb(verb, home):
    r = nbj_here(*([verb] if verb else []), "--help", home=home)
    assert r.returncode == 0, r.stderr
    assert "example" in r.stdout
    assert r.stderr == ""


# --- the bad-input catalogue ------------------------------------------------------------------------------
# The catalogues run the CLI's entry point in this process (`nbj_here`); each kind of refusal also
# runs once as a real `nbjobs` process (test_refusals_of_the_real_command and the tests after the
# catalogues).
AMB_1 = "abc1" + "0" * 28
AMB_2 = "abc2" + "0" * 28


@pytest.fixture
def seeded(home, tmp_path):
    """A home with a succeeded, a queued and two prefix-sharing jobs, and some input files."""
    store = Store(home / "nbjobs.db")
    spec = {"kind": "cell", "source": "x = 1", "kernel": "python3", "cwd": str(tmp_path)}
    done, _ = store.insert_job(dict(spec, name="done"), "test")
    claimed = store.claim("test-worker")
    assert claimed and claimed[0].id == done.id
    assert store.finish_attempt(done.id, 1, "test-worker", "succeeded") == "succeeded"
    queued, _ = store.insert_job(dict(spec, name="waiting"), "test")
    store.insert_job(dict(spec, name="amb-1", id=AMB_1), "test")
    store.insert_job(dict(spec, name="amb-2", id=AMB_2), "test")
    store.close()
    write_notebook(tmp_path / "nb.ipynb", ["x = n"], parameters="n = 0")
    write_notebook(tmp_path / "nokernel.ipynb", ["x = 1"], kernel="nokernel")
    (tmp_path / "nbdir.ipynb").mkdir()
    (tmp_path / "notes.txt").write_text("not a notebook")
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    (tmp_path / "list.ipynb").write_text("[1, 2, 3]")
    (tmp_path / "other.ipynb").write_text('{"hello": "world"}')
    (tmp_path / "file.txt").write_text("a regular file")
    return {"done": done.id, "queued": queued.id}


RUN_CASES = {
    "missing-notebook": (["run", "nosuch.ipynb"], "does not exist"),
    "no-notebook-no-code": (["run"], "either a notebook"),
    "directory": (["run", "nbdir.ipynb"], "not a notebook"),
    "not-ipynb": (["run", "notes.txt"], "not a notebook"),
    "invalid-json": (["run", "broken.ipynb"], "not valid JSON"),
    "json-list": (["run", "list.ipynb"], "not a Jupyter notebook"),
    "json-not-notebook": (["run", "other.ipynb"], "not a Jupyter notebook"),
    "bad-param-name": (["run", "nb.ipynb", "-p", "1x", "5"], "'1x' is not a valid Python identifier"),
    "bad-raw-name": (["run", "nb.ipynb", "-r", "my-name", "5"], "not a valid Python identifier"),
    "invalid-yaml": (["run", "nb.ipynb", "-y", "{n: [1, 2"], "not valid YAML"),
    "yaml-not-mapping": (["run", "nb.ipynb", "-y", "[1, 2]"], "mapping"),
    "yaml-not-json": (["run", "nb.ipynb", "-y", "x: .inf"], "not a JSON value"),
    "notebook-kernel-missing": (["run", "nokernel.ipynb"], "'nokernel' is not installed"),
    "missing-f-file": (["run", "nb.ipynb", "-f", "nosuch.yaml"], "nosuch.yaml"),
    "unknown-kernel": (["run", "nb.ipynb", "--kernel", "nosuchkernel"], "'nosuchkernel' is not installed"),
    "unknown-kernel-code": (["run", "-c", "x = 1", "--kernel", "nosuchkernel"], "not installed"),
    "negative-retries": (["run", "nb.ipynb", "--retries", "-1"], "retries"),
    "too-many-retries": (["run", "nb.ipynb", "--retries", "1000"], "retries"),
    "timeout-zero": (["run", "nb.ipynb", "--timeout", "0"], "timeout"),
    "timeout-negative": (["run", "nb.ipynb", "--timeout", "-5"], "timeout"),
    "cell-timeout-zero": (["run", "nb.ipynb", "--cell-timeout", "0"], "cell_timeout"),
    "priority-too-high": (["run", "nb.ipynb", "--priority", "1000001"], "priority"),
    "priority-too-low": (["run", "-c", "x = 1", "--priority", "-1000001"], "priority"),
    "empty-name": (["run", "nb.ipynb", "--name", ""], "name"),
    "blank-name": (["run", "nb.ipynb", "--name", "   "], "name"),
    "empty-code": (["run", "-c", ""], "-c CODE"),
    "blank-code": (["run", "-c", "   "], "code"),
    "notebook-and-code": (["run", "nb.ipynb", "-c", "x = 1"], "not both"),
    "missing-cwd": (["run", "nb.ipynb", "--cwd", "no/such/dir"], "does not exist"),
    "empty-tag": (["run", "nb.ipynb", "--tag", ""], "tag"),
    "resources-no-amount": (["run", "nb.ipynb", "--resources", "GPU"], "write NAME=AMOUNT"),
    "resources-not-number": (["run", "nb.ipynb", "--resources", "GPU=one"], "needs a number"),
    "resources-zero": (["run", "-c", "x = 1", "--resources", "MEM=0"], "positive number"),
    "ls-bad-state": (["ls", "--state", "finished"], "unknown state"),
    "worker-concurrency-0": (["worker", "--concurrency", "0"], "--concurrency"),
    "worker-concurrency-negative": (["worker", "--concurrency", "-3"], "--concurrency"),
}


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_bad_input(case, seeded, home, tmp_path):
    args, needle = RUN_CASES[case]
    if args[0] == "run":
        args = [*args, "--no-worker"]
    before = _snapshot(home / "nbjobs.db")
    r = nbj_here(*args, home=home)
    line = assert_bad_input(r)
    assert needle in line, line
    assert _snapshot(home / "nbjobs.db") == before


USAGE_CASES = {
    "p-one-value": ["run", "nb.ipynb", "-p", "n"],
    "p-no-value": ["run", "nb.ipynb", "-p"],
    "retries-not-int": ["run", "nb.ipynb", "--retries", "many"],
    "timeout-not-number": ["run", "nb.ipynb", "--timeout", "soon"],
    "unknown-verb": ["frobnicate"],
    "no-verb": [],
    "show-no-id": ["show"],
    "unknown-option": ["ls", "--colour"],
}


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_usage_errors_exit_2(case, seeded, home):
    before = _snapshot(home / "nbjobs.db")
    r = nbj_here(*USAGE_CASES[case], home=home)
    assert_bad_input(r, usage=True)
    assert _snapshot(home / "nbjobs.db") == before


ID_VERBS = [["show"], ["logs"], ["result"], ["cancel"], ["retry", "--no-worker"], ["wait", "--timeout", "1"],
            ["show", "--json"], ["result", "--json"], ["logs", "-f"]]


@pytest.mark.parametrize("verb", ID_VERBS, ids=lambda v: "-".join(v))
@pytest.mark.parametrize("ident,needle", [
    ("0123456789abcdef", "no job matches '0123456789abcdef'"),
    ("abc", "matches several jobs"),
    ("zz", "'zz' is not a job ID"),
    ("", "is not a job ID"),
], ids=["unknown", "ambiguous", "non-hex", "empty"])
def test_bad_job_ids(verb, ident, needle, seeded, home):
    before = _snapshot(home / "nbjobs.db")
    r = nbj_here(verb[0], ident, *verb[1:], home=home)
    line = assert_bad_input(r)
    assert needle in line, line
    if needle.startswith("matches several"):
        assert "abc10000 (amb-1)" in line and "abc20000 (amb-2)" in line
    assert _snapshot(home / "nbjobs.db") == before


@pytest.mark.parametrize("args,usage,needle", [
    (["run", "broken.ipynb", "--no-worker"], False, "not valid JSON"),
    (["run", "nb.ipynb", "--retries", "many"], True, "invalid"),
    (["show", "zz"], False, "'zz' is not a job ID"),
], ids=["bad-input", "usage", "bad-id"])
def test_refusals_of_the_real_command(args, usage, needle, seeded, home):
    """One refusal of each catalogue through a real `nbjobs` process: the same line, exit 2."""
    before = _snapshot(home / "nbjobs.db")
    r = nbj(*args, home=home, timeout=30)
    assert needle in assert_bad_input(r, usage=usage)
    assert nbj_here(*args, home=home).stderr == r.stderr
    assert _snapshot(home / "nbjobs.db") == before
    help_text = nbj("--help", home=home)
    assert help_text.returncode == 0 and help_text.stdout == nbj_here("--help", home=home).stdout


def test_cancel_of_succeeded_job(seeded, home):
    before = _snapshot(home / "nbjobs.db")
    r = nbj("cancel", seeded["done"][:8], home=home)
    line = assert_bad_input(r)
    assert "already succeeded" in line and "retry" in line
    assert _snapshot(home / "nbjobs.db") == before


@pytest.mark.parametrize("which", ["queued", "done"])
def test_retry_of_queued_or_succeeded_job(which, seeded, home):
    before = _snapshot(home / "nbjobs.db")
    r = nbj("retry", seeded[which][:8], "--no-worker", home=home)
    line = assert_bad_input(r)
    assert "cannot be retried" in line
    assert _snapshot(home / "nbjobs.db") == before


@pytest.mark.parametrize("args", [["ls"], ["show", "abc"], ["run", "-c", "x = 1", "--no-worker"],
                                  ["worker", "--idle-exit", "1"], ["wait", "abc"]], ids=lambda a: a[0])
def test_corrupt_database(args, home, tmp_path):
    home.mkdir()
    db = home / "nbjobs.db"
    garbage = os.urandom(8192)
    db.write_bytes(garbage)
    r = nbj(*args, home=home, timeout=30)
    line = assert_bad_input(r)
    assert str(db) in line
    assert db.read_bytes() == garbage  # left as it was, for the user to move aside


@pytest.mark.parametrize("args", [["ls"], ["show", "abc"], ["run", "-c", "x = 1", "--no-worker"],
                                  ["worker", "--idle-exit", "1"], ["run", "-c", "x = 1"]], ids=lambda a: "-".join(a[:2]))
def test_home_under_a_regular_file(args, tmp_path):
    (tmp_path / "file.txt").write_text("a regular file")
    home = tmp_path / "file.txt" / "home"
    r = nbj(*args, home=home, timeout=30)
    line = assert_bad_input(r)
    assert "NBJOBS_HOME" in line and str(home) in line
    assert (tmp_path / "file.txt").read_text() == "a regular file"
