"""``nbjobs demo``: a notebook job with parameters, a cell job with outputs, and a job that fails
once and is retried, run by a worker in this process; then the table and the results."""
from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

REPORT = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Report\n", "A tiny parameterised report."]},
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
         "source": ["n = 3\n", "title = 'untitled'"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": ["import nbjobs\n", "squares = [i * i for i in range(n)]\n",
                    "print(f'{title}: {n} squares')\n", "nbjobs.record('total', sum(squares))"]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}

FLAKY = """import os, nbjobs
marker = 'flaky.marker'
if not os.path.exists(marker):
    open(marker, 'w').close()
    raise RuntimeError('first attempt fails on purpose')
nbjobs.record('attempt', 'second attempt worked')
"""


def run_demo(home: str | None = None) -> int:
    """Run the demo in ``home`` (default: a new temporary folder); return 0 if all went as expected."""
    home_dir = Path(home or tempfile.mkdtemp(prefix="nbjobs-demo-")).absolute()
    os.environ["NBJOBS_HOME"] = str(home_dir)
    from . import api
    from .text import jobs_table as table
    from .worker import Worker

    work = home_dir / "demo"
    work.mkdir(parents=True, exist_ok=True)
    (work / "report.ipynb").write_text(json.dumps(REPORT))
    print(f"nbjobs demo: home {home_dir}")
    worker = Worker(home_dir, concurrency=2, idle_exit=None, grace=2)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    jobs = [
        api.run_notebook(work / "report.ipynb", {"n": 7, "title": "Q3"}, cwd=work, start_worker=False),
        api.submit("import nbjobs\nnbjobs.record('answer', 6 * 7)", name="quick", cwd=work, start_worker=False),
        api.submit(FLAKY, name="flaky", retries=1, cwd=work, start_worker=False),
    ]
    for job in jobs:
        print(f"submitted {job.short_id}  {job.name}")
    api.wait(jobs, timeout=300)
    worker.stop(grace=0)
    thread.join(30)
    print()
    print(table([j.record for j in jobs]))
    print()
    for job in jobs:
        print(f"{job.short_id} {job.name}: result {job.result()}")
    print(f"\nlook around: NBJOBS_HOME={home_dir} nbjobs ls")
    ok = all(j.state.value == "succeeded" for j in jobs) and jobs[2].record.attempts == 2
    return 0 if ok else 1
