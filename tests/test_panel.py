"""The live panel (nbjobs/panel.py) without a browser: the view model (rows, formatting, filters,
diffing), the widget layer on real ipywidgets and real SQLite, the one updater thread, and - in a
real kernel - that a thread's widget updates are published on IOPub.  Browser tests: tests/browser/."""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import nbjobs
from nbjobs import config, panel, watch
from nbjobs.job import JobRecord, State
from nbjobs.panel import PanelModel, diff_rows, files, row_render, row_view, rows_view

from support import updater
from support.loaders import insert_rows
from support.procs import wait_for

ID_A, ID_B, ID_C = "a" * 32, "b" * 32, "c" * 32


def rec(id=ID_A, name="job", state=State.QUEUED, submitted_at=100.0, **kw) -> JobRecord:
    return JobRecord(id=id, name=name, kind=kw.pop("kind", "cell"), state=state, submitted_at=submitted_at, **kw)




updater_threads = updater.threads


@pytest.fixture(autouse=True)
def _no_views_left():
    yield
    panel.unwatch_all()
    wait_for(lambda: not updater.alive(), 5, "the updater thread to stop")
    files._server_info = False  # forget any Jupyter server a test pretended to run under


@pytest.fixture
def manual(monkeypatch):
    """Views are not handed to the updater thread: the test drives ticks itself (deterministic)."""
    monkeypatch.setattr(watch, "activate", lambda view: None)


def tick(home: Path, h: watch.Home | None = None) -> tuple[watch.Tick, watch.Home]:
    h = h or watch.Home(home)
    return h.poll(time.time()), h


# --- view model: one row ---------------------------------------------------------------------------------
def test_row_view_of_a_running_job_ticks_and_shows_progress_and_attempts():
    r = rec(state=State.RUNNING, started_at=990.0, began_at=1000.0, progress_done=2, progress_total=5, retries=2,
            attempts=2)
    v = row_view(r, now=1012.4, last_line="epoch 3/10")
    assert (v.short_id, v.progress, v.attempt, v.elapsed, v.ticking) == ("aaaaaaaa", "2/5", "2 of 3", "12s", True)
    assert v.note == "epoch 3/10" and not v.note_is_error
    assert row_view(r, now=1200.0).elapsed == "3m20s"  # the clock moves, the record did not
    assert v.actions == {"cancel": True, "retry": False, "logs": True, "pull": False}
    cells = row_render(v)
    assert 'data-done="2" data-total="5"' in cells["progress"] and "width:40%;background:#0969da" in cells["progress"]
    starting = row_view(rec(state=State.RUNNING, started_at=990.0), now=1012.4, wait="starting: a kernel is getting ready")
    assert (starting.elapsed, starting.note) == ("-", "starting: a kernel is getting ready")  # not the job's time
    assert 'data-state="running"' in cells["state"] and "epoch 3/10" in cells["note"]


def test_row_view_of_ended_queued_and_cancelling_jobs():
    ok = row_view(rec(state=State.SUCCEEDED, started_at=5.0, began_at=10.0, finished_at=75.0, attempts=1), now=9999.0)
    assert (ok.elapsed, ok.ticking, ok.actions["pull"], ok.actions["cancel"]) == ("1m05s", False, True, False)
    failed = row_view(rec(state=State.FAILED, started_at=1.0, finished_at=2.0, attempts=3, retries=2,
                          error_type="ValueError", error_message="bad rate\nmore lines"), last_line="ignored")
    assert failed.note == "ValueError: bad rate" and failed.note_is_error and failed.actions["retry"]
    assert "color:#cf222e" in row_render(failed)["note"]
    queued = row_view(rec(reason="retried"))
    assert (queued.started, queued.elapsed, queued.progress, queued.note) == ("-", "-", "-", "retried")
    behind = row_view(rec(reason="retried"), wait="queued behind 2 running (concurrency 2)")
    assert behind.note == "queued behind 2 running (concurrency 2)"
    done = row_view(rec(state=State.SUCCEEDED, reason="queued again", started_at=1.0), wait="starting")
    assert done.note == ""  # an ended job says nothing of a wait or a transition that is over
    assert queued.actions == {"cancel": True, "retry": False, "logs": False, "pull": False}
    stopping = row_view(rec(state=State.RUNNING, started_at=1.0, cancel_requested=1))
    assert stopping.note == "cancel requested" and not stopping.actions["cancel"]


