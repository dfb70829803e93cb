"""Sweeps (nbjobs/sweeps.py: a group of ordinary jobs with its own ID) and per-name limits (the claim
skips a job whose concurrency key is at its limit): grids, ID lookup across jobs and groups, the
verbs on a group, the panel's group row, and a real worker running a sweep, a keyed series and a
group cancel."""
from __future__ import annotations

import json

import pytest

import nbjobs
from nbjobs import params
from nbjobs.errors import AmbiguousJob, BadInput
from nbjobs.job import State
from nbjobs.text import job_detail
from nbjobs.panel.model import GroupRow, Member, group_items, item_view
from support.cli import ID_RE, assert_bad_input, nbj_here
from support.notebooks import write_notebook
from support.procs import start_worker, stop_worker, wait_for
from support.shell import ok

A = "test"


# --- grids ------------------------------------------------------------------------------------------------
def test_grid_from_the_command_line_options_typed_like_papermill():
    grid = params.build_grid(p=[("lr", "0.1,0.01"), ("depth", "3,5"), ("fast", "True,x")],
                             r=[("code", "007,8")], y=['mode: [a, "b,c"]', "layers: [[64, 64], [128]]", "n: 7"])
    assert grid == {"mode": ["a", "b,c"], "layers": [[64, 64], [128]], "n": [7], "code": ["007", "8"],
                    "lr": [0.1, 0.01], "depth": [3, 5], "fast": [True, "x"]}
    assert list(grid) == ["lr", "depth", "fast", "code", "mode", "layers", "n"]
    sets = params.expand({"lr": [0.1, 0.01], "depth": [3, 5]})
    assert sets == [{"lr": 0.1, "depth": 3}, {"lr": 0.1, "depth": 5}, {"lr": 0.01, "depth": 3},
                    {"lr": 0.01, "depth": 5}]
    assert params.expand({"lr": [0.1, 0.01], "depth": [3, 5]}, zip_=True) == [{"lr": 0.1, "depth": 3},
                                                                            {"lr": 0.01, "depth": 5}]
    for bad, needle in [(lambda: params.build_grid(p=[("lr", "0.1,,2")]), "empty value"),
                        (lambda: params.expand({"a": [1, 2], "b": [1]}, zip_=True), "a has 2, b has 1"),
                        (lambda: params.expand({"a": list(range(40)), "b": list(range(40))}), "1600 jobs"),
                        (lambda: params.expand({}), "needs a grid"),
                        (lambda: params.expand({"a": []}), "no values"),
                        (lambda: params.expand({"not ok": [1]}), "not a valid Python identifier")]:
        with pytest.raises(BadInput, match=needle):
            bad()


# --- the store: groups, lookup, the claim's limit -------------------------------------------------------
def test_a_prefix_matching_a_job_and_a_group_is_ambiguous(store):
    job, _ = store.insert_job({"id": "ab12" + "0" * 28, "name": "j", "kind": "cell", "source": "1"}, actor=A)
    gid, created = store.insert_group({"id": "ab13" + "0" * 28, "name": "g", "params": ["x"]},
                                      [{"name": "g", "kind": "cell", "source": "1", "parameters": {"x": 1}}], actor=A)
    assert created and store.resolve_any("ab13") == ("group", gid) and store.resolve_any("ab12") == ("job", job.id)
    with pytest.raises(AmbiguousJob, match="matches several jobs or groups.*ab130000 \\(g, a group\\)"):
        store.resolve_any("ab1")
    with pytest.raises(BadInput, match="is a group \\(g, 1 jobs\\), not a job"):
        store.resolve("ab13")                      # a verb that takes one job says what to give instead
    (member,) = store.group_jobs(gid)
    assert member.group_id == gid and member.parameters == {"x": 1}


def test_the_claim_skips_a_job_whose_key_is_at_its_limit(store):
    def add(name, **kw):
        return store.insert_job({"name": name, "kind": "cell", "source": "1", **kw}, actor=A)[0]

    a, b, c = add("a", concurrency_key="k", max_running=1), add("b", concurrency_key="k", max_running=1), add("c")
    d, e = add("d", concurrency_key="two", max_running=2), add("e", concurrency_key="two", max_running=2)
    first, n = store.claim("w1")
    assert first.id == a.id
    assert [store.claim("w2")[0].id for _ in range(3)] == [c.id, d.id, e.id]   # b is skipped: k has 1 of 1
    assert store.claim("w2") is None and store.running_per_key(["k", "two"]) == {"k": 1, "two": 2}
    assert nbjobs.waiting_reasons([store.get(b.id)]) == {b.id: "queued: 1 of max 1 running for key k"}
    store.finish_attempt(a.id, n, "w1", "succeeded")
    assert nbjobs.waiting_reasons([store.get(b.id)]) == {}
    assert store.claim("w1")[0].id == b.id


