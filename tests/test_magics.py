"""The notebook face (nbjobs/magics.py, nbjobs/panel.py): %%job and %job in a real IPython shell,
with real SQLite, real worker processes and real kernels; one test through a real ipykernel."""
from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError

import nbjobs
import nbjobs.store
from support.notebooks import write_notebook
from support.procs import wait_for
from support.shell import new_shell, ok, run
from nbjobs import panel
from nbjobs.store import Store
from support import updater

JOB_WAIT = 60  # generous bound for one small papermill job on a loaded machine


def job_rows(home: Path) -> int:
    if not (home / "nbjobs.db").exists():
        return 0
    store = Store(home / "nbjobs.db")
    try:
        return sum(store.counts().values())
    finally:
        store.close()




# --- loading and help ------------------------------------------------------------------------------
def test_load_ext_is_light_and_registers_both_magics(tmp_path):
    probe = textwrap.dedent("""\
        import json, sys
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
        c = Config(); c.HistoryManager.hist_file = ":memory:"
        ip = InteractiveShell.instance(config=c)
        before = set(sys.modules)
        ip.run_line_magic("load_ext", "nbjobs")
        print(json.dumps({"new": sorted(set(sys.modules) - before),
                          "line": ip.find_line_magic("job") is not None,
                          "cell": ip.find_cell_magic("job") is not None}))
        ip.run_line_magic("unload_ext", "nbjobs")
        print(json.dumps([ip.find_line_magic("job") is None, ip.find_cell_magic("job") is None]))
        """)
    env = dict(os.environ, NBJOBS_HOME=str(tmp_path / "home"), IPYTHONDIR=str(tmp_path / "ipython"))
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded, unloaded = out.stdout.splitlines()
    info = json.loads(loaded)
    assert info["line"] and info["cell"]
    heavy = {"papermill", "pandas", "numpy", "ipywidgets", "sqlite_utils", "jupyter_client", "nbformat",
             "cloudpickle", "nbjobs.api", "nbjobs.store"}
    assert heavy.isdisjoint(info["new"]), sorted(heavy & set(info["new"]))
    assert json.loads(unloaded) == [True, True]
    assert not (tmp_path / "home").exists()  # loading does not even create the home


def test_help_for_both_magics_has_options_and_examples(shell, capsys):
    cell_doc = shell.find_cell_magic("job").__doc__
    for text in ("%%job [--in A,B] [--out X,Y]", "--retries N", "--timeout S", "--key K", "--priority P",
                 "--tag T", "--kernel NAME", "--wait", "--quiet", "-p <NAME VALUE>", "examples:",
                 "%%job --name train --in df,params --out model,score"):
        assert text in cell_doc, text
    line_doc = shell.find_line_magic("job").__doc__
    for verb in ("run", "ls", "status", "logs", "result", "pull", "wait", "cancel", "retry", "help"):
        assert f"%job {verb} " in line_doc, verb
    assert "e.g. %job pull 8f3a2c model score" in line_doc
    assert "usage: %job run " in line_doc  # the verbs' own options are part of %job?

    shell.run_line_magic("pinfo", "%%job")  # what `%%job?` shows
    assert "--in <A,B>" in capsys.readouterr().out
    ok(shell, "%job help")
    out = capsys.readouterr().out
    assert all(f"%job {v}" in out for v in ("run", "ls", "status", "logs", "result", "pull", "wait", "cancel",
                                            "retry", "help"))
    ok(shell, "%job help pull")
    out = capsys.readouterr().out
    assert "usage: %job pull id [names ...]" in out and "example:\n  %job pull 8f3a2c model score" in out