def test_cells_escape_text_and_keep_the_full_id_selectable():
    v = row_view(rec(name="<script>x</script>", state=State.FAILED, error_type="E", error_message="<b>"))
    cells = row_render(v)
    assert "<script>" not in cells["name"] and "&lt;script&gt;" in cells["name"]
    assert "<b>" not in cells["note"]
    assert f'title="{ID_A}' in cells["id"] and "user-select:all" in cells["id"] and ">aaaaaaaa<" in cells["id"]
    assert set(panel.COLUMNS) <= set(cells) and {"cancel", "retry", "logs", "pull", "open", "copy"} <= set(cells)


def test_open_cell_links_under_the_root_and_offers_a_copy_outside_it(tmp_path):
    out = tmp_path / "root" / "runs" / "x" / "output.ipynb"
    assert panel.lab_href(out, tmp_path / "root", "/") == "/lab/tree/runs/x/output.ipynb"
    assert panel.lab_href(out, tmp_path / "root", "/user/ann/") == "/user/ann/lab/tree/runs/x/output.ipynb"
    assert panel.lab_href(out, tmp_path / "elsewhere") is None
    assert panel.lab_href(tmp_path / "root" / ".nbjobs" / "o.ipynb", tmp_path / "root") is None  # hidden
    v = row_view(rec(state=State.SUCCEEDED, output_path=str(out)))
    linked = row_render(v, link=lambda p: ("/lab/tree/runs/x/output.ipynb", False, False))
    assert 'href="/lab/tree/runs/x/output.ipynb"' in linked["open"] and not linked["copy"]
    outside = row_render(v, link=lambda p: (None, False, True))
    assert outside["open"] == "" and outside["copy"]
    no_server = row_render(v, link=lambda p: (None, False, False))
    assert str(out) in no_server["open"] and not no_server["copy"]


def test_diff_rows_reports_only_what_changed():
    a = row_render(row_view(rec(ID_A, "a", submitted_at=2.0), now=50.0))
    b = row_render(row_view(rec(ID_B, "b", submitted_at=1.0), now=50.0))
    assert not diff_rows({ID_A: a, ID_B: b}, [ID_A, ID_B], {ID_A: dict(a), ID_B: dict(b)}, [ID_A, ID_B])
    running = row_render(row_view(rec(ID_A, "a", State.RUNNING, 2.0, started_at=40.0, began_at=41.0,
                                      progress_total=3, attempts=1), now=50.0))
    d = diff_rows({ID_A: a, ID_B: b}, [ID_A, ID_B], {ID_A: running, ID_B: b}, [ID_A, ID_B])
    assert d.order is None and not d.added and not d.removed and list(d.changed) == [ID_A]
    assert set(d.changed[ID_A]) == {"state", "progress", "attempt", "started", "elapsed", "logs"}
    d = diff_rows({ID_A: a}, [ID_A], {ID_B: b, ID_A: a}, [ID_B, ID_A])
    assert (d.added, d.removed, d.changed, d.order) == ([ID_B], [], {}, [ID_B, ID_A])


# --- view model: the list ------------------------------------------------------------------------------------
def test_filters_match_like_the_store():
    m = PanelModel(state="failed,timed_out", name="train*", tag="gpu")
    assert m.matches(rec(name="train-1", state=State.FAILED, tags=["gpu", "x"]))
    assert not m.matches(rec(name="Train-1", state=State.FAILED, tags=["gpu"]))  # GLOB is case-sensitive
    assert not m.matches(rec(name="train-1", state=State.SUCCEEDED, tags=["gpu"]))
    assert not m.matches(rec(name="train-1", state=State.TIMED_OUT, tags=[]))
    exact = PanelModel(name="train[1]")  # a glob; "train" alone is an exact name
    assert exact.matches(rec(name="train1")) and PanelModel(name="train").matches(rec(name="train"))
    assert not PanelModel(name="train").matches(rec(name="train1"))
    assert PanelModel(state="active").states == ("waiting", "queued", "running", "retrying")
    with pytest.raises(nbjobs.NbjobsError, match="unknown state 'done'"):
        PanelModel(state="done")
    with pytest.raises(nbjobs.NbjobsError, match="limit must be"):
        PanelModel(limit=0)