def test_a_v8_home_migrates_and_its_jobs_stay_claimable(tmp_path):
    import sqlite3
    import time

    from nbjobs.store import MIGRATIONS, SCHEMA_VERSION, Store

    path = tmp_path / "home" / "nbjobs.db"
    path.parent.mkdir()
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:8]:
        conn.executescript(step) if isinstance(step, str) else step(conn)
    now = time.time()
    conn.execute("INSERT INTO jobs (id, name, kind, state, source, submitted_at, run_at, updated_at) "
                 "VALUES (?, 'old', 'cell', 'queued', '1', ?, ?, ?)", ("c" * 32, now, now, now))
    conn.execute("PRAGMA user_version = 8")
    conn.close()
    s = Store(path)
    assert s.version == SCHEMA_VERSION >= 9
    old = s.get("c" * 32)
    assert (old.group_id, old.concurrency_key, old.max_running) == (None, None, None)
    assert s.claim("w1")[0].id == old.id and s.list_groups() == []
    s.close()


# --- front ends (no worker) -------------------------------------------------------------------------------
def test_sweep_from_the_cli_and_the_verbs_on_its_group(home, tmp_path):
    nb = write_notebook(tmp_path / "train.ipynb", ["import nbjobs\nnbjobs.record('score', lr * depth)"],
                        parameters="lr = 1.0\ndepth = 1")
    r = nbj_here("sweep", str(nb), "-p", "lr", "0.1,0.01", "-y", 'depth: [3, "a,b"]', "--no-worker", "--json",
                 "--max-parallel", "1", home=home)
    assert r.returncode == 0, r.stderr
    g = json.loads(r.stdout)
    assert ID_RE.match(g["id"]) and g["kind"] == "group" and g["params"] == ["lr", "depth"] and g["size"] == 4
    assert [j["parameters"] for j in g["jobs"]] == [{"lr": 0.1, "depth": 3}, {"lr": 0.1, "depth": "a,b"},
                                                   {"lr": 0.01, "depth": 3}, {"lr": 0.01, "depth": "a,b"}]
    assert g["progress"] == {"done": 0, "total": 4} and g["state"] == "queued"
    short = g["id"][:6]
    show = nbj_here("show", short, home=home).stdout
    assert "sweep of 4 job(s) over lr, depth (every combination)" in show and "at most 1 running at once" in show
    assert show.count("queued") >= 4 and "a,b" in show
    ls = nbj_here("ls", "--group", short, "--json", home=home)
    assert sorted(j["id"] for j in json.loads(ls.stdout)) == sorted(j["id"] for j in g["jobs"])
    assert all(j["group_id"] == g["id"] and j["concurrency_key"] == "group:" + g["id"] for j in json.loads(ls.stdout))
    assert "is a group" in assert_bad_input(nbj_here("dlq", "ack", short, home=home))
    c = nbj_here("cancel", short, home=home)
    assert c.returncode == 0 and c.stdout.strip() == f"group {g['id'][:8]}: 4 cancelled, 0 stopping (cancel requested)"
    assert {j.state for j in nbjobs.group(short).jobs()} == {State.CANCELLED}
    assert nbj_here("retry", short, "--no-worker", home=home).returncode == 0
    assert nbjobs.group(short).state == State.QUEUED
    res = nbj_here("result", short, "--json", home=home)
    assert [(row["lr"], row["state"]) for row in json.loads(res.stdout)] == [(0.1, "queued"), (0.1, "queued"),
                                                                             (0.01, "queued"), (0.01, "queued")]
    for args, needle in [(("-p", "lr", "1", "--max-parallel", "2", "--concurrency-key", "k"), "not both"),
                         (("-p", "lr", "1,2", "--zip", "-p", "depth", "1"), "as many values"),
                         (("-p", "lr", "1", "--max-running", "2"), "max_running goes with a concurrency key"),
                         ((), "needs a grid")]:
        assert needle in assert_bad_input(nbj_here("sweep", str(nb), *args, "--no-worker", home=home))
    assert nbjobs.groups() == [nbjobs.group(short)]          # the refused sweeps recorded nothing
    shown = json.loads(nbj_here("show", short, "--json", home=home).stdout)
    assert (shown["id"], shown["progress"], shown["states"]) == (g["id"], {"done": 0, "total": 4}, {"queued": 4})
    logs = nbj_here("logs", short, home=home).stdout
    assert logs.count("--- job ") == 4 and "(lr=0.01, depth=a,b): queued ---\n(no output)" in logs
    assert "is a group: -f follows one job" in assert_bad_input(nbj_here("logs", short, "-f", home=home))
    waited = nbj_here("wait", short, "--timeout", "0", home=home)
    assert waited.returncode == 1 and "still not finished after 0 s" in waited.stderr
    nbjobs.cancel(short)
    # prune until every job went (each cancelled job is prunable a millisecond after its own end)
    wait_for(lambda: nbjobs.prune("0.001s") is not None and not nbjobs.records(), 10, "every cancelled job pruned")
    assert nbjobs.groups() == [] and nbjobs.records() == []   # the group goes with its last job