# --- bad input: one line, nothing submitted ------------------------------------------------------------
BAD_CELLS = [
    ("%%job --no-worker --bogus 1\nx = 1", "unrecognized arguments: --bogus 1"),
    ("%%job --no-worker --in nope\nx = 1", "--in names 'nope', but no variable 'nope' exists"),
    ("%%job --no-worker --in a,lock\nx = 1",
     "--in 'lock' (_thread.lock) cannot be pickled: cannot pickle '_thread.lock' object"),
    ("%%job --no-worker --in gen\nx = 1", "--in 'gen' (builtins.generator) cannot be pickled"),
    ("%%job --no-worker --out 1x\nx = 1", "--out name '1x' is not a valid Python variable name"),
    ("%%job --no-worker --retries many\nx = 1", "argument --retries: invalid int value: 'many'"),
    ("%%job --no-worker --kernel no-such-kernel\nx = 1", "kernel 'no-such-kernel' is not installed"),
    ("%%job --no-worker -p 2x 1\nx = 1", "parameter name '2x' is not a valid Python identifier"),
    ("%job status 0123abcd", "no job matches '0123abcd'"),
    ("%job logs 0123abcd", "no job matches '0123abcd'"),
    ("%job result 0123abcd", "no job matches '0123abcd'"),
    ("%job pull 0123abcd", "no job matches '0123abcd'"),
    ("%job wait 0123abcd", "no job matches '0123abcd'"),
    ("%job cancel 0123abcd", "no job matches '0123abcd'"),
    ("%job retry 0123abcd", "no job matches '0123abcd'"),
    ("%job status not-an-id", "'not-an-id' is not a job ID"),
    ("%job frobnicate", "unknown verb 'frobnicate' for %job"),
    ("%job wait", "%job wait: the following arguments are required: id"),
    ("%job run missing.ipynb --no-worker", "notebook missing.ipynb does not exist"),
]


@pytest.mark.parametrize("source,message", BAD_CELLS, ids=[s.split("\n")[0][:40] for s, _ in BAD_CELLS])
def test_bad_input_is_one_clear_line_and_submits_nothing(shell, home, capsys, source, message):
    ok(shell, "import threading; a = 1; lock = threading.Lock(); gen = (i for i in range(3))")
    capsys.readouterr()
    result = run(shell, source)
    assert isinstance(result.error_in_exec, UsageError)
    assert message in str(result.error_in_exec)
    err = capsys.readouterr().err
    assert err.startswith("UsageError: ") and message in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert job_rows(home) == 0
    runs = home / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no inputs left behind either
    assert "`nbjobs " not in err  # errors speak the magics' words (%job ls), not the CLI's


def test_unpicklable_input_among_good_ones_leaves_no_files(shell, home):
    ok(shell, "import pandas as pd, threading; df = pd.DataFrame({'x': range(1000)}); lock = threading.Lock()")
    with pytest.raises(UsageError, match=r"--in 'lock' \(_thread.lock\)"):
        shell.run_cell_magic("job", "--no-worker --in df,lock", "y = 1")
    assert job_rows(home) == 0
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


# --- submitting without a worker: options land in SQLite ------------------------------------------------
def test_cell_options_are_recorded_and_handle_is_the_cells_value(shell, home, tmp_path):
    ok(shell, "n = 5")  # how long a %%job submit takes: benchmarks/bench_submit.py
    job = ok(shell, "%%job --no-worker --name train -p alpha 0.5 -p label Q3 --retries 2 --timeout 600 "
                    "--priority 7 --tag nightly --tag ml --key run-1 --in n --out m\nm = n * alpha")
    assert isinstance(job, nbjobs.Job)
    assert shell.user_ns["_"] is job  # `job = _` works
    ok(shell, "job = _")
    assert shell.user_ns["job"].id == job.id
    r = job.record
    assert (r.name, r.state.value, r.retries, r.timeout, r.priority, r.tags, r.idem_key, r.kind) == \
        ("train", "queued", 2, 600.0, 7, ["nightly", "ml"], "run-1", "cell")
    assert r.parameters == {"alpha": 0.5, "label": "Q3"}
    assert r.source.strip() == "m = n * alpha"
    assert r.cwd == str(tmp_path)  # the kernel's directory (the notebook's folder)
    from nbjobs.kernels import kernel_for_python

    assert r.kernel == kernel_for_python()  # the kernelspec running this Python ('python3' here and in CI)
    assert r.options["outputs"] == ["m"]
    assert [(i["name"], i["kind"], i["type_name"]) for i in r.options["inputs"]] == [("n", "json", "builtins.int")]
    manifest = home / "runs" / job.id / "inputs" / "manifest.jsonl"
    assert json.loads(manifest.read_text())["value"] == "5"

    # the same key returns the first job and leaves no second inputs folder
    again = ok(shell, "%%job --no-worker --key run-1 --in n\nm = 0")
    assert again.id == job.id
    assert sorted(p.name for p in (home / "runs").iterdir()) == [job.id]
    # --quiet shows nothing and the cell has no value
    assert ok(shell, "%%job --no-worker --quiet\nx = 1") is None
    assert job_rows(home) == 2