def test_apply_keeps_the_newest_first_window_and_asks_for_a_reread_when_a_row_leaves():
    m = PanelModel(state="active", limit=2)
    m.reset([rec(ID_A, submitted_at=3.0), rec(ID_B, submitted_at=2.0), rec(ID_C, submitted_at=1.0)])
    assert m.ids == [ID_A, ID_B]
    assert m.apply([rec(ID_C, state=State.RUNNING, submitted_at=1.0)]) is False and m.ids == [ID_A, ID_B]
    newer = rec("d" * 32, submitted_at=9.0)
    assert m.apply([newer]) is False and m.ids == ["d" * 32, ID_A]  # on top; the oldest falls off
    assert m.apply([rec(ID_A, state=State.RUNNING, submitted_at=3.0)]) is False
    assert m.records[1].state == State.RUNNING  # updated in place
    assert m.apply([rec(ID_A, state=State.SUCCEEDED, submitted_at=3.0)]) is True  # left: re-read
    assert m.ids == ["d" * 32]
    roomy = PanelModel(limit=5)
    roomy.reset([rec(ID_A, submitted_at=3.0)])
    assert roomy.apply([rec(ID_C, submitted_at=1.0)]) is False and roomy.ids == [ID_A, ID_C]  # not full


def test_query_merges_per_state_reads_and_matches_a_full_sort(home, store):
    now = time.time()
    states = ["succeeded", "failed", "timed_out", "cancelled", "queued"]
    insert_rows(store, [{"name": f"j{i % 7}", "kind": "cell", "state": states[i % 5], "submitted_at": now - i,
                        "tags": ["t"] if i % 3 == 0 else []} for i in range(400)])
    everything = store.list_jobs(limit=None)
    for state, name, tag in [("failed,timed_out", None, None), ("active", None, "t"), (None, "j3", None),
                             ("succeeded,cancelled", "j[12]", "t"), (None, None, None)]:
        m = PanelModel(state=state, name=name, tag=tag, limit=25)
        got = m.query(lambda **kw: nbjobs.records(home=home, **kw))
        want = sorted([r for r in everything if m.matches(r)], key=lambda r: (-r.submitted_at, r.id))[:25]
        assert [r.id for r in got] == [r.id for r in want], (state, name, tag)


def test_header_shows_counts_queue_workers_and_dead_letters(home, store):
    now = time.time()
    insert_rows(store, [{"state": "failed", "finished_at": now}, {"state": "queued"}, {"state": "queued"},
                       {"state": "succeeded", "finished_at": now}])
    summary = nbjobs.summary(home=home)
    h = panel.header_html(summary)
    assert 'data-k="queue_depth" style="color:inherit">2<' in h
    assert 'data-k="dead_letters" style="color:#cf222e">1<' in h and 'data-k="workers" style="color:inherit">0<' in h
    assert 'data-count="succeeded">1<' in h and 'data-count="running"' not in h
    assert panel.header_text(summary).startswith("queue 2, running 0, workers alive 0, dead letters 1 | ")


def test_log_tail_reads_only_after_a_change_and_skips_kernel_log_lines(tmp_path):
    log = tmp_path / "log.txt"
    tail = panel.LogTail()
    assert tail.last_line(log) == ""
    log.write_text("[IPKernelApp] WARNING | Kernel is running over TCP\nstep 1\n")
    assert tail.last_line(log) == "step 1"
    with open(log, "a") as f:
        f.write("\x1b[31mstep 2\x1b[0m\n[IPKernelApp] WARNING | late\n\n")
    assert tail.last_line(log) == "step 2"
    assert tail.lines(log)[-1] == "[IPKernelApp] WARNING | late"  # the logs area shows everything
    big = tmp_path / "big.txt"
    big.write_text("".join(f"line {i}\n" for i in range(20000)))
    assert panel.read_tail(big, lines=3) == ["line 19997", "line 19998", "line 19999"]