def test_sweep_magic_returns_the_group_and_its_static_html(home, tmp_path, shell):
    write_notebook(tmp_path / "nb.ipynb", ["x = 1"], parameters="a = 0")
    g = ok(shell, "%job sweep nb.ipynb -p a 1,2,3 --no-worker --name three")
    assert isinstance(g, nbjobs.Group) and g.name == "three" and g.progress == (0, 3)
    assert [r.parameters for r in g.records()] == [{"a": 1}, {"a": 2}, {"a": 3}]
    html = g._repr_html_()
    assert f'data-group-id="{g.id}"' in html and "0/3" in html and "a=2" in html
    again = ok(shell, "%job sweep nb.ipynb -p a 1,2,3 --no-worker --key nightly-sweep")
    assert ok(shell, "%job sweep nb.ipynb -p a 4 --no-worker --key nightly-sweep") == again   # the key: the same
    assert len(nbjobs.records(limit=None)) == 6                                                 # group, no new jobs
    ok(shell, f"%job cancel {g.id[:7]}")
    assert g.state == State.CANCELLED and repr(g) == f"<Group {g.short_id} 'three' 3/3 done: cancelled>"


def test_the_panel_folds_a_group_into_one_row_that_expands_to_its_jobs(home, tmp_path):
    nb = write_notebook(tmp_path / "nb.ipynb", ["x = 1"], parameters="a = 0")
    g = nbjobs.sweep(nb, grid={"a": [1, 2]}, start_worker=False)
    single = nbjobs.submit("x = 1", name="single", start_worker=False)
    items = nbjobs.panel().items()
    assert [type(i).__name__ for i in items] == ["JobRecord", "GroupRow"]
    v = item_view(items[1])
    assert (v.id, v.kind, v.progress, v.state, v.note, v.attempt) == (g.id, "sweep", "0/2", "queued", "2 queued",
                                                                       "2 jobs")
    assert "0/2" in repr(nbjobs.panel()) and single.id[:8] in repr(nbjobs.panel())
    recs = nbjobs.records()
    counts = {g.id: g.counts()}
    opened = group_items(recs, counts, [g.id], {g.id: g.records()})
    assert [type(i).__name__ for i in opened] == ["JobRecord", "GroupRow", "Member", "Member"]
    assert [item_view(i).name for i in opened[2:]] == ["\u21b3 a=1", "\u21b3 a=2"]
    assert isinstance(opened[1], GroupRow) and isinstance(opened[2], Member)


