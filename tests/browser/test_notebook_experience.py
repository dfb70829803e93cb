"""What a data scientist sees of the notebook-experience fixes, in a real JupyterLab (headless Chromium):
a queued job says why it waits, a failed cell job's traceback names the user's cell and line, a missing
``--in`` is named at submit, ``%job ls`` is a left-aligned table, and a plot shows no ``<Axes ...>`` line.
Screenshots go to ``artifacts/``.
"""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

JOB_S = 60_000  # ms: bound for a small papermill job on a loaded 2-core machine


def gated(gate) -> str:
    return f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)"


def test_waits_tracebacks_inputs_tables_and_plots_read_true(nbhome, lab, page, notebook, gates, shot):
    g = gates("busy")
    notebook("experience.ipynb", [
        "%load_ext nbjobs\ndf = 41",
        "%%job --name busy-1\n" + gated(g),
        "%%job --name busy-2\n" + gated(g),
        "%%job --name third\nx = 1",                              # the worker runs two at a time
        "%%job --name tb\nx = 1\ny = 2\nprint(df + x)",            # df exists here, not in the job
        "%job ls",
        "import nbjobs\nnbjobs.plot.runtime(window='1h')",
    ])
    cells = page.locator(".jp-Notebook .jp-Cell")
    third = cells.nth(3)
    expect(third.locator(".nbjobs-col-note")).to_have_text("queued behind 2 running (concurrency 2)", timeout=JOB_S)
    shot("receipt-queued-behind", third)
    # forgetting --in: one line at submit that names the variable and what to do
    expect(cells.nth(4).locator(".jp-OutputArea")).to_contain_text(
        "where df is not defined; pass it with --in df", timeout=JOB_S)
    g.touch()
    for i in (1, 2, 3):
        expect(cells.nth(i).locator('.nbjobs-receipt[data-state="succeeded"]')).to_be_visible(timeout=JOB_S)
    tb = cells.nth(4)
    expect(tb.locator('.nbjobs-receipt[data-state="failed"]')).to_be_visible(timeout=JOB_S)
    expect(tb.locator(".nbjobs-receipt")).to_contain_text("NameError: name 'df' is not defined")
    shot("receipt-failed-traceback", tb)
    # the job's own record says where: the %%job cell's number and the line as the editor counts it
    import nbjobs
    [failed] = [r for r in nbjobs.records(home=nbhome) if r.name == "tb"]
    assert "Cell In[5], line 4" in failed.error_traceback
    # %job ls: a table whose cells line up under their headings (left-aligned like the headings)
    table = cells.nth(5).locator("table.nbjobs-jobs")
    expect(table).to_be_visible(timeout=JOB_S)
    aligns = table.locator("td").evaluate_all("tds => tds.map(td => getComputedStyle(td).textAlign)")
    heads = table.locator("th").evaluate_all("ths => ths.map(th => getComputedStyle(th).textAlign)")
    assert set(aligns) == set(heads) == {"left"}, (set(aligns), set(heads))
    shot("job-ls-table", cells.nth(5))
    plot = cells.nth(6).locator(".jp-OutputArea")
    expect(plot.locator("img")).to_be_visible(timeout=JOB_S)
    assert "<Axes" not in plot.inner_text()
    shot("plot-without-axes-repr", cells.nth(6))