def test_static_forms_share_the_row_cells(home, store):
    rec_, _ = store.insert_job({"name": "viz", "kind": "cell", "source": "1"}, actor="test")
    job = nbjobs.get(rec_.id, home=home)
    html = job._repr_html_()
    assert f'data-job-id="{job.id}"' in html and 'data-state="queued"' in html and ">viz<" in html
    listed = panel.JobList([rec_])
    assert repr(listed).splitlines()[0].split() == list(panel.TEXT_HEAD)
    assert "viz" in repr(listed) and f"data-job-id='{job.id}'" in listed._repr_html_()
    p = nbjobs.panel(home=home)
    assert "queue 1," in repr(p) and "viz" in repr(p)
    bundle = p._repr_mimebundle_()
    assert panel.WIDGET_MIME not in bundle  # no kernel here
    assert "nbjobs-header" in bundle["text/html"] and "nbjobs-jobs" in bundle["text/html"]


def test_panel_is_exported_lazily_and_callable():
    probe = textwrap.dedent("""\
        import sys, nbjobs
        assert "nbjobs.panel" not in sys.modules and "ipywidgets" not in sys.modules
        p = nbjobs.panel(limit=3)
        from nbjobs import panel as module
        assert callable(module) and module.Panel is type(p) and p.model.limit == 3
        assert "ipywidgets" not in sys.modules  # only a live view imports it
        print("ok")
        """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, NBJOBS_HOME=str(Path(os.environ.get("TMPDIR", "/tmp")) /
                                                              f"nbjobs-probe-{os.getpid()}")))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# --- the change check ---------------------------------------------------------------------------------
def test_change_check_reads_only_rows_that_changed(home, store):
    a, _ = store.insert_job({"name": "a", "kind": "cell", "source": "1"}, actor="t")
    b, _ = store.insert_job({"name": "b", "kind": "cell", "source": "1"}, actor="t")
    t, h = tick(home)
    assert set(t.changed) == {a.id, b.id}  # new within the slack window: reported once
    t, h = tick(home, h)
    assert t.changed == {} and not t.flood  # nothing committed: data_version alone answered
    store.register_worker("w1", concurrency=1)
    store.heartbeat("w1")
    t, h = tick(home, h)
    assert t.changed == {}  # a heartbeat commits, but no job row changed
    claimed, n = store.claim("w1")
    store.set_progress(claimed.id, "w1", 1, 3)
    t, h = tick(home, h)
    assert list(t.changed) == [claimed.id] and t.changed[claimed.id].progress_done == 1
    assert h.summary_stale  # queued -> running: the header's counts must be re-read
    h.summary_stale = False
    store.set_progress(claimed.id, "w1", 2, 3)
    t, h = tick(home, h)
    assert t.changed[claimed.id].progress_done == 2 and not h.summary_stale  # progress alone: counts stand
    # a write stamped before the newest change seen but committed after it (within SLACK) is caught
    insert_rows(store, [{"name": "late", "kind": "cell", "updated_at": h.watermark - 2.0,
                        "submitted_at": h.watermark - 2.0}])
    t, h = tick(home, h)
    assert [r.name for r in t.changed.values()] == ["late"]


def test_a_flood_of_changes_makes_views_reread(home, store, monkeypatch):
    t, h = tick(home)
    monkeypatch.setattr(watch, "MAX_FRESH", 5)
    insert_rows(store, [{"name": f"n{i}", "kind": "cell"} for i in range(6)])
    t, h = tick(home, h)
    assert t.flood and t.changed == {}


# --- the widget layer (real ipywidgets, no front end; ticks driven by the test) -------------------------
def _jobs(store, n: int, **kw) -> list[JobRecord]:
    out = []
    for i in range(n):
        r, _ = store.insert_job({"name": f"job{i}", "kind": "cell", "source": "1", **kw}, actor="t")
        out.append(r)
    return out


