"""Recorded outputs: ``nbjobs.record(name, value)`` inside a job, and reading them back.

Inside a job, `record` writes to the attempt's output folder (``$NBJOBS_OUTPUT_DIR``): plain
JSON values (None, bool, int, finite float, str, and lists/dicts of those with str keys) go to a
manifest line and end up inline in SQLite; anything else is written to a file, typed:
pandas objects and other picklable objects with (cloud)pickle, numpy arrays as ``.npy``.  The
runner reads the manifest when the attempt ends and reports it; the worker writes SQLite.
`load` turns a stored output back into the same kind of object.

>>> is_plain({"a": [1, 2.5, "x", None, True]}), is_plain((1, 2)), is_plain({1: "a"})
(True, False, False)
"""
from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import pickle
import re
import time
import warnings
from pathlib import Path
from typing import Any

from . import config
from .errors import BadInput, NbjobsError

MANIFEST = "manifest.jsonl"
ENV_OUTPUT_DIR = "NBJOBS_OUTPUT_DIR"
ENV_JOB_ID = "NBJOBS_JOB_ID"
ENV_SECRET_NAMES = "NBJOBS_SECRET_NAMES"  # the job's secrets, comma-separated names (set by the runner)
_NAME_RE = re.compile(r"^[^\x00-\x1f/\\]{1,200}$")


def is_plain(value: Any, depth: int = 0) -> bool:
    """True if JSON stores ``value`` exactly (it comes back as the same type and value)."""
    if depth > 100:
        return False
    if value is None or isinstance(value, (bool, str)):
        return True
    if type(value) is int:
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(is_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and is_plain(v, depth + 1) for k, v in value.items())
    return False


