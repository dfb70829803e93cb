"""Two runs side by side (`nbjobs.compare`, ``nbjobs compare A B``, ``%job compare A B``).

Each run is a job's latest attempt.  `build` reads what the store and the run folders hold: the
parameters, the recorded outputs (numbers get their delta), the code hash and the versions of the
attempt, and the two output notebooks: each code cell's duration from papermill's metadata
(``metadata.papermill.duration``) and its text output (streams, ``text/plain`` results, errors),
from which the first cell whose text output differs is found.  Code cells are aligned by position,
leaving out papermill's ``injected-parameters`` cell (one run may have none); a cell's number is
its index in the notebook as papermill ran it (the number of a failed run's ``error_cell``).

The result is a `Comparison`: ``to_dict()`` (JSON for scripts), its text (``repr``, `nbjobs.text`)
and its HTML (``_repr_html_``, `nbjobs.panel.static`).

>>> cell_text({"outputs": [{"output_type": "stream", "text": ["a\\n", "b\\n"]},
...                        {"output_type": "error", "ename": "KeyError", "evalue": "'x'"}]})
"a\\nb\\nKeyError: 'x'"
>>> delta(3, 4.5), delta(True, 2), delta("a", 1)
(1.5, None, None)
"""
from __future__ import annotations

import json
import math
import numbers
import re
from pathlib import Path
from typing import Any

#: longest text output kept for the first difference (characters)
TEXT_LIMIT = 500
#: versions of an attempt that say nothing about the run (they differ on every run)
_NOT_VERSIONS = ("pid",)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# --- notebooks ------------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def cell_text(cell: dict[str, Any]) -> str:
    """What a code cell printed and showed as text: streams, ``text/plain`` results and errors."""
    parts = []
    for out in cell.get("outputs") or []:
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(_text(out.get("text")))
        elif kind in ("execute_result", "display_data"):
            data = out.get("data") or {}
            if "text/plain" in data:
                parts.append(_text(data["text/plain"]) + "\n")
        elif kind == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return _ANSI.sub("", "".join(parts)).rstrip("\n")


def _tags(cell: dict[str, Any]) -> list[str]:
    return (cell.get("metadata") or {}).get("tags") or []


def _executed(path: str | None) -> list[dict[str, Any]] | None:
    """The cells of an output notebook as papermill executed them: without the two markdown cells
    it adds to a failed run (tag ``papermill-error-cell-tag``), so cell numbers match the error's
    (``error_cell``) and those of a run that succeeded.  None without a readable notebook."""
    if not path:
        return None
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return [c for c in nb.get("cells") or [] if isinstance(c, dict) and "papermill-error-cell-tag" not in _tags(c)]


def _cells(path: str | None) -> list[tuple[int, dict[str, Any]]] | None:
    """``(cell number, cell)`` of the code cells papermill executed, but its injected parameters."""
    cells = _executed(path)
    if cells is None:
        return None
    return [(i, c) for i, c in enumerate(cells) if c.get("cell_type") == "code" and "injected-parameters" not in _tags(c)]


def _first_line(cell: dict[str, Any] | None) -> str:
    lines = _text((cell or {}).get("source")).strip().splitlines()
    return lines[0][:60] if lines else ""


def _duration(cell: dict[str, Any] | None) -> float | None:
    value = ((cell or {}).get("metadata") or {}).get("papermill", {}).get("duration")
    return float(value) if isinstance(value, (int, float)) else None


def _source_at(path: str | None, index: int | None) -> str:
    """The first line of cell ``index`` of an output notebook (as papermill numbers cells)."""
    cells = _executed(path)
    if cells is None or index is None or not 0 <= index < len(cells):
        return ""
    return _first_line(cells[index])


# --- values ------------------------------------------------------------------------------------------------
def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def delta(a: Any, b: Any) -> float | None:
    """``b - a`` when both are numbers (not booleans), else None."""
    if _number(a) and _number(b):
        d = b - a
        return d.item() if hasattr(d, "item") else d
    return None


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    equals = getattr(a, "equals", None)  # DataFrames and Series
    if callable(equals):
        try:
            return bool(equals(b))
        except Exception:  # noqa: a foreign equals
            return False
    try:
        import numpy as np

        if isinstance(a, np.ndarray):
            return a.shape == b.shape and bool(np.array_equal(a, b))
    except ImportError:
        pass
    try:
        return bool(a == b)
    except Exception:  # noqa: objects whose == raises or is ambiguous
        return False


def jsonable(v: Any) -> Any:
    """``v`` itself when JSON can carry it (a numpy scalar as its Python value), else
    ``{"$type": ..., "repr": ...}``."""
    if isinstance(v, numbers.Number) and hasattr(v, "item"):
        v = v.item()
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        text = repr(v)
        return {"$type": type(v).__name__, "repr": text if len(text) <= 200 else text[:197] + "..."}