def test_panel_widget_rows_newest_first_and_only_changed_widgets_are_touched(home, store, manual):
    jobs = _jobs(store, 3)
    p = nbjobs.panel(home=home)
    root = p.widget()
    view = p.view
    assert view.order == [j.id for j in reversed(jobs)]
    grid = view.table.children
    assert len(grid) == len(panel.COLUMNS) + 1 + 3 * (len(panel.COLUMNS) + 1)  # headings + 3 rows
    assert "nbjobs-panel" in root._dom_classes and 'data-k="queue_depth" style="color:inherit">3<' in view.header.value

    sets: list[tuple[str, str]] = []
    for jid, row in view.rows.items():
        for col, w in row.cells.items():
            w.observe(lambda ch, jid=jid, col=col: sets.append((jid[:4], col)), "value")
        for name, b in row.buttons.items():
            b.observe(lambda ch, jid=jid, name=name: sets.append((jid[:4], name)), "disabled")
    t, h = tick(home)
    w0 = view.writes
    view.refresh(t)
    assert sets == [] and view.writes == w0  # nothing changed, nothing assigned, nothing sent
    store.register_worker("w", concurrency=1)
    claimed, number = store.claim("w")
    t, h = tick(home, h)
    view.refresh(t)
    assert "starting: a kernel is getting ready" in view.rows[claimed.id].cells["note"].value
    assert view.rows[claimed.id].cells["elapsed"].value == "-"  # the start phase is not the job's time
    others = [jid for jid in view.rows if jid != claimed.id]

    def others_say_why() -> bool:  # the home's counts are re-read at most once a second (watch.SUMMARY_MIN)
        nonlocal h
        t, h = tick(home, h)
        view.refresh(t)
        return all("queued behind 1 running (concurrency 1)" in view.rows[j].cells["note"].value for j in others)
    wait_for(others_say_why, 10, "the queued rows to say they wait behind the running one")
    sets.clear()
    store.set_began(claimed.id, number, "w", time.time())
    store.set_progress(claimed.id, "w", 1, 4)
    t, h = tick(home, h)
    w0 = view.writes
    view.refresh(t)
    touched = {col for jid, col in sets}
    assert view.writes - w0 == len(sets)  # traits assigned == traits that changed
    assert {jid for jid, _ in sets} == {claimed.id[:4]}  # only the row that changed
    assert {"progress", "elapsed", "note"} <= touched and "name" not in touched
    assert 'data-state="running"' in view.rows[claimed.id].cells["state"].value
    assert "1/4" in view.rows[claimed.id].cells["progress"].value
    sets.clear()
    time.sleep(1.05)
    t, h = tick(home, h)
    view.refresh(t)
    assert set(sets) <= {(claimed.id[:4], "elapsed")}  # only the clock of the running row moves
    widgets = [w for row in view.rows.values() for w in row.widgets()]
    p.close()
    assert root.comm is None and view.table.comm is None and all(w.comm is None for w in widgets)


def test_new_job_from_another_process_appears_and_filters_reread(home, store, manual):
    _jobs(store, 2)
    p = nbjobs.panel(home=home, limit=2)
    p.widget()
    view = p.view
    t, h = tick(home)
    out = subprocess.run([sys.executable, "-m", "nbjobs", "run", "-c", "x = 1", "--name", "cli-job", "--no-worker"],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ, NBJOBS_HOME=str(home)))
    assert out.returncode == 0, out.stderr
    t, h = tick(home, h)
    view.refresh(t)
    new_id = nbjobs.get(out.stdout.split()[0], home=home).id
    assert view.order[0] == new_id and len(view.order) == 2  # on top; the oldest fell off the limit
    assert ">cli-job<" in view.rows[new_id].cells["name"].value
    nbjobs.cancel(new_id, home=home)
    view.f_state.value = "cancelled"  # a filter change re-reads at once
    assert view.order == [new_id] and view.model.states == ("cancelled",)
    view.f_state.value = "all"
    view.f_name.value = "job*"
    assert len(view.order) == 2 and all(">job" in view.rows[i].cells["name"].value for i in view.order)


