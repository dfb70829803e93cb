"""The live panel and receipt in a real JupyterLab, seen by headless Chromium.

Each test has its own NBJOBS_HOME, a real worker process and its own JupyterLab (conftest.py).
Jobs wait on gate files, so the test - not a timer - decides when a job moves on.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect

import nbjobs

from support.browser import seed_history, write_notebook

pytestmark = pytest.mark.browser

JOB_S = 60_000  # ms: bound for a small papermill job on a loaded 2-core machine


def prompts(page) -> list[str]:
    return [p.strip() for p in page.locator(".jp-Cell .jp-InputPrompt").all_inner_texts()]


def gated_code(gate, text: str = "gate open") -> str:
    return (f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n"
            f"print({text!r})")


def cell(page, job_id: str, column: str):
    return page.locator(f".nbjobs-panel .nbjobs-row-{job_id[:8]}.nbjobs-col-{column}")


def wait_state(job_id: str, home, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while nbjobs.get(job_id, home=home).state.value != state:
        assert time.monotonic() < deadline, f"job never became {state}"
        time.sleep(0.05)


def test_receipt_goes_running_to_succeeded_without_rerun(nbhome, lab, page, notebook, gates, shot):
    gate = gates("receipt")
    notebook("receipt.ipynb", ["%load_ext nbjobs", "%%job --name gated\n" + gated_code(gate, "all done")])
    badge = page.locator(".nbjobs-receipt .nbjobs-col-state .nbjobs-badge")
    expect(badge).to_have_text("running", timeout=JOB_S)
    expect(page.locator(".jp-Cell .jp-InputPrompt").last).to_have_text("[2]:")  # the cell has finished
    expect(page.locator(".nbjobs-receipt .nbjobs-col-elapsed")).not_to_have_text("-")  # ticking
    expect(page.locator(".nbjobs-receipt .nbjobs-col-progress")).to_have_text("0/1")  # the user's one cell
    shot("receipt-running", page.locator(".jp-Cell").last)
    gate.touch()
    t = time.monotonic()
    # the live receipt is replaced in place by the final static one: no widget left to break
    final = page.locator('.jp-Cell .nbjobs-receipt[data-state="succeeded"]')
    expect(final).to_be_visible(timeout=JOB_S)
    print(f"\nreceipt showed succeeded {time.monotonic() - t:.2f} s after the gate opened")
    expect(final.locator(".nbjobs-progress-text")).to_have_text("1/1")
    expect(final.locator(".nbjobs-hints")).to_contain_text("%job logs")
    expect(page.locator(".jp-Cell").last.locator(".jupyter-widgets")).to_have_count(0)
    assert prompts(page) == ["[1]:", "[2]:"], "no cell may run again"
    shot("receipt-succeeded", page.locator(".jp-Cell").last)
    # saved, reloaded and its kernel restarted: the page shows how the job ended, no broken widget
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    expect(page.locator(".jp-mod-dirty")).to_have_count(0)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.restartKernel()")
    page.reload()
    page.wait_for_function("() => !!window.jupyterapp")
    expect(page.locator('.jp-Cell .nbjobs-receipt[data-state="succeeded"]')).to_be_visible(timeout=JOB_S)
    expect(page.locator(".jp-Cell").last.locator(".jupyter-widgets")).to_have_count(0)
    assert "model not found" not in page.locator(".jp-Notebook").inner_text()
    shot("receipt-after-reload", page.locator(".jp-Cell").last)


def test_panel_shows_a_cli_job_and_its_progress(nbhome, lab, page, notebook, gates, shot):
    seed_history(nbhome)  # a few ended jobs, so the panel has something besides the new one
    notebook("panel.ipynb", ["%load_ext nbjobs\n%job panel"])
    expect(page.locator(".nbjobs-panel .nbjobs-summary")).to_contain_text("dead letters", timeout=JOB_S)
    expect(page.locator(".jp-Cell .jp-InputPrompt").last).to_have_text("[1]:")
    g1, g2 = gates("cell2"), gates("cell3")
    nb = lab.root / "three_cells.ipynb"
    write_notebook(nb, ["import os, time", f"while not os.path.exists({str(g1)!r}): time.sleep(0.05)",
                        f"while not os.path.exists({str(g2)!r}): time.sleep(0.05)\nprint('cells done')"])
    out = subprocess.run([sys.executable, "-m", "nbjobs", "run", str(nb), "--name", "from-cli", "--tag", "cli"],
                         env=dict(os.environ, NBJOBS_HOME=str(nbhome)), capture_output=True, text=True,
                         timeout=60, cwd=lab.root)
    assert out.returncode == 0, out.stderr
    job_id = nbjobs.get(out.stdout.split()[0], home=nbhome).id
    expect(cell(page, job_id, "name")).to_have_text("from-cli", timeout=15_000)  # appeared, no re-run
    expect(cell(page, job_id, "kind")).to_have_text("notebook")
    expect(cell(page, job_id, "state")).to_have_text("running", timeout=JOB_S)
    progress = cell(page, job_id, "progress")
    expect(progress).to_have_text("1/3", timeout=JOB_S)
    shot("panel-running", page.locator(".nbjobs-panel"))
    g1.touch()
    expect(progress).to_have_text("2/3", timeout=JOB_S)
    g2.touch()
    expect(cell(page, job_id, "state")).to_have_text("succeeded", timeout=JOB_S)
    expect(progress).to_have_text("3/3")
    expect(page.locator(f".nbjobs-panel .nbjobs-row-{job_id[:8]}.nbjobs-copy")).to_be_enabled()
    assert prompts(page) == ["[1]:"], "no cell may run again"
    shot("panel", page.locator(".nbjobs-panel"))


def test_cancel_button_cancels_a_running_job(nbhome, lab, page, notebook, gates, shot):
    notebook("cancel.ipynb", ["import nbjobs\nnbjobs.panel(state='active,cancelled')"])
    expect(page.locator(".nbjobs-panel .nbjobs-summary")).to_be_visible(timeout=JOB_S)
    job = nbjobs.submit(gated_code(gates("never")), name="to-cancel", home=nbhome, start_worker=False)
    expect(cell(page, job.id, "state")).to_have_text("running", timeout=JOB_S)
    button = page.locator(f".nbjobs-panel button.nbjobs-cancel.nbjobs-row-{job.short_id}")
    expect(button).to_be_enabled()
    button.click()
    t = time.monotonic()
    expect(cell(page, job.id, "state")).to_have_text("cancelled", timeout=30_000)
    print(f"\ncancelled {time.monotonic() - t:.2f} s after the click")
    assert nbjobs.get(job.id, home=nbhome).state == nbjobs.State.CANCELLED
    expect(button).to_be_disabled()
    expect(page.locator(f".nbjobs-panel button.nbjobs-retry.nbjobs-row-{job.short_id}")).to_be_enabled()
    area = page.locator(f".nbjobs-panel .nbjobs-area.nbjobs-row-{job.short_id}")
    expect(area).to_contain_text("cancel requested")  # the action's message, under the row
    table = page.locator(".nbjobs-panel .nbjobs-grid").bounding_box()
    assert area.bounding_box()["width"] > 0.8 * table["width"], "the area spans the whole row"
    assert prompts(page) == ["[1]:"]
    shot("panel-cancelled", page.locator(".nbjobs-panel"))


def test_updates_arrive_while_another_cell_blocks(nbhome, lab, page, notebook, gates, shot):
    job_gate, busy_gate = gates("job"), gates("busy")
    notebook("busy.ipynb", ["%load_ext nbjobs", "%%job --name busy-test\n" + gated_code(job_gate),
                            f"import os, time\nwhile not os.path.exists({str(busy_gate)!r}):\n    time.sleep(0.05)"])
    badge = page.locator(".nbjobs-receipt .nbjobs-col-state .nbjobs-badge")
    expect(badge).to_have_text("running", timeout=JOB_S)
    expect(page.locator(".jp-Cell .jp-InputPrompt").last).to_have_text("[*]:")  # cell 3 blocks the kernel
    job_gate.touch()
    expect(page.locator('.jp-Cell .nbjobs-receipt[data-state="succeeded"]')).to_be_visible(timeout=JOB_S)  # final, static
    assert prompts(page)[-1] == "[*]:", "the update must arrive while cell 3 still blocks"
    shot("receipt-while-busy")
    busy_gate.touch()
    expect(page.locator(".jp-Cell .jp-InputPrompt").last).to_have_text("[3]:")
