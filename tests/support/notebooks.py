"""Notebook files for tests."""
from __future__ import annotations

import json
from pathlib import Path


def write_notebook(path: Path, cells: list[str], parameters: str | None = None, kernel: str = "python3") -> Path:
    """Write a minimal nbformat-4 notebook with code ``cells`` (and a tagged parameters cell first)."""
    nb_cells = []
    if parameters is not None:
        nb_cells.append({"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None,
                         "outputs": [], "source": parameters})
    for src in cells:
        nb_cells.append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                         "source": src})
    nb = {"cells": nb_cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"},
                       "language_info": {"name": "python"}}}
    path.write_text(json.dumps(nb))
    return path