def test_row_actions_cancel_retry_logs_pull_and_copy(home, store, manual, tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    queued, to_pull = _jobs(store, 2)
    store.register_worker("w", concurrency=2)
    claimed, n = store.claim("w")  # the oldest: `queued` (job0)
    assert claimed.id == queued.id
    store.set_began(claimed.id, n, "w", time.time())  # what the worker records when the job's first cell starts
    out_dir = config.run_dir(claimed.id, home) / "1"
    out_dir.mkdir(parents=True)
    (out_dir / "log.txt").write_text("hello from the job\nsecond line\n")
    store.set_progress(claimed.id, "w", 1, 2)
    p = nbjobs.panel(home=home)
    p.widget()
    view = p.view
    row = view.rows[queued.id]
    assert "second line" in row.cells["note"].value  # the log's last line
    row.buttons["logs"].click()
    assert row.area is not None and row.area.layout.display == ""
    assert "hello from the job\nsecond line" in row.area.value and row.area in view.table.children
    row.buttons["logs"].click()
    assert row.area.layout.display == "none"

    row.buttons["cancel"].click()  # running: the worker would stop the kernel
    assert store.get(queued.id).cancel_requested and row.buttons["cancel"].disabled
    assert "cancel requested" in row.area.value
    store.finish_attempt(queued.id, n, "w", "failed", error={"type": "KeyboardInterrupt", "message": "stopped"})
    assert store.get(queued.id).state == State.CANCELLED
    t, h = tick(home)
    view.refresh(t)
    assert 'data-state="cancelled"' in row.cells["state"].value and not row.buttons["retry"].disabled
    row.buttons["retry"].click()
    assert store.get(queued.id).state == State.QUEUED and "queued again" in row.area.value

    # pull: outputs recorded by a (store-level) finished attempt go into the IPython namespace
    claimed2, n2 = store.claim("w")
    assert claimed2.id == queued.id  # retried jobs go back to the front by submit time
    store.finish_attempt(queued.id, n2, "w", "succeeded",
                         outputs=[{"name": "answer", "kind": "json", "value": "42", "type_name": "int"},
                                  {"name": "not a name", "kind": "json", "value": "1", "type_name": "int"}],
                         output_path=str(tmp_path / "elsewhere" / "output.ipynb"))
    InteractiveShell.clear_instance()
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=cfg)
    try:
        t, h = tick(home, h)
        view.refresh(t)
        assert not row.buttons["pull"].disabled
        row.buttons["pull"].click()
        assert shell.user_ns["answer"] == 42 and "not a name" not in shell.user_ns
        assert "pulled answer (int)" in row.area.value and "skipped &#x27;not a name&#x27;" in row.area.value
    finally:
        InteractiveShell.clear_instance()

    # the output notebook is outside the (pretend) Jupyter root: copy it under the root, then link it
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    import nbformat
    from nbjobs.runner import build_cell_notebook
    nbformat.write(build_cell_notebook("x = y + 1", inputs_dir=str(tmp_path), outputs=["x"]),
                   tmp_path / "elsewhere" / "output.ipynb")
    report = tmp_path / "elsewhere" / "report.html"
    report.write_text("<html>the report</html>")
    store.set_report(queued.id, n2, str(report))  # its HTML report goes along with the copy
    monkeypatch.chdir(root)
    files._server_info = {"root_dir": str(root), "base_url": "/"}
    view._cache.clear()
    view.render()
    assert row.copy is not None and not row.copy.disabled and row.open.value == ""
    row.copy.click()
    copies = list((root / "nbjobs-outputs").glob("*.ipynb"))
    assert len(copies) == 1
    assert [c.source for c in nbformat.read(copies[0], 4).cells] == ["x = y + 1"]  # the user's cell, no wrappers
    assert copies[0].with_suffix(".html").read_text() == "<html>the report</html>"
    assert f'href="/lab/tree/nbjobs-outputs/{copies[0].name}"' in row.open.value and ">notebook<" in row.open.value
    assert row.copy is None and row.actions.children[-1] is row.open  # the link took the button's place
    p.close()