def test_cancel_retry_wait_ls_status_without_worker(shell, home, capsys):
    job = ok(shell, "%%job --no-worker --name sleeper\nimport time; time.sleep(60)")
    capsys.readouterr()
    ok(shell, f"%job cancel {job.short_id}")
    assert capsys.readouterr().out.strip() == f"{job.short_id}: cancelled"
    assert job.state == nbjobs.State.CANCELLED
    assert ok(shell, f"%job wait {job.id[:6]} --timeout 5") == job  # already over: returns at once
    again = ok(shell, f"%job retry {job.short_id} --no-worker")
    assert again == job and job.state == nbjobs.State.QUEUED
    result = run(shell, f"%job wait {job.short_id} --timeout 0.2")
    assert isinstance(result.error_in_exec, UsageError) and "still not finished after 0.2 s" in str(
        result.error_in_exec)
    listed = ok(shell, "%job ls --state queued")
    assert isinstance(listed, list) and [j.id for j in listed] == [job.id]
    assert "sleeper" in repr(listed) and "queued" in listed._repr_html_()
    capsys.readouterr()
    ok(shell, "%job status")
    out = capsys.readouterr().out
    assert "1 queued" in out and "no live worker" in out and job.short_id in out
    ok(shell, f"%job status {job.short_id}")
    out = capsys.readouterr().out
    assert out.startswith(f"{job.short_id} sleeper: queued") and job.id in out
    ok(shell, f"%job cancel {job.short_id}")
    result = run(shell, f"%job cancel {job.short_id}")
    assert "already cancelled" in str(result.error_in_exec)


def test_job_displays_as_receipt_text_and_html(shell, home):
    job = ok(shell, "%%job --no-worker --name viz\nx = 1")
    data = job._repr_mimebundle_()
    assert data["text/plain"] == repr(job) and repr(job).startswith(f"<Job {job.short_id} 'viz' queued")
    html = data["text/html"]
    assert f'data-job-id="{job.id}"' in html and 'data-state="queued"' in html and ">viz<" in html
    assert panel.WIDGET_MIME not in data  # no kernel here: no widget
    assert job._repr_html_() == html


