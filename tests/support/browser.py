"""Helpers for the browser tests (tests/browser; no fixtures here: those live in its conftest.py)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from nbjobs.store import Store
from support.loaders import insert_rows


def seed_history(home: Path) -> None:
    """A few ended jobs (succeeded, failed, timed out, cancelled) written straight into the store."""
    now = time.time()
    rows = [
        dict(name="etl-daily", kind="notebook", state="succeeded", attempts=1, progress_done=6, progress_total=6,
             submitted_at=now - 900, started_at=now - 890, began_at=now - 889, finished_at=now - 700, tags=["cli"]),
        dict(name="train", kind="cell", state="failed", attempts=3, retries=2, progress_done=2, progress_total=4,
             submitted_at=now - 600, started_at=now - 595, began_at=now - 594, finished_at=now - 420,
             error_type="ValueError", error_message="learning rate must be positive"),
        dict(name="report", kind="notebook", state="timed_out", attempts=1, progress_done=1, progress_total=3,
             submitted_at=now - 400, started_at=now - 398, began_at=now - 398, finished_at=now - 98,
             error_type="TimeoutError", error_message="job timed out after 300 s"),
        dict(name="scratch", kind="cell", state="cancelled", attempts=1, reason="cancelled",
             submitted_at=now - 90, started_at=now - 88, began_at=now - 87, finished_at=now - 60),
    ]
    store = Store(home / "nbjobs.db")
    try:
        insert_rows(store, rows)
    finally:
        store.close()


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
                     "source": src} for i, src in enumerate(cells)],
          # kernelspec metadata: JupyterLab starts python3 at once, no "Select Kernel" dialog
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                      "language": "python"}, "language_info": {"name": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1))