def test_receipt_is_the_same_row_component(home, store, manual):
    (r,) = _jobs(store, 1)
    receipt = panel.Receipt(nbjobs.get(r.id, home=home))
    root = receipt.widget()
    view = receipt.view
    assert "nbjobs-receipt" in root._dom_classes and isinstance(view.rows[r.id], panel.RowWidgets)
    assert [w for w in view.line.children[:-1]] == [view.rows[r.id].cells[c] for c in panel.RECEIPT_COLUMNS]
    nbjobs.cancel(r.id, home=home)
    t, h = tick(home)
    view.refresh(t)
    assert 'data-state="cancelled"' in view.rows[r.id].cells["state"].value
    view.rows[r.id].buttons["retry"].click()
    assert nbjobs.get(r.id, home=home).state == State.QUEUED and view.rows[r.id].area in root.children


# --- the updater thread -----------------------------------------------------------------------------------
def test_one_thread_serves_every_view_and_stops_when_they_close(home, store):
    jobs = _jobs(store, 2)
    with updater.count() as stats:
        p = nbjobs.panel(home=home)
        p.widget()
        receipts = [panel.Receipt(nbjobs.get(j.id, home=home)) for j in jobs]
        for rc in receipts:
            rc.widget()
    assert len(updater_threads()) == 1 and stats["threads"] == 1
    assert sorted(updater.watching()) == sorted([j.id for j in jobs] * 2)
    new = nbjobs.submit("x = 1", name="later", home=home, start_worker=False)  # another connection
    wait_for(lambda: new.id in p.view.rows, 3, "the thread to show the new job")
    nbjobs.cancel(jobs[0].id, home=home)
    wait_for(lambda: 'data-state="cancelled"' in receipts[0].view.rows[jobs[0].id].cells["state"].value, 3,
             "the receipt to follow")
    receipts[0].widget().close()  # widget.close(): that view leaves at the next tick
    wait_for(lambda: sorted(updater.watching()) == sorted([jobs[1].id, new.id, *[j.id for j in jobs]]), 3,
             "the closed receipt to leave")
    p.view.close_button.click()  # the panel's own close button
    receipts[1].close()
    # the thread lets go of its slot (`alive()` turns False) before it closes its homes and exits
    wait_for(lambda: not updater.alive() and updater_threads() == [], 3, "the thread to stop and exit")


def test_a_view_whose_front_end_views_are_gone_goes_dormant_and_catches_up_when_shown(home, store):
    (j,) = _jobs(store, 1)
    p = nbjobs.panel(home=home)
    root = p.widget()
    assert root._view_count == 0  # the front end is asked to count its views
    root._view_count = 1  # what the front end sends when it shows the panel
    wait_for(lambda: updater.alive(), 2, "the thread")
    root._view_count = 0  # the output was cleared / the notebook closed
    wait_for(lambda: not updater.alive(), 3, "the thread to stop with nothing shown")
    nbjobs.cancel(j.id, home=home)  # changes while nobody looks
    root._view_count = 1  # shown again: the view re-reads and the thread restarts
    wait_for(lambda: 'data-state="cancelled"' in p.view.rows[j.id].cells["state"].value, 3, "catch up")
    assert updater.alive()
    p.close()


def test_a_view_never_rendered_stays_live_until_its_jobs_end_plus_grace(home, store, monkeypatch):
    (j,) = _jobs(store, 1)
    monkeypatch.setattr(rows_view, "DISPLAY_GRACE", 0.3)
    receipt = panel.Receipt(nbjobs.get(j.id, home=home))
    receipt.widget()
    time.sleep(1.0)
    assert updater.alive()  # its job is queued: keep following it (papermill, a console)
    nbjobs.cancel(j.id, home=home)
    wait_for(lambda: not updater.alive(), 3, "the thread to stop after the grace")
    assert 'data-state="cancelled"' in receipt.view.rows[j.id].cells["state"].value