# --- real worker: returns at once, inputs and outputs round-trip, pull after a restart ------------------
@pytest.mark.slow
def test_cells_run_as_jobs_and_values_round_trip(shell, home, worker, tmp_path, capsys):
    import pandas as pd

    ok(shell, textwrap.dedent("""\
        import pandas as pd
        n = 21
        s = "héllo"
        d = {"a": [1, 2.5, None], "b": {"c": True}}
        df = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
        f = lambda v: v * 10 + n
        """))
    code = textwrap.dedent("""\
        import time
        time.sleep(3)
        n2 = n * 2 + bump
        s2 = s.upper()
        d2 = {**d, "f": f(1)}
        df2 = df.assign(z=df.x.map(f))
        g = lambda v: f(v) + 1
        here = %pwd
        said = !echo hello from the shell
        said = said[0]
        print("log line from the job")
        """)
    # how long a %%job --in/--out submit takes: benchmarks/bench_submit.py
    job = ok(shell, "%%job --name roundtrip -p bump 1 --in n,s,d,df,f --out n2,s2,d2,df2,g,here,said\n" + code)
    assert job.state in (nbjobs.State.QUEUED, nbjobs.State.RUNNING)  # it sleeps 3 s; the cell did not wait

    # a live receipt (ipywidgets without a kernel: the widget exists, its comm goes nowhere) follows the job
    receipt = panel.Receipt(job)
    widget = receipt.widget()
    assert job.id in updater.watching() and updater.alive()
    missing = ok(shell, "%%job --name missing --out nope,x\nx = 1")
    nb = write_notebook(tmp_path / "report.ipynb", ["import nbjobs\nnbjobs.record('total', n * 3)"],
                        parameters="n = 1")
    nbjob = ok(shell, f"%job run {nb.name} -p n 10 --name report")
    assert nbjob.record.kind == "notebook" and nbjob.record.parameters == {"n": 10}

    nbjobs.wait([job, missing, nbjob], timeout=JOB_WAIT)
    r = job.record
    assert r.state == nbjobs.State.SUCCEEDED, (r.error_type, r.error_message)
    assert r.finished_at - r.started_at >= 3.0
    assert widget.__class__.__name__ == "VBox"  # the panel's row component, for one job
    wait_for(lambda: 'data-state="succeeded"' in receipt.view.rows[job.id].cells["state"].value, 5,
             "the receipt to show the end")
    receipt.close()
    wait_for(lambda: not updater.alive(), 5, "the updater thread to stop when its last view is closed")

    values = job.result()
    assert values["n2"] == 43 and type(values["n2"]) is int
    assert values["s2"] == "HÉLLO"
    assert values["d2"] == {"a": [1, 2.5, None], "b": {"c": True}, "f": 31}
    expected = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"], "z": [31, 41, 51]})
    pd.testing.assert_frame_equal(values["df2"], expected)
    assert values["g"](2) == 42  # a lambda made in the job from a lambda sent to it
    assert values["here"] == str(tmp_path)  # a line magic ran, in the submitting directory
    assert values["said"] == "hello from the shell"  # a !shell line ran
    capsys.readouterr()
    ok(shell, f"%job logs {job.short_id}")
    assert "log line from the job" in capsys.readouterr().out

    m = missing.record
    assert m.state == nbjobs.State.FAILED
    assert (m.error_type, m.error_message) == ("NameError", "--out names 'nope' but the cell never defined it")
    assert nbjob.state == nbjobs.State.SUCCEEDED and ok(shell, f"%job result {nbjob.short_id}") == {"total": 30}

    # a kernel restart: a new shell, no state but SQLite and the run folder
    shell = new_shell()
    assert "n2" not in shell.user_ns
    capsys.readouterr()
    ok(shell, f"%job pull {job.short_id}")
    out = capsys.readouterr().out
    assert out.startswith("pulled ") and f"from job {job.short_id}" in out and "df2 (DataFrame)" in out
    ns = shell.user_ns
    assert (ns["n2"], ns["s2"], ns["said"]) == (43, "HÉLLO", "hello from the shell")
    pd.testing.assert_frame_equal(ns["df2"], expected)
    assert ns["g"](0) == 22
    shell2 = new_shell()
    ok(shell2, f"%job pull {job.id} n2 s2")
    assert shell2.user_ns["n2"] == 43 and "df2" not in shell2.user_ns
    result = run(shell2, f"%job pull {job.short_id} nope")
    assert "has no output 'nope'" in str(result.error_in_exec)
    result = run(shell2, f"%job pull {missing.short_id}")
    assert f"job {missing.short_id} (failed) has no recorded outputs" in str(result.error_in_exec)
    assert ok(shell2, f"%job result {job.short_id}")["s2"] == "HÉLLO"
    listed = ok(shell2, "%job ls")
    assert {j.id for j in listed} == {job.id, missing.id, nbjob.id}


@pytest.mark.slow
def test_wait_option_blocks_and_shows_the_result(shell, home, worker, capsys):
    job = ok(shell, "%%job --wait --out v\nv = {'answer': 6 * 7}")
    assert job.state == nbjobs.State.SUCCEEDED
    out = capsys.readouterr().out
    assert "{'v': {'answer': 42}}" in out  # the result is shown before the receipt
    assert out.index("{'v'") < out.index(f"<Job {job.short_id}")


