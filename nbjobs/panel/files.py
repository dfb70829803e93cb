"""Files of a job seen from a notebook: links that open output notebooks in JupyterLab, and the
tails of log files (the panel's "last line" and its logs action).

>>> read_tail(Path("/nonexistent/log.txt"))
[]
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import config
from ..job import HELPER_TAGS, JobRecord

#: lines of log shown by the "logs" action
LOG_LINES = 40
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: lines the job's kernel process logs itself (e.g. ipykernel's TCP warning), not the job's output
_KERNEL_LOG = re.compile(r"^\[(IPKernelApp|KernelApp|ZMQTerminalIPythonApp)\] ")


# --- links to output notebooks -----------------------------------------------------------------------
def lab_href(path: str | os.PathLike, root_dir: str | os.PathLike, base_url: str = "/") -> str | None:
    """The JupyterLab URL path that opens ``path``, or None when JupyterLab cannot open it: the
    file is outside the server's root, or under a hidden folder (JupyterLab refuses those unless
    ``ContentsManager.allow_hidden``; the default home ``~/.nbjobs`` is one).

    >>> lab_href("/srv/nb/runs/a b.ipynb", "/srv/nb", "/user/ann/")
    '/user/ann/lab/tree/runs/a%20b.ipynb'
    >>> lab_href("/home/ann/.nbjobs/runs/x/1/output.ipynb", "/home/ann") is None
    True
    """
    try:
        rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(root_dir))
    except ValueError:
        return None
    if not rel.parts or any(p.startswith(".") for p in rel.parts):
        return None
    return "/" + base_url.strip("/") + ("/" if base_url.strip("/") else "") + "lab/tree/" + quote(rel.as_posix())


_server_info: dict[str, Any] | None | bool = False


def lab_server() -> dict[str, Any] | None:
    """``{"root_dir", "base_url"}`` of the Jupyter server that started this kernel, from its
    ``jpserver-<pid>.json`` runtime file (the kernel's ``JPY_PARENT_PID`` is the server's pid);
    None outside a Jupyter server (a console, papermill, VS Code)."""
    global _server_info
    if _server_info is False:
        _server_info = None
        pid = os.environ.get("JPY_PARENT_PID")
        if pid and pid.isdigit():
            try:
                from jupyter_core.paths import jupyter_runtime_dir

                info = json.loads((Path(jupyter_runtime_dir()) / f"jpserver-{pid}.json").read_text())
                _server_info = {"root_dir": info["root_dir"], "base_url": info.get("base_url") or "/"}
            except (OSError, ValueError, KeyError, ImportError):  # no Jupyter server: rows show paths, not links
                _server_info = None
    return _server_info  # type: ignore[return-value]


# --- log tails -------------------------------------------------------------------------------------------
def read_tail(path: Path, lines: int = LOG_LINES, max_bytes: int = 16384) -> list[str]:
    """The last ``lines`` lines of a text file (ANSI colours removed); [] if it does not exist.

    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    text = _ANSI.sub("", data.decode("utf-8", errors="replace")).replace("\r\n", "\n").replace("\r", "\n")
    out = text.split("\n")
    if size > max_bytes:
        out = out[1:]  # the first line is probably cut
    while out and not out[-1].strip():
        out.pop()
    return out[-lines:]


class LogTail:
    """Last lines of log files, re-read only when a file's size or mtime changed (one ``stat``)."""

    def __init__(self):
        self._cache: dict[Path, tuple[tuple[int, int], list[str]]] = {}

    def lines(self, path: Path) -> list[str]:
        try:
            st = path.stat()
        except OSError:
            return []
        sig = (st.st_size, st.st_mtime_ns)
        hit = self._cache.get(path)
        if hit and hit[0] == sig:
            return hit[1]
        got = read_tail(path)
        self._cache[path] = (sig, got)
        return got

    def last_line(self, path: Path) -> str:
        """The last line of the job's own output (the kernel's log lines are skipped)."""
        for line in reversed(self.lines(path)):
            if line.strip() and not _KERNEL_LOG.match(line):
                return line.strip()[:300]
        return ""


def log_file(r: JobRecord, home: Path) -> Path | None:
    """Where the runner writes the log of the job's latest attempt (``runs/<id>/<n>/log.txt``)."""
    if not r.attempts:
        return None
    return config.run_dir(r.id, home) / str(r.attempts) / "log.txt"



def copy_for_user(src: str | Path, dest: Path) -> None:
    """Copy an output notebook for the user to open: without the cells nbjobs wrapped a cell
    job's code in (`nbjobs.job.HELPER_TAGS`), which are not theirs (papermill's injected
    parameters stay: they say what ran).  Written private to the user."""
    nb = json.loads(Path(src).read_text(encoding="utf-8"))
    nb["cells"] = [c for c in nb.get("cells", []) if not HELPER_TAGS & set(c.get("metadata", {}).get("tags", []))]
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
