"""Notifications (nbjobs/notify.py): the transactional outbox, webhook bodies and HMAC signatures,
delivery with retries to a real HTTP server on 127.0.0.1, a real worker delivering, and on_done."""
from __future__ import annotations

import hmac
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import nbjobs
from support.procs import start_worker, stop_worker, wait_for
from nbjobs import notify
from nbjobs.errors import BadInput
from nbjobs.job import State
from nbjobs.store import Store

A = "test"


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers ``codes`` in turn (then 200) and keeps every request."""

    def __init__(self, codes=()):
        self.codes = list(codes)
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "path": self.path})
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"try later")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def finish(store: Store, outcome: str, **spec) -> str:
    rec, _ = store.insert_job({"kind": "cell", "source": "1", "name": "n", **spec}, actor=A)
    claimed, n = store.claim("w1")
    assert claimed.id == rec.id
    store.finish_attempt(rec.id, n, "w1", outcome, error=None if outcome == "succeeded" else
                         {"type": "ValueError", "message": "boom", "traceback": "Traceback ... secret stack"})
    return rec.id


# --- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url,needle", [
    ("ftp://example.com/x", "must start with http:// or https://"),
    ("example.com/hook", "must start with http:// or https://"),
    ("http://", "has no host"),
    ("https://host:notaport/", "malformed"),
    ("http://exa mple.com/", "spaces or control characters"),
    ("", "give the webhook as an http"),
])
def test_bad_urls_refused_and_nothing_written(home, url, needle):
    with pytest.raises(BadInput, match=needle):
        nbjobs.submit("x = 1", notify=url, start_worker=False)
    with pytest.raises(BadInput, match=needle):
        nbjobs.notify_default(url)
    assert nbjobs.records() == [] and nbjobs.notify_default()["url"] is None


def test_bad_notify_on_and_secret_env(home):
    with pytest.raises(BadInput, match="notify_on must be"):
        nbjobs.submit("x = 1", notify="http://127.0.0.1:9/h", notify_on="sometimes", start_worker=False)
    with pytest.raises(BadInput, match="not an environment variable name"):
        nbjobs.notify_default("http://127.0.0.1:9/h", secret_env="s3cr3t value!")
    assert nbjobs.notify_default()["url"] is None


# --- the outbox ---------------------------------------------------------------------------------------------
def test_outbox_row_written_with_the_terminal_state_and_no_secrets(store):
    job_id = finish(store, "error", parameters={"password": "hunter2"}, options={
        "notify": "http://127.0.0.1:9/hook", "secrets": ["API_TOKEN"]}, retries=1)
    assert store.get(job_id).state == State.RETRYING
    assert store.deliveries(job_id) == []            # not an ending (notify_on end)
    claimed, n = store.claim("w1", now=time.time() + 400)
    store.finish_attempt(job_id, n, "w1", "error", error={"type": "ValueError", "message": "boom",
                                                           "traceback": "secret stack"})
    (row,) = store.deliveries(job_id)
    assert (row["event"], row["state"], row["attempts"], row["url"]) == ("failed", "pending", 0,
                                                                         "http://127.0.0.1:9/hook")
    body = json.loads(notify.build_body(row))
    assert body["delivery_id"] == row["id"] and body["event"] == "job.failed"
    job = body["job"]
    assert (job["id"], job["name"], job["state"], job["reason"], job["attempts"], job["max_attempts"]) == \
        (job_id, "n", "failed", "error", 2, 2)
    assert job["error"] == {"type": "ValueError", "message": "boom"}
    assert job["finished_at"] >= job["started_at"] >= job["submitted_at"] and job["duration"] >= 0
    text = notify.build_body(row).decode()
    assert "hunter2" not in text and "password" not in text and "secret stack" not in text


def test_notify_on_all_and_home_default(store):
    all_id = finish(store, "succeeded", options={"notify": "http://127.0.0.1:9/a", "notify_on": "all"})
    assert [d["event"] for d in store.deliveries(all_id)] == ["running", "succeeded"]
    none_id = finish(store, "succeeded")
    assert store.deliveries(none_id) == []            # no notify, no default: nothing
    nbjobs.notify_default("http://127.0.0.1:9/default")
    dflt = finish(store, "succeeded")
    assert [(d["event"], d["url"]) for d in store.deliveries(dflt)] == [("succeeded", "http://127.0.0.1:9/default")]
    rec, _ = store.insert_job({"kind": "cell", "source": "1"}, actor=A)
    store.request_cancel(rec.id, A)                    # cancelled before it ran: an ending too
    assert [d["event"] for d in store.deliveries(rec.id)] == ["cancelled"]
    nbjobs.notify_default(off=True)
    assert store.deliveries(finish(store, "succeeded")) == []


def test_notify_on_failure_announces_only_failed_and_timed_out_endings(store):
    url = "http://127.0.0.1:9/f"
    on = {"notify": url, "notify_on": "failure"}
    failed = finish(store, "error", options=on, retries=1)           # retrying first: not announced
    assert store.deliveries(failed) == []
    _, n = store.claim("w1", now=time.time() + 400)
    store.finish_attempt(failed, n, "w1", "error", error={"type": "ValueError", "message": "boom"})
    timed_out = finish(store, "timeout", options=on)
    quiet = [finish(store, "succeeded", options=on), finish(store, "cancelled", options=on)]
    rec, _ = store.insert_job({"kind": "cell", "source": "1", "options": on}, actor=A)
    store.request_cancel(rec.id, A)
    assert [d["event"] for d in store.deliveries(failed)] == ["failed"]
    assert [d["event"] for d in store.deliveries(timed_out)] == ["timed_out"]
    assert [store.deliveries(j) for j in (*quiet, rec.id)] == [[], [], []]
    nbjobs.notify_default(url, on="failure")                          # the home's default, routed the same way
    assert nbjobs.notify_default()["on"] == "failure"
    assert store.deliveries(finish(store, "succeeded")) == []
    assert [d["event"] for d in store.deliveries(finish(store, "error"))] == ["failed"]
    with pytest.raises(BadInput, match="'failure' \\(only failed and timed-out jobs\\)"):
        nbjobs.submit("x = 1", notify=url, notify_on="failures", start_worker=False)


def test_dependency_failed_is_announced(store):
    nbjobs.notify_default("http://127.0.0.1:9/d")
    rec, _ = store.insert_job({"kind": "cell", "source": "1"}, actor=A)
    down, _ = store.insert_job({"kind": "cell", "source": "1", "after": [rec.id]}, actor=A)
    claimed, n = store.claim("w1")
    store.finish_attempt(rec.id, n, "w1", "error")
    (row,) = store.deliveries(down.id)
    assert json.loads(notify.build_body(row))["job"]["reason"] == "dependency_failed"


# --- delivery -------------------------------------------------------------------------------------------------
def test_receiver_failing_twice_then_accepting_gets_three_deliveries_one_id(store, monkeypatch):
    r = Receiver(codes=[500, 503])
    try:
        monkeypatch.setenv("HOOK_SECRET", "s3cret-value")
        nbjobs.notify_default(r.url, secret_env="HOOK_SECRET")
        job_id = finish(store, "succeeded")
        t = time.time()
        assert notify.deliver_due(store, now=t) == 0                      # 500
        row = store.deliveries(job_id)[0]
        assert (row["state"], row["attempts"], row["last_status"]) == ("pending", 1, 500)
        assert row["next_at"] > t and "HTTP 500" in row["last_error"]
        assert notify.deliver_due(store, now=t + 0.01) == 0               # not due yet: nothing sent
        assert len(r.requests) == 1
        assert notify.deliver_due(store, now=t + 3600) == 0               # 503
        assert notify.deliver_due(store, now=t + 7200) == 1               # 200
        assert notify.deliver_due(store, now=t + 9999) == 0               # delivered: never again
        assert len(r.requests) == 3
        ids = {q["headers"]["X-Nbjobs-Delivery"] for q in r.requests}
        assert ids == {row["id"]}
        assert [q["headers"]["X-Nbjobs-Attempt"] for q in r.requests] == ["1", "2", "3"]
        for q in r.requests:
            expected = "sha256=" + hmac.new(b"s3cret-value", q["body"], "sha256").hexdigest()
            assert hmac.compare_digest(q["headers"]["X-Nbjobs-Signature"], expected)
            assert json.loads(q["body"])["delivery_id"] == row["id"]
            assert q["headers"]["Content-Type"] == "application/json"
        assert r.requests[0]["body"] == r.requests[2]["body"]              # the same body each time
        row = store.deliveries(job_id)[0]
        assert (row["state"], row["attempts"], row["last_status"], row["last_error"]) == ("delivered", 3, 200, None)
        assert "s3cret-value" not in json.dumps(store.deliveries(job_id))
    finally:
        r.close()


def test_gives_up_after_max_attempts_and_missing_secret_is_an_error(store, monkeypatch):
    monkeypatch.setattr(notify, "MAX_ATTEMPTS", 2)
    monkeypatch.delenv("NOT_SET_SECRET", raising=False)
    nbjobs.notify_default("http://127.0.0.1:9/unreachable", secret_env="NOT_SET_SECRET")
    job_id = finish(store, "succeeded")
    t = time.time()
    notify.deliver_due(store, now=t)
    notify.deliver_due(store, now=t + 3600)
    row = store.deliveries(job_id)[0]
    assert (row["state"], row["attempts"]) == ("failed", 2)
    assert "$NOT_SET_SECRET is not set" in row["last_error"]
    nbjobs.notify_default(off=True)
    nbjobs.notify_default("http://127.0.0.1:9/unreachable")
    other = finish(store, "succeeded")
    t = time.time()
    notify.deliver_due(store, now=t)
    notify.deliver_due(store, now=t + 3600)
    row = store.deliveries(other)[0]
    assert row["state"] == "failed" and row["last_status"] is None and row["last_error"]   # connection refused


# --- real worker ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_worker_delivers_with_retries_and_show_lists_it(home, tmp_path):
    r = Receiver(codes=[500, 500])
    w = start_worker(home, "--concurrency", "2", env={"NBJOBS_NOTIFY_BACKOFF": "0.2", "HOOK_SECRET": "k3y"})
    try:
        nbjobs.notify_default(secret_env="HOOK_SECRET")
        done = threading.Event()
        seen = []
        job = nbjobs.submit("import nbjobs\nnbjobs.record('x', 1)", name="hooked", notify=r.url,
                            parameters={"token_value": "do-not-send"},
                            on_done=lambda j: (seen.append(j.state), done.set()))
        assert done.wait(120), "on_done was not called"
        assert seen == [State.SUCCEEDED]
        wait_for(lambda: len(r.requests) >= 3, 60, "three webhook deliveries")
        body = json.loads(r.requests[-1]["body"])
        assert body["job"]["id"] == job.id and body["job"]["state"] == "succeeded" and body["event"] == "job.succeeded"
        assert len({q["headers"]["X-Nbjobs-Delivery"] for q in r.requests}) == 1
        assert all(q["headers"]["X-Nbjobs-Signature"] == "sha256=" + hmac.new(b"k3y", q["body"], "sha256").hexdigest()
                   for q in r.requests)
        assert b"do-not-send" not in r.requests[-1]["body"]
        wait_for(lambda: nbjobs.deliveries(job.id)[0]["state"] == "delivered", 30, "delivered recorded")
        env = dict(os.environ, NBJOBS_HOME=str(home))
        show = subprocess.run([sys.executable, "-m", "nbjobs", "show", job.id[:8]], env=env, capture_output=True,
                              text=True, timeout=60).stdout
        assert "deliveries:" in show and "delivered 3 attempt(s) HTTP 200" in show and r.url in show
    finally:
        stop_worker(w)
        r.close()


@pytest.mark.slow
def test_real_worker_notify_on_failure_delivers_only_for_the_failed_job(home, receiver):
    w = start_worker(home, "--concurrency", "2")
    try:
        good = nbjobs.submit("x = 1", name="fine", notify=receiver.url, notify_on="failure")
        bad = nbjobs.submit("raise ValueError('boom')", name="broken", notify=receiver.url, notify_on="failure")
        nbjobs.wait([good, bad], timeout=120)
        assert (good.state, bad.state) == (State.SUCCEEDED, State.FAILED)
        assert good.deliveries() == []       # the outbox row would have been written with the ending
        wait_for(lambda: bad.deliveries() and bad.deliveries()[0]["state"] == "delivered", 60, "the delivery")
        (request,) = receiver.requests
        body = json.loads(request["body"])
        assert (body["event"], body["job"]["id"], body["job"]["error"]["type"]) == ("job.failed", bad.id, "ValueError")
    finally:
        stop_worker(w)


def test_on_done_callback_errors_do_not_break_the_watch(home, capfd):
    calls = []
    job = nbjobs.submit("x = 1", start_worker=False, on_done=lambda j: (calls.append(j.id), 1 / 0))
    with pytest.raises(BadInput, match="on_done must be a function"):
        nbjobs.submit("x = 1", start_worker=False, on_done="print")
    job.cancel()
    wait_for(lambda: calls, 30, "the callback")
    err = []
    wait_for(lambda: err.append(capfd.readouterr().err) or "ZeroDivisionError" in "".join(err), 10,
             "the callback's error on stderr")
    assert f"on_done callback of job {job.id[:8]} raised" in "".join(err)
    time.sleep(1.5)                      # a few more updater ticks: called once, not again
    assert calls == [job.id]
