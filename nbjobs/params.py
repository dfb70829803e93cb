"""Parameters typed exactly as papermill's command line types them.

``-p NAME VALUE`` infers the type (True/False/None, int, float, else str), ``-r`` keeps a raw
string, ``-y`` parses YAML, ``-f FILE`` reads a YAML file of parameters.

>>> infer_value("7"), infer_value("2.5"), infer_value("True"), infer_value("Q3")
(7, 2.5, True, 'Q3')
>>> parse_pairs(["n=7", "title=Q3"])
{'n': 7, 'title': 'Q3'}
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable

from .errors import BadInput

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(name: str) -> str:
    """A parameter name must be a Python identifier (it becomes a variable in the job)."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in _KEYWORDS:
        raise BadInput(f"parameter name {name!r} is not a valid Python identifier; use letters, digits and _")
    return name


def infer_value(text: str) -> Any:
    """papermill's ``-p`` typing: True/False/None, int, float, otherwise the string itself.

    As in papermill only the Python spellings are special (``-p mode none`` is the string
    ``'none'``); unlike papermill, nan/inf stay strings because JSON cannot store them.
    """
    if text == "True":
        return True
    if text == "False":
        return False
    if text == "None":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def parse_yaml(text: str, what: str = "-y") -> dict[str, Any]:
    import yaml  # papermill depends on PyYAML; imported only when -y/-f is used

    class NoDatesSafeLoader(yaml.SafeLoader):
        """papermill's -y/-f loader: dates stay strings (a datetime is not a JSON value)."""

        yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:timestamp"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    try:
        data = yaml.load(text, Loader=NoDatesSafeLoader)
    except yaml.YAMLError as exc:
        line = str(exc).splitlines()[0]
        raise BadInput(f"{what} is not valid YAML ({line}); write it like 'n: 7' or '{{n: 7, title: Q3}}'") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{what} must be a YAML mapping of name: value, not {type(data).__name__}")
    return {check_name(str(k)): v for k, v in data.items()}