# --- a real kernel: the receipt is published, then updated live to the final state ---------------------
@pytest.mark.slow
def test_job_cell_in_a_real_kernel_publishes_a_live_receipt(home, worker, tmp_path):
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=dict(os.environ, NBJOBS_HOME=str(home)), cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive("%load_ext nbjobs", timeout=30)
        msgs: list[dict] = []
        # the cell returns (timeout=30 includes the first import of ipywidgets in that kernel); how
        # long a %%job submit takes: benchmarks/bench_submit.py
        reply = kc.execute_interactive("%%job --name kernel-job\nimport time; time.sleep(2)", timeout=30,
                                       output_hook=msgs.append)
        assert reply["content"]["status"] == "ok"
        results = [m for m in msgs if m["msg_type"] == "display_data"]
        assert len(results) == 1 and not [m for m in msgs if m["msg_type"] == "execute_result"]
        data = results[0]["content"]["data"]
        display_id = results[0]["content"]["transient"]["display_id"]  # to be replaced when the job ends
        # the worker may claim the job before the receipt is built: queued or running, never over
        assert re.match(r"<Job [0-9a-f]{8} 'kernel-job' (queued|running) ", data["text/plain"]), data["text/plain"]
        assert re.search('data-state="(queued|running)"', data["text/html"])
        model_id = data[panel.WIDGET_MIME]["model_id"]
        opened = [m for m in msgs if m["msg_type"] == "comm_open" and m["content"]["comm_id"] == model_id]
        assert opened and opened[0]["content"]["data"]["state"]["_model_name"] == "VBoxModel"
        assert "nbjobs-receipt" in opened[0]["content"]["data"]["state"]["_dom_classes"]
        # the receipt's state cell: an HTML widget whose value is the badge
        badges = [m for m in msgs if m["msg_type"] == "comm_open"
                  and "nbjobs-col-state" in m["content"]["data"]["state"].get("_dom_classes", [])]
        assert len(badges) == 1
        model_id = badges[0]["content"]["comm_id"]
        first = re.search('data-state="(queued|running)"', badges[0]["content"]["data"]["state"]["value"])
        assert first
        elapsed_ids = {m["content"]["comm_id"] for m in msgs if m["msg_type"] == "comm_open"
                       and "nbjobs-col-elapsed" in m["content"]["data"]["state"].get("_dom_classes", [])}
        assert len(elapsed_ids) == 1

        states, ticks, final = [first.group(1)], 0, None
        deadline = time.monotonic() + JOB_WAIT
        while time.monotonic() < deadline and ("succeeded" not in states or final is None):
            try:
                m = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            content = m["content"]
            if m["msg_type"] == "update_display_data" and content["transient"]["display_id"] == display_id:
                final = content["data"]
            if m["msg_type"] == "comm_msg" and content.get("comm_id") == model_id:
                value = content["data"].get("state", {}).get("value", "")
                if 'data-state="' in value:
                    states.append(value.split('data-state="')[1].split('"')[0])
            elif m["msg_type"] == "comm_msg" and content.get("comm_id") in elapsed_ids and "running" in states \
                    and "succeeded" not in states:
                ticks += 1  # the elapsed cell ticks while the job runs
        assert states[-1] == "succeeded" and "running" in states, states
        assert ticks >= 1  # updates arrived while it ran, not only at the end
        # the whole output became the final static receipt: what a saved notebook or nbviewer shows
        assert final is not None and panel.WIDGET_MIME not in final, final
        assert 'data-state="succeeded"' in final["text/html"] and "%job logs" in final["text/html"]
        job_id = data["text/plain"].split()[1]
        assert nbjobs.get(job_id).state == nbjobs.State.SUCCEEDED
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    assert not km.is_alive()


@pytest.mark.slow
def test_a_job_traceback_names_the_users_cell_and_line_and_a_missing_input_is_named(shell, home, worker, capsys):
    ok(shell, "df = 41")
    job = ok(shell, "%%job --name tb\nx = 1\ny = 2\nprint(df + x)")
    count = shell.execution_count - 1  # the %%job cell's number, In [count]
    err = capsys.readouterr().err
    assert ("warning: the job runs in a fresh kernel, where df is not defined; pass it with --in df "
            "(or import or define it in the cell)") in err
    assert "x" not in err.split("where")[1].split("is not")[0]  # defined by the cell itself
    job.wait(60)
    r = job.record
    assert (r.state, r.error_type) == (nbjobs.State.FAILED, "NameError")
    tb = re.sub(r"\x1b\[[0-9;]*m", "", r.error_traceback)
    assert f"Cell In[{count}], line 4" in tb, tb  # the editor's line: the magic line is line 1
    assert "----> 4 print(df + x)" in tb
    fixed = ok(shell, "%%job --name tb --in df\nx = 1\nprint(df + x)")
    assert "warning" not in capsys.readouterr().err
    assert fixed.wait(60).state == nbjobs.State.SUCCEEDED
