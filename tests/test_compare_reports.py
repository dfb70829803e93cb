"""Comparing runs, reports, the slot's time inside scheduled notebooks and slow runs (issue 19,
second half), with real workers, kernels and papermill: two runs of one notebook compared, an HTML
report rendered on demand and by the worker, a backfill of past slots, and a slow run flagged while
it runs."""
from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path

import pytest

import nbjobs
from nbjobs import policy, schedule, text
from nbjobs.panel.model import row_view
from nbjobs.panel.static import cell_html, row_render, table_text
from support.cli import nbj_here
from support.loaders import insert_rows
from support.notebooks import write_notebook
from support.procs import wait_for
from support.shell import ok
from nbjobs.worker import SLOW_EVERY

DIVIDE = ["print('start')", "total = 10 // n", "import nbjobs\nprint('total is', total)\nnbjobs.record('total', total)"]


def shown_text(path) -> str:
    """The text an HTML page shows (styles, scripts and tags removed, entities decoded): the code of
    a cell is split into highlighted spans."""
    page = re.sub(r"<(style|script)\b.*?</\1>", "", Path(path).read_text(), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


# --- compare and report -------------------------------------------------------------------------------
@pytest.mark.slow
def test_compare_a_succeeded_and_a_failed_run_and_render_their_reports(home, worker, tmp_path, shell):
    nb = write_notebook(tmp_path / "divide.ipynb", DIVIDE, parameters="n = 1")
    good = nbjobs.run_notebook(nb, {"n": 2}, report="html")
    bad = nbjobs.run_notebook(nb, {"n": 0})
    nbjobs.wait([good, bad], timeout=120)
    assert (good.state.value, bad.state.value) == ("succeeded", "failed")

    c = nbjobs.compare(good.short_id, bad)
    d = c.to_dict()
    assert d["a"]["id"] == good.id and d["b"]["state"] == "failed"
    assert d["parameters"]["differ"] == {"n": {"a": 2, "b": 0, "in": ["a", "b"]}}
    assert d["outputs"]["total"] == {"a": 5, "b": None, "in": ["a"], "delta": None, "same": False}
    assert d["code"]["same"] and d["code"]["a"] == good.record.code_hash
    assert d["versions"]["papermill"]["same"] and d["versions"]["kernel"]["a"] == "python3"
    # cells by papermill's numbers: 0 parameters, 1 injected, 2 print, 3 divide, 4 record
    assert [x["cell"] for x in d["cells"]] == [0, 2, 3, 4]
    assert all(x["a_s"] is not None for x in d["cells"]) and d["cells"][-1]["b_s"] is None
    first = d["first_difference"]
    assert first["cell"] == 3 and first["source"] == "total = 10 // n"
    assert first["a"] == "" and first["b"].startswith("ZeroDivisionError")
    assert d["failed"]["a"] is None
    assert d["failed"]["b"]["cell"] == bad.record.error_cell == 3
    assert d["failed"]["b"]["source"] == "total = 10 // n" and d["failed"]["b"]["error_type"] == "ZeroDivisionError"
    shown = repr(c)
    assert "n     2  0" in shown and "first text difference: cell 3  total = 10 // n" in shown
    assert "b failed at cell 3 (total = 10 // n): ZeroDivisionError" in shown
    page = c._repr_html_()
    assert "nbjobs-compare-outputs" in page and "ZeroDivisionError" in page
    # the CLI's --json is the same dict; the magic returns the comparison itself
    r = nbj_here("compare", good.id, bad.short_id, "--json", home=home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["first_difference"] == first
    assert ok(shell, f"%job compare {good.short_id} {bad.short_id}").to_dict()["outputs"] == d["outputs"]

    # a report rendered on demand, without the code
    out = tmp_path / "divide.html"
    r = nbj_here("report", good.short_id, "--no-input", "-o", str(out), home=home)
    assert r.returncode == 0 and r.stdout.strip() == str(out), r.stderr
    page = shown_text(out)
    assert "total is 5" in page and "start" in page and "print(" not in page
    assert "10 // n" not in page and "nbjobs.record" not in page
    full = Path(nbjobs.report(bad.id))  # the default place: the attempt's folder; a failed run renders too
    assert full.name == "report.html" and "10 // n" in shown_text(full) and "ZeroDivisionError" in shown_text(full)
    # --report html: the worker rendered the succeeded run's own report, which show and the panel's row link to
    rec = wait_for(lambda: good.record.report_path and good.record, 60, "the worker's report")
    assert Path(rec.report_path).parent == Path(rec.output_path).parent and "10 // n" in shown_text(rec.report_path)
    assert f"report:     {rec.report_path}" in text.job_detail(good)
    assert 'class="nbjobs-report"' in row_render(row_view(rec), link=lambda p: (f"/lab/tree/x/{Path(p).name}", False,
                                                                                 False))["open"]
    assert nbjobs.get(bad.id).record.report_path == str(full)


def test_bad_compare_and_report_input_is_one_line(home, store, tmp_path):
    rec, _ = store.insert_job({"name": "queued", "kind": "cell", "source": "1"}, actor="test")
    r = nbj_here("report", rec.id, home=home)
    assert r.returncode == 2 and "has no output notebook to render" in r.stderr
    r = nbj_here("report", rec.id, "-o", str(tmp_path / "x.pdf"), home=home)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    r = nbj_here("compare", rec.id, "ffff", home=home)
    assert r.returncode == 2 and "no job matches 'ffff'" in r.stderr
    with pytest.raises(nbjobs.NbjobsError, match="report must be 'html'"):
        nbjobs.submit("1", report="pdf", start_worker=False)


# --- the slot's time inside the notebook ----------------------------------------------------------------------
def test_a_fire_passes_its_slot_when_the_notebook_has_a_parameters_cell(home, store, tmp_path):
    with_params = write_notebook(tmp_path / "p.ipynb", ["x = 1"], parameters="day = None")
    without = write_notebook(tmp_path / "q.ipynb", ["x = 1"])
    for nb, expected in ((with_params, {"day": "d", "nbjobs_scheduled_for": "2025-03-09T03:30:00-04:00"}),
                         (without, {"day": "d"})):
        s = {"name": "s", "tz": "America/New_York", "spec": {"kind": "notebook", "notebook": str(nb),
                                                             "parameters": {"day": "d"}}}
        assert schedule.job_spec(s, 1741505400.0)["parameters"] == expected
    cell = {"name": "s", "tz": "UTC", "spec": {"kind": "cell", "source": "1"}}
    assert schedule.job_spec(cell, 1741505400.0)["parameters"] == {"nbjobs_scheduled_for": "2025-03-09T07:30:00+00:00"}
    assert schedule.job_spec(cell, None, now=0.0)["parameters"] == {"nbjobs_scheduled_for": "1970-01-01T00:00:00+00:00"}


@pytest.mark.slow
def test_backfill_runs_each_past_slot_with_its_own_time_once(home, worker, tmp_path):
    nb = write_notebook(tmp_path / "nightly.ipynb", ["import nbjobs\nnbjobs.record('slot', nbjobs_scheduled_for)"],
                        parameters="nbjobs_scheduled_for = None")
    nbjobs.schedule_add("nightly", "0 6 * * *", nb, tz="Europe/Berlin", start_worker=False)
    done = nbjobs.schedule_backfill("nightly", "2025-03-01", "2025-03-03")
    slots = ["2025-03-01T06:00:00+01:00", "2025-03-02T06:00:00+01:00", "2025-03-03T06:00:00+01:00"]
    assert [b["scheduled_for"] for b in done] == slots and all(b["created"] for b in done)
    again = nbj_here("schedule", "backfill", "nightly", "--from", "2025-03-01", "--to", "2025-03-03T06:00", "--json",
                     home=home)
    assert again.returncode == 0, again.stderr
    assert [(b["job"], b["created"]) for b in json.loads(again.stdout)] == [(b["job"].id, False) for b in done]
    jobs = nbjobs.wait([b["job"] for b in done], timeout=120)
    assert [j.result()["slot"] for j in jobs] == slots
    assert [j.record.options["slot"] for j in jobs] == [b["slot"] for b in done]
    assert [e["action"] for e in nbjobs.schedule_show("nightly")["events"]][:3] == ["backfilled"] * 3
    r = nbj_here("schedule", "backfill", "nightly", "--from", "2025-03-01", "--to", "2999-01-01", home=home)
    assert r.returncode == 2 and "past slots only" in r.stderr
    r = nbj_here("schedule", "backfill", "nightly", "--from", "March", "--to", "2025-03-03", home=home)
    assert r.returncode == 2 and "is not a date or time" in r.stderr


# --- slow runs ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_job_running_past_its_history_is_flagged_slow_once(home, store, worker, tmp_path):
    now = time.time()
    insert_rows(store, [dict(name="sleepy", kind="cell", state="succeeded", attempts=1, submitted_at=now - 100 + i,
                             started_at=now - 100 + i, finished_at=now - 99.8 + i) for i in range(9)])
    code = "import pathlib, time\nwhile not pathlib.Path(go).exists():\n    time.sleep(0.05)"
    # the 10th run of history runs here: the worker looks at it (9 runs: no threshold yet) while it runs ...
    first = nbjobs.submit(code, name="sleepy", parameters={"go": str(tmp_path / "go1")})
    wait_for(lambda: first.record.started_at and time.time() - first.record.started_at > 3 * SLOW_EVERY, 60,
             "the worker's first looks at a run without enough history")
    (tmp_path / "go1").touch()
    assert first.wait(60).state.value == "succeeded"
    # ... and the next run is judged by all ten (a success here renews the worker's threshold at once)
    go = tmp_path / "go"
    job = nbjobs.submit(code, name="sleepy", parameters={"go": str(go)},
                        notify="http://127.0.0.1:9/hook")  # nothing listens: the outbox row is what counts
    rec = wait_for(lambda: job.record.slow and job.record, 60, "the slow flag")
    assert rec.state.value == "running"
    assert rec.slow_after == policy.slow_threshold(store.success_runtimes("sleepy")) >= 1.0
    assert text.state_text(rec).endswith("(slow)") and "slow:       running past " in text.job_detail(job)
    assert any("sleepy" in line and "running" in line and "(slow)" in line
               for line in nbj_here("ls", home=home).stdout.splitlines())
    assert "nbjobs-slow" in cell_html(row_view(rec), "state") and "running (slow)" in table_text([rec])
    assert nbjobs.sli().loc["sleepy", "slow_running"] == 1
    go.touch()
    assert job.wait(60).state.value == "succeeded"
    frame = nbjobs.sli()
    assert frame.loc["sleepy", "slow_runs"] == 1 and frame.loc["sleepy", "slow_running"] == 0
    events = [d["event"] for d in job.deliveries()]
    assert events.count("slow") == 1 and "succeeded" in events
    assert json.loads(store.deliveries(job.id)[0]["body"])["slow_after"] == rec.slow_after
    assert [a["slow_at"] is not None for a in job.attempts()] == [True]