def parse_file(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise BadInput(f"cannot read parameters file {path}: {exc.strerror}; give an existing YAML file to -f") from None
    return parse_yaml(text, what=f"parameters file {path}")


def parse_pairs(items: Iterable[str]) -> dict[str, Any]:
    """``name=value`` strings, typed as ``-p`` types them."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise BadInput(f"parameter {item!r} is not NAME=VALUE; write it like n=7")
        name, value = item.split("=", 1)
        out[check_name(name.strip())] = infer_value(value)
    return out


def build(p: Iterable[tuple[str, str]] = (), r: Iterable[tuple[str, str]] = (),
          y: Iterable[str] = (), f: Iterable[str] = ()) -> dict[str, Any]:
    """Merge parameters from the four papermill-style options (later ones win: -f, -y, -r, -p)."""
    out: dict[str, Any] = {}
    for path in f:
        out.update(parse_file(path))
    for text in y:
        out.update(parse_yaml(text))
    for name, value in r:
        out[check_name(name)] = value
    for name, value in p:
        out[check_name(name)] = infer_value(value)
    return check_json(out)


# --- sweeps ------------------------------------------------------------------------------------------
#: the most jobs one sweep may submit
MAX_SWEEP = 1000


def split_values(name: str, text: str, raw: bool = False, flag: str = "-p") -> list[Any]:
    """One ``-p NAME V1,V2`` of a sweep: the value split on commas, each part typed like ``-p`` (``-r``:
    kept as strings).  Values with commas or lists go in ``-y``.

    >>> split_values("lr", "0.1,0.01"), split_values("mode", "a,True"), split_values("mode", "a,True", raw=True)
    ([0.1, 0.01], ['a', True], ['a', 'True'])
    """
    parts = [t.strip() for t in str(text).split(",")]
    if any(t == "" for t in parts):
        raise BadInput(f"{flag} {name} {text!r} has an empty value; separate values with single commas "
                       f"(a value with a comma goes in -y, e.g. -y '{name}: [\"a,b\", c]')")
    return parts if raw else [infer_value(t) for t in parts]


def expand(grid: dict[str, Any], zip_: bool = False) -> list[dict[str, Any]]:
    """The parameter sets of a sweep: every combination of the grid's values (the first name varies
    slowest), or with ``zip_`` the i-th value of each.  A value that is not a list or tuple is one
    value.  Each set is checked as JSON parameters; more than `MAX_SWEEP` sets is refused.

    >>> expand({"lr": [0.1, 0.01], "depth": [3, 5]})
    [{'lr': 0.1, 'depth': 3}, {'lr': 0.1, 'depth': 5}, {'lr': 0.01, 'depth': 3}, {'lr': 0.01, 'depth': 5}]
    >>> expand({"lr": [0.1, 0.01], "depth": [3, 5]}, zip_=True)
    [{'lr': 0.1, 'depth': 3}, {'lr': 0.01, 'depth': 5}]
    """
    import itertools

    if not isinstance(grid, dict) or not grid:
        raise BadInput("a sweep needs a grid of parameters, e.g. grid={'lr': [0.1, 0.01]} or -p lr 0.1,0.01")
    axes: dict[str, list[Any]] = {}
    for name, values in grid.items():
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise BadInput(f"parameter {name!r} of the sweep has no values; give at least one")
        axes[check_name(name)] = values
    if zip_:
        sizes = {n: len(v) for n, v in axes.items()}
        if len(set(sizes.values())) > 1:
            shown = ", ".join(f"{n} has {k}" for n, k in sizes.items())
            raise BadInput(f"--zip pairs the i-th values, so every parameter needs as many values ({shown})")
        count = next(iter(sizes.values()))
    else:
        count = math.prod(len(v) for v in axes.values())
    if count > MAX_SWEEP:
        raise BadInput(f"the sweep would submit {count} jobs, more than {MAX_SWEEP}; split it into smaller sweeps")
    names = list(axes)
    rows = zip(*axes.values()) if zip_ else itertools.product(*axes.values())
    return [check_json(dict(zip(names, row))) for row in rows]


def build_grid(p: Iterable[tuple[str, str]] = (), r: Iterable[tuple[str, str]] = (),
               y: Iterable[str] = (), f: Iterable[str] = ()) -> dict[str, list[Any]]:
    """A sweep's grid from the papermill-style options (later ones win: -f, -y, -r, -p): ``-p NAME
    V1,V2`` (split on commas, each typed like ``-p``), ``-r NAME A,B`` (split, kept as strings),
    ``-y``/``-f`` a YAML mapping whose list values are the values (a scalar is one value).  The
    names come in that order: ``-p`` names as given, then ``-r``, then ``-y``/``-f``."""
    out: dict[str, list[Any]] = {}
    for mapping in [parse_file(path) for path in f] + [parse_yaml(text) for text in y]:
        for name, value in mapping.items():
            out[name] = list(value) if isinstance(value, list) else [value]
    for name, value in r:
        out[check_name(name)] = split_values(name, value, raw=True, flag="-r")
    for name, value in p:
        out[check_name(name)] = split_values(name, value)
    # the order of the sweep (and of its results' index): -p names as given, then -r, then -y/-f
    first = [n for n, _ in p] + [n for n, _ in r]
    return {n: out[n] for n in dict.fromkeys(first + list(out))}


def check_json(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters are stored as JSON and injected by papermill: they must be JSON values."""
    if not isinstance(parameters, dict):
        raise BadInput(f"parameters must be a dict of name: value, not {type(parameters).__name__}")
    for name, value in parameters.items():
        check_name(name)
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise BadInput(
                f"parameter {name!r} has a {type(value).__name__} value, which is not a JSON value; "
                "pass numbers, strings, booleans, None, lists or dicts (use inputs for other objects)"
            ) from None
    return parameters


_KEYWORDS = frozenset(
    "False None True and as assert async await break class continue def del elif else except finally for "
    "from global if import in is lambda nonlocal not or pass raise return try while with yield".split()
)