def _file_stem(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _type_name(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def encode(name: str, value: Any, folder: Path, *, what: str = "output",
           secrets: dict[str, str] | None = None) -> dict[str, Any]:
    """Store ``value`` under ``name`` in ``folder`` (files only when needed); return the manifest entry.

    ``what`` names the value in error messages (``"output"``, or ``"input"`` for `write_inputs`).
    A name or value that holds one of ``secrets`` (name -> value) raises `BadInput`, naming the
    secret, before anything is written.
    """
    leaked = secret_in(secrets, name)
    if leaked:
        raise BadInput(f"an {what} name contains the value of secret {leaked}; secrets are never recorded")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise BadInput(f"{what} name {name!r} must be a non-empty string of at most 200 characters without '/'")
    entry: dict[str, Any] = {"name": name, "type_name": _type_name(value)}
    module = type(value).__module__.split(".")[0]
    if is_plain(value):
        text = json.dumps(value, allow_nan=False)
        data = text.encode()
        kind, suffix = ("json", "") if len(text) <= config.INLINE_LIMIT else ("json-file", ".json")
    elif module == "numpy" and type(value).__name__ == "ndarray" and value.dtype != object:
        import io

        import numpy as np

        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        data, kind, suffix = buf.getvalue(), "npy", ".npy"
    else:
        try:
            import cloudpickle as pickler
        except ImportError:  # cloudpickle is a dependency; plain pickle still handles most values
            pickler = pickle
        try:
            data = pickler.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            if what != "output":
                cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise BadInput(f"{what} {name!r} ({_type_name(value)}) cannot be pickled: {cause}; create it "
                               "inside the job's code instead, or pass what it is made from") from None
            raise BadInput(f"output {name!r} ({_type_name(value)}) cannot be pickled: {exc}; "
                           "record a plainer value (e.g. a dict, DataFrame or array)") from None
        kind = "pandas" if module == "pandas" else "pickle"
        suffix = ".pkl"
    leaked = secret_in(secrets, value, data)
    if leaked:
        raise BadInput(f"{what} {name!r} contains the value of secret {leaked}; secrets are never recorded "
                       "(record something derived from it instead)")
    if kind == "json":
        entry.update(kind=kind, value=text, size=len(data))
        return entry
    path = folder / (_file_stem(name) + suffix)
    _write_private(path, data)
    entry.update(kind=kind, path=path.name, size=len(data))
    return entry


# --- secrets: a recorded value never holds one ----------------------------------------------------------
def job_secrets() -> dict[str, str]:
    """Inside a job: its secrets, name -> value (names from ``$NBJOBS_SECRET_NAMES``, values from the
    environment); empty elsewhere."""
    names = os.environ.get(ENV_SECRET_NAMES, "").split(",")
    return {n: os.environ[n] for n in names if os.environ.get(n)}


def _texts(value: Any):
    """Every str and bytes inside ``value``: nested in dicts (keys too), lists, tuples and sets, and in
    pandas objects (cells, column names, index) and numpy arrays of strings or objects.  Numeric arrays
    and columns are skipped, never walked element by element."""
    stack, seen = [value], {}
    while stack:
        v = stack.pop()
        if isinstance(v, (str, bytes, bytearray)):
            yield v
            continue
        if id(v) in seen:
            continue
        seen[id(v)] = v  # kept alive, so its id is not reused by a later temporary
        module = type(v).__module__.split(".")[0]
        if isinstance(v, dict):
            stack.extend([*v.keys(), *v.values()])
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend(v)
        elif module == "pandas" and hasattr(v, "columns"):  # a DataFrame: its labels, then column by column
            stack.extend([v.columns, v.index, *(col for _, col in v.items())])
        elif module in ("numpy", "pandas") and hasattr(v, "dtype") and hasattr(v, "tolist"):
            if module == "pandas":  # Series, Index, Categorical: their labels too
                stack.extend(getattr(v, a) for a in ("name", "names", "index") if hasattr(v, a))
            if getattr(v.dtype, "kind", "O") not in "biufcmM":
                stack.append(v.tolist())


def secret_in(secrets: dict[str, str] | None, value: Any = None, data: Any = b"") -> str | None:
    """The name of the first of ``secrets`` (name -> value) whose value is inside ``value`` (any str or
    bytes in it, however nested) or inside ``data``, its serialized bytes (JSON text, pickle, .npy, or an
    mmap of a file): there a value is looked for as UTF-8, JSON-escaped and UTF-32 (numpy's str arrays),
    so an object that holds a secret in an attribute is caught too.  None if there is none.

    >>> secret_in({"TOKEN": "s3cr3t-1"}, {"user": ["x", "key=s3cr3t-1"]})
    'TOKEN'
    >>> secret_in({"TOKEN": "s3cr3t-1"}, 42, b"pickled...s3cr3t-1..."), secret_in({"TOKEN": "s3cr3t-1"}, "s3cr3t")
    ('TOKEN', None)
    """
    if not secrets:
        return None
    encoded = {n: v.encode("utf-8", "surrogateescape") for n, v in secrets.items()}
    for text in _texts(value):
        for n, v in secrets.items():
            if (v if isinstance(text, str) else encoded[n]) in text:
                return n
    for n, v in secrets.items():
        forms = {encoded[n], json.dumps(v)[1:-1].encode(), v.encode("utf-32-le", "surrogatepass")}
        if any(data.find(form) != -1 for form in forms):
            return n
    return None


def _stored_secret(entry: dict[str, Any], folder: Path, secrets: dict[str, str]) -> str | None:
    """The name of a secret whose value is in a manifest entry: its fields, its inline value or its file."""
    found = secret_in(secrets, entry, str(entry.get("value", "")).encode())
    if found or not entry.get("path"):
        return found
    try:
        with open(folder / entry["path"], "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:  # big files are not read into memory
                return secret_in(secrets, None, data)
    except OSError:  # a missing file: `load` says so when the output is read
        return None


def drop_secrets(folder: Path, secrets: dict[str, str]) -> list[tuple[str, str]]:
    """Remove from ``folder`` every recorded output that holds one of ``secrets`` (`record` refuses them,
    a manifest written by hand does not): delete its file and rewrite the manifest without it (and without
    older values of any name).  Returns the (output name, secret name) of each output dropped."""
    manifest = folder / MANIFEST
    if not secrets or not manifest.exists():
        return []
    kept, dropped = [], []
    for entry in read_manifest(folder):
        secret = _stored_secret(entry, folder, secrets)
        if not secret:
            kept.append(entry)
            continue
        dropped.append((entry["name"], secret))
        path = folder / str(entry.get("path", ""))
        if entry.get("path") and path.resolve().parent == folder.resolve():  # never a file outside the folder
            path.unlink(missing_ok=True)
    older = sum(1 for line in manifest.read_text().splitlines() if line.strip()) > len(kept) + len(dropped)
    if dropped or older:  # older values of a name are not checked one by one: they go too
        _write_private(manifest, "".join(json.dumps(e) + "\n" for e in kept).encode())
    return dropped


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load(entry: dict[str, Any], folder: Path) -> Any:
    """The value of one stored output (a row of the ``outputs`` table)."""
    kind = entry["kind"]
    if kind == "json":
        return json.loads(entry["value"])
    path = folder / entry["path"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NbjobsError(f"output {entry['name']!r} is missing its file {path} ({exc.strerror}); "
                          "the run folder was moved or deleted") from None
    if kind == "json-file":
        return json.loads(data)
    if kind == "npy":
        import io

        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if kind in ("pickle", "pandas"):
        return pickle.loads(data)  # written by this user's own job, in this user's private folder
    raise NbjobsError(f"output {entry['name']!r} has unknown kind {kind!r}; upgrade nbjobs")


def read_manifest(folder: Path) -> list[dict[str, Any]]:
    """Entries recorded in ``folder``, last value per name wins, in first-recorded order."""
    path = folder / MANIFEST
    if not path.exists():
        return []
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            out[entry["name"]] = entry
    return list(out.values())


_warned = False


def record(name: str, value: Any) -> Any:
    """Record an output of the running job; returns ``value`` so it can be used inline.

    Small JSON values are stored in SQLite; DataFrames, arrays and other objects in files in
    the job's run folder.  Read them back with ``nbjobs.result(job_id)`` (or ``job.result()``).
    Outside a job (e.g. while developing the notebook by hand) it only warns once.
    A value (or name) that holds one of the job's secrets (``--secret``) is refused with a
    `BadInput` (a ValueError) naming the secret, and nothing is recorded: record something derived
    from it instead.

    >>> import nbjobs
    >>> nbjobs.record("answer", 42)  # doctest: +SKIP
    42
    """
    global _warned
    folder = os.environ.get(ENV_OUTPUT_DIR)
    if not folder:
        if not _warned:
            warnings.warn("nbjobs.record() outside a job does nothing; it records when the notebook runs as a job",
                          stacklevel=2)
            _warned = True
        return value
    path = Path(folder)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    entry = encode(name, value, path, secrets=job_secrets())
    entry["recorded_at"] = time.time()
    with open(path / MANIFEST, "a", opener=lambda p, f: os.open(p, f, 0o600)) as f:
        f.write(json.dumps(entry) + "\n")
    return value


# --- inputs of cell jobs (``%%job --in`` / ``submit(inputs=...)``) and ``--out`` -------------------------
INPUTS_DIR = "inputs"


def write_inputs(values: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Write a cell job's inputs into ``folder`` with the encoding of recorded outputs (JSON inline,
    arrays as ``.npy``, anything else cloudpickled, so functions and lambdas travel by value) and a
    ``manifest.jsonl``; return the manifest entries.  An input that cannot be pickled raises
    `BadInput` naming it and its type (the caller removes the folder).

    >>> import tempfile; entries = write_inputs({"n": 7, "f": lambda x: x + 1}, Path(tempfile.mkdtemp()))
    >>> [(e["name"], e["kind"]) for e in entries]
    [('n', 'json'), ('f', 'pickle')]
    """
    config.make_private_dir(folder)
    entries = [encode(name, value, folder, what="input") for name, value in values.items()]
    _write_private(folder / MANIFEST, "".join(json.dumps(e) + "\n" for e in entries).encode())
    return entries


def load_inputs_into(namespace: dict[str, Any], folder: str | os.PathLike) -> None:
    """Inside a cell job: load the inputs written by `write_inputs` into ``namespace`` (the job's
    ``globals()``), each under its own name.  Leaves no other names behind.

    >>> import tempfile; d = Path(tempfile.mkdtemp()); _ = write_inputs({"n": 7}, d)
    >>> ns = {}; load_inputs_into(ns, d); ns
    {'n': 7}
    """
    folder = Path(folder)
    for entry in read_manifest(folder):
        namespace[entry["name"]] = load(entry, folder)


def record_outputs(namespace: dict[str, Any], names: list[str]) -> None:
    """Inside a cell job: record each variable named by ``--out`` (``submit(outputs=...)``).
    A name the cell never defined fails the job with a clear `NameError`, before anything is recorded;
    a value that holds one of the job's secrets is refused as in `record`.

    >>> record_outputs({"x": 1}, ["x", "y"])
    Traceback (most recent call last):
    ...
    NameError: --out names 'y' but the cell never defined it
    """
    missing = [n for n in names if n not in namespace]
    if missing:
        listed = ", ".join(repr(n) for n in missing)
        raise NameError(f"--out names {listed} but the cell never defined {'it' if len(missing) == 1 else 'them'}")
    for name in names:
        record(name, namespace[name])