def test_watch_callback_runs_on_the_updater_thread_until_the_job_ends(home, store):
    (j,) = _jobs(store, 1)
    seen: list[tuple[str, str]] = []
    stop = panel.watch(nbjobs.get(j.id, home=home),
                       lambda r: seen.append((threading.current_thread().name, r.state.value)))
    wait_for(lambda: seen, 2, "a first call")
    nbjobs.cancel(j.id, home=home)
    wait_for(lambda: not updater.alive(), 3, "the watch to end with the job")
    assert seen[-1] == (watch.THREAD_NAME, "cancelled")
    stop()


# --- a real kernel: updates made by a thread reach IOPub --------------------------------------------
GUARD = """
import threading, time, ipywidgets as w
from IPython.display import display
s = w.HTML("running"); display(s)
def _w():
    time.sleep(0.5)
    s.value = "succeeded"
threading.Thread(target=_w, daemon=True).start()
"""


def _kernel(env: dict | None = None, cwd: str | None = None):
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=dict(os.environ, **(env or {})), cwd=cwd)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


@pytest.mark.slow
def test_thread_widget_update_is_published_after_the_cell_finished():
    """The recipe's 1-second guard: catches ipykernel 7.0.0/7.0.1 (thread comm messages lost)."""
    km, kc = _kernel()
    try:
        msg_id = kc.execute(GUARD)
        idle_at = got = None
        errors = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and got is None:
            try:
                m = kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            t, c = m["msg_type"], m["content"]
            if t == "status" and c["execution_state"] == "idle" and m["parent_header"].get("msg_id") == msg_id:
                idle_at = time.monotonic()
            elif t == "stream" and c["name"] == "stderr":
                errors.append(c["text"])
            elif t == "comm_msg" and c["data"].get("method") == "update" \
                    and c["data"].get("state", {}).get("value") == "succeeded":
                got = time.monotonic()
        assert got is not None, "thread update never published:\n" + "".join(errors)[-2000:]
        assert idle_at is not None and got > idle_at, "the update should arrive after the cell finished"
        assert got - idle_at < 1.0 + 0.5
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_panel_in_a_real_kernel_publishes_new_rows_and_state_changes(home, tmp_path):
    km, kc = _kernel({"NBJOBS_HOME": str(home)}, str(tmp_path))
    try:
        msgs: list[dict] = []
        reply = kc.execute_interactive("import nbjobs\nnbjobs.panel()", timeout=60, output_hook=msgs.append)
        assert reply["content"]["status"] == "ok"
        result = [m for m in msgs if m["msg_type"] == "execute_result"][0]["content"]["data"]
        assert panel.WIDGET_MIME in result and "nbjobs-header" in result["text/html"]
        job = nbjobs.submit("import time; time.sleep(60)", name="from-test", home=home, start_worker=False)
        cells: dict[str, str] = {}  # comm_id -> column, for the new row's cells
        new_row = cancelled = False
        deadline = time.monotonic() + 20
        cancel_sent = False
        while time.monotonic() < deadline and not cancelled:
            try:
                m = kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            c = m["content"]
            if m["msg_type"] == "comm_open":
                classes = c["data"]["state"].get("_dom_classes", [])
                if f"nbjobs-row-{job.short_id}" in classes:
                    col = [k for k in classes if k.startswith("nbjobs-col-")]
                    if col:
                        cells[c["comm_id"]] = col[0][len("nbjobs-col-"):]
                        new_row = new_row or col[0] == "nbjobs-col-name" and \
                            ">from-test<" in c["data"]["state"]["value"]
            elif m["msg_type"] == "comm_msg" and cells.get(c["comm_id"]) == "state":
                cancelled = 'data-state="cancelled"' in c["data"].get("state", {}).get("value", "")
            if new_row and not cancel_sent:
                nbjobs.cancel(job.id, home=home)
                cancel_sent = True
        assert new_row, "the new job's row was never published"
        assert cancelled, "the row's state never became cancelled"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_state_filter_names_active_as_active(home, store, manual):
    p = nbjobs.panel(home=home, state="active")
    p.widget()
    assert p.view.f_state.value == "active" and ("active", "active") in p.view.f_state.options
    p.close()