# --- the comparison --------------------------------------------------------------------------------------
class Comparison:
    """Two runs compared (see the module's doc).  ``a`` and ``b`` are the `nbjobs.Job` handles;
    `to_dict` has everything, `repr` is the text form, `_repr_html_` a table for notebooks."""

    def __init__(self, a: Any, b: Any, data: dict[str, Any]):
        self.a, self.b = a, b
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON-able values (``nbjobs compare A B --json``)."""
        return self.data

    @property
    def first_difference(self) -> dict[str, Any] | None:
        """``{"cell", "source", "a", "b"}`` of the first cell whose text output differs, or None."""
        return self.data["first_difference"]

    def __repr__(self) -> str:
        from .text import comparison_text

        return comparison_text(self.data)

    def _repr_html_(self) -> str:
        from .panel.static import comparison_html

        return comparison_html(self.data)


def _side(job: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
    r = job.record
    attempts = job.attempts()
    att = attempts[-1] if attempts else None
    runtime = (att["finished_at"] - att["started_at"]) if att and att.get("finished_at") else None
    return ({"id": r.id, "short_id": r.short_id, "name": r.name, "state": r.state.value, "kind": r.kind,
             "notebook": r.notebook, "attempt": att["number"] if att else 0, "runtime_s": runtime,
             "output_path": (att or {}).get("output_path") or r.output_path}, att)


def build(job_a: Any, job_b: Any) -> Comparison:
    """Compare two `nbjobs.Job` handles (their latest attempts)."""
    ra, rb = job_a.record, job_b.record
    side_a, att_a = _side(job_a)
    side_b, att_b = _side(job_b)

    pa, pb = ra.parameters or {}, rb.parameters or {}
    differ = {k: {"a": pa.get(k), "b": pb.get(k), "in": [s for s, p in (("a", pa), ("b", pb)) if k in p]}
              for k in dict.fromkeys([*pa, *pb]) if k not in pa or k not in pb or pa[k] != pb[k]}
    parameters = {"differ": differ, "same": [k for k in pa if k in pb and pa[k] == pb[k]]}

    va, vb = job_a.result(), job_b.result()
    outputs = {}
    for k in dict.fromkeys([*va, *vb]):
        have = [s for s, v in (("a", va), ("b", vb)) if k in v]
        x, y = va.get(k), vb.get(k)
        outputs[k] = {"a": jsonable(x), "b": jsonable(y), "in": have,
                      "delta": delta(x, y) if len(have) == 2 else None,
                      "same": len(have) == 2 and _same(x, y)}

    ha = (att_a or {}).get("code_hash") or ra.code_hash
    hb = (att_b or {}).get("code_hash") or rb.code_hash
    code = {"a": ha, "b": hb, "same": ha == hb}

    vers_a = {k: v for k, v in ((att_a or {}).get("versions") or {}).items() if k not in _NOT_VERSIONS}
    vers_b = {k: v for k, v in ((att_b or {}).get("versions") or {}).items() if k not in _NOT_VERSIONS}
    vers_a["kernel"], vers_b["kernel"] = (att_a or {}).get("kernel") or ra.kernel, (att_b or {}).get("kernel") or rb.kernel
    versions = {k: {"a": vers_a.get(k), "b": vers_b.get(k), "same": vers_a.get(k) == vers_b.get(k)}
                for k in dict.fromkeys([*vers_a, *vers_b])}

    ca, cb = _cells(side_a["output_path"]), _cells(side_b["output_path"])
    cells, first = [], None
    if ca is not None and cb is not None:
        for n in range(max(len(ca), len(cb))):
            ia, cell_a = ca[n] if n < len(ca) else (None, None)
            ib, cell_b = cb[n] if n < len(cb) else (None, None)
            da, db = _duration(cell_a), _duration(cell_b)
            index = ia if ia is not None else ib
            source = _first_line(cell_a) or _first_line(cell_b)
            cells.append({"cell": index, "source": source, "a_s": da, "b_s": db,
                          "delta_s": (db - da) if da is not None and db is not None else None})
            if first is None:
                ta = cell_text(cell_a) if cell_a is not None else None
                tb = cell_text(cell_b) if cell_b is not None else None
                if ta != tb:
                    first = {"cell": index, "source": source, "a": _clip(ta), "b": _clip(tb)}

    failed = {}
    for name, r, s in (("a", ra, side_a), ("b", rb, side_b)):
        if r.state.value == "succeeded" or not r.state.terminal:
            failed[name] = None
            continue
        failed[name] = {"state": r.state.value, "reason": r.reason, "error_type": r.error_type,
                        "error_message": r.error_message, "cell": r.error_cell,
                        "source": _source_at(s["output_path"], r.error_cell)}
    for s in (side_a, side_b):
        s.pop("output_path")
    return Comparison(job_a, job_b, {"a": side_a, "b": side_b, "parameters": parameters, "outputs": outputs,
                                     "code": code, "versions": versions, "cells": cells,
                                     "first_difference": first, "failed": failed})


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= TEXT_LIMIT:
        return text
    return text[:TEXT_LIMIT - 3] + "..."


__all__ = ["Comparison", "build", "cell_text", "delta", "jsonable"]