def test_the_live_panel_expands_a_group_row_and_says_why_a_keyed_job_waits(home, store, monkeypatch, tmp_path):
    import time

    from nbjobs import panel, watch

    monkeypatch.setattr(watch, "activate", lambda view: None)   # the test drives the ticks itself
    nb = write_notebook(tmp_path / "nb.ipynb", ["x = 1"], parameters="a = 0")
    g = nbjobs.sweep(nb, grid={"a": [1, 2]}, start_worker=False)
    first, second = g.jobs()
    holder = nbjobs.submit("x = 1", name="holder", concurrency_key="report", start_worker=False)
    waiter = nbjobs.submit("x = 1", name="waiter", concurrency_key="report", start_worker=False)
    store.register_worker("w", concurrency=4)
    assert store.claim("w")[0].id == first.id
    assert store.claim("w")[0].id == second.id
    assert store.claim("w")[0].id == holder.id and store.claim("w") is None   # waiter: its key is at 1 of 1
    p = nbjobs.panel(home=home)
    p.widget()
    view = p.view
    try:
        assert view.order == [waiter.id, holder.id, g.id]
        row = view.rows[g.id]
        assert "2/2" not in row.cells["progress"].value and "0/2" in row.cells["progress"].value
        assert row.buttons["logs"].description == "jobs" and row.buttons["pull"].disabled
        assert "queued: 1 of max 1 running for key report" in view.rows[waiter.id].cells["note"].value
        view.act(g.id, "logs")                                   # expand: the group's jobs under its row
        assert view.order == [waiter.id, holder.id, g.id, first.id, second.id]
        assert row.buttons["logs"].description == "fold"
        assert "\u21b3 a=1" in view.rows[first.id].cells["name"].value
        store.finish_attempt(first.id, 1, "w", "succeeded")
        store.finish_attempt(holder.id, 1, "w", "succeeded")
        h = watch.Home(home)
        view.refresh(h.poll(time.time()))
        assert "1/2" in row.cells["progress"].value and 'data-state="running"' in row.cells["state"].value
        assert 'data-state="succeeded"' in view.rows[first.id].cells["state"].value
        assert "queued: 1 of max 1" not in view.rows[waiter.id].cells["note"].value   # its key has room now
        view.act(g.id, "cancel")                                 # the group's row cancels its unfinished job
        view.refresh(h.poll(time.time()))
        assert nbjobs.get(second.id).record.cancel_requested
        view.act(g.id, "logs")                                   # fold
        assert view.order == [waiter.id, holder.id, g.id]
        h.close()
    finally:
        p.close()
        panel.unwatch_all()


# --- a real worker ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_worker_runs_a_sweep_a_keyed_series_without_overlap_and_cancels_a_group(home, tmp_path):
    nb = write_notebook(tmp_path / "train.ipynb", ["import nbjobs\nnbjobs.record('score', lr * depth)\n"
                                                   "nbjobs.record('tag', f'{lr}-{depth}')"],
                        parameters="lr = 1.0\ndepth = 1")
    w = start_worker(home, "--concurrency", "3", "--grace", "5")
    try:
        # 1. a 2 x 2 sweep: its results frame, indexed by the parameters
        g = nbjobs.sweep(nb, grid={"lr": [0.1, 0.01], "depth": [3, 5]}, name="train")
        # 2. three jobs sharing a key, at most one running: never two at once although 3 slots are free
        keyed = [nbjobs.submit("import time; time.sleep(0.4)", name=f"k{i}", concurrency_key="nightly",
                               max_running=1) for i in range(3)]
        frame = g.wait(240).results()
        assert frame.index.names == ["lr", "depth"]
        assert list(frame.index) == [(0.1, 3), (0.1, 5), (0.01, 3), (0.01, 5)]
        assert list(frame.columns) == ["score", "tag", "state", "duration", "id"]
        assert frame["score"].tolist() == pytest.approx([0.3, 0.5, 0.03, 0.05])
        assert frame.loc[(0.01, 5), "tag"] == "0.01-5" and set(frame["state"]) == {"succeeded"}
        assert (frame["duration"] > 0).all() and set(frame["id"]) == {j.id for j in g.jobs()}
        nbjobs.wait(keyed, timeout=240)
        assert {j.state for j in keyed} == {State.SUCCEEDED}
        spans = sorted((a["started_at"], a["finished_at"]) for j in keyed for a in j.attempts())
        assert len(spans) == 3 and all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:])), spans
        # 3. a group cancel: one running (max-parallel 1), two waiting with their reason; all end cancelled
        sleepy = nbjobs.sweep(code="import time; time.sleep(120)", grid={"i": [1, 2, 3]}, name="sleepy",
                              max_parallel=1)
        wait_for(lambda: sleepy.counts()["states"].get("running") == 1, 120, "one job of the group running")
        queued = [r for r in sleepy.records() if r.state == State.QUEUED]
        assert len(queued) == 2
        why = nbjobs.waiting_reasons(queued)
        assert set(why.values()) == {f"queued: 1 of max 1 running in group {sleepy.short_id} (--max-parallel)"}
        assert f"state:      queued - {why[queued[0].id]}" in job_detail(nbjobs.get(queued[0].id))   # nbjobs show
        nbjobs.cancel(sleepy.id)
        wait_for(lambda: sleepy.state.terminal, 60, "the group's jobs to end")
        assert [r.state for r in sleepy.records()] == [State.CANCELLED] * 3
        assert sleepy.progress == (3, 3)
    finally:
        stop_worker(w)
